/**
 * A small typed builder for ONNX graphs: values are names, every helper appends one node and returns its
 * output. Weights enter through `weight()`, which references on-disk bytes as external data (never copying
 * them into the model) and casts half-precision weights to float32 in-graph (ORT folds the cast at load).
 */
import * as path from 'node:path';
import { SD3Error } from '../core/errors.js';
import { BYTES_PER_ELEMENT, type DType, type Tensor, f32ToF16, numel } from '../core/tensor.js';
import type { WeightRef } from '../core/weights.js';
import { type AttributeValue, type NodeProto, OnnxDataType, type TensorProto, type ValueInfoProto, encodeModel } from './proto.js';

export type Value = string;
export type Dim = number | string;
/** The floating-point types a graph computes in: float32, or float16 (GPU) with float32 islands. */
export type FloatType = 'float32' | 'float16';

/** Checks a model's dtype option (undefined: float32); throws an SD3Error naming the value. */
export function checkFloatType(v: unknown, what: string): FloatType {
  if (v === undefined || v === 'float32' || v === 'float16') return v ?? 'float32';
  throw new SD3Error(`${what} must be 'float32' or 'float16', got ${JSON.stringify(v)}`);
}

export const ONNX_TYPE: Record<DType, OnnxDataType> = {
  float32: OnnxDataType.FLOAT, float16: OnnxDataType.FLOAT16, bfloat16: OnnxDataType.BFLOAT16,
  float8e4m3fn: OnnxDataType.FLOAT8E4M3FN, float8e5m2: OnnxDataType.FLOAT8E5M2,
  float64: OnnxDataType.DOUBLE, int8: OnnxDataType.INT8, uint8: OnnxDataType.UINT8, int16: OnnxDataType.INT16,
  int32: OnnxDataType.INT32, int64: OnnxDataType.INT64, bool: OnnxDataType.BOOL,
};

export const OPSET = 21;
export const MS_DOMAIN = 'com.microsoft';

export interface BuiltModel {
  readonly bytes: Uint8Array;
  /** Folder the external-data locations are relative to (undefined when every weight is inline). */
  readonly externalFolder: string | undefined;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  /** Nodes that must run on the CPU whatever the device (see `hostOnly`). */
  readonly hostNodes: readonly string[];
  /** Node names by operator type (e.g. every MultiHeadAttention), for placing them. */
  readonly nodesByOp: Readonly<Record<string, readonly string[]>>;
}

const FLOAT_WEIGHT_DTYPES: ReadonlySet<string> = new Set(['float32', 'float16', 'bfloat16', 'float64', 'float8e4m3fn', 'float8e5m2']);

export class GraphBuilder {
  private readonly nodes: NodeProto[] = [];
  private readonly host: string[] = [];
  private readonly inits: TensorProto[] = [];
  private readonly ins: ValueInfoProto[] = [];
  private readonly outs: ValueInfoProto[] = [];
  private readonly weights = new Map<string, Value>();
  /** Shapes of weight values, so helpers such as `linear` know their sizes. */
  private readonly weightShapes = new Map<Value, readonly number[]>();
  private readonly consts = new Map<string, Value>();
  private folder: string | undefined;
  private counter = 0;
  private scope: string[] = [];

  constructor(readonly name: string) {}

  /** Names nodes built inside `fn` under a scope (for readable profiles). */
  within<T>(scope: string, fn: () => T): T {
    this.scope.push(scope);
    try { return fn(); } finally { this.scope.pop(); }
  }

  private fresh(hint: string): string {
    return `${[...this.scope, hint].join('/')}_${this.counter++}`;
  }

  input(name: string, dtype: DType, dims: readonly Dim[]): Value {
    this.ins.push({ name, elemType: ONNX_TYPE[dtype], dims });
    return name;
  }

  output(value: Value, name: string, dtype: DType = 'float32', dims?: readonly Dim[]): void {
    const n = value === name ? value : this.identity(value, name);
    this.outs.push({ name: n, elemType: ONNX_TYPE[dtype], ...(dims ? { dims } : {}) });
  }

  private identity(x: Value, name: string): Value {
    this.nodes.push({ opType: 'Identity', inputs: [x], outputs: [name], name: this.fresh('Identity') });
    return name;
  }

  /** Appends a node with `nOut` outputs. */
  nodeN(opType: string, inputs: readonly Value[], nOut: number, attributes?: Record<string, AttributeValue>, domain?: string): Value[] {
    const name = this.fresh(opType);
    const outputs = Array.from({ length: nOut }, (_, i) => `${name}:${i}`);
    this.nodes.push({ opType, inputs, outputs, name, ...(attributes ? { attributes } : {}), ...(domain ? { domain } : {}) });
    return outputs;
  }

  node(opType: string, inputs: readonly Value[], attributes?: Record<string, AttributeValue>, domain?: string): Value {
    return this.nodeN(opType, inputs, 1, attributes, domain)[0]!;
  }

  // ---- constants and weights ----

  /** A small inline constant (deduplicated by content). */
  constant(t: Tensor): Value {
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    const key = `${t.dtype}|${t.shape.join(',')}|${Buffer.from(bytes).toString('base64')}`;
    const hit = this.consts.get(key);
    if (hit) return hit;
    const name = this.fresh('const');
    this.inits.push({ name, dataType: ONNX_TYPE[t.dtype], dims: t.shape, rawData: new Uint8Array(bytes) });
    this.consts.set(key, name);
    return name;
  }

  scalar(v: number, dtype: FloatType | 'int64' = 'float32'): Value {
    return dtype === 'int64'
      ? this.constant({ dtype: 'int64', shape: [], data: new BigInt64Array([BigInt(v)]) })
      : this.floats([v], [], dtype);
  }

  ints(v: readonly number[]): Value {
    return this.constant({ dtype: 'int64', shape: [v.length], data: BigInt64Array.from(v.map(BigInt)) });
  }

  floats(v: readonly number[], shape: readonly number[] = [v.length], dtype: FloatType = 'float32'): Value {
    return dtype === 'float16'
      ? this.constant({ dtype: 'float16', shape, data: Uint16Array.from(v, f32ToF16) })
      : this.constant({ dtype: 'float32', shape, data: Float32Array.from(v) });
  }

  /** A stored tensor as an initializer in its own dtype (no cast), for int8 weights and scales. */
  rawWeight(ref: WeightRef): Value {
    const hit = this.weights.get(`raw:${ref.name}`);
    if (hit) return hit;
    const parts: Value[] = [];
    if (ref.data) {
      const name = this.fresh(`w:${ref.name}`);
      this.inits.push({ name, dataType: ONNX_TYPE[ref.dtype], dims: ref.shape, rawData: ref.data });
      parts.push(name);
    } else {
      const chunks = ref.chunks ?? [];
      if (chunks.length === 0) throw new SD3Error(`weight "${ref.name}" has no data`);
      const rowShape = ref.shape.slice(1);
      const rowBytes = numel(rowShape) * BYTES_PER_ELEMENT[ref.dtype];
      for (const c of chunks) {
        const dir = path.dirname(c.file);
        if (this.folder === undefined) this.folder = dir;
        else if (this.folder !== dir) throw new SD3Error(`model ${this.name}: weights come from two folders (${this.folder} and ${dir}); one model takes one folder`);
        const dims = chunks.length === 1 ? ref.shape : [c.length / rowBytes, ...rowShape];
        const name = this.fresh(`w:${ref.name}`);
        this.inits.push({ name, dataType: ONNX_TYPE[ref.dtype], dims, external: { location: path.basename(c.file), offset: c.offset, length: c.length } });
        parts.push(name);
      }
    }
    const v = parts.length === 1 ? parts[0]! : this.node('Concat', parts, { axis: 0 });
    this.weights.set(`raw:${ref.name}`, v);
    return v;
  }

  /**
   * A stored tensor as a value of type `to` (default float32). A weight already of that type is used as it is in
   * the file (float16 weights in a float16 graph: no float32 copy); any other is cast in-graph (folded at load).
   */
  weight(ref: WeightRef, to: FloatType = 'float32'): Value {
    const key = to === 'float32' ? ref.name : `${to}:${ref.name}`;
    const hit = this.weights.get(key);
    if (hit) return hit;
    // Model weights are floating point; an integer or boolean tensor under a weight's name is a damaged or foreign file.
    if (!FLOAT_WEIGHT_DTYPES.has(ref.dtype)) throw new SD3Error(`weight "${ref.name}" is ${ref.dtype}; expected a floating-point tensor (F32, F16, BF16 or F8)`);
    let v = this.rawWeight(ref);
    if (ref.dtype !== to) v = this.cast(v, to);
    this.weights.set(key, v);
    this.weightShapes.set(v, ref.shape);
    return v;
  }

  // ---- elementwise ----
  add(a: Value, b: Value): Value { return this.node('Add', [a, b]); }
  sub(a: Value, b: Value): Value { return this.node('Sub', [a, b]); }
  mul(a: Value, b: Value): Value { return this.node('Mul', [a, b]); }
  div(a: Value, b: Value): Value { return this.node('Div', [a, b]); }
  neg(a: Value): Value { return this.node('Neg', [a]); }
  exp(a: Value): Value { return this.node('Exp', [a]); }
  sqrt(a: Value): Value { return this.node('Sqrt', [a]); }
  sigmoid(a: Value): Value { return this.node('Sigmoid', [a]); }
  tanh(a: Value): Value { return this.node('Tanh', [a]); }
  // GPU sine/cosine are fast approximations: at SD3's timestep arguments (up to 1000 rad) WebGPU's are off by
  // ~1e-4, so these tiny nodes stay on the CPU.
  cos(a: Value): Value { return this.hostOnly(this.node('Cos', [a])); }
  sin(a: Value): Value { return this.hostOnly(this.node('Sin', [a])); }
  silu(a: Value): Value { return this.mul(a, this.sigmoid(a)); }
  /** x * sigmoid(1.702 x), CLIP-L's activation. */
  quickGelu(a: Value): Value { return this.mul(a, this.sigmoid(this.mul(a, this.scalar(1.702)))); }
  gelu(a: Value, approximate: 'none' | 'tanh' = 'none'): Value { return this.node('Gelu', [a], { approximate }); }
  cast(a: Value, to: DType): Value { return this.node('Cast', [a], { to: ONNX_TYPE[to] }); }
  clip(a: Value, lo: number, hi: number): Value { return this.node('Clip', [a, this.scalar(lo), this.scalar(hi)]); }

  // ---- linear algebra ----
  matmul(a: Value, b: Value): Value { return this.node('MatMul', [a, b]); }

  /**
   * y = x W^T + b for a PyTorch-layout weight W [out, in]. Stored weights go through Gemm with transB on
   * x flattened to 2-D: ORT prepacks W as it is, with no transposed copy to fold at load (2.5x faster
   * loading and a lower memory peak than MatMul on Transpose(W), same speed).
   */
  linear(x: Value, w: Value, b?: Value): Value {
    const shape = this.weightShapes.get(w);
    if (!shape || shape.length !== 2) {
      const y = this.matmul(x, this.transpose(w, [1, 0]));
      return b ? this.add(y, b) : y;
    }
    const [out, inp] = shape as [number, number];
    const flat = this.reshape(x, [-1, inp]);
    const y = this.node('Gemm', b ? [flat, w, b] : [flat, w], { transB: 1 });
    return this.reshape(y, this.concat([this.shape(x, 0, -1), this.ints([out])], 0));
  }

  softmax(a: Value, axis = -1): Value { return this.node('Softmax', [a], { axis }); }

  layerNorm(x: Value, scale: Value, bias: Value | undefined, eps: number, axis = -1): Value {
    return this.node('LayerNormalization', bias ? [x, scale, bias] : [x, scale], { axis, epsilon: { float: eps } });
  }

  /** RMS normalisation over the last axis (T5-style: no mean subtraction, no bias). */
  rmsNorm(x: Value, scale: Value, eps: number): Value {
    return this.node('SimplifiedLayerNormalization', [x, scale], { axis: -1, epsilon: { float: eps } });
  }

  /** Normalises each of `groups` channel groups of an NCHW tensor over (channels in group, H, W); affine per channel. */
  groupNorm(x: Value, groups: number, scale: Value, bias: Value, eps: number): Value {
    const shape = this.shape(x);
    const grouped = this.reshape(x, [0, groups, -1]);
    const ones = this.floats(new Array(groups).fill(1));
    const zeros = this.floats(new Array(groups).fill(0));
    const normed = this.node('InstanceNormalization', [grouped, ones, zeros], { epsilon: { float: eps } });
    const back = this.node('Reshape', [normed, shape]);
    const s = this.unsqueeze(scale, [1, 2]);
    const b = this.unsqueeze(bias, [1, 2]);
    return this.add(this.mul(back, s), b);
  }

  conv(x: Value, w: Value, b: Value | undefined, opts: { stride?: number; pads?: [number, number, number, number] } = {}): Value {
    const s = opts.stride ?? 1;
    const attrs: Record<string, AttributeValue> = { strides: [s, s] };
    if (opts.pads) attrs.pads = opts.pads;
    return this.node('Conv', b ? [x, w, b] : [x, w], attrs);
  }

  /**
   * Multi-head attention over [B, S, heads*d] query/key/value (com.microsoft.MultiHeadAttention).
   * `bias` is added to the scores: [1 or B, 1 or heads, S, T].
   */
  attention(q: Value, k: Value, v: Value, opts: { heads: number; scale?: number; bias?: Value }): Value {
    const attrs: Record<string, AttributeValue> = { num_heads: opts.heads };
    if (opts.scale !== undefined) attrs.scale = { float: opts.scale };
    const inputs = opts.bias ? [q, k, v, '', '', opts.bias] : [q, k, v];
    return this.node('MultiHeadAttention', inputs, attrs, MS_DOMAIN);
  }

  // ---- shape ----
  shape(x: Value, start?: number, end?: number): Value {
    const attrs: Record<string, AttributeValue> = {};
    if (start !== undefined) attrs.start = start;
    if (end !== undefined) attrs.end = end;
    return this.node('Shape', [x], attrs);
  }
  reshape(x: Value, shape: readonly number[] | Value): Value {
    return this.node('Reshape', [x, typeof shape === 'string' ? shape : this.ints(shape)]);
  }
  transpose(x: Value, perm: readonly number[]): Value { return this.node('Transpose', [x], { perm: [...perm] }); }
  concat(xs: readonly Value[], axis: number): Value { return this.node('Concat', xs, { axis }); }
  split(x: Value, sizes: readonly number[], axis: number): Value[] {
    return this.nodeN('Split', [x, this.ints(sizes)], sizes.length, { axis });
  }
  /** Splits into `n` equal parts (sizes need not be known when building). */
  chunk(x: Value, n: number, axis: number): Value[] { return this.nodeN('Split', [x], n, { axis, num_outputs: n }); }
  slice(x: Value, starts: readonly number[] | Value, ends: readonly number[] | Value, axes: readonly number[], steps?: readonly number[]): Value {
    const s = typeof starts === 'string' ? starts : this.ints(starts);
    const e = typeof ends === 'string' ? ends : this.ints(ends);
    const ins = [x, s, e, this.ints(axes)];
    if (steps) ins.push(this.ints(steps));
    return this.node('Slice', ins);
  }
  gather(x: Value, idx: Value, axis = 0): Value { return this.node('Gather', [x, idx], { axis }); }
  unsqueeze(x: Value, axes: readonly number[]): Value { return this.node('Unsqueeze', [x, this.ints(axes)]); }
  squeeze(x: Value, axes: readonly number[]): Value { return this.node('Squeeze', [x, this.ints(axes)]); }
  pad(x: Value, pads: readonly number[]): Value { return this.node('Pad', [x, this.ints(pads)], { mode: 'constant' }); }
  /** Nearest-neighbour upsampling of NCHW by an integer factor. */
  upsampleNearest(x: Value, factor: number): Value {
    return this.node('Resize', [x, '', this.floats([1, 1, factor, factor])], { mode: 'nearest', nearest_mode: 'floor', coordinate_transformation_mode: 'asymmetric' });
  }
  reduceMean(x: Value, axes: readonly number[], keepdims = true): Value {
    return this.node('ReduceMean', [x, this.ints(axes)], { keepdims: keepdims ? 1 : 0 });
  }

  /** Marks the node that produced `v` to run on the CPU provider even when the session runs on a GPU. */
  hostOnly(v: Value): Value {
    const node = this.nodes.find((n) => n.outputs.includes(v));
    if (!node?.name) throw new Error(`hostOnly: no node produces ${v}`);
    this.host.push(node.name);
    return v;
  }

  build(): BuiltModel {
    const bytes = encodeModel({
      irVersion: 10,
      producerName: 'sd3-ts',
      opsets: [{ domain: '', version: OPSET }, { domain: MS_DOMAIN, version: 1 }],
      graph: { name: this.name, nodes: this.nodes, initializers: this.inits, inputs: this.ins, outputs: this.outs },
    });
    const nodesByOp: Record<string, string[]> = {};
    for (const n of this.nodes) (nodesByOp[n.opType] ??= []).push(n.name!);
    return { bytes, externalFolder: this.folder, inputs: this.ins.map((i) => i.name), outputs: this.outs.map((o) => o.name), hostNodes: [...this.host], nodesByOp };
  }
}
