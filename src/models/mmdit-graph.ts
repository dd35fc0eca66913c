/**
 * The MMDiT as an ONNX graph, in the order of Stability's reference `mmditx.py`:
 * patch embedding + cropped position grid, c = t_embedder(t) + y_embedder(y), context_embedder, joint blocks
 * (adaLN-Zero, joint attention over [context ; image]), final layer, unpatchify.
 *
 * Inputs x [B, C, H, W], t [B] (sigma * 1000), y [B, adm], context [B, L, ctx]; every size is dynamic, so one
 * session serves any batch, latent size and context length. Output model_output [B, C_out, H, W].
 */
import { type NN, conv2d, layerNormPlain, linear, param } from '../nn/layers.js';
import type { Value } from '../onnx/builder.js';
import type { MMDiTConfig } from './mmdit-config.js';

export interface MMDiTGraphOptions {
  /** Also output t_freq, c, x_embedded and pos_embed_cropped (for parity checks). */
  readonly debug?: boolean;
}

export const MMDIT_INPUTS = ['x', 't', 'y', 'context'] as const;
export const MMDIT_DEBUG_OUTPUTS = ['t_freq', 'c', 'x_embedded', 'pos_embed_cropped'] as const;

const LN_EPS = 1e-6;
const MAX_PERIOD = 10000;

/** f_i = exp(-ln(max_period) * i / half), evaluated in float32 step by step as the reference does. */
function timestepFrequencies(half: number): Float32Array {
  const a = Math.fround(-Math.log(MAX_PERIOD));
  return Float32Array.from({ length: half }, (_, i) => Math.fround(Math.exp(Math.fround(Math.fround(a * i) / half))));
}

/** Sinusoidal features [cos(t f), sin(t f)] of t [B] -> [B, dim]. */
function timestepEmbedding(nn: NN, t: Value, dim: number): Value {
  const { g } = nn;
  const half = Math.floor(dim / 2);
  const args = g.mul(g.unsqueeze(t, [1]), g.constant({ dtype: 'float32', shape: [1, half], data: timestepFrequencies(half) }));
  const emb = g.concat([g.cos(args), g.sin(args)], -1); // [B, 2*half]
  return dim % 2 ? g.pad(emb, [0, 0, 0, 1]) : emb;
}

/** Linear, SiLU, Linear (`mlp.0`, `mlp.2`). */
function mlpEmbedder(nn: NN, prefix: string, x: Value): Value {
  return linear(nn, `${prefix}.mlp.2`, nn.g.silu(linear(nn, `${prefix}.mlp.0`, x)));
}

/** Conv p x p stride p, then NCHW -> NLC with patches in row-major order: [B, h*w, hidden]. */
function patchEmbed(nn: NN, config: MMDiTConfig, x: Value): Value {
  const { g } = nn;
  const y = conv2d(nn, 'x_embedder.proj', x, { stride: config.patchSize }); // [B, hidden, h, w]
  return g.transpose(g.reshape(y, [0, 0, -1]), [0, 2, 1]);
}

/** Centre crop of the M x M position grid to the latent's h x w patches: [1, h*w, hidden]. */
function croppedPosEmbed(nn: NN, config: MMDiTConfig, patches: Value): Value {
  const { g } = nn;
  const m = config.posEmbedMaxSize;
  const grid = g.reshape(param(nn, 'pos_embed'), [1, m, m, config.hiddenSize]);
  const top = g.div(g.sub(g.ints([m, m]), patches), g.ints([2, 2])); // [top, left]
  const crop = g.slice(grid, top, g.add(top, patches), [1, 2]); // [1, h, w, hidden]
  return g.reshape(crop, [1, -1, config.hiddenSize]);
}

/** adaLN: Linear(SiLU(c)) [B, n*hidden] split into n modulation vectors of [B, 1, hidden]. */
function modulation(nn: NN, prefix: string, siluC: Value, n: number): Value[] {
  const { g } = nn;
  return g.chunk(g.unsqueeze(linear(nn, `${prefix}.adaLN_modulation.1`, siluC), [1]), n, 2);
}

/** LN(x) * (1 + scale) + shift, LayerNorm without affine parameters. */
function modulate(nn: NN, config: MMDiTConfig, x: Value, shift: Value, scale: Value): Value {
  const { g } = nn;
  const normed = layerNormPlain(nn, x, config.hiddenSize, LN_EPS);
  return g.add(g.mul(normed, g.add(scale, g.scalar(1))), shift);
}

interface PreAttention {
  readonly qkv: Value; // [B, S, 3*hidden]
  readonly post?: { readonly x: Value; readonly gateMsa: Value; readonly shiftMlp: Value; readonly scaleMlp: Value; readonly gateMlp: Value };
}

/** One branch (context or image) of a joint block up to its q/k/v. */
function preAttention(nn: NN, config: MMDiTConfig, prefix: string, x: Value, siluC: Value, preOnly: boolean): PreAttention {
  if (preOnly) {
    const [shiftMsa, scaleMsa] = modulation(nn, prefix, siluC, 2);
    return { qkv: linear(nn, `${prefix}.attn.qkv`, modulate(nn, config, x, shiftMsa!, scaleMsa!)) };
  }
  const [shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp] = modulation(nn, prefix, siluC, 6) as [Value, Value, Value, Value, Value, Value];
  const qkv = linear(nn, `${prefix}.attn.qkv`, modulate(nn, config, x, shiftMsa, scaleMsa));
  return { qkv, post: { x, gateMsa, shiftMlp, scaleMlp, gateMlp } };
}

/** Gated residuals: x + gate_msa * proj(attn), then x + gate_mlp * MLP(modulated LN(x)). */
function postAttention(nn: NN, config: MMDiTConfig, prefix: string, attn: Value, pre: NonNullable<PreAttention['post']>): Value {
  const { g } = nn;
  const x = g.add(pre.x, g.mul(pre.gateMsa, linear(nn, `${prefix}.attn.proj`, attn)));
  const h = modulate(nn, config, x, pre.shiftMlp, pre.scaleMlp);
  const mlp = linear(nn, `${prefix}.mlp.fc2`, g.gelu(linear(nn, `${prefix}.mlp.fc1`, h), 'tanh'));
  return g.add(x, g.mul(pre.gateMlp, mlp));
}

/**
 * Joint block i: both branches attend over [context ; x] together. `lengths` is [L_context, N_image].
 * The last block's context branch is pre-only: its tokens are keys and values, its output is dropped.
 */
function jointBlock(nn: NN, config: MMDiTConfig, i: number, context: Value, x: Value, siluC: Value, lengths: Value): { context?: Value; x: Value } {
  const { g } = nn;
  const preOnly = i === config.depth - 1;
  const ctx = preAttention(nn, config, `joint_blocks.${i}.context_block`, context, siluC, preOnly);
  const img = preAttention(nn, config, `joint_blocks.${i}.x_block`, x, siluC, false);
  const [q, k, v] = g.chunk(g.concat([ctx.qkv, img.qkv], 1), 3, 2) as [Value, Value, Value]; // each [B, L+N, hidden]
  const attn = g.attention(q, k, v, { heads: config.numHeads, scale: 1 / Math.sqrt(config.hiddenSize / config.numHeads) });
  const [ctxAttn, xAttn] = g.nodeN('Split', [attn, lengths], 2, { axis: 1 }) as [Value, Value];
  return {
    context: ctx.post ? postAttention(nn, config, `joint_blocks.${i}.context_block`, ctxAttn, ctx.post) : undefined,
    x: postAttention(nn, config, `joint_blocks.${i}.x_block`, xAttn, img.post!),
  };
}

/** Final layer: modulated LayerNorm and Linear to p*p*C_out features per patch. */
function finalLayer(nn: NN, config: MMDiTConfig, x: Value, siluC: Value): Value {
  const [shift, scale] = modulation(nn, 'final_layer', siluC, 2);
  return linear(nn, 'final_layer.linear', modulate(nn, config, x, shift!, scale!));
}

/** [B, h*w, p*p*C] with features ordered (row in patch, column in patch, channel) -> [B, C, h*p, w*p]. */
function unpatchify(nn: NN, config: MMDiTConfig, x: Value, batch: Value, patches: Value, size: Value): Value {
  const { g } = nn;
  const p = config.patchSize;
  const c = config.outChannels;
  const grid = g.reshape(x, g.concat([batch, patches, g.ints([p, p, c])], 0)); // [B, h, w, p, p, C]
  const img = g.transpose(grid, [0, 5, 1, 3, 2, 4]); // [B, C, h, p, w, p]
  return g.reshape(img, g.concat([batch, g.ints([c]), size], 0));
}

/** Adds the MMDiT's inputs, nodes and outputs to `nn.g`. */
export function buildMMDiTGraph(nn: NN, config: MMDiTConfig, opts: MMDiTGraphOptions = {}): void {
  const { g } = nn;
  const x = g.input('x', 'float32', ['batch', config.inChannels, 'height', 'width']);
  const t = g.input('t', 'float32', ['batch']);
  const y = g.input('y', 'float32', ['batch', config.admInChannels]);
  const context = g.input('context', 'float32', ['batch', 'context_length', config.contextInFeatures]);

  const batch = g.shape(x, 0, 1); // [B]
  const size = g.shape(x, 2, 4); // [H, W]
  const patches = g.div(size, g.ints([config.patchSize, config.patchSize])); // [h, w]

  const pos = croppedPosEmbed(nn, config, patches);
  const xEmbedded = g.add(patchEmbed(nn, config, x), pos); // [B, N, hidden]
  const tFreq = timestepEmbedding(nn, t, config.frequencyEmbeddingSize);
  const c = g.add(mlpEmbedder(nn, 't_embedder', tFreq), mlpEmbedder(nn, 'y_embedder', y)); // [B, hidden]
  const siluC = g.silu(c);
  let ctx: Value | undefined = linear(nn, 'context_embedder', context); // [B, L, hidden]

  const lengths = g.concat([g.shape(ctx, 1, 2), g.shape(xEmbedded, 1, 2)], 0); // [L, N]
  let h = xEmbedded;
  for (let i = 0; i < config.depth; i++) {
    const out = g.within(`joint_blocks.${i}`, () => jointBlock(nn, config, i, ctx!, h, siluC, lengths));
    ctx = out.context;
    h = out.x;
  }

  const out = g.within('final_layer', () => finalLayer(nn, config, h, siluC)); // [B, N, p*p*C_out]
  g.output(unpatchify(nn, config, out, batch, patches, size), 'model_output', 'float32', ['batch', config.outChannels, 'height', 'width']);
  if (opts.debug) {
    g.output(tFreq, 't_freq');
    g.output(c, 'c');
    g.output(xEmbedded, 'x_embedded');
    g.output(pos, 'pos_embed_cropped');
  }
}
