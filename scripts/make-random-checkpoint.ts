/**
 * Writes a single-file checkpoint with random weights at the real shapes, key names and dtype:
 * SD3 Medium (F16, with CLIPs; --t5 adds T5-XXL) or, with --variant, SD3.5 Medium / Large (BF16, MMDiT + VAE
 * only, as `sd3.5_medium.safetensors` / `sd3.5_large.safetensors`, plus `text_encoders/clip_l.safetensors` and
 * `clip_g.safetensors` (F16) beside it, as the SD3.5 repositories hold them).
 *
 *   npm run make-random-checkpoint -- <path> [--variant sd3-medium|sd3.5-medium|sd3.5-large] [--t5] [--seed N]
 *
 * For benchmarks only; never commit the output (SD3 Medium about 6 GB, 15.5 GB with --t5; SD3.5 Medium 5.1 GB;
 * SD3.5 Large 16.4 GB).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AbortError } from '../src/core/errors.js';
import { writeSafetensorsEntriesAsync } from '../src/core/safetensors.js';
import { f32ToBf16, f32ToF16, numel } from '../src/core/tensor.js';
import { gaussian } from '../src/sampler/noise.js';
import { type LayoutEntry, clipLayout, sd35Layout, sd3MediumLayout } from '../src/presets/layout.js';

const TABLE = 1 << 20;

/** Fills tensors by copying random windows of a fixed table of F16 normal values (fast for billions of values). */
class Filler {
  private readonly tables = new Map<string, Uint16Array>();
  private state: number;
  constructor(seed: number, private readonly toBits: (v: number) => number) { this.state = (seed * 2654435761) >>> 0 || 1; }
  private next(): number {
    let x = this.state;
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    this.state = x >>> 0;
    return this.state;
  }
  private table(std: number, mean: number): Uint16Array {
    const key = `${std}|${mean}`;
    let t = this.tables.get(key);
    if (!t) {
      const g = gaussian(TABLE, this.next());
      t = new Uint16Array(TABLE);
      for (let i = 0; i < TABLE; i++) t[i] = this.toBits(mean + std * g[i]!);
      this.tables.set(key, t);
    }
    return t;
  }
  fill(e: LayoutEntry, out: Uint8Array): void {
    const dst = new Uint16Array(out.buffer, out.byteOffset, out.byteLength / 2);
    const src = this.table(e.init.std, e.init.mean ?? 0);
    const W = 4096;
    for (let i = 0; i < dst.length; i += W) {
      const n = Math.min(W, dst.length - i);
      const start = this.next() % (TABLE - W);
      dst.set(src.subarray(start, start + n), i);
    }
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const file = args.find((a) => !a.startsWith('--'));
  if (!file) {
    console.error('usage: npm run make-random-checkpoint -- <path.safetensors> [--variant sd3-medium|sd3.5-medium|sd3.5-large] [--t5] [--seed N]');
    process.exit(2);
  }
  const t5 = args.includes('--t5');
  const seedArg = args.indexOf('--seed');
  const seed = seedArg >= 0 ? Number(args[seedArg + 1]) : 0;
  const variantArg = args.indexOf('--variant');
  const variant = variantArg >= 0 ? args[variantArg + 1] : 'sd3-medium';
  if (variant !== 'sd3-medium' && variant !== 'sd3.5-medium' && variant !== 'sd3.5-large') {
    console.error(`--variant must be sd3-medium, sd3.5-medium or sd3.5-large, got ${JSON.stringify(variant)}`);
    process.exit(2);
  }
  if (t5 && variant !== 'sd3-medium') {
    console.error('--t5 applies to sd3-medium only (SD3.5 files carry no text encoders)');
    process.exit(2);
  }
  const sd35 = variant !== 'sd3-medium';
  const dtype = sd35 ? 'bfloat16' as const : 'float16' as const;
  const layout = sd35 ? sd35Layout(variant) : sd3MediumLayout({ t5 });
  const filler = new Filler(seed, sd35 ? f32ToBf16 : f32ToF16);
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  await write(file, layout, dtype, filler, variant);
  if (sd35) {
    // As in the SD3.5 repositories: the CLIP encoders as separate F16 files in text_encoders/ beside the single file.
    const dir = path.join(path.dirname(file), 'text_encoders');
    fs.mkdirSync(dir, { recursive: true });
    const clipFiller = new Filler(seed + 1, f32ToF16);
    await write(path.join(dir, 'clip_l.safetensors'), clipLayout('', 768, 12, false), 'float16', clipFiller, 'CLIP-L');
    await write(path.join(dir, 'clip_g.safetensors'), clipLayout('', 1280, 32, true), 'float16', clipFiller, 'CLIP-G');
  }
}

async function write(file: string, layout: readonly LayoutEntry[], dtype: 'float16' | 'bfloat16', filler: Filler, what: string): Promise<void> {
  const total = layout.reduce((s, e) => s + numel(e.shape), 0);
  let done = 0;
  let lastPct = -1;
  const t0 = performance.now();
  // Ctrl-C stops between tensors and removes the partial file (a kill leaves .<name>.<pid>.tmp, which the next
  // write of the same path sweeps).
  const controller = new AbortController();
  process.once('SIGINT', () => { process.stderr.write('\ninterrupted: removing the partial file\n'); controller.abort(); });
  try {
    await writeSafetensorsEntriesAsync(file, layout.map((e) => ({
    name: e.name,
    dtype,
    shape: e.shape,
    fill: (out: Uint8Array) => {
      filler.fill(e, out);
      done += numel(e.shape);
      const pct = Math.floor((100 * done) / total);
      if (pct !== lastPct && pct % 10 === 0) { lastPct = pct; process.stderr.write(`${pct}% `); }
    },
    })), { format: 'pt', note: `random weights at ${what} shapes (sd3-ts benchmark); not a real model` }, { signal: controller.signal });
  } catch (e) {
    if (e instanceof AbortError) process.exit(130);
    throw e;
  }
  const size = fs.statSync(file).size;
  console.error(`\nwrote ${file}: ${layout.length} tensors, ${(total / 1e9).toFixed(2)} B parameters, ${(size / 2 ** 30).toFixed(2)} GiB in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}

await main();
