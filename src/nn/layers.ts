/**
 * Layers shared by every model, written once: Linear, LayerNorm, Conv2d, parameters.
 * Models build their graphs through these, so a change of weight format or of precision mode (the int8
 * Linear path) happens here and nowhere else.
 */
import type { WeightStore } from '../core/weights.js';
import type { FloatType, GraphBuilder, Value } from '../onnx/builder.js';

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
  /**
   * What activations and weights are computed in (default float32). In a float16 graph the norms' statistics
   * run in float32 here (`layerNorm`, `layerNormPlain`, `rmsNorm`), and a model marks its other float32 islands
   * with `inFloat32`, `widen` and `narrow`.
   */
  readonly dtype?: FloatType;
}

/** The type `nn` computes in. */
export function computeType(nn: NN): FloatType {
  return nn.dtype ?? 'float32';
}

/** The same graph and weights computing in float32: a float32 island inside a float16 graph. */
export function inFloat32(nn: NN): NN {
  return computeType(nn) === 'float32' ? nn : { ...nn, dtype: 'float32' };
}

/** A value of nn's compute type as float32 (no node in a float32 graph). */
export function widen(nn: NN, x: Value): Value {
  return computeType(nn) === 'float32' ? x : nn.g.cast(x, 'float32');
}

/** A float32 value as nn's compute type (no node in a float32 graph). */
export function narrow(nn: NN, x: Value): Value {
  return computeType(nn) === 'float32' ? x : nn.g.cast(x, computeType(nn));
}

/**
 * The graph inputs of the LoRA branch on weight `name`: y += (x @ down) @ up + bias, with down [in, R] and
 * up [R, out] (a convolution: down [R, C, kh, kw] as a kernel with the layer's stride, up [out, R, 1, 1]).
 * R is dynamic, so the factors of any set of LoRAs can be fed to one session.
 */
export function loraInputNames(name: string): { readonly down: string; readonly up: string; readonly bias: string } {
  return { down: `lora:${name}:down`, up: `lora:${name}:up`, bias: `lora:${name}:bias` };
}

/** The graph inputs of the branch on a Linear weight: down [in, R], up [R, out], bias [out]. */
function loraInputs(nn: NN, name: string): { down: Value; up: Value; bias: Value } {
  const { g } = nn;
  const [out, inp] = nn.w.get(name).shape as [number, number];
  const n = loraInputNames(name);
  const rank = `lora_rank:${name}`;
  const input = (name: string, dims: (number | string)[]) => narrow(nn, g.input(name, 'float32', dims));
  return { down: input(n.down, [inp, rank]), up: input(n.up, [rank, out]), bias: input(n.bias, [out]) };
}

/** The convolution's LoRA branch: y + conv1x1(conv(x, down), up) + bias. */
function convLoraBranch(nn: NN, name: string, x: Value, y: Value, opts: { stride?: number; pads?: [number, number, number, number] }): Value {
  const { g } = nn;
  const shape = nn.w.get(name).shape;
  const out = shape[0]!;
  const n = loraInputNames(name);
  const rank = `lora_rank:${name}`;
  const down = narrow(nn, g.input(n.down, 'float32', [rank, shape[1]!, ...shape.slice(2)]));
  const up = narrow(nn, g.input(n.up, 'float32', [out, rank, 1, 1]));
  const bias = narrow(nn, g.input(n.bias, 'float32', [out]));
  return g.add(y, g.conv(g.conv(x, down, undefined, opts), up, bias));
}

/** A stored parameter as a value of nn's compute type. */
export function param(nn: NN, name: string): Value {
  return nn.g.weight(nn.w.get(name), computeType(nn));
}

export function hasParam(nn: NN, name: string): boolean {
  return nn.w.has(name);
}

/** y = x W^T + b with W = `${prefix}.weight` [out, in] and, when present, b = `${prefix}.bias`. */
export function linear(nn: NN, prefix: string, x: Value, opts: { bias?: boolean } = {}): Value {
  const { g } = nn;
  const name = `${prefix}.weight`;
  const wantBias = opts.bias ?? nn.w.has(`${prefix}.bias`);
  let bias = wantBias ? param(nn, `${prefix}.bias`) : undefined;
  const lora = nn.lora?.has(name) ? loraInputs(nn, name) : undefined;
  // The LoRA bias delta joins the layer's own bias (a vector add) rather than the output.
  if (lora) bias = bias ? g.add(bias, lora.bias) : lora.bias;
  const q = nn.quant?.get(name);
  if (q) {
    const inputs = [x, g.rawWeight(q.weight), g.weight(q.scale), g.rawWeight(q.zeroPoint)];
    if (bias) inputs.push(bias);
    const y = g.node('DynamicQuantizeMatMul', inputs, undefined, 'com.microsoft');
    return lora ? g.add(y, g.matmul(g.matmul(x, lora.down), lora.up)) : y;
  }
  if (!lora) return g.linear(x, param(nn, name), bias);
  // Measured (BENCHMARKS.md "LoRA switching"): every extra pass over the [tokens, out] output costs about as much
  // as the low-rank products, so the branch's result enters the main Gemm as its C input (y = x W^T + C).
  const [out, inp] = nn.w.get(name).shape as [number, number];
  const flat = g.reshape(x, [-1, inp]);
  const low = g.node('Gemm', [g.matmul(flat, lora.down), lora.up, bias!]); // [N, out] = (x A) B + b
  const y = g.node('Gemm', [flat, param(nn, name), low], { transB: 1 });
  return g.reshape(y, g.concat([g.shape(x, 0, -1), g.ints([out])], 0));
}

/**
 * LayerNorm over the last axis with `${prefix}.weight` / `${prefix}.bias`, computed in float32 (in a float16
 * graph: measured on WebGPU, its float16 kernel loses the mean of inputs far from zero, ~1e-2 of the output).
 */
export function layerNorm(nn: NN, prefix: string, x: Value, eps: number): Value {
  const f32 = inFloat32(nn);
  const bias = nn.w.has(`${prefix}.bias`) ? param(f32, `${prefix}.bias`) : undefined;
  return narrow(nn, nn.g.layerNorm(widen(nn, x), param(f32, `${prefix}.weight`), bias, eps));
}

/** LayerNorm without learned affine parameters, computed in float32 (see `layerNorm`). */
export function layerNormPlain(nn: NN, x: Value, width: number, eps: number): Value {
  const { g } = nn;
  return narrow(nn, g.layerNorm(widen(nn, x), g.floats(new Array(width).fill(1)), g.floats(new Array(width).fill(0)), eps));
}

/** RMS normalisation over the last axis with the weight `name`, computed in float32 (see `layerNorm`). */
export function rmsNorm(nn: NN, name: string, x: Value, eps: number): Value {
  return narrow(nn, nn.g.rmsNorm(widen(nn, x), param(inFloat32(nn), name), eps));
}

/** Conv2d (NCHW) with `${prefix}.weight` [out, in, kh, kw] and `${prefix}.bias`. */
export function conv2d(nn: NN, prefix: string, x: Value, opts: { stride?: number; pads?: [number, number, number, number] } = {}): Value {
  const bias = nn.w.has(`${prefix}.bias`) ? param(nn, `${prefix}.bias`) : undefined;
  const y = nn.g.conv(x, param(nn, `${prefix}.weight`), bias, opts);
  return nn.lora?.has(`${prefix}.weight`) ? convLoraBranch(nn, `${prefix}.weight`, x, y, opts) : y;
}
