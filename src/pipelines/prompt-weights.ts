/**
 * Prompt weights on the embedding side, by ComfyUI's method: each CLIP token embedding moves along the line from
 * the empty prompt's embedding at the same position, z' = z_empty + w (z - z_empty). Chosen over A1111's
 * multiply-and-restore-mean because a token of weight 1 stays exactly as it was (weighting one word does not
 * rescale every other token through a mean over the whole 77 x 4096 context, most of it zero padding), the
 * result does not depend on the other prompts of the batch, it is the method ComfyUI (the usual SD3 front end)
 * applies, and it keeps the pooled vectors untouched (as ComfyUI does).
 */
import { SD3Error } from '../core/errors.js';
import { type Tensor, tensor } from '../core/tensor.js';

/**
 * seq [N, P, D] (N rows of P tokens), empty [1, P, D] (the empty prompt), weights [N * P] -> the weighted seq.
 * Tokens of weight exactly 1 are copied bit for bit.
 */
export function weightTokens(seq: Tensor<'float32'>, empty: Tensor<'float32'>, weights: Float32Array): Tensor<'float32'> {
  const [N, P, D] = seq.shape as [number, number, number];
  if (empty.shape.length !== 3 || empty.shape[0] !== 1 || empty.shape[1] !== P || empty.shape[2] !== D) {
    throw new SD3Error(`prompt weights: empty-prompt embedding [${empty.shape.join(', ')}] does not match [1, ${P}, ${D}]`);
  }
  if (weights.length !== N * P) throw new SD3Error(`prompt weights: ${weights.length} weights for ${N * P} tokens`);
  const out = Float32Array.from(seq.data);
  for (let n = 0; n < N; n++) {
    for (let p = 0; p < P; p++) {
      const w = weights[n * P + p]!;
      if (w === 1) continue;
      const row = (n * P + p) * D;
      for (let d = 0; d < D; d++) {
        const e = empty.data[p * D + d]!;
        out[row + d] = e + w * (seq.data[row + d]! - e);
      }
    }
  }
  return tensor('float32', seq.shape, out);
}

/** [B * W, P, D] windows -> [B, W * P, D] (each prompt's windows one after another along the sequence). */
export function joinWindows(seq: Tensor<'float32'>, windows: number): Tensor<'float32'> {
  const [N, P, D] = seq.shape as [number, number, number];
  if (N % windows) throw new SD3Error(`${N} rows are not whole sets of ${windows} windows`);
  return tensor('float32', [N / windows, windows * P, D], seq.data);
}

/** [B * W, D] pooled vectors -> [B, D] of each prompt's first window (ComfyUI's SD3 pooled output). */
export function firstWindows(pooled: Tensor<'float32'>, windows: number): Tensor<'float32'> {
  const [N, D] = pooled.shape as [number, number];
  const B = N / windows;
  const out = new Float32Array(B * D);
  for (let b = 0; b < B; b++) out.set(pooled.data.subarray(b * windows * D, (b * windows + 1) * D), b * D);
  return tensor('float32', [B, D], out);
}
