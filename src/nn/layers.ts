/**
 * Layers shared by every model, written once: Linear, LayerNorm, Conv2d, parameters.
 * Models build their graphs through these, so a change of weight format or of precision mode (the int8
 * Linear path) happens here and nowhere else.
 */
import type { WeightStore } from '../core/weights.js';
import type { GraphBuilder, Value } from '../onnx/builder.js';

/** How Linear layers are computed. */
export type LinearMode = 'fp32' | 'int8';

/** Source of pre-quantized Linear weights (int8 mode); see quant/. */
export interface QuantizedLinears {
  /** int8 [in, out] weight, float32 [out] per-output-channel scales, for the Linear whose weight is `name`. */
  get(name: string): { weight: import('../core/weights.js').WeightRef; scale: import('../core/weights.js').WeightRef; zeroPoint: import('../core/weights.js').WeightRef } | undefined;
}

/** What a model's graph code needs: the builder and the weights (names without the component's prefix). */
export interface NN {
  readonly g: GraphBuilder;
  readonly w: WeightStore;
  readonly quant?: QuantizedLinears;
  /** Weights that get a low-rank (LoRA) branch whose factors are graph inputs (see src/lora). */
  readonly lora?: ReadonlySet<string>;
}

/**
 * The graph inputs of the LoRA branch on weight `name`: y += (x @ down) @ up + bias, with down [in, R] and
 * up [R, out] (a convolution: down [R, C, kh, kw] as a kernel with the layer's stride, up [out, R, 1, 1]).
 * R is dynamic, so the factors of any set of LoRAs can be fed to one session.
 */
export function loraInputNames(name: string): { readonly down: string; readonly up: string; readonly bias: string } {
  return { down: `lora:${name}:down`, up: `lora:${name}:up`, bias: `lora:${name}:bias` };
}

/** Adds the LoRA branch of `name` (when the graph has one) to the layer's output y. */
function loraBranch(nn: NN, name: string, x: Value, y: Value, conv?: { inChannels: number; kernel: readonly number[]; opts: { stride?: number; pads?: [number, number, number, number] } }): Value {
  if (!nn.lora?.has(name)) return y;
  const { g } = nn;
  const shape = nn.w.get(name).shape;
  const out = shape[0]!;
  const n = loraInputNames(name);
  const rank = `lora_rank:${name}`;
  const bias = g.input(n.bias, 'float32', [out]);
  if (conv) {
    const down = g.input(n.down, 'float32', [rank, conv.inChannels, ...conv.kernel]);
    const up = g.input(n.up, 'float32', [out, rank, 1, 1]);
    const low = g.conv(g.conv(x, down, undefined, conv.opts), up, bias);
    return g.add(y, low);
  }
  const down = g.input(n.down, 'float32', [shape[1]!, rank]);
  const up = g.input(n.up, 'float32', [rank, out]);
  return g.add(y, g.add(g.matmul(g.matmul(x, down), up), bias));
}

/** A stored parameter as a float32 value. */
export function param(nn: NN, name: string): Value {
  return nn.g.weight(nn.w.get(name));
}

export function hasParam(nn: NN, name: string): boolean {
  return nn.w.has(name);
}

/** y = x W^T + b with W = `${prefix}.weight` [out, in] and, when present, b = `${prefix}.bias`. */
export function linear(nn: NN, prefix: string, x: Value, opts: { bias?: boolean } = {}): Value {
  const { g } = nn;
  const wantBias = opts.bias ?? nn.w.has(`${prefix}.bias`);
  const bias = wantBias ? param(nn, `${prefix}.bias`) : undefined;
  const q = nn.quant?.get(`${prefix}.weight`);
  if (q) {
    const inputs = [x, g.rawWeight(q.weight), g.weight(q.scale), g.rawWeight(q.zeroPoint)];
    if (bias) inputs.push(bias);
    return loraBranch(nn, `${prefix}.weight`, x, g.node('DynamicQuantizeMatMul', inputs, undefined, 'com.microsoft'));
  }
  return loraBranch(nn, `${prefix}.weight`, x, g.linear(x, param(nn, `${prefix}.weight`), bias));
}

/** LayerNorm over the last axis with `${prefix}.weight` / `${prefix}.bias`. */
export function layerNorm(nn: NN, prefix: string, x: Value, eps: number): Value {
  const bias = nn.w.has(`${prefix}.bias`) ? param(nn, `${prefix}.bias`) : undefined;
  return nn.g.layerNorm(x, param(nn, `${prefix}.weight`), bias, eps);
}

/** LayerNorm without learned affine parameters. */
export function layerNormPlain(nn: NN, x: Value, width: number, eps: number): Value {
  const { g } = nn;
  return g.layerNorm(x, g.floats(new Array(width).fill(1)), g.floats(new Array(width).fill(0)), eps);
}

/** Conv2d (NCHW) with `${prefix}.weight` [out, in, kh, kw] and `${prefix}.bias`. */
export function conv2d(nn: NN, prefix: string, x: Value, opts: { stride?: number; pads?: [number, number, number, number] } = {}): Value {
  const bias = nn.w.has(`${prefix}.bias`) ? param(nn, `${prefix}.bias`) : undefined;
  const y = nn.g.conv(x, param(nn, `${prefix}.weight`), bias, opts);
  if (!nn.lora?.has(`${prefix}.weight`)) return y;
  const shape = nn.w.get(`${prefix}.weight`).shape;
  return loraBranch(nn, `${prefix}.weight`, x, y, { inChannels: shape[1]!, kernel: shape.slice(2), opts });
}
