/**
 * The VAE's encoder and decoder as ONNX graphs (NCHW in and out; batch and spatial size are dynamic).
 *
 * Blocks follow the reference (`sd3_impls.py`): ResnetBlock, AttnBlock, Downsample, Upsample, written against
 * `Ops` (vae-ops.ts): the float NCHW layers, or the int8 decoder's NHWC ones.
 * Weight names are the single-file checkpoint's, without `first_stage_model.`.
 *
 * In float16 (`dtype`), the convolutions compute in float16; the input and output stay float32, and the
 * GroupNorms and the middle block's attention run in float32.
 */
import { SD3Error } from '../core/errors.js';
import { type WeightStore, shapeOf } from '../core/weights.js';
import { conv2d, hasParam, type NN, narrow, widen } from '../nn/layers.js';
import { type BuiltModel, type FloatType, GraphBuilder, type Value } from '../onnx/builder.js';
import type { VAEConfig } from './vae-config.js';
import { nchw, nhwcInt8, type Ops, SAME } from './vae-ops.js';

/** out = shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x)))))); the shortcut is a 1x1 conv when channels change. */
function resnetBlock(ops: Ops, prefix: string, x: Value): Value {
  const { g, w } = ops.nn;
  let h = ops.conv3x3(`${prefix}.conv1`, g.silu(ops.norm(`${prefix}.norm1`, x)));
  h = ops.conv3x3(`${prefix}.conv2`, g.silu(ops.norm(`${prefix}.norm2`, h)));
  const cin = shapeOf(w, `${prefix}.conv1.weight`)[1]!;
  const cout = shapeOf(w, `${prefix}.conv2.weight`)[0]!;
  const shortcut = hasParam(ops.nn, `${prefix}.nin_shortcut.weight`);
  if (!shortcut && cin !== cout) throw new SD3Error(`${w.label}: ${prefix} maps ${cin} to ${cout} channels but has no nin_shortcut`);
  return g.add(shortcut ? ops.conv1x1(`${prefix}.nin_shortcut`, x) : x, h);
}

/**
 * Single-head self-attention over the H*W positions (scale 1/sqrt(C)), 1x1-conv projections, residual. The
 * attention itself runs in float32 (one head of C = 512 features: large scores).
 */
function attnBlock(ops: Ops, prefix: string, x: Value): Value {
  const { nn } = ops;
  const h = ops.norm(`${prefix}.norm`, x);
  const tokens = (p: string) => widen(nn, ops.tokens(ops.conv1x1(`${prefix}.${p}`, h))); // [B, HW, C]
  const a = narrow(nn, nn.g.attention(tokens('q'), tokens('k'), tokens('v'), { heads: 1 })); // [B, HW, C]
  return nn.g.add(x, ops.conv1x1(`${prefix}.proj_out`, ops.fromTokens(a, x)));
}

/** Pad one zero column on the right and one zero row at the bottom, then a 3x3 conv with stride 2. */
function downsample(nn: NN, prefix: string, x: Value): Value {
  return conv2d(nn, `${prefix}.conv`, x, { stride: 2, pads: [0, 0, 1, 1] });
}

function middle(ops: Ops, prefix: string, x: Value): Value {
  let h = resnetBlock(ops, `${prefix}.mid.block_1`, x);
  h = attnBlock(ops, `${prefix}.mid.attn_1`, h);
  return resnetBlock(ops, `${prefix}.mid.block_2`, h);
}

function head(ops: Ops, prefix: string, x: Value): Value {
  return ops.conv3x3(`${prefix}.conv_out`, ops.nn.g.silu(ops.norm(`${prefix}.norm_out`, x)));
}

/** image [B, 3, H, W] -> mean, logvar [B, z, H/f, W/f] (the two halves of conv_out's 2z channels, logvar raw). */
export function buildVAEEncoder(store: WeightStore, config: VAEConfig, dtype: FloatType = 'float32'): BuiltModel {
  const g = new GraphBuilder('vae-encoder');
  const nn: NN = { g, w: store, dtype };
  const ops = nchw(nn, config);
  const image = g.input('image', 'float32', ['B', config.inChannels, 'H', 'W']);
  let h = conv2d(nn, 'encoder.conv_in', narrow(nn, image), { pads: SAME });
  const levels = config.chMult.length;
  for (let i = 0; i < levels; i++) {
    h = g.within(`down.${i}`, () => {
      let y = h;
      for (let j = 0; j < config.numResBlocks; j++) y = resnetBlock(ops, `encoder.down.${i}.block.${j}`, y);
      return i < levels - 1 ? downsample(nn, `encoder.down.${i}.downsample`, y) : y;
    });
  }
  h = g.within('mid', () => middle(ops, 'encoder', h));
  const moments = head(ops, 'encoder', h); // [B, 2z, h, w]
  const [mean, logvar] = g.chunk(moments, 2, 1);
  g.output(widen(nn, mean!), 'mean', 'float32', ['B', config.zChannels, 'h', 'w']);
  g.output(widen(nn, logvar!), 'logvar', 'float32', ['B', config.zChannels, 'h', 'w']);
  return g.build();
}

/**
 * latent [B, z, h, w] (VAE space) -> image [B, 3, h*f, w*f], roughly in [-1, 1], not clamped. `int8` builds the
 * NHWC graph whose 3x3 convolutions after conv_in are int8 products (vae-ops.ts `nhwcInt8`; CPU only, float32 compute,
 * not exact: BENCHMARKS.md "int8 VAE decode").
 */
export function buildVAEDecoder(store: WeightStore, config: VAEConfig, dtype: FloatType = 'float32', opts: { int8?: boolean } = {}): BuiltModel {
  if (opts.int8 && dtype !== 'float32') throw new SD3Error(`the int8 VAE decoder computes in float32 around its int8 convolutions, not ${dtype}`);
  const g = new GraphBuilder('vae-decoder');
  const nn: NN = { g, w: store, dtype };
  const ops = opts.int8 ? nhwcInt8(nn, config) : nchw(nn, config);
  const latent = g.input('latent', 'float32', ['B', config.zChannels, 'h', 'w']);
  const first = conv2d(nn, 'decoder.conv_in', narrow(nn, latent), { pads: SAME });
  let h = opts.int8 ? g.transpose(first, [0, 2, 3, 1]) : first;
  ops.resolution(h);
  h = g.within('mid', () => middle(ops, 'decoder', h));
  for (let i = config.chMult.length - 1; i >= 0; i--) {
    h = g.within(`up.${i}`, () => {
      let y = h;
      for (let j = 0; j <= config.numResBlocks; j++) y = resnetBlock(ops, `decoder.up.${i}.block.${j}`, y);
      if (i === 0) return y;
      y = ops.upsample(`decoder.up.${i}.upsample`, y);
      ops.resolution(y);
      return y;
    });
  }
  const image = head(ops, 'decoder', h);
  g.output(widen(nn, opts.int8 ? g.transpose(image, [0, 3, 1, 2]) : image), 'image', 'float32', ['B', config.outChannels, 'H', 'W']);
  return g.build();
}
