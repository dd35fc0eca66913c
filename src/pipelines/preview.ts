/**
 * Cheap per-step previews: a latent [B, 16, h, w] becomes one small RGB image per batch item through a fixed
 * linear map (16 channels plus a bias -> 3 colours), one pixel per latent cell, without running the VAE.
 *
 * The map is fitted once per model, not copied from a table: the tiny and demo models have VAEs of their own,
 * so no fixed set of SD3 coefficients would fit them. `fitLatentPreview` encodes a few flat-colour test cards
 * with the model's own VAE, decodes them again, and solves least squares between each latent cell and the mean
 * decoded colour of its 8x8 pixel block. On SD3 Medium that costs one 64x64 encode and decode (well under a
 * second on a CPU), on tiny-random a few milliseconds.
 */
import { SD3Error } from '../core/errors.js';
import { type Tensor, tensor } from '../core/tensor.js';
import { RGBImage } from '../image/image.js';

/** Latent -> RGB in [-1, 1]: rgb[c] = bias[c] + sum_k weights[c * channels + k] * latent[k]. */
export interface LatentProjection {
  readonly channels: number;
  /** 3 x channels, row-major. */
  readonly weights: Float32Array;
  readonly bias: Float32Array;
}

/** What fitting needs from the backbone: model-space encode and decode (SD3Backbone has both). */
export interface PreviewVAE {
  encodeImage(images: Tensor<'float32'>, seeds: readonly number[]): Promise<Float32Array>;
  decode(latent: Tensor<'float32'>): Promise<Tensor<'float32'>>;
}

const CARD = 64; // test-card side in pixels
const CARDS = 6;

/** Deterministic test cards [CARDS, 3, 64, 64] in [-1, 1]: random flat colours per `block` x `block` cell. */
function testCards(block: number): Tensor<'float32'> {
  const plane = CARD * CARD;
  const out = new Float32Array(CARDS * 3 * plane);
  let state = 0x9e3779b9;
  const rand = () => {
    // xorshift32: any fixed sequence will do, it only has to be reproducible.
    state ^= state << 13; state >>>= 0; state ^= state >>> 17; state ^= state << 5; state >>>= 0;
    return state / 0x100000000;
  };
  const cells = CARD / block;
  for (let b = 0; b < CARDS; b++) {
    for (let cy = 0; cy < cells; cy++) for (let cx = 0; cx < cells; cx++) {
      const rgb = [rand() * 2 - 1, rand() * 2 - 1, rand() * 2 - 1];
      for (let y = cy * block; y < (cy + 1) * block; y++) for (let x = cx * block; x < (cx + 1) * block; x++) {
        for (let c = 0; c < 3; c++) out[(b * 3 + c) * plane + y * CARD + x] = rgb[c]!;
      }
    }
  }
  return tensor('float32', [CARDS, 3, CARD, CARD], out);
}

/**
 * Solves (X^T X + ridge I) w = X^T y for each colour by Gaussian elimination with partial pivoting. Written
 * out here because the system is 17 x 17: a linear-algebra dependency would be far larger than the problem.
 */
function leastSquares(rows: Float64Array[], targets: Float64Array[], ridge = 1e-4): Float64Array[] {
  const n = rows[0]!.length;
  const ata = Array.from({ length: n }, () => new Float64Array(n));
  const aty = targets.map(() => new Float64Array(n));
  rows.forEach((r, s) => {
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) ata[i]![j]! += r[i]! * r[j]!;
      targets.forEach((t, c) => { aty[c]![i]! += r[i]! * t[s]!; });
    }
  });
  for (let i = 0; i < n; i++) ata[i]![i]! += ridge * rows.length;
  return aty.map((rhs) => {
    const m = ata.map((row, i) => [...row, rhs[i]!]);
    for (let col = 0; col < n; col++) {
      let pivot = col;
      for (let r = col + 1; r < n; r++) if (Math.abs(m[r]![col]!) > Math.abs(m[pivot]![col]!)) pivot = r;
      [m[col], m[pivot]] = [m[pivot]!, m[col]!];
      const p = m[col]![col]!;
      if (Math.abs(p) < 1e-12) throw new SD3Error('latent preview fit is singular');
      for (let r = 0; r < n; r++) {
        if (r === col) continue;
        const f = m[r]![col]! / p;
        if (f !== 0) for (let k = col; k <= n; k++) m[r]![k]! -= f * m[col]![k]!;
      }
    }
    return Float64Array.from({ length: n }, (_, i) => m[i]![n]! / m[i]![i]!);
  });
}

/** Fits the latent -> RGB map of a model from a few VAE round trips of flat-colour test cards. */
export async function fitLatentPreview(vae: PreviewVAE, factor: number): Promise<LatentProjection> {
  const cards = testCards(factor);
  const latent = await vae.encodeImage(cards, Array.from({ length: CARDS }, (_, i) => i + 1));
  const lh = CARD / factor;
  const cells = lh * lh;
  const channels = latent.length / (CARDS * cells);
  if (!Number.isInteger(channels)) throw new SD3Error(`latent preview: ${latent.length} latent values do not split into ${CARDS} cards of ${cells} cells`);
  const decoded = (await vae.decode(tensor('float32', [CARDS, channels, lh, lh], latent))).data;
  const rows: Float64Array[] = [];
  const targets = [0, 1, 2].map(() => new Float64Array(CARDS * cells));
  const plane = CARD * CARD;
  for (let b = 0; b < CARDS; b++) for (let cy = 0; cy < lh; cy++) for (let cx = 0; cx < lh; cx++) {
    const s = rows.length;
    const row = new Float64Array(channels + 1);
    for (let k = 0; k < channels; k++) row[k] = latent[(b * channels + k) * cells + cy * lh + cx]!;
    row[channels] = 1;
    rows.push(row);
    for (let c = 0; c < 3; c++) {
      let sum = 0;
      for (let y = cy * factor; y < (cy + 1) * factor; y++) for (let x = cx * factor; x < (cx + 1) * factor; x++) sum += decoded[(b * 3 + c) * plane + y * CARD + x]!;
      targets[c]![s] = sum / (factor * factor);
    }
  }
  const w = leastSquares(rows, targets);
  const weights = new Float32Array(3 * channels);
  const bias = new Float32Array(3);
  w.forEach((wc, c) => {
    for (let k = 0; k < channels; k++) weights[c * channels + k] = wc[k]!;
    bias[c] = wc[channels]!;
  });
  return { channels, weights, bias };
}

/** Latent [B, C, h, w] -> B images of w x h pixels. */
export function projectLatent(latent: Tensor<'float32'>, p: LatentProjection): RGBImage[] {
  const [B, C, h, w] = latent.shape as [number, number, number, number];
  if (C !== p.channels) throw new SD3Error(`latent preview: the latent has ${C} channels, the projection ${p.channels}`);
  const cells = h * w;
  const d = latent.data;
  return Array.from({ length: B }, (_, b) => {
    const out = new Uint8Array(cells * 3);
    for (let q = 0; q < cells; q++) {
      for (let c = 0; c < 3; c++) {
        let v = p.bias[c]!;
        for (let k = 0; k < C; k++) v += p.weights[c * C + k]! * d[(b * C + k) * cells + q]!;
        out[q * 3 + c] = Math.round(Math.min(1, Math.max(0, (v + 1) / 2)) * 255);
      }
    }
    return new RGBImage(w, h, out);
  });
}
