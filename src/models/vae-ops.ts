/**
 * How the VAE graphs lay out their feature maps and compute their layers, behind one interface (`Ops`) that the
 * blocks in vae-graph.ts are written against:
 * - `nchw`: the float graph (encoder and decoder, float32 or float16), ORT's Conv and InstanceNormalization;
 * - `nhwcInt8`: the int8 decoder's, [B, H, W, C] throughout so that its int8 im2col convolutions
 *   (nn/conv-int8.ts) need no transposes; GroupNorm statistics as matrix products with a 1/HW row.
 */
import { SD3Error } from '../core/errors.js';
import { readWeightFloat32, shapeOf } from '../core/weights.js';
import { type Int8ConvWeight, conv3x3Int8, foldUpsampleConv3x3, im2colIndex, upsampleConv3x3Int8 } from '../nn/conv-int8.js';
import { quantizeConv3x3 } from '../quant/int8.js';
import { conv2d, hasParam, inFloat32, type NN, narrow, param, widen } from '../nn/layers.js';
import type { Value } from '../onnx/builder.js';
import type { VAEConfig } from './vae-config.js';

export const SAME: [number, number, number, number] = [1, 1, 1, 1];

export interface Ops {
  readonly nn: NN;
  /** GroupNorm + the affine, per channel. */
  norm(prefix: string, x: Value): Value;
  /** 3x3 conv, padding 1. */
  conv3x3(prefix: string, x: Value): Value;
  conv1x1(prefix: string, x: Value): Value;
  /** Nearest-neighbour x2, then `${prefix}.conv` (3x3). */
  upsample(prefix: string, x: Value): Value;
  /** Feature map -> [B, HW, C], and back to the layout of `like`. */
  tokens(x: Value): Value;
  fromTokens(t: Value, like: Value): Value;
  /** Called with the first feature map of each resolution (the int8 graph's gather index depends on it). */
  resolution(x: Value): void;
}

function checkGroups(nn: NN, config: VAEConfig, prefix: string): number {
  const channels = shapeOf(nn.w, `${prefix}.weight`)[0]!;
  if (channels % config.groups !== 0) {
    throw new SD3Error(`${nn.w.label}: ${prefix} normalises ${channels} channels, not a multiple of ${config.groups} groups`);
  }
  return channels;
}

/** GroupNorm, computed in float32 (statistics over up to 1024² x 4 values per group). */
function groupNorm(nn: NN, config: VAEConfig, prefix: string, x: Value): Value {
  const f32 = inFloat32(nn);
  checkGroups(nn, config, prefix);
  return narrow(nn, nn.g.groupNorm(widen(nn, x), config.groups, param(f32, `${prefix}.weight`), param(f32, `${prefix}.bias`), config.eps));
}

export function nchw(nn: NN, config: VAEConfig): Ops {
  const { g } = nn;
  return {
    nn,
    norm: (prefix, x) => groupNorm(nn, config, prefix, x),
    conv3x3: (prefix, x) => conv2d(nn, prefix, x, { pads: SAME }),
    conv1x1: (prefix, x) => conv2d(nn, prefix, x),
    upsample: (prefix, x) => upsampleNCHW(nn, prefix, x),
    tokens: (x) => g.transpose(g.reshape(x, [0, 0, -1]), [0, 2, 1]),
    fromTokens: (t, like) => g.node('Reshape', [g.transpose(t, [0, 2, 1]), g.shape(like)]),
    resolution: () => undefined,
  };
}

/**
 * Nearest-neighbour x2, then a 3x3 conv, computed at the low resolution: output pixel (2i + a, 2j + b) sees
 * source rows {i-1, i} (a = 0) or {i, i+1} (a = 1), and likewise for columns, so each of the four phases is a
 * 2x2 conv whose taps sum the 3x3 taps landing on the same source pixel. Same result, 2.25x fewer multiply-adds
 * and no upsampled copy of the input. The folded kernels are constants (ORT folds them at load), summed in
 * float32 before any cast to float16.
 */
function upsampleNCHW(nn: NN, prefix: string, x: Value): Value {
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


/** The float kernel of a 3x3 conv, [cout, cin, 3, 3], read at graph build time for quantizing. */
function kernel3x3(nn: NN, name: string): { w: Float32Array; cout: number; cin: number } {
  const [cout, cin, kh, kw] = shapeOf(nn.w, name) as [number, number, number, number];
  if (kh !== 3 || kw !== 3) throw new SD3Error(`${nn.w.label}: ${name} is ${kh}x${kw}, expected a 3x3 kernel`);
  return { w: readWeightFloat32(nn.w.get(name)), cout, cin };
}

/** What depends on a resolution only, built once per resolution of the int8 decoder. */
interface Resolution {
  /** The im2col gather index (nn/conv-int8.ts). */
  readonly index: Value;
  /** [1, 1, HW] filled with 1 / HW: its product with [B, HW, C] is the per-channel mean. */
  readonly average: Value;
}

function resolutionOf(g: NN['g'], x: Value): Resolution {
  const hw = g.node('ReduceProd', [g.shape(x, 1, 3)], { keepdims: 1 }); // [1] int64
  const inv = g.div(g.scalar(1), g.cast(hw, 'float32'));
  const average = g.node('Expand', [inv, g.concat([g.ints([1, 1]), hw], 0)]);
  return { index: im2colIndex(g, x), average };
}

/**
 * GroupNorm of x [B, H, W, C]: per-channel means of x and x² over H and W, averaged per group; variance
 * E[x²] - E[x]² (clamped at 0), then y = x a + b with a = weight / sqrt(var + eps), b = bias - mean a, so the
 * large tensor is passed over five times (the two-pass form took six, 5% of a 512² decode). The means over H
 * and W are matrix products with a row of 1 / HW: ORT's ReduceMean over those axes took 420 ms on 512² x 128
 * values, the product 14.
 */
function groupNormNHWC(nn: NN, config: VAEConfig, prefix: string, x: Value, res: Resolution): Value {
  const { g } = nn;
  const channels = checkGroups(nn, config, prefix);
  const per = channels / config.groups;
  const flat = (v: Value) => g.reshape(v, [0, -1, channels]); // [B, HW, C]
  // [B, H, W, C] -> its group's mean over H, W and the group's channels, as [B, 1, 1, C]
  const groupMean = (v: Value) => {
    const perChannel = g.matmul(res.average, flat(v)); // [B, 1, C]
    const grouped = g.reduceMean(g.reshape(perChannel, [0, 1, 1, config.groups, per]), [4]); // [B, 1, 1, G, 1]
    return g.reshape(g.node('Expand', [grouped, g.ints([1, 1, 1, 1, per])]), [0, 1, 1, channels]);
  };
  const mean = groupMean(x);
  const variance = g.node('Relu', [g.sub(groupMean(g.mul(x, x)), g.mul(mean, mean))]);
  const a = g.div(param(nn, `${prefix}.weight`), g.sqrt(g.add(variance, g.scalar(config.eps))));
  const b = g.sub(param(nn, `${prefix}.bias`), g.mul(mean, a));
  return g.add(g.mul(x, a), b);
}

/**
 * The int8 decoder's ops. Its 3x3 convolutions (the resnets', the upsamples' and conv_out) are int8 products;
 * the 1x1 convolutions (shortcuts, the attention's projections) stay float32 matrix products, as does conv_in
 * (run by the decoder in NCHW before its one transpose in).
 */
export function nhwcInt8(nn: NN, config: VAEConfig): Ops {
  const { g } = nn;
  let current: Resolution | undefined;
  const at = (): Resolution => {
    if (!current) throw new Error('nhwcInt8: resolution() was not called before the first layer');
    return current;
  };
  const bias = (prefix: string) => (hasParam(nn, `${prefix}.bias`) ? param(nn, `${prefix}.bias`) : undefined);
  const quantized = (name: string, fold: boolean): Int8ConvWeight => {
    const { w, cout, cin } = kernel3x3(nn, name);
    return fold ? quantizeConv3x3(foldUpsampleConv3x3(w, cout, cin), 4 * cout, cin, name) : quantizeConv3x3(w, cout, cin, name);
  };
  return {
    nn,
    norm: (prefix, x) => groupNormNHWC(nn, config, prefix, x, at()),
    conv3x3: (prefix, x) => conv3x3Int8(g, x, at().index, quantized(`${prefix}.weight`, false), bias(prefix)),
    conv1x1: (prefix, x) => {
      const [cout, cin] = shapeOf(nn.w, `${prefix}.weight`) as [number, number];
      const y = g.matmul(x, g.transpose(g.reshape(param(nn, `${prefix}.weight`), [cout, cin]), [1, 0]));
      const b = bias(prefix);
      return b ? g.add(y, b) : y;
    },
    upsample: (prefix, x) => {
      const b = hasParam(nn, `${prefix}.conv.bias`) ? readWeightFloat32(nn.w.get(`${prefix}.conv.bias`)) : undefined;
      const phased = b ? g.floats([...b, ...b, ...b, ...b]) : undefined;
      return upsampleConv3x3Int8(g, x, at().index, quantized(`${prefix}.conv.weight`, true), phased);
    },
    tokens: (x) => g.reshape(x, g.concat([g.shape(x, 0, 1), g.ints([-1]), g.shape(x, 3, 4)], 0)),
    fromTokens: (t, like) => g.node('Reshape', [t, g.shape(like)]),
    resolution: (x) => { current = resolutionOf(g, x); },
  };
}
