/**
 * What a LoRA may change in a model: its Linear and Conv weights by their own (official, single-file) names,
 * with their shapes. Learned from the model itself (the MMDiT graph built once with a recorder), so every
 * format's rename table is derived from the model's weight names rather than from string surgery, and SD3.5's
 * extra modules (attn2, ...) are simply more names.
 */
import type { WeightStore } from '../core/weights.js';
import { buildMMDiTGraph, inferMMDiTConfig } from '../models/mmdit.js';
import { GraphBuilder } from '../onnx/builder.js';
import { LinearRecorder } from '../quant/int8.js';

export interface LoraTarget {
  /** Weight name, e.g. `joint_blocks.0.x_block.attn.qkv.weight`. */
  readonly name: string;
  readonly shape: readonly number[];
  /** The bias beside it (`.diff_b` targets), when the model has one. */
  readonly bias?: { readonly name: string; readonly shape: readonly number[] };
}

/** A model's LoRA-targetable weights by name, and its hidden width (for the diffusers swapped halves). */
export interface LoraTargets {
  readonly component: 'mmdit';
  readonly hiddenSize: number;
  readonly byName: ReadonlyMap<string, LoraTarget>;
}

/** The patch embedding is the MMDiT's one convolution LoRA trainers target. */
export const MMDIT_CONV_TARGETS = ['x_embedder.proj.weight'] as const;

/** The MMDiT's targets: every Linear weight its graph reads, plus the patch-embedding convolution. */
export function mmditLoraTargets(store: WeightStore): LoraTargets {
  const config = inferMMDiTConfig(store);
  const rec = new LinearRecorder();
  buildMMDiTGraph({ g: new GraphBuilder('record'), w: store, quant: rec }, config);
  const byName = new Map<string, LoraTarget>();
  for (const name of [...rec.names, ...MMDIT_CONV_TARGETS]) {
    if (byName.has(name) || !store.has(name)) continue;
    const biasName = name.replace(/\.weight$/, '.bias');
    const bias = store.has(biasName) ? { name: biasName, shape: store.get(biasName).shape } : undefined;
    byName.set(name, { name, shape: store.get(name).shape, ...(bias ? { bias } : {}) });
  }
  return { component: 'mmdit', hiddenSize: config.hiddenSize, byName };
}
