/**
 * Pixel conversion between the models' image space (float32 NCHW in [-1, 1]) and 8-bit RGB (uint8 NHWC).
 *
 * The arithmetic is done in float32 steps (Math.fround), as the references do it on float32 arrays, so that a
 * value sitting exactly on a code boundary lands on the same side.
 */
import { SD3Error } from '../core/errors.js';
import { type Tensor, tensor } from '../core/tensor.js';

/**
 * How a float code value in [0, 255] becomes an integer:
 * - `round-half-even`: KerasHub's generate(), round(clip((x + 1) / 2, 0, 1) * 255) with ties to even;
 * - `truncate`: Stability's reference decode (sd3_infer.py), the same value cast to uint8 (dropping the fraction).
 */
export type PixelRounding = 'round-half-even' | 'truncate';

function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** Code value of one float in [-1, 1]: clamp((x + 1) / 2, 0, 1) * 255, rounded as asked (NaN gives 0). */
export function toCode(x: number, rounding: PixelRounding = 'round-half-even'): number {
  const unit = Math.min(1, Math.max(0, Math.fround(Math.fround(x + 1) / 2)));
  const v = Math.fround(unit * 255);
  if (Number.isNaN(v)) return 0;
  return rounding === 'truncate' ? Math.trunc(v) : roundHalfEven(v);
}

function checkShape(t: Tensor, name: string, expected: string, channelAxis: number): void {
  if (t.shape.length !== 4 || t.shape[channelAxis] !== 3) {
    throw new SD3Error(`${name} must have shape ${expected} with 3 channels, got [${t.shape.join(', ')}]`);
  }
}

/**
 * Float image [B, 3, H, W] in [-1, 1] -> uint8 RGB [B, H, W, 3].
 *
 * @example imageToUint8(decoded)              // KerasHub's rounding
 * @example imageToUint8(decoded, 'truncate')  // the reference's truncation (up to one code value lower)
 */
export function imageToUint8(image: Tensor, rounding: PixelRounding = 'round-half-even'): Tensor<'uint8'> {
  if (image.dtype !== 'float32') throw new SD3Error(`image must be float32, got ${image.dtype}`);
  checkShape(image, 'image', '[B, 3, H, W]', 1);
  if (rounding !== 'round-half-even' && rounding !== 'truncate') {
    throw new SD3Error(`pixel rounding must be 'round-half-even' or 'truncate', got ${String(rounding)}`);
  }
  const [B, , H, W] = image.shape as [number, number, number, number];
  const src = image.data as Float32Array;
  const out = new Uint8Array(B * H * W * 3);
  const plane = H * W;
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < 3; c++) {
      const from = (b * 3 + c) * plane;
      for (let p = 0; p < plane; p++) out[(b * plane + p) * 3 + c] = toCode(src[from + p]!, rounding);
    }
  }
  return tensor('uint8', [B, H, W, 3], out);
}

/** uint8 RGB [B, H, W, 3] -> float image [B, 3, H, W] in [-1, 1] (x / 255 * 2 - 1, as the reference does). */
export function uint8ToImage(pixels: Tensor): Tensor<'float32'> {
  if (pixels.dtype !== 'uint8') throw new SD3Error(`pixels must be uint8, got ${pixels.dtype}`);
  checkShape(pixels, 'pixels', '[B, H, W, 3]', 3);
  const [B, H, W] = pixels.shape as [number, number, number, number];
  const src = pixels.data as Uint8Array;
  const lut = new Float32Array(256);
  for (let v = 0; v < 256; v++) lut[v] = Math.fround(Math.fround(Math.fround(v / 255) * 2) - 1);
  const plane = H * W;
  const out = new Float32Array(B * 3 * plane);
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < 3; c++) {
      const to = (b * 3 + c) * plane;
      for (let p = 0; p < plane; p++) out[to + p] = lut[src[(b * plane + p) * 3 + c]!]!;
    }
  }
  return tensor('float32', [B, 3, H, W], out);
}
