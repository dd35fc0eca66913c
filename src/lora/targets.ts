/**
 * What a LoRA may change in a model: its Linear and Conv weights by their own (official, single-file) names,
 * with their shapes. Learned from the model itself (the MMDiT graph built once with a recorder), so every
 * format's rename table is derived from the model's weight names rather than from string surgery, and SD3.5's
 * extra modules (attn2, ...) are simply more names.
 */
import type { WeightStore } from '../core/weights.js';
import { type CLIPTextConfig, buildCLIPTextModel, inferCLIPTextConfig } from '../models/clip.js';
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

/** The models a LoRA file can change. */
export type LoraComponent = 'mmdit' | 'clipL' | 'clipG';

/** A model's LoRA-targetable weights by name, and its hidden width (for the diffusers swapped halves). */
export interface LoraTargets {
  readonly component: LoraComponent;
  readonly hiddenSize: number;
  readonly byName: ReadonlyMap<string, LoraTarget>;
}

/** The model's name in messages. */
export const COMPONENT_LABEL: Readonly<Record<LoraComponent, string>> = { mmdit: 'MMDiT', clipL: 'CLIP-L', clipG: 'CLIP-G' };

function collect(store: WeightStore, names: readonly string[]): Map<string, LoraTarget> {
  const byName = new Map<string, LoraTarget>();
  for (const name of names) {
    if (byName.has(name) || !store.has(name)) continue;
    const biasName = name.replace(/\.weight$/, '.bias');
    const bias = store.has(biasName) ? { name: biasName, shape: store.get(biasName).shape } : undefined;
    byName.set(name, { name, shape: store.get(name).shape, ...(bias ? { bias } : {}) });
  }
  return byName;
}

/** A CLIP text encoder's targets: every Linear weight its graph reads (attention, MLP, text projection). */
export function clipLoraTargets(store: WeightStore, config: Partial<CLIPTextConfig>, component: 'clipL' | 'clipG'): LoraTargets {
  const full = inferCLIPTextConfig(store, config);
  const rec = new LinearRecorder();
  buildCLIPTextModel(store, full, { quant: rec });
  return { component, hiddenSize: full.hiddenSize, byName: collect(store, rec.names) };
}

/** The patch embedding is the MMDiT's one convolution LoRA trainers target. */
export const MMDIT_CONV_TARGETS = ['x_embedder.proj.weight'] as const;

/** The MMDiT's targets: every Linear weight its graph reads, plus the patch-embedding convolution. */
export function mmditLoraTargets(store: WeightStore): LoraTargets {
  const config = inferMMDiTConfig(store);
  const rec = new LinearRecorder();
  buildMMDiTGraph({ g: new GraphBuilder('record'), w: store, quant: rec }, config);
  return { component: 'mmdit', hiddenSize: config.hiddenSize, byName: collect(store, [...rec.names, ...MMDIT_CONV_TARGETS]) };
}
