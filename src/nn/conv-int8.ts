/**
 * int8 3x3 convolutions on NHWC tensors ([B, H, W, C]) for the VAE decoder's int8 mode, as an im2col product
 * that runs on ORT's int8 matrix multiply (AMX / VNNI where the CPU has them).
 *
 * Why not ONNX's ConvInteger: measured on a 2-core Xeon with AMX, ORT's CPU ConvInteger (uint8 x int8) is 8x
 * slower than its float32 Conv (1353 against 169 ms, 128 channels at 256²); its int8 matrix multiply is not.
 * So each convolution here is
 *   activations -> uint8 (DynamicQuantizeLinear, one scale per tensor) -> rows of C bytes, plus one row of
 *   the zero point standing for the padding -> Gather of the 9 taps of every pixel ([HW, 9C], one op; Slice +
 *   Concat measured 4x slower) -> MatMulIntegerToFloat against int8 weights [9C, Cout] with one scale per
 *   output channel (and the bias) -> [B, H, W, Cout].
 * NHWC because that is the layout both the gather and the product read and write: the same convolutions with
 * NCHW outside spent 7.2 of a 512² decode's 13 s in ORT's Transpose.
 * The gather indices depend only on H and W, so one index serves every convolution at a resolution.
 */
import { SD3Error } from '../core/errors.js';
import { tensor } from '../core/tensor.js';
import { MS_DOMAIN, type GraphBuilder, type Value } from '../onnx/builder.js';

/** A 3x3 kernel quantized for the im2col product (quant/int8.ts `quantizeConv3x3`). */
export interface Int8ConvWeight {
  /** int8 [9 * cin, cout]: row t * cin + c holds tap t = dy * 3 + dx of input channel c. */
  readonly q: Int8Array;
  readonly scale: Float32Array;
  readonly cin: number;
  readonly cout: number;
}

/**
 * Nearest x2 followed by a 3x3 conv, as one 3x3 conv to 4 * cout channels at the low resolution: phase
 * (a, b) = output pixel (2i + a, 2j + b). Along each axis phase 0 sees source offsets {-1, 0} with taps
 * {k0, k1 + k2} and phase 1 sees {0, +1} with {k0 + k1, k2}; the unused third offset is zero. Output channel
 * (2a + b) * cout + o, the order DepthToSpace (DCR) expects. Summed in float32 before quantizing.
 */
export function foldUpsampleConv3x3(w: Float32Array, cout: number, cin: number): Float32Array {
  const fold = (k: readonly [number, number, number], phase: number): [number, number, number] =>
    (phase === 0 ? [k[0], k[1] + k[2], 0] : [0, k[0] + k[1], k[2]]);
  const out = new Float32Array(4 * cout * cin * 9);
  for (let a = 0; a < 2; a++) {
    for (let b = 0; b < 2; b++) {
      for (let o = 0; o < cout; o++) {
        for (let c = 0; c < cin; c++) {
          const src = (o * cin + c) * 9;
          const rows = [0, 1, 2].map((dy) => fold([w[src + dy * 3]!, w[src + dy * 3 + 1]!, w[src + dy * 3 + 2]!], b)); // columns folded
          const dst = (((2 * a + b) * cout + o) * cin + c) * 9;
          for (let dx = 0; dx < 3; dx++) {
            const col = fold([rows[0]![dx]!, rows[1]![dx]!, rows[2]![dx]!], a);
            for (let dy = 0; dy < 3; dy++) out[dst + dy * 3 + dx] = col[dy]!;
          }
        }
      }
    }
  }
  return out;
}

/** Gather indices [H*W, 9] for x [B, H, W, C]: the flat source pixel of each tap, H*W (the padding row) outside. */
export function im2colIndex(g: GraphBuilder, x: Value): Value {
  const i64 = (shape: number[], v: number[]) => g.constant(tensor('int64', shape, BigInt64Array.from(v.map(BigInt))));
  const h = g.squeeze(g.shape(x, 1, 2), [0]);
  const w = g.squeeze(g.shape(x, 2, 3), [0]);
  const zero = g.scalar(0, 'int64');
  const one = g.scalar(1, 'int64');
  const rows = g.add(g.reshape(g.node('Range', [zero, h, one]), [-1, 1, 1, 1]), i64([1, 1, 3, 1], [-1, 0, 1])); // [H, 1, 3, 1]
  const cols = g.add(g.reshape(g.node('Range', [zero, w, one]), [1, -1, 1, 1]), i64([1, 1, 1, 3], [-1, 0, 1])); // [1, W, 1, 3]
  const inside = (v: Value, n: Value) => g.node('And', [g.node('GreaterOrEqual', [v, zero]), g.node('Less', [v, n])]);
  const valid = g.node('And', [inside(rows, h), inside(cols, w)]);
  const flat = g.add(g.mul(rows, w), cols); // [H, W, 3, 3]
  return g.reshape(g.node('Where', [valid, flat, g.mul(h, w)]), [-1, 9]);
}

/** x [B, H, W, C] float32 -> [B, H*W, Cout] float32 = im2col(x) W + bias. */
function im2colProduct(g: GraphBuilder, x: Value, index: Value, weight: Int8ConvWeight, bias: Value | undefined): Value {
  const { cin } = weight;
  const [xq, xScale, xZero] = g.nodeN('DynamicQuantizeLinear', [x], 3) as [Value, Value, Value];
  const pixels = g.reshape(xq, [0, -1, cin]); // [B, HW, C] uint8
  const padRow = g.node('Expand', [g.reshape(xZero, [1, 1, 1]), g.concat([g.shape(x, 0, 1), g.ints([1, cin])], 0)]);
  const table = g.concat([pixels, padRow], 1); // [B, HW + 1, C]
  const cols = g.reshape(g.gather(table, index, 1), [0, -1, 9 * cin]); // [B, HW, 9C]
  const wq = g.constant(tensor('int8', [9 * cin, weight.cout], weight.q));
  const ws = g.constant(tensor('float32', [weight.cout], weight.scale));
  const inputs = [cols, wq, xScale, ws, xZero];
  if (bias) inputs.push('', bias);
  return g.node('MatMulIntegerToFloat', inputs, undefined, MS_DOMAIN);
}

/** A 3x3 conv, padding 1, stride 1: x [B, H, W, C] -> [B, H, W, Cout]. */
export function conv3x3Int8(g: GraphBuilder, x: Value, index: Value, weight: Int8ConvWeight, bias?: Value): Value {
  const y = im2colProduct(g, x, index, weight, bias);
  return g.reshape(y, g.concat([g.shape(x, 0, 3), g.ints([weight.cout])], 0));
}

/**
 * The folded upsample (see foldUpsampleConv3x3): x [B, H, W, C] -> [B, 2H, 2W, Cout], the phases placed by one
 * Transpose that moves whole pixels (C contiguous values) instead of Concat + DepthToSpace.
 */
export function upsampleConv3x3Int8(g: GraphBuilder, x: Value, index: Value, weight: Int8ConvWeight, bias?: Value): Value {
  if (weight.cout % 4 !== 0) throw new SD3Error(`an upsample weight has 4 phases of channels, got ${weight.cout}`);
  const c = weight.cout / 4;
  const y = im2colProduct(g, x, index, weight, bias); // [B, HW, (a, b, c)]
  const phases = g.reshape(y, g.concat([g.shape(x, 0, 3), g.ints([2, 2, c])], 0)); // [B, H, W, a, b, C]
  const placed = g.transpose(phases, [0, 1, 3, 2, 4, 5]); // [B, H, a, W, b, C]
  return g.reshape(placed, g.concat([g.shape(x, 0, 1), g.mul(g.shape(x, 1, 3), g.ints([2])), g.ints([c])], 0));
}
