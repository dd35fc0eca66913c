/**
 * The merge rule, once: per module, delta = userScale * s * reshape(up @ down) on the module's rows of its target
 * (halves exchanged where diffusers' layout differs), summed over modules and files. Used to build merged weights
 * (parity, the merge-and-reload alternative measured in BENCHMARKS.md) and the low-rank factors of the in-graph
 * branches (src/lora/branches.ts) from the same pieces.
 */
import { SD3Error } from '../core/errors.js';
import { type Tensor, numel, tensor } from '../core/tensor.js';
import { type WeightRef, type WeightStore, readWeightFloat32 } from '../core/weights.js';
import type { LoraFile, LoraModule } from './file.js';
import type { LoraTargets } from './targets.js';

/** A read LoRA file and the user's scale for it. */
export interface AppliedLora { readonly file: LoraFile; readonly scale: number }

/** Checks a user scale (a finite number). */
export function checkLoraScale(scale: unknown, what: string): number {
  if (typeof scale !== 'number' || !Number.isFinite(scale)) throw new SD3Error(`LoRA scale for ${what} must be a finite number, got ${JSON.stringify(scale)}`);
  return scale;
}

/** Target row of module row i: the module's row block, with the two halves exchanged when it says so. */
export function targetRow(m: LoraModule, i: number, n: number): number {
  const from = m.target.rows?.[0] ?? 0;
  return from + (m.target.swapHalves ? (i + n / 2) % n : i);
}

/** Adds factor * (up @ down) of a module into a float64 [rows, k] accumulator of the whole target. */
function addDelta(acc: Float64Array, k: number, m: LoraModule, factor: number): void {
  const lr = m.lowRank;
  if (!lr) return;
  const { rank: r, down, up } = lr;
  const n = up.length / r;
  const row = new Float64Array(k);
  for (let i = 0; i < n; i++) {
    row.fill(0);
    for (let q = 0; q < r; q++) {
      const b = up[i * r + q]!;
      if (b === 0) continue;
      const off = q * k;
      for (let j = 0; j < k; j++) row[j] += b * down[off + j]!;
    }
    const dst = targetRow(m, i, n) * k;
    for (let j = 0; j < k; j++) acc[dst + j] += factor * row[j]!;
  }
}

/** Every weight and bias the LoRAs change, merged: base + the summed deltas (float64 sums, rounded once). */
export function mergedWeights(store: WeightStore, targets: LoraTargets, loras: readonly AppliedLora[]): Map<string, Tensor<'float32'>> {
  const deltas = new Map<string, Float64Array>();
  const shapes = new Map<string, readonly number[]>();
  const accFor = (name: string, shape: readonly number[]) => {
    let a = deltas.get(name);
    if (!a) { deltas.set(name, a = new Float64Array(numel(shape))); shapes.set(name, shape); }
    return a;
  };
  for (const { file, scale } of loras) {
    for (const m of file.modules) {
      if (m.component !== targets.component) continue;
      const t = targets.byName.get(m.target.weight);
      if (!t) throw new SD3Error(`LoRA ${file.path}: "${m.key}" targets ${m.target.weight}, which this model lacks`);
      if (m.lowRank) addDelta(accFor(t.name, t.shape), numel(t.shape.slice(1)), m, scale * m.alphaScale);
      if (m.diffBias && t.bias) {
        const acc = accFor(t.bias.name, t.bias.shape);
        for (let i = 0; i < acc.length; i++) acc[i] += scale * m.diffBias[i]!;
      }
    }
  }
  const out = new Map<string, Tensor<'float32'>>();
  for (const [name, acc] of deltas) {
    const base = readWeightFloat32(store.get(name));
    const merged = new Float32Array(base.length);
    for (let i = 0; i < base.length; i++) merged[i] = base[i]! + acc[i]!;
    out.set(name, tensor('float32', shapes.get(name)!, merged));
  }
  return out;
}

/** `store` with some tensors replaced by in-memory ones (merged LoRA weights). */
export function overlayStore(store: WeightStore, replaced: ReadonlyMap<string, Tensor>, label = `${store.label} + LoRA`): WeightStore {
  return {
    label,
    has: (n) => replaced.has(n) || store.has(n),
    get: (n): WeightRef => {
      const t = replaced.get(n);
      if (!t) return store.get(n);
      return { name: n, dtype: t.dtype, shape: t.shape, data: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) };
    },
  };
}
