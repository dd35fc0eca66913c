/** The small tensor type used at every boundary of the library (runtime door, loaders, tasks). */
import { SD3Error } from './errors.js';

export type DType =
  | 'float32' | 'float16' | 'bfloat16' | 'float8e4m3fn' | 'float8e5m2' | 'float64'
  | 'int8' | 'uint8' | 'int16' | 'int32' | 'int64' | 'bool';

export interface DataOf {
  float32: Float32Array;
  float16: Uint16Array;
  bfloat16: Uint16Array;
  /** 8-bit floats: the raw bytes (decode with toFloat32). */
  float8e4m3fn: Uint8Array;
  float8e5m2: Uint8Array;
  float64: Float64Array;
  int8: Int8Array;
  uint8: Uint8Array;
  int16: Int16Array;
  int32: Int32Array;
  int64: BigInt64Array;
  bool: Uint8Array;
}

export interface Tensor<D extends DType = DType> {
  readonly dtype: D;
  readonly shape: readonly number[];
  readonly data: DataOf[D];
}

export const BYTES_PER_ELEMENT: Record<DType, number> = {
  float32: 4, float16: 2, bfloat16: 2, float8e4m3fn: 1, float8e5m2: 1, float64: 8, int8: 1, uint8: 1, int16: 2, int32: 4, int64: 8, bool: 1,
};

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

const ARRAY_OF: { [D in DType]: (buf: ArrayBuffer, off: number, len: number) => DataOf[D] } = {
  float32: (b, o, n) => new Float32Array(b, o, n),
  float16: (b, o, n) => new Uint16Array(b, o, n),
  bfloat16: (b, o, n) => new Uint16Array(b, o, n),
  float8e4m3fn: (b, o, n) => new Uint8Array(b, o, n),
  float8e5m2: (b, o, n) => new Uint8Array(b, o, n),
  float64: (b, o, n) => new Float64Array(b, o, n),
  int8: (b, o, n) => new Int8Array(b, o, n),
  uint8: (b, o, n) => new Uint8Array(b, o, n),
  int16: (b, o, n) => new Int16Array(b, o, n),
  int32: (b, o, n) => new Int32Array(b, o, n),
  int64: (b, o, n) => new BigInt64Array(b, o, n),
  bool: (b, o, n) => new Uint8Array(b, o, n),
};

/** Views (or, when unaligned, copies) little-endian bytes as a typed array of `dtype`. */
export function viewBytes<D extends DType>(dtype: D, bytes: Uint8Array): DataOf[D] {
  const size = BYTES_PER_ELEMENT[dtype];
  const n = bytes.byteLength / size;
  if (bytes.byteOffset % size === 0) return ARRAY_OF[dtype](bytes.buffer as ArrayBuffer, bytes.byteOffset, n);
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return ARRAY_OF[dtype](copy.buffer, 0, n);
}

export function tensor<D extends DType>(dtype: D, shape: readonly number[], data: DataOf[D]): Tensor<D> {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new SD3Error(`tensor shape [${shape.join(', ')}] has an invalid dimension ${d}; expected non-negative integers`);
  }
  if (data.length !== numel(shape)) {
    throw new SD3Error(`tensor of shape [${shape.join(', ')}] needs ${numel(shape)} ${dtype} values, got ${data.length}`);
  }
  return { dtype, shape: [...shape], data };
}

export function zeros(shape: readonly number[]): Tensor<'float32'> {
  return tensor('float32', shape, new Float32Array(numel(shape)));
}

// ---- half-precision conversions (IEEE 754 binary16 and bfloat16) ----

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** float32 -> binary16 bits, round to nearest even, overflow to infinity. */
export function f32ToF16(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let r = mant >> shift;
    const rem = mant & ((1 << shift) - 1);
    if (rem > half || (rem === half && (r & 1))) r++;
    return sign | r;
  }
  let r = mant >> 13;
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (r & 1))) {
    r++;
    if (r === 0x400) { r = 0; e++; if (e >= 31) return sign | 0x7c00; }
  }
  return sign | (e << 10) | r;
}

let F16_TABLE: Float32Array | undefined;
/** All 65536 binary16 values as float32 (256 KiB), for fast bulk conversion. */
function f16Table(): Float32Array {
  if (!F16_TABLE) {
    F16_TABLE = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) F16_TABLE[h] = f16ToF32(h);
  }
  return F16_TABLE;
}

export function bf16ToF32(b: number): number {
  u32[0] = b << 16;
  return f32[0]!;
}

/** float32 -> bfloat16 bits, round to nearest even; NaN stays NaN. */
export function f32ToBf16(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

// ---- 8-bit floats (OCP FP8: E4M3 "fn" and E5M2), decoded exactly: every value is a float32 ----

/** E4M3 "fn": bias 7, subnormals m/8 * 2^-6, no infinities, 0x7F / 0xFF NaN (max 448). */
export function f8e4m3fnToF32(b: number): number {
  const sign = b & 0x80 ? -1 : 1;
  const exp = (b >> 3) & 0xf;
  const man = b & 0x7;
  if (exp === 0xf && man === 0x7) return NaN;
  if (exp === 0) return sign * (man / 8) * 2 ** -6;
  return sign * (1 + man / 8) * 2 ** (exp - 7);
}

/** E5M2: the upper byte of an IEEE binary16 (bias 15, infinities and NaNs as there). */
export function f8e5m2ToF32(b: number): number {
  return f16ToF32(b << 8);
}

const F8_TABLES: Partial<Record<'float8e4m3fn' | 'float8e5m2', Float32Array>> = {};
function f8Table(dtype: 'float8e4m3fn' | 'float8e5m2'): Float32Array {
  return (F8_TABLES[dtype] ??= Float32Array.from({ length: 256 }, (_, b) => (dtype === 'float8e4m3fn' ? f8e4m3fnToF32(b) : f8e5m2ToF32(b))));
}

/** Any numeric tensor as float32 (copying only when the dtype differs). */
export function toFloat32(t: Tensor): Tensor<'float32'> {
  if (t.dtype === 'float32') return t as Tensor<'float32'>;
  const n = t.data.length;
  const out = new Float32Array(n);
  switch (t.dtype) {
    case 'float16': { const d = t.data as Uint16Array; const lut = f16Table(); for (let i = 0; i < n; i++) out[i] = lut[d[i]!]!; break; }
    case 'bfloat16': {
      const d = t.data as Uint16Array;
      const o32 = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) o32[i] = d[i]! << 16;
      break;
    }
    case 'float8e4m3fn':
    case 'float8e5m2': { const d = t.data as Uint8Array; const lut = f8Table(t.dtype); for (let i = 0; i < n; i++) out[i] = lut[d[i]!]!; break; }
    case 'int64': { const d = t.data as BigInt64Array; for (let i = 0; i < n; i++) out[i] = Number(d[i]!); break; }
    default: { const d = t.data as ArrayLike<number>; for (let i = 0; i < n; i++) out[i] = d[i]!; }
  }
  return tensor('float32', t.shape, out);
}

export function float32ToHalf(t: Tensor<'float32'>, dtype: 'float16' | 'bfloat16'): Tensor<'float16' | 'bfloat16'> {
  const conv = dtype === 'float16' ? f32ToF16 : f32ToBf16;
  const out = new Uint16Array(t.data.length);
  for (let i = 0; i < out.length; i++) out[i] = conv(t.data[i]!);
  return tensor(dtype, t.shape, out);
}
