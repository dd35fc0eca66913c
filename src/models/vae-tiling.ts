/**
 * Tiled decoding: decode overlapping latent tiles one at a time and blend them in pixel space, so that the
 * decoder's activations are those of one tile rather than of the whole image.
 *
 * Not exact: GroupNorm statistics and the middle attention see only their tile, and the decoder's receptive
 * field is wider than any practical overlap, so tiles disagree near seams; linear ramps over the overlaps hide
 * the step. The size of the disagreement is measured in test/unit/vae-tiling.test.ts.
 */
import { SD3Error } from '../core/errors.js';
import { type Tensor, tensor } from '../core/tensor.js';

export interface TileOptions {
  /** Tile side in latent cells (e.g. 64 = 512 pixels in SD3). */
  readonly size: number;
  /** Latent cells shared by neighbouring tiles (at least this many; tiles are spread evenly). */
  readonly overlap: number;
}

export function checkTileOptions(tile: TileOptions): void {
  const { size, overlap } = tile;
  if (!Number.isInteger(size) || size < 1) throw new SD3Error(`tile size must be a positive integer (latent cells), got ${size}`);
  if (!Number.isInteger(overlap) || overlap < 0 || overlap >= size) {
    throw new SD3Error(`tile overlap must be an integer in [0, ${size - 1}] for tile size ${size}, got ${overlap}`);
  }
}

/** Start of each tile along an axis of `length` cells: tiles of `size` spread evenly, neighbours sharing >= `overlap`. */
export function tileStarts(length: number, size: number, overlap: number): number[] {
  if (length <= size) return [0];
  const n = Math.ceil((length - overlap) / (size - overlap));
  return Array.from({ length: n }, (_, i) => Math.round((i * (length - size)) / (n - 1)));
}

/**
 * Blending weight of each pixel of one tile along one axis: ramps up across the overlap with the previous tile
 * and down across the overlap with the next; 1 elsewhere. Neighbouring ramps add up to 1 on a shared stretch.
 */
function axisWeights(starts: readonly number[], k: number, cells: number, factor: number): Float32Array {
  const s = starts[k]! * factor;
  const e = s + cells * factor;
  const prevEnd = k > 0 ? (starts[k - 1]! + cells) * factor : s;
  const nextStart = k + 1 < starts.length ? starts[k + 1]! * factor : e;
  const w = new Float32Array(e - s);
  for (let p = s; p < e; p++) {
    const up = p < prevEnd ? (p - s + 0.5) / (prevEnd - s) : 1;
    const down = p >= nextStart ? (e - p - 0.5) / (e - nextStart) : 1;
    w[p - s] = up * down;
  }
  return w;
}

function crop(x: Tensor<'float32'>, y0: number, x0: number, h: number, w: number): Tensor<'float32'> {
  const [B, C, H, W] = x.shape as [number, number, number, number];
  const out = new Float32Array(B * C * h * w);
  for (let bc = 0; bc < B * C; bc++) {
    for (let r = 0; r < h; r++) {
      const from = (bc * H + y0 + r) * W + x0;
      out.set(x.data.subarray(from, from + w), (bc * h + r) * w);
    }
  }
  return tensor('float32', [B, C, h, w], out);
}

/**
 * Decodes `latent` [B, z, h, w] tile by tile with `decode` and blends the results (linear ramps over overlaps).
 * `factor` is the decoder's upscaling (8 in SD3). A latent no larger than one tile is decoded in one piece.
 */
export async function decodeTiled(
  latent: Tensor<'float32'>,
  tile: TileOptions,
  factor: number,
  decode: (tile: Tensor<'float32'>) => Promise<Tensor<'float32'>>,
): Promise<Tensor<'float32'>> {
  checkTileOptions(tile);
  const [, , h, w] = latent.shape as [number, number, number, number];
  const th = Math.min(tile.size, h);
  const tw = Math.min(tile.size, w);
  const rows = tileStarts(h, tile.size, tile.overlap);
  const cols = tileStarts(w, tile.size, tile.overlap);
  if (rows.length === 1 && cols.length === 1) return decode(latent);
  const H = h * factor;
  const W = w * factor;
  let sum: Float32Array | undefined;
  let B = 0;
  let C = 0;
  const weightSum = new Float32Array(H * W);
  for (let ky = 0; ky < rows.length; ky++) {
    const wy = axisWeights(rows, ky, th, factor);
    for (let kx = 0; kx < cols.length; kx++) {
      const wx = axisWeights(cols, kx, tw, factor);
      const part = await decode(crop(latent, rows[ky]!, cols[kx]!, th, tw)); // [B, C, th*f, tw*f]
      const [pb, pc, ph, pw] = part.shape as [number, number, number, number];
      if (ph !== th * factor || pw !== tw * factor) {
        throw new SD3Error(`a ${th}x${tw} latent tile decoded to ${ph}x${pw} pixels; expected ${th * factor}x${tw * factor}`);
      }
      if (!sum) { B = pb; C = pc; sum = new Float32Array(B * C * H * W); }
      const y0 = rows[ky]! * factor;
      const x0 = cols[kx]! * factor;
      for (let r = 0; r < ph; r++) {
        for (let c = 0; c < pw; c++) weightSum[(y0 + r) * W + x0 + c] += wy[r]! * wx[c]!;
      }
      for (let bc = 0; bc < B * C; bc++) {
        for (let r = 0; r < ph; r++) {
          const src = (bc * ph + r) * pw;
          const dst = (bc * H + y0 + r) * W + x0;
          const wr = wy[r]!;
          for (let c = 0; c < pw; c++) sum[dst + c] += wr * wx[c]! * part.data[src + c]!;
        }
      }
    }
  }
  for (let bc = 0; bc < B * C; bc++) {
    const base = bc * H * W;
    for (let p = 0; p < H * W; p++) sum![base + p] /= weightSum[p]!;
  }
  return tensor('float32', [B, C, H, W], sum!);
}
