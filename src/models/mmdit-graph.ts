/**
 * The MMDiT (SD3) and MMDiT-X (SD3.5) as an ONNX graph, in the order of Stability's reference `mmditx.py`:
 * patch embedding + cropped position grid, c = t_embedder(t) + y_embedder(y), context_embedder, joint blocks
 * (adaLN-Zero, joint attention over [context ; image] with optional q/k RMS norm, and on MMDiT-X's dual blocks
 * a second, image-only attention), final layer, unpatchify.
 *
 * Inputs x [B, C, H, W], t [B] (sigma * 1000), y [B, adm], context [B, L, ctx] (and the two below); every size
 * is dynamic, so one session serves any batch, latent size and context length. Output model_output [B, C_out, H, W].
 *
 * In float16 (`nn.dtype`), inputs and outputs stay float32 and these parts run in float32: the timestep and
 * pooled-text embedders up to c (sin/cos of arguments up to 1000 rad, and every block's modulation derives from
 * c), the LayerNorm and RMSNorm statistics (nn/layers.ts), and the final layer. The joint blocks, their
 * attention included, compute in float16.
 */
import { type NN, computeType, conv2d, inFloat32, layerNormPlain, linear, narrow, rmsNorm, widen } from '../nn/layers.js';
import type { Value } from '../onnx/builder.js';
import type { MMDiTConfig } from './mmdit-config.js';

export interface MMDiTGraphOptions {
  /** Also output t_freq, c, x_embedded and both streams after every block (for parity checks). */
  readonly debug?: boolean;
}

/**
 * Besides x, t, y and context: `pos_embed_cropped` [1, h*w, hidden], the centre crop of the position grid for
 * this latent size, cut on the host (MMDiT.positionCrop) so the whole grid (906 MB in float32 for SD3.5
 * Medium's 384 x 384) never sits in the graph; and `skip_layers` [B, depth] (bool), true where row b bypasses
 * joint block i in both streams (skip-layer guidance's pass; all false otherwise).
 */
export const MMDIT_INPUTS = ['x', 't', 'y', 'context', 'pos_embed_cropped', 'skip_layers'] as const;
export const MMDIT_DEBUG_OUTPUTS = ['t_freq', 'c', 'x_embedded', 'x_after_block', 'context_after_block'] as const;

const LN_EPS = 1e-6;
const QK_RMS_EPS = 1e-6;
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

/** adaLN: Linear(SiLU(c)) [B, n*hidden] split into n modulation vectors of [B, 1, hidden]. */
function modulation(nn: NN, prefix: string, siluC: Value, n: number): Value[] {
  const { g } = nn;
  return g.chunk(g.unsqueeze(linear(nn, `${prefix}.adaLN_modulation.1`, siluC), [1]), n, 2);
}

/** LayerNorm without affine parameters (eps 1e-6). */
function norm(nn: NN, config: MMDiTConfig, x: Value): Value {
  return layerNormPlain(nn, x, config.hiddenSize, LN_EPS);
}

/** n * (1 + scale) + shift on an already normalised n. */
function modulate(nn: NN, normed: Value, shift: Value, scale: Value): Value {
  const { g } = nn;
  return g.add(g.mul(normed, g.add(scale, g.scalar(1, computeType(nn)))), shift);
}

interface QKV { readonly q: Value; readonly k: Value; readonly v: Value } // each [B, S, hidden]

/**
 * qkv = Linear(h) split into q | k | v; with q/k RMS norm (SD3.5) q and k are normalised per token and per
 * head over the head's 64 features, z * rsqrt(mean(z^2) + 1e-6) * w, one weight shared by every head.
 */
function qkvOf(nn: NN, config: MMDiTConfig, prefix: string, h: Value): QKV {
  const { g } = nn;
  const [q, k, v] = g.chunk(linear(nn, `${prefix}.qkv`, h), 3, 2) as [Value, Value, Value];
  if (config.qkNorm !== 'rms') return { q, k, v };
  const perHead = (z: Value, name: string) => {
    const heads = g.reshape(z, [0, 0, config.numHeads, config.hiddenSize / config.numHeads]);
    return g.reshape(rmsNorm(nn, `${prefix}.${name}.weight`, heads, QK_RMS_EPS), [0, 0, config.hiddenSize]);
  };
  return { q: perHead(q, 'ln_q'), k: perHead(k, 'ln_k'), v };
}

interface Residual {
  readonly x: Value;
  readonly gateMsa: Value; readonly shiftMlp: Value; readonly scaleMlp: Value; readonly gateMlp: Value;
  /** Dual-attention blocks: the image-only attention's gated output, added before the MLP's norm. */
  readonly attn2?: Value;
}

interface PreAttention { readonly qkv: QKV; readonly post?: Residual }

/** One branch (context or image) of a joint block up to its q/k/v (and, on dual blocks, the whole of attn2). */
function preAttention(nn: NN, config: MMDiTConfig, prefix: string, x: Value, siluC: Value, kind: 'pre_only' | 'plain' | 'dual'): PreAttention {
  const normed = norm(nn, config, x);
  if (kind === 'pre_only') {
    const [shiftMsa, scaleMsa] = modulation(nn, prefix, siluC, 2) as [Value, Value];
    return { qkv: qkvOf(nn, config, `${prefix}.attn`, modulate(nn, normed, shiftMsa, scaleMsa)) };
  }
  const chunks = modulation(nn, prefix, siluC, kind === 'dual' ? 9 : 6);
  const [shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp] = chunks as [Value, Value, Value, Value, Value, Value];
  const qkv = qkvOf(nn, config, `${prefix}.attn`, modulate(nn, normed, shiftMsa, scaleMsa));
  if (kind === 'plain') return { qkv, post: { x, gateMsa, shiftMlp, scaleMlp, gateMlp } };
  // MMDiT-X: the same LayerNorm output, modulated by its own shift/scale, attends over the image tokens only.
  const { g } = nn;
  const [shiftMsa2, scaleMsa2, gateMsa2] = chunks.slice(6) as [Value, Value, Value];
  const self = qkvOf(nn, config, `${prefix}.attn2`, modulate(nn, normed, shiftMsa2, scaleMsa2));
  const out = g.attention(self.q, self.k, self.v, { heads: config.numHeads, scale: attentionScale(config) });
  const attn2 = g.mul(gateMsa2, linear(nn, `${prefix}.attn2.proj`, out));
  return { qkv, post: { x, gateMsa, shiftMlp, scaleMlp, gateMlp, attn2 } };
}

/** Gated residuals: x + gate_msa * proj(attn) [+ gate_msa2 * attn2], then x + gate_mlp * MLP(modulated LN(x)). */
function postAttention(nn: NN, config: MMDiTConfig, prefix: string, attn: Value, pre: Residual): Value {
  const { g } = nn;
  let x = g.add(pre.x, g.mul(pre.gateMsa, linear(nn, `${prefix}.attn.proj`, attn)));
  if (pre.attn2) x = g.add(x, pre.attn2);
  const h = modulate(nn, norm(nn, config, x), pre.shiftMlp, pre.scaleMlp);
  const mlp = linear(nn, `${prefix}.mlp.fc2`, g.gelu(linear(nn, `${prefix}.mlp.fc1`, h), 'tanh'));
  return g.add(x, g.mul(pre.gateMlp, mlp));
}

function attentionScale(config: MMDiTConfig): number {
  return 1 / Math.sqrt(config.hiddenSize / config.numHeads);
}

/**
 * Joint block i: both branches attend over [context ; x] together. `lengths` is [L_context, N_image].
 * The last block's context branch is pre-only: its tokens are keys and values, its output is dropped.
 */
function jointBlock(nn: NN, config: MMDiTConfig, i: number, context: Value, x: Value, siluC: Value, lengths: Value): { context?: Value; x: Value } {
  const { g } = nn;
  const last = i === config.depth - 1;
  const ctx = preAttention(nn, config, `joint_blocks.${i}.context_block`, context, siluC, last ? 'pre_only' : 'plain');
  const img = preAttention(nn, config, `joint_blocks.${i}.x_block`, x, siluC, config.dualAttentionLayers.includes(i) ? 'dual' : 'plain');
  const joint = (a: Value, b: Value) => g.concat([a, b], 1); // [B, L+N, hidden]
  const attn = g.attention(joint(ctx.qkv.q, img.qkv.q), joint(ctx.qkv.k, img.qkv.k), joint(ctx.qkv.v, img.qkv.v), { heads: config.numHeads, scale: attentionScale(config) });
  const [ctxAttn, xAttn] = g.nodeN('Split', [attn, lengths], 2, { axis: 1 }) as [Value, Value];
  return {
    context: ctx.post ? postAttention(nn, config, `joint_blocks.${i}.context_block`, ctxAttn, ctx.post) : undefined,
    x: postAttention(nn, config, `joint_blocks.${i}.x_block`, xAttn, img.post!),
  };
}

/** Final layer: modulated LayerNorm and Linear to p*p*C_out features per patch. */
function finalLayer(nn: NN, config: MMDiTConfig, x: Value, siluC: Value): Value {
  const [shift, scale] = modulation(nn, 'final_layer', siluC, 2);
  return linear(nn, 'final_layer.linear', modulate(nn, norm(nn, config, x), shift!, scale!));
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
  const pos = g.input('pos_embed_cropped', 'float32', [1, 'patches', config.hiddenSize]);
  const skip = g.input('skip_layers', 'bool', ['batch', config.depth]);

  const batch = g.shape(x, 0, 1); // [B]
  const size = g.shape(x, 2, 4); // [H, W]
  const patches = g.div(size, g.ints([config.patchSize, config.patchSize])); // [h, w]

  const nn32 = inFloat32(nn);
  const xEmbedded = g.add(patchEmbed(nn, config, narrow(nn, x)), narrow(nn, pos)); // [B, N, hidden]
  const tFreq = timestepEmbedding(nn32, t, config.frequencyEmbeddingSize);
  const c = g.add(mlpEmbedder(nn32, 't_embedder', tFreq), mlpEmbedder(nn32, 'y_embedder', y)); // [B, hidden], float32
  const siluC32 = g.silu(c);
  const siluC = narrow(nn, siluC32);
  let ctx: Value | undefined = linear(nn, 'context_embedder', narrow(nn, context)); // [B, L, hidden]

  const lengths = g.concat([g.shape(ctx, 1, 2), g.shape(xEmbedded, 1, 2)], 0); // [L, N]
  let h = xEmbedded;
  const xs: Value[] = [];
  const ctxs: Value[] = [];
  for (let i = 0; i < config.depth; i++) {
    const out = g.within(`joint_blocks.${i}`, () => {
      const o = jointBlock(nn, config, i, ctx!, h, siluC, lengths);
      // Rows whose skip flag is set keep both streams as they entered the block (Where is exact either way).
      const bypass = g.reshape(g.gather(skip, g.ints([i]), 1), [-1, 1, 1]);
      return { x: g.node('Where', [bypass, h, o.x]), context: o.context && g.node('Where', [bypass, ctx!, o.context]) };
    });
    ctx = out.context;
    h = out.x;
    if (opts.debug) {
      xs.push(g.unsqueeze(widen(nn, h), [0]));
      if (ctx) ctxs.push(g.unsqueeze(widen(nn, ctx), [0]));
    }
  }

  const out = g.within('final_layer', () => finalLayer(nn32, config, widen(nn, h), siluC32)); // [B, N, p*p*C_out]
  g.output(unpatchify(nn, config, out, batch, patches, size), 'model_output', 'float32', ['batch', config.outChannels, 'height', 'width']);
  if (opts.debug) {
    g.output(tFreq, 't_freq');
    g.output(c, 'c');
    g.output(widen(nn, xEmbedded), 'x_embedded');
    g.output(xs.length > 1 ? g.concat(xs, 0) : xs[0]!, 'x_after_block');
    if (ctxs.length) g.output(ctxs.length > 1 ? g.concat(ctxs, 0) : ctxs[0]!, 'context_after_block');
  }
}
