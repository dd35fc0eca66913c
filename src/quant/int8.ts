/**
 * int8 fast mode: Linear weights quantized once per output channel to signed int8 and cached next to the
 * checkpoint as a safetensors file (int8 [in, out] weights, float32 scales, zero points), which the graphs
 * reference as external data like any other weight. Activations are quantized on the fly by ORT's
 * DynamicQuantizeMatMul (AMX-backed on this CPU). Attention, norms and the VAE stay float32.
 *
 * The cache records what it was made from (file names, sizes, modification times, scheme version) and is
 * rebuilt when any of that changes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SD3Error } from '../core/errors.js';
import { SafetensorsFile, writeSafetensorsEntries } from '../core/safetensors.js';
import { type WeightRef, type WeightStore, readWeightFloat32, withPrefix, SafetensorsStore } from '../core/weights.js';
import type { QuantizedLinears } from '../nn/layers.js';

const SCHEME = 'sd3-ts int8 per-output-channel symmetric v1';
/** Full signed range: 7-bit weights (63) were measured here to give more error (2.0% vs 1.6% relative RMS), not less. */
const Q_MAX = 127;

/** Quantizes a [out, in] float weight: int8 transposed to [in, out], scale per output channel. */
export function quantizePerChannel(w: Float32Array, out: number, inp: number): { q: Int8Array; scale: Float32Array } {
  const q = new Int8Array(out * inp);
  const scale = new Float32Array(out);
  const inv = new Float32Array(out);
  for (let o = 0; o < out; o++) {
    let max = 0;
    const row = o * inp;
    for (let i = 0; i < inp; i++) max = Math.max(max, Math.abs(w[row + i]!));
    scale[o] = max > 0 ? max / Q_MAX : 1;
    inv[o] = 1 / scale[o]!;
  }
  // Transpose in 64 x 64 tiles so that neither the reads nor the writes stride through memory.
  const T = 64;
  for (let o0 = 0; o0 < out; o0 += T) {
    const o1 = Math.min(out, o0 + T);
    for (let i0 = 0; i0 < inp; i0 += T) {
      const i1 = Math.min(inp, i0 + T);
      for (let o = o0; o < o1; o++) {
        const row = o * inp;
        const f = inv[o]!;
        for (let i = i0; i < i1; i++) q[i * out + o] = Math.max(-Q_MAX, Math.min(Q_MAX, Math.round(w[row + i]! * f)));
      }
    }
  }
  return { q, scale };
}

/** Records which Linear weights a graph asks for (used to learn a model's Linear layers). */
export class LinearRecorder implements QuantizedLinears {
  readonly names: string[] = [];
  get(name: string): undefined {
    this.names.push(name);
    return undefined;
  }
}

function sourceStamp(refs: readonly WeightRef[]): string {
  const files = new Map<string, { size: number; mtimeMs: number }>();
  for (const r of refs) for (const c of r.chunks ?? []) {
    if (!files.has(c.file)) {
      const st = fs.statSync(c.file);
      files.set(c.file, { size: st.size, mtimeMs: Math.floor(st.mtimeMs) });
    }
  }
  return JSON.stringify({ scheme: SCHEME, files: [...files].map(([f, s]) => ({ file: path.basename(f), ...s })).sort((a, b) => a.file.localeCompare(b.file)) });
}

/** Quantized Linears backed by a cache file. */
class CachedLinears implements QuantizedLinears {
  constructor(private readonly store: WeightStore, private readonly names: ReadonlySet<string>) {}
  get(name: string) {
    if (!this.names.has(name)) return undefined;
    return { weight: this.store.get(`${name}.q`), scale: this.store.get(`${name}.scale`), zeroPoint: this.store.get(`${name}.zp`) };
  }
}

export interface Int8CacheOptions {
  /** The cache file (default: next to the first source file, named `<source>.<component>.int8.safetensors`). */
  readonly file?: string;
  readonly onProgress?: (done: number, total: number) => void;
}

/**
 * Opens (building if missing or stale) the int8 cache for the given Linear weights of `store`.
 * Weights whose data is in memory (no file) are quantized into memory instead.
 */
export function openInt8Cache(store: WeightStore, linearNames: readonly string[], component: string, opts: Int8CacheOptions = {}): QuantizedLinears {
  const refs = linearNames.map((n) => store.get(n)).filter((r) => r.shape.length === 2);
  if (refs.length === 0) return new LinearRecorder();
  const first = refs.find((r) => r.chunks?.length)?.chunks?.[0]?.file;
  if (!first) throw new SD3Error(`int8 mode needs weights on disk for ${component}`);
  const file = opts.file ?? `${first.replace(/\.safetensors$/, '')}.${component}.int8.safetensors`;
  const stamp = sourceStamp(refs);
  const wanted = refs.map((r) => `${r.name}.q`);
  let cache = tryOpen(file, stamp, wanted);
  if (!cache) {
    let done = 0;
    try {
      writeSafetensorsEntries(file, refs.flatMap((r) => {
        const [out, inp] = r.shape as [number, number];
        let quantized: { q: Int8Array; scale: Float32Array } | undefined;
        const get = () => (quantized ??= quantizePerChannel(readWeightFloat32(r), out, inp));
        return [
          { name: `${r.name}.q`, dtype: 'int8' as const, shape: [inp, out], fill: (b: Uint8Array) => b.set(new Uint8Array(get().q.buffer)) },
          { name: `${r.name}.scale`, dtype: 'float32' as const, shape: [out], fill: (b: Uint8Array) => { b.set(new Uint8Array(get().scale.buffer)); quantized = undefined; opts.onProgress?.(++done, refs.length); } },
          { name: `${r.name}.zp`, dtype: 'int8' as const, shape: [out], fill: () => { /* zeros: symmetric */ } },
        ];
      }), { sd3ts_int8_source: stamp });
    } catch (e) {
      throw new SD3Error(`could not write the int8 cache ${file} (the folder must be writable; it sits next to the checkpoint): ${(e as Error).message}`, { cause: e });
    }
    cache = tryOpen(file, stamp, wanted);
    if (!cache) throw new SD3Error(`int8 cache ${file} could not be read back after writing`);
  }
  return new CachedLinears(new SafetensorsStore([cache], withPrefix(''), file), new Set(refs.map((r) => r.name)));
}

/** The cache when it was made from these source files and holds every wanted tensor (else it is rebuilt). */
function tryOpen(file: string, stamp: string, wanted: readonly string[]): SafetensorsFile | undefined {
  if (!fs.existsSync(file)) return undefined;
  try {
    const f = SafetensorsFile.open(file);
    if (f.metadata.sd3ts_int8_source === stamp && wanted.every((n) => f.has(n))) return f;
    f.close();
  } catch {
    // a corrupt cache is rebuilt
  }
  return undefined;
}
