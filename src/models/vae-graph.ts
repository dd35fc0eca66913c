/**
 * The VAE's encoder and decoder as ONNX graphs (NCHW; batch and spatial size are dynamic).
 *
 * Blocks follow the reference (`sd3_impls.py`): ResnetBlock, AttnBlock, Downsample, Upsample.
 * Weight names are the single-file checkpoint's, without `first_stage_model.`.
 *
 * In float16 (`dtype`), the convolutions compute in float16; the input and output stay float32, and the
 * GroupNorms and the middle block's attention run in float32.
 */
import { SD3Error } from '../core/errors.js';
import { type WeightStore, shapeOf } from '../core/weights.js';
import { conv2d, hasParam, inFloat32, type NN, narrow, param, widen } from '../nn/layers.js';
import { type BuiltModel, type FloatType, GraphBuilder, type Value } from '../onnx/builder.js';
import type { VAEConfig } from './vae-config.js';

const SAME: [number, number, number, number] = [1, 1, 1, 1];

/** GroupNorm, computed in float32 (statistics over up to 1024² x 4 values per group). */
function groupNorm(nn: NN, config: VAEConfig, prefix: string, x: Value): Value {
  const channels = shapeOf(nn.w, `${prefix}.weight`)[0]!;
  if (channels % config.groups !== 0) {
    throw new SD3Error(`${nn.w.label}: ${prefix} normalises ${channels} channels, not a multiple of ${config.groups} groups`);
  }
  const f32 = inFloat32(nn);
  return narrow(nn, nn.g.groupNorm(widen(nn, x), config.groups, param(f32, `${prefix}.weight`), param(f32, `${prefix}.bias`), config.eps));
}

/** out = shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x)))))); the shortcut is a 1x1 conv when channels change. */
function resnetBlock(nn: NN, config: VAEConfig, prefix: string, x: Value): Value {
  const { g } = nn;
  let h = conv2d(nn, `${prefix}.conv1`, g.silu(groupNorm(nn, config, `${prefix}.norm1`, x)), { pads: SAME });
  h = conv2d(nn, `${prefix}.conv2`, g.silu(groupNorm(nn, config, `${prefix}.norm2`, h)), { pads: SAME });
  const cin = shapeOf(nn.w, `${prefix}.conv1.weight`)[1]!;
  const cout = shapeOf(nn.w, `${prefix}.conv2.weight`)[0]!;
  const shortcut = hasParam(nn, `${prefix}.nin_shortcut.weight`);
  if (!shortcut && cin !== cout) throw new SD3Error(`${nn.w.label}: ${prefix} maps ${cin} to ${cout} channels but has no nin_shortcut`);
  return g.add(shortcut ? conv2d(nn, `${prefix}.nin_shortcut`, x) : x, h);
}

/**
 * Single-head self-attention over the H*W positions (scale 1/sqrt(C)), 1x1-conv projections, residual. The
 * attention itself runs in float32 (one head of C = 512 features: large scores).
 */
function attnBlock(nn: NN, config: VAEConfig, prefix: string, x: Value): Value {
  const { g } = nn;
  const h = groupNorm(nn, config, `${prefix}.norm`, x);
  const tokens = (p: string) => widen(nn, g.transpose(g.reshape(conv2d(nn, `${prefix}.${p}`, h), [0, 0, -1]), [0, 2, 1])); // [B, HW, C]
  const a = narrow(nn, g.attention(tokens('q'), tokens('k'), tokens('v'), { heads: 1 })); // [B, HW, C]
  const back = g.node('Reshape', [g.transpose(a, [0, 2, 1]), g.shape(x)]); // [B, C, H, W]
  return g.add(x, conv2d(nn, `${prefix}.proj_out`, back));
}

/** Pad one zero column on the right and one zero row at the bottom, then a 3x3 conv with stride 2. */
function downsample(nn: NN, prefix: string, x: Value): Value {
  return conv2d(nn, `${prefix}.conv`, x, { stride: 2, pads: [0, 0, 1, 1] });
}

/**
 * Nearest-neighbour x2, then a 3x3 conv, computed at the low resolution: output pixel (2i + a, 2j + b) sees
 * source rows {i-1, i} (a = 0) or {i, i+1} (a = 1), and likewise for columns, so each of the four phases is a
 * 2x2 conv whose taps sum the 3x3 taps landing on the same source pixel. Same result, 2.25x fewer multiply-adds
 * and no upsampled copy of the input. The folded kernels are constants (ORT folds them at load), summed in
 * float32 before any cast to float16.
 */
function upsample(nn: NN, prefix: string, x: Value): Value {
  const { g } = nn;
  const w = param(inFloat32(nn), `${prefix}.conv.weight`); // [C, C, 3, 3]
  const bias = param(nn, `${prefix}.conv.bias`);
  const fold = (k: Value, axis: number, phase: number) => {
    const [k0, k1, k2] = g.split(k, [1, 1, 1], axis) as [Value, Value, Value];
    return phase === 0 ? g.concat([k0, g.add(k1, k2)], axis) : g.concat([g.add(k0, k1), k2], axis);
  };
  const phases: Value[] = [];
  for (const a of [0, 1]) {
    for (const b of [0, 1]) {
      const k = narrow(nn, fold(fold(w, 2, a), 3, b)); // [C, C, 2, 2]
      phases.push(g.conv(x, k, bias, { pads: [1 - a, 1 - b, a, b] })); // [B, C, H, W]
    }
  }
  // channels (a, b, c) -> pixel (2i + a, 2j + b) of channel c
  return g.node('DepthToSpace', [g.concat(phases, 1)], { blocksize: 2, mode: 'DCR' }); // [B, C, 2H, 2W]
}

function middle(nn: NN, config: VAEConfig, prefix: string, x: Value): Value {
  let h = resnetBlock(nn, config, `${prefix}.mid.block_1`, x);
  h = attnBlock(nn, config, `${prefix}.mid.attn_1`, h);
  return resnetBlock(nn, config, `${prefix}.mid.block_2`, h);
}

function head(nn: NN, config: VAEConfig, prefix: string, x: Value): Value {
  return conv2d(nn, `${prefix}.conv_out`, nn.g.silu(groupNorm(nn, config, `${prefix}.norm_out`, x)), { pads: SAME });
}

/** image [B, 3, H, W] -> mean, logvar [B, z, H/f, W/f] (the two halves of conv_out's 2z channels, logvar raw). */
export function buildVAEEncoder(store: WeightStore, config: VAEConfig, dtype: FloatType = 'float32'): BuiltModel {
  const g = new GraphBuilder('vae-encoder');
  const nn: NN = { g, w: store, dtype };
  const image = g.input('image', 'float32', ['B', config.inChannels, 'H', 'W']);
  let h = conv2d(nn, 'encoder.conv_in', narrow(nn, image), { pads: SAME });
  const levels = config.chMult.length;
  for (let i = 0; i < levels; i++) {
    h = g.within(`down.${i}`, () => {
      let y = h;
      for (let j = 0; j < config.numResBlocks; j++) y = resnetBlock(nn, config, `encoder.down.${i}.block.${j}`, y);
      return i < levels - 1 ? downsample(nn, `encoder.down.${i}.downsample`, y) : y;
    });
  }
  h = g.within('mid', () => middle(nn, config, 'encoder', h));
  const moments = head(nn, config, 'encoder', h); // [B, 2z, h, w]
  const [mean, logvar] = g.chunk(moments, 2, 1);
  g.output(widen(nn, mean!), 'mean', 'float32', ['B', config.zChannels, 'h', 'w']);
  g.output(widen(nn, logvar!), 'logvar', 'float32', ['B', config.zChannels, 'h', 'w']);
  return g.build();
}

/** latent [B, z, h, w] (VAE space) -> image [B, 3, h*f, w*f], roughly in [-1, 1], not clamped. */
export function buildVAEDecoder(store: WeightStore, config: VAEConfig, dtype: FloatType = 'float32'): BuiltModel {
  const g = new GraphBuilder('vae-decoder');
  const nn: NN = { g, w: store, dtype };
  const latent = g.input('latent', 'float32', ['B', config.zChannels, 'h', 'w']);
  let h = conv2d(nn, 'decoder.conv_in', narrow(nn, latent), { pads: SAME });
  h = g.within('mid', () => middle(nn, config, 'decoder', h));
  for (let i = config.chMult.length - 1; i >= 0; i--) {
    h = g.within(`up.${i}`, () => {
      let y = h;
      for (let j = 0; j <= config.numResBlocks; j++) y = resnetBlock(nn, config, `decoder.up.${i}.block.${j}`, y);
      return i > 0 ? upsample(nn, `decoder.up.${i}.upsample`, y) : y;
    });
  }
  g.output(widen(nn, head(nn, config, 'decoder', h)), 'image', 'float32', ['B', config.outChannels, 'H', 'W']);
  return g.build();
}
