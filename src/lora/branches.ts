/**
 * LoRAs as low-rank branches: the factors every branch input of the MMDiT graph takes (nn/layers.ts
 * loraInputNames). The LoRAs touching one weight are stacked along the rank (R = the sum of their ranks), each
 * module's up placed on its rows (halves exchanged where its format says so) and multiplied by userScale * s;
 * a weight no LoRA touches gets rank-1 zeros. Switching LoRAs or scales is then a new set of feeds for the same
 * session: nothing of the base model is read again (BENCHMARKS.md "LoRA switching").
 */
import { type Tensor, numel, tensor } from '../core/tensor.js';
import { loraInputNames } from '../nn/layers.js';
import type { LoraModule } from './file.js';
import { type AppliedLora, targetRow } from './merge.js';
import type { LoraTargets } from './targets.js';

/** The feeds of every branch in `slots` for these LoRAs. */
export function loraFeeds(targets: LoraTargets, slots: Iterable<string>, loras: readonly AppliedLora[]): Record<string, Tensor<'float32'>> {
  const byWeight = new Map<string, { m: LoraModule; factor: number }[]>();
  const biasDelta = new Map<string, Float32Array>();
  for (const { file, scale } of loras) {
    for (const m of file.modules) {
      if (m.component !== targets.component) continue;
      if (m.lowRank) {
        let l = byWeight.get(m.target.weight);
        if (!l) byWeight.set(m.target.weight, l = []);
        l.push({ m, factor: scale * m.alphaScale });
      }
      if (m.diffBias) {
        let b = biasDelta.get(m.target.weight);
        if (!b) biasDelta.set(m.target.weight, b = new Float32Array(m.diffBias.length));
        for (let i = 0; i < b.length; i++) b[i] += scale * m.diffBias[i]!;
      }
    }
  }
  const feeds: Record<string, Tensor<'float32'>> = {};
  for (const name of slots) {
    const t = targets.byName.get(name);
    if (!t) continue;
    const out = t.shape[0]!;
    const k = numel(t.shape.slice(1));
    const conv = t.shape.length === 4;
    const parts = byWeight.get(name) ?? [];
    const R = Math.max(1, parts.reduce((s, p) => s + p.m.lowRank!.rank, 0));
    // Linear: down [k, R] (transposed for x @ down), up [R, out]; conv: down [R, C, kh, kw], up [out, R, 1, 1].
    const down = new Float32Array(k * R);
    const up = new Float32Array(R * out);
    let r0 = 0;
    for (const { m, factor } of parts) {
      const { rank: r, down: a, up: b } = m.lowRank!;
      const n = b.length / r;
      for (let q = 0; q < r; q++) {
        const col = r0 + q;
        for (let j = 0; j < k; j++) down[conv ? col * k + j : j * R + col] = a[q * k + j]!;
        for (let i = 0; i < n; i++) {
          const row = targetRow(m, i, n);
          up[conv ? row * R + col : col * out + row] = factor * b[i * r + q]!;
        }
      }
      r0 += r;
    }
    const names = loraInputNames(name);
    feeds[names.down] = tensor('float32', conv ? [R, ...t.shape.slice(1)] : [k, R], down);
    feeds[names.up] = tensor('float32', conv ? [out, R, 1, 1] : [R, out], up);
    feeds[names.bias] = tensor('float32', [out], biasDelta.get(name) ?? new Float32Array(out));
  }
  return feeds;
}
