/**
 * int8 fast mode: Linear weights quantized once per output channel to signed int8 and cached as a
 * safetensors file (int8 [in, out] weights, float32 scales, zero points) next to the checkpoint (or, for
 * files in the Hugging Face cache, under $HF_HOME/sd3-ts/int8: see loaders/checkpoint.ts), which the graphs
 * reference as external data like any other weight. Activations are quantized on the fly by ORT's
 * DynamicQuantizeMatMul (which uses AMX/VNNI where the CPU has them). Attention, norms and the VAE stay float32.
 *
 * The cache records what it was made from (file names, sizes, modification times, scheme version) and is
 * rebuilt when any of that changes or when it fails validation on open (every wanted tensor present with
 * its dtype and shape, finite scales). It is written through a temporary file renamed into place, so a crash
 * leaves the old cache or none; a temporary file left by a killed process is removed by the next build.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SD3Error } from '../core/errors.js';
import { SafetensorsFile, type TensorEntry, writeSafetensorsEntries, writeSafetensorsEntriesAsync } from '../core/safetensors.js';
import { type WeightRef, type WeightStore, readWeightFloat32, withPrefix, SafetensorsStore } from '../core/weights.js';
import type { Int8ConvWeight } from '../nn/conv-int8.js';
import type { QuantizedLinears } from '../nn/layers.js';

const SCHEME = 'sd3-ts int8 per-output-channel symmetric v1';
/** Full signed range: 7-bit weights (63) were measured here to give more error (2.0% vs 1.6% relative RMS), not less. */
const Q_MAX = 127;

/**
 * Quantizes a [out, in] float weight: int8 transposed to [in, out], scale per output channel. A NaN or an
 * infinity in the weight is refused with the row it is in (it would make the channel's scale NaN).
 */
export function quantizePerChannel(w: Float32Array, out: number, inp: number, name = 'weight'): { q: Int8Array; scale: Float32Array } {
  const q = new Int8Array(out * inp);
  const scale = new Float32Array(out);
  const inv = new Float32Array(out);
  for (let o = 0; o < out; o++) {
    let max = 0;
    const row = o * inp;
    for (let i = 0; i < inp; i++) max = Math.max(max, Math.abs(w[row + i]!));
    if (!Number.isFinite(max)) throw new SD3Error(`${name} holds ${Number.isNaN(max) ? 'NaN' : 'infinite'} values (output channel ${o}): the checkpoint is damaged`);
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

/**
 * Quantizes a float [cout, cin, 3, 3] kernel into the im2col layout of nn/conv-int8.ts with the int8 Linears' scheme
 * (quantizePerChannel: symmetric, one scale per output channel; a NaN or an infinity is refused): the kernel is
 * reordered to [cout, 9, cin] so that its transposed rows come out tap-major.
 */
export function quantizeConv3x3(w: Float32Array, cout: number, cin: number, name = 'weight'): Int8ConvWeight {
  if (w.length !== cout * cin * 9) throw new SD3Error(`${name}: expected ${cout} x ${cin} x 3 x 3 values, got ${w.length}`);
  const tapMajor = new Float32Array(w.length);
  for (let o = 0; o < cout; o++) {
    for (let c = 0; c < cin; c++) {
      for (let t = 0; t < 9; t++) tapMajor[(o * 9 + t) * cin + c] = w[(o * cin + c) * 9 + t]!;
    }
  }
  const { q, scale } = quantizePerChannel(tapMajor, cout, 9 * cin, name);
  return { q, scale, cin, cout };
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
  /** openInt8CacheAsync: checked between tensors; an abort removes the partial file (AbortError). */
  readonly signal?: AbortSignal;
}

interface CachePlan {
  readonly file: string;
  readonly stamp: string;
  readonly refs: readonly WeightRef[];
  readonly entries: TensorEntry[];
}

/** What the cache for these weights is called, what it must hold, and how each entry is made. */
function plan(store: WeightStore, linearNames: readonly string[], component: string, opts: Int8CacheOptions): CachePlan | undefined {
  const refs = linearNames.map((n) => store.get(n)).filter((r) => r.shape.length === 2);
  if (refs.length === 0) return undefined;
  const first = refs.find((r) => r.chunks?.length)?.chunks?.[0]?.file;
  if (!first) throw new SD3Error(`int8 mode needs weights on disk for ${component}`);
  const file = opts.file ?? `${first.replace(/\.safetensors$/, '')}.${component}.int8.safetensors`;
  let done = 0;
  const entries = refs.flatMap((r): TensorEntry[] => {
    const [out, inp] = r.shape as [number, number];
    let quantized: { q: Int8Array; scale: Float32Array } | undefined;
    const get = () => (quantized ??= quantizePerChannel(readWeightFloat32(r), out, inp, `${store.label}: "${r.name}"`));
    return [
      { name: `${r.name}.q`, dtype: 'int8', shape: [inp, out], fill: (b) => b.set(new Uint8Array(get().q.buffer)) },
      { name: `${r.name}.scale`, dtype: 'float32', shape: [out], fill: (b) => { b.set(new Uint8Array(get().scale.buffer)); quantized = undefined; opts.onProgress?.(++done, refs.length); } },
      { name: `${r.name}.zp`, dtype: 'int8', shape: [out], fill: () => { /* zeros: symmetric */ } },
    ];
  });
  return { file, stamp: sourceStamp(refs), refs, entries };
}

function opened(p: CachePlan): QuantizedLinears {
  const cache = tryOpen(p);
  if (!cache) throw new SD3Error(`int8 cache ${p.file} could not be read back after writing`);
  return new CachedLinears(new SafetensorsStore([cache], withPrefix(''), p.file), new Set(p.refs.map((r) => r.name)));
}

function writeFailed(p: CachePlan, e: unknown): SD3Error {
  if (e instanceof SD3Error) return e;
  return new SD3Error(`could not write the int8 cache ${p.file} (its folder must be writable): ${(e as Error).message}`, { cause: e });
}

/**
 * Opens (building if missing, stale or invalid) the int8 cache for the given Linear weights of `store`.
 * Blocks while it builds (minutes for a full model): the pipeline uses openInt8CacheAsync; this serves scripts.
 */
export function openInt8Cache(store: WeightStore, linearNames: readonly string[], component: string, opts: Int8CacheOptions = {}): QuantizedLinears {
  const p = plan(store, linearNames, component, opts);
  if (!p) return new LinearRecorder();
  const existing = tryOpen(p);
  if (existing) return new CachedLinears(new SafetensorsStore([existing], withPrefix(''), p.file), new Set(p.refs.map((r) => r.name)));
  try {
    writeSafetensorsEntries(p.file, p.entries, { sd3ts_int8_source: p.stamp });
  } catch (e) {
    throw writeFailed(p, e);
  }
  return opened(p);
}

/** openInt8Cache without blocking the event loop while it builds, stoppable through `opts.signal`. */
export async function openInt8CacheAsync(store: WeightStore, linearNames: readonly string[], component: string, opts: Int8CacheOptions = {}): Promise<QuantizedLinears> {
  const p = plan(store, linearNames, component, opts);
  if (!p) return new LinearRecorder();
  const existing = tryOpen(p);
  if (existing) return new CachedLinears(new SafetensorsStore([existing], withPrefix(''), p.file), new Set(p.refs.map((r) => r.name)));
  try {
    fs.mkdirSync(path.dirname(p.file), { recursive: true });
    await writeSafetensorsEntriesAsync(p.file, p.entries, { sd3ts_int8_source: p.stamp }, opts.signal ? { signal: opts.signal } : {});
  } catch (e) {
    throw writeFailed(p, e);
  }
  return opened(p);
}

/**
 * The cache when it was made from these source files and is whole: every wanted tensor present with the
 * dtype and shape it must have, and every scale finite and positive. Otherwise undefined (it is rebuilt).
 */
function tryOpen(p: CachePlan): SafetensorsFile | undefined {
  if (!fs.existsSync(p.file)) return undefined;
  let f: SafetensorsFile | undefined;
  try {
    f = SafetensorsFile.open(p.file);
    if (f.metadata.sd3ts_int8_source !== p.stamp) throw new Error('stale');
    for (const e of p.entries) {
      const info = f.info(e.name);
      if (info.dtype !== e.dtype || info.shape.join() !== e.shape.join()) throw new Error(`${e.name}: wrong dtype or shape`);
      if (e.name.endsWith('.scale')) {
        const scale = f.read(e.name).data as Float32Array;
        if (!scale.every((v) => Number.isFinite(v) && v > 0)) throw new Error(`${e.name}: bad scales`);
      }
    }
    return f;
  } catch {
    // stale, damaged or incomplete: rebuilt by the caller
    f?.close();
    return undefined;
  }
}
