/**
 * One rename table per LoRA file format: a file's module key (the key without `.lora_down.weight` etc.) ->
 * the model weight it changes, optionally a block of its rows, and whether the delta's two halves are swapped.
 * Each table is derived from the model's own weight names (LoraTargets), never by inverting string surgery:
 * kohya's `_` for `.` cannot be undone (`x_block`, `adaLN_modulation`).
 *
 *   kohya sd-scripts   lora_unet_<official path, . -> _>
 *   ComfyUI            diffusion_model.<official path>
 *   diffusers / PEFT   transformer.<diffusers SD3Transformer2DModel path> (split q/k/v onto fused rows)
 */
import type { LoraComponent, LoraTargets } from './targets.js';

export type LoraFormat = 'kohya' | 'diffusers' | 'comfyui';

export interface ModuleTarget {
  /** The model weight, e.g. `joint_blocks.0.x_block.attn.qkv.weight`. */
  readonly weight: string;
  /** [from, to) rows of that weight (split q/k/v onto a fused qkv), else every row. */
  readonly rows?: readonly [number, number];
  /** diffusers' [scale | shift] against the official [shift | scale]: exchange the delta's two halves. */
  readonly swapHalves?: boolean;
}

export interface FormatTable {
  readonly format: LoraFormat;
  /** The model the table's keys change. */
  readonly component: LoraComponent;
  /** The key prefix that identifies the format. */
  readonly prefix: string;
  readonly lookup: ReadonlyMap<string, ModuleTarget>;
}

/** Key prefixes of text-encoder LoRAs: ignored (counted and reported) for text encoders without targets (T5 always). */
export const TEXT_ENCODER_PREFIXES = ['lora_te1_', 'lora_te2_', 'lora_te3_', 'lora_te_', 'text_encoder.', 'text_encoder_2.', 'text_encoder_3.'] as const;

const modulePath = (weight: string) => weight.replace(/\.weight$/, '');

function kohyaTable(t: LoraTargets): FormatTable {
  const lookup = new Map<string, ModuleTarget>();
  for (const w of t.byName.keys()) lookup.set(`lora_unet_${modulePath(w).replaceAll('.', '_')}`, { weight: w });
  return { format: 'kohya', component: t.component, prefix: 'lora_unet_', lookup };
}

function comfyTable(t: LoraTargets): FormatTable {
  const lookup = new Map<string, ModuleTarget>();
  for (const w of t.byName.keys()) lookup.set(`diffusion_model.${modulePath(w)}`, { weight: w });
  return { format: 'comfyui', component: t.component, prefix: 'diffusion_model.', lookup };
}

/** Official embedder / final-layer paths -> diffusers paths. */
const DIFFUSERS_TOP: Readonly<Record<string, string>> = {
  'x_embedder.proj': 'pos_embed.proj',
  't_embedder.mlp.0': 'time_text_embed.timestep_embedder.linear_1',
  't_embedder.mlp.2': 'time_text_embed.timestep_embedder.linear_2',
  'y_embedder.mlp.0': 'time_text_embed.text_embedder.linear_1',
  'y_embedder.mlp.2': 'time_text_embed.text_embedder.linear_2',
  'context_embedder': 'context_embedder',
  'final_layer.linear': 'proj_out',
  'final_layer.adaLN_modulation.1': 'norm_out.linear',
};

/** Inside a joint block: official `<stream>.<module>` -> diffusers module(s), by stream. */
const DIFFUSERS_BLOCK: Readonly<Record<string, { readonly x: string | readonly string[]; readonly context: string | readonly string[] }>> = {
  'attn.qkv': { x: ['attn.to_q', 'attn.to_k', 'attn.to_v'], context: ['attn.add_q_proj', 'attn.add_k_proj', 'attn.add_v_proj'] },
  'attn.proj': { x: 'attn.to_out.0', context: 'attn.to_add_out' },
  'attn2.qkv': { x: ['attn2.to_q', 'attn2.to_k', 'attn2.to_v'], context: [] },
  'attn2.proj': { x: 'attn2.to_out.0', context: [] },
  'mlp.fc1': { x: 'ff.net.0.proj', context: 'ff_context.net.0.proj' },
  'mlp.fc2': { x: 'ff.net.2', context: 'ff_context.net.2' },
  'adaLN_modulation.1': { x: 'norm1.linear', context: 'norm1_context.linear' },
};

const BLOCK = /^joint_blocks\.(\d+)\.(x_block|context_block)\.(.+)$/;

function diffusersTable(t: LoraTargets): FormatTable {
  const lookup = new Map<string, ModuleTarget>();
  const h = t.hiddenSize;
  for (const [w, target] of t.byName) {
    const path = modulePath(w);
    const top = DIFFUSERS_TOP[path];
    if (top) {
      // AdaLayerNormContinuous (norm_out) is [scale | shift]; the official final modulation is [shift | scale].
      lookup.set(`transformer.${top}`, { weight: w, ...(path === 'final_layer.adaLN_modulation.1' ? { swapHalves: true } : {}) });
      continue;
    }
    const m = BLOCK.exec(path);
    if (!m) continue;
    const [, i, stream, rest] = m as unknown as [string, string, 'x_block' | 'context_block', string];
    const names = DIFFUSERS_BLOCK[rest]?.[stream === 'x_block' ? 'x' : 'context'];
    if (names === undefined) continue;
    const base = `transformer.transformer_blocks.${i}.`;
    if (typeof names === 'string') {
      // The pre-only context branch of the last block (2 modulation chunks) is an AdaLayerNormContinuous too.
      const swapHalves = rest === 'adaLN_modulation.1' && stream === 'context_block' && target.shape[0] === 2 * h;
      lookup.set(base + names, { weight: w, ...(swapHalves ? { swapHalves } : {}) });
    } else {
      names.forEach((n, k) => lookup.set(base + n, { weight: w, rows: [k * h, (k + 1) * h] }));
    }
  }
  return { format: 'diffusers', component: t.component, prefix: 'transformer.', lookup };
}

/**
 * CLIP text encoders: kohya `lora_te1_` (CLIP-L) / `lora_te2_` (CLIP-G) + the Hugging Face path with `_`, and
 * diffusers `text_encoder.` / `text_encoder_2.` + the Hugging Face path (our CLIP weight names are those paths).
 */
function clipTables(t: LoraTargets): FormatTable[] {
  const [kohyaPrefix, diffusersPrefix] = t.component === 'clipL' ? ['lora_te1_', 'text_encoder.'] : ['lora_te2_', 'text_encoder_2.'];
  const kohya = new Map<string, ModuleTarget>();
  const diffusers = new Map<string, ModuleTarget>();
  for (const w of t.byName.keys()) {
    kohya.set(kohyaPrefix + modulePath(w).replaceAll('.', '_'), { weight: w });
    diffusers.set(diffusersPrefix + modulePath(w), { weight: w });
  }
  return [
    { format: 'kohya', component: t.component, prefix: kohyaPrefix, lookup: kohya },
    { format: 'diffusers', component: t.component, prefix: diffusersPrefix, lookup: diffusers },
  ];
}

/** The tables of a model: three forms for the MMDiT, kohya and diffusers for the CLIP encoders. */
export function formatTables(t: LoraTargets): readonly FormatTable[] {
  if (t.component !== 'mmdit') return clipTables(t);
  return [kohyaTable(t), diffusersTable(t), comfyTable(t)];
}
