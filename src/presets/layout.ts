/**
 * Tensor names and shapes of SD3 checkpoints in the single-file layout, written from the architecture, at the
 * real SD3 Medium sizes by default (`sd3_medium_incl_clips.safetensors`, `..._t5xxlfp16.safetensors`) or at
 * any smaller size. Used for the random-weight benchmark checkpoint and the `tiny-random` preset.
 */

import { CLIP_L_CONFIG, clipWeightShapes } from '../models/clip.js';

export interface LayoutEntry {
  readonly name: string;
  readonly shape: readonly number[];
  /** Standard deviation of the random values, or a constant for norm scales. */
  readonly init: { std: number; mean?: number };
}

type Add = (name: string, shape: number[], init?: { std: number; mean?: number }) => void;

const fanIn = (shape: number[]) => shape.slice(1).reduce((a, b) => a * b, 1);

function collector(): { entries: LayoutEntry[]; add: Add } {
  const entries: LayoutEntry[] = [];
  const add: Add = (name, shape, init) => {
    let std = init;
    if (!std) std = shape.length === 1 ? { std: 0.02 } : { std: 1 / Math.sqrt(fanIn(shape)) };
    entries.push({ name, shape, init: std });
  };
  return { entries, add };
}

const linear = (add: Add, p: string, out: number, inp: number, bias = true, scale = 1) => {
  add(`${p}.weight`, [out, inp], { std: scale / Math.sqrt(inp) });
  if (bias) add(`${p}.bias`, [out]);
};
const norm = (add: Add, p: string, n: number, bias = true) => {
  add(`${p}.weight`, [n], { std: 0.02, mean: 1 });
  if (bias) add(`${p}.bias`, [n]);
};

export interface MMDiTSizes {
  depth: number; posEmbedMaxSize: number; adm: number; contextIn: number;
  /** SD3.5: q/k RMS norm weights (`ln_q`, `ln_k`, width 64) in every attention. */
  qkNorm?: boolean;
  /** SD3.5 Medium's MMDiT-X: blocks with the image-only second attention `attn2` (and 9 adaLN chunks). */
  dual?: readonly number[];
}
export const SD3_MEDIUM_MMDIT_SIZES: MMDiTSizes = { depth: 24, posEmbedMaxSize: 192, adm: 2048, contextIn: 4096 };
export const SD3_5_MEDIUM_MMDIT_SIZES: MMDiTSizes = { depth: 24, posEmbedMaxSize: 384, adm: 2048, contextIn: 4096, qkNorm: true, dual: Array.from({ length: 13 }, (_, i) => i) };
export const SD3_5_LARGE_MMDIT_SIZES: MMDiTSizes = { depth: 38, posEmbedMaxSize: 192, adm: 2048, contextIn: 4096, qkNorm: true };

export function mmditLayout(prefix = 'model.diffusion_model.', z: MMDiTSizes = SD3_MEDIUM_MMDIT_SIZES): LayoutEntry[] {
  const { entries, add: raw } = collector();
  const add: Add = (n, s, i) => raw(prefix + n, s, i);
  const depth = z.depth;
  const H = 64 * depth;
  add('pos_embed', [1, z.posEmbedMaxSize ** 2, H], { std: 0.5 });
  add('x_embedder.proj.weight', [H, 16, 2, 2]);
  add('x_embedder.proj.bias', [H]);
  linear(add, 't_embedder.mlp.0', H, 256);
  linear(add, 't_embedder.mlp.2', H, H);
  linear(add, 'y_embedder.mlp.0', H, z.adm);
  linear(add, 'y_embedder.mlp.2', H, H);
  linear(add, 'context_embedder', H, z.contextIn);
  for (let i = 0; i < depth; i++) {
    for (const branch of ['context_block', 'x_block']) {
      const p = `joint_blocks.${i}.${branch}`;
      const preOnly = branch === 'context_block' && i === depth - 1;
      const dual = branch === 'x_block' && (z.dual ?? []).includes(i);
      linear(add, `${p}.adaLN_modulation.1`, (preOnly ? 2 : dual ? 9 : 6) * H, H, true, 0.5);
      linear(add, `${p}.attn.qkv`, 3 * H, H);
      const qk = (a: string) => { if (z.qkNorm) for (const n of ['ln_q', 'ln_k']) add(`${p}.${a}.${n}.weight`, [64], { std: 0.02, mean: 1 }); };
      qk('attn');
      if (dual) {
        linear(add, `${p}.attn2.qkv`, 3 * H, H);
        linear(add, `${p}.attn2.proj`, H, H);
        qk('attn2');
      }
      if (!preOnly) {
        linear(add, `${p}.attn.proj`, H, H);
        linear(add, `${p}.mlp.fc1`, 4 * H, H);
        linear(add, `${p}.mlp.fc2`, H, 4 * H);
      }
    }
  }
  linear(add, 'final_layer.adaLN_modulation.1', 2 * H, H, true, 0.5);
  linear(add, 'final_layer.linear', 64, H);
  return entries;
}

export interface VAESizes { channels: readonly number[]; resBlocks: number }
export const SD3_VAE_SIZES: VAESizes = { channels: [128, 256, 512, 512], resBlocks: 2 };

export function vaeLayout(prefix = 'first_stage_model.', z: VAESizes = SD3_VAE_SIZES): LayoutEntry[] {
  const { entries, add: raw } = collector();
  const add: Add = (n, s, i) => raw(prefix + n, s, i);
  const conv = (p: string, out: number, inp: number, k: number) => {
    add(`${p}.weight`, [out, inp, k, k]);
    add(`${p}.bias`, [out]);
  };
  const resnet = (p: string, inp: number, out: number) => {
    norm(add, `${p}.norm1`, inp);
    conv(`${p}.conv1`, out, inp, 3);
    norm(add, `${p}.norm2`, out);
    conv(`${p}.conv2`, out, out, 3);
    if (inp !== out) conv(`${p}.nin_shortcut`, out, inp, 1);
  };
  const mid = (p: string, c: number) => {
    resnet(`${p}.mid.block_1`, c, c);
    norm(add, `${p}.mid.attn_1.norm`, c);
    for (const n of ['q', 'k', 'v', 'proj_out']) conv(`${p}.mid.attn_1.${n}`, c, c, 1);
    resnet(`${p}.mid.block_2`, c, c);
  };
  const ch = z.channels;
  const first = ch[0]!;
  const last = ch[ch.length - 1]!;
  conv('encoder.conv_in', first, 3, 3);
  let cin = first;
  ch.forEach((c, i) => {
    for (let j = 0; j < z.resBlocks; j++) { resnet(`encoder.down.${i}.block.${j}`, cin, c); cin = c; }
    if (i < ch.length - 1) conv(`encoder.down.${i}.downsample.conv`, c, c, 3);
  });
  mid('encoder', last);
  norm(add, 'encoder.norm_out', last);
  conv('encoder.conv_out', 32, last, 3);
  conv('decoder.conv_in', last, 16, 3);
  mid('decoder', last);
  cin = last;
  for (let i = ch.length - 1; i >= 0; i--) {
    for (let j = 0; j < z.resBlocks + 1; j++) { resnet(`decoder.up.${i}.block.${j}`, cin, ch[i]!); cin = ch[i]!; }
    if (i > 0) conv(`decoder.up.${i}.upsample.conv`, cin, cin, 3);
  }
  norm(add, 'decoder.norm_out', first);
  conv('decoder.conv_out', 3, first, 3);
  return entries;
}

/** Random-value scales of CLIP weights: embeddings as CLIP's init, norms around 1, Linear weights 1/sqrt(fan-in). */
function clipInit(name: string, shape: readonly number[]): { std: number; mean?: number } {
  if (name.endsWith('token_embedding.weight')) return { std: 0.02 };
  if (name.endsWith('position_embedding.weight')) return { std: 0.01 };
  if (/norm\d?\.weight$/.test(name)) return { std: 0.02, mean: 1 };
  return shape.length === 1 ? { std: 0.02 } : { std: 1 / Math.sqrt(shape[1]!) };
}

/** A CLIP text tower's tensors: the names and shapes are the model's own table (clipWeightShapes). */
export function clipLayout(prefix: string, width: number, layers: number, projection: boolean, vocab = 49408): LayoutEntry[] {
  const config = { ...CLIP_L_CONFIG, vocabSize: vocab, hiddenSize: width, intermediateSize: 4 * width, numHiddenLayers: layers, maxPositionEmbeddings: 77, projectionDim: width };
  return [...clipWeightShapes(config, projection)].map(([name, shape]) => ({ name: prefix + name, shape, init: clipInit(name, shape) }));
}

export function t5Layout(prefix = 'text_encoders.t5xxl.transformer.', layers = 24): LayoutEntry[] {
  const { entries, add: raw } = collector();
  const add: Add = (n, s, i) => raw(prefix + n, s, i);
  const d = 4096, ff = 10240;
  add('shared.weight', [32128, d], { std: 1 });
  for (let i = 0; i < layers; i++) {
    const p = `encoder.block.${i}.layer`;
    for (const n of ['q', 'k', 'v', 'o']) add(`${p}.0.SelfAttention.${n}.weight`, [d, d], { std: (n === 'q' ? 0.25 : 1) / Math.sqrt(d) });
    if (i === 0) add(`${p}.0.SelfAttention.relative_attention_bias.weight`, [32, 64], { std: 0.1 });
    norm(add, `${p}.0.layer_norm`, d, false);
    add(`${p}.1.DenseReluDense.wi_0.weight`, [ff, d]);
    add(`${p}.1.DenseReluDense.wi_1.weight`, [ff, d]);
    add(`${p}.1.DenseReluDense.wo.weight`, [d, ff]);
    norm(add, `${p}.1.layer_norm`, d, false);
  }
  norm(add, 'encoder.final_layer_norm', d, false);
  return entries;
}

/**
 * Every tensor of an SD3.5 single file (`sd3.5_medium.safetensors`, `sd3.5_large.safetensors`): MMDiT and VAE,
 * no text encoders (those come as `text_encoders/clip_l.safetensors`, ... beside it).
 */
export function sd35Layout(variant: 'sd3.5-medium' | 'sd3.5-large'): LayoutEntry[] {
  return [...mmditLayout(undefined, variant === 'sd3.5-medium' ? SD3_5_MEDIUM_MMDIT_SIZES : SD3_5_LARGE_MMDIT_SIZES), ...vaeLayout()];
}

/** Every tensor of the single-file checkpoint, with or without T5-XXL. */
export function sd3MediumLayout(opts: { t5: boolean }): LayoutEntry[] {
  return [
    ...mmditLayout(),
    ...vaeLayout(),
    ...clipLayout('text_encoders.clip_l.transformer.', 768, 12, false),
    ...clipLayout('text_encoders.clip_g.transformer.', 1280, 32, true),
    ...(opts.t5 ? t5Layout() : []),
  ];
}
