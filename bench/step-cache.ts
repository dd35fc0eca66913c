/**
 * What step caching saves and changes: the same prompts and seeds generated without the cache and at each
 * threshold, in one run. Prints, per threshold, the share of steps that reused the model's output, the wall
 * time as a ratio of the uncached run's, the per-pixel difference from the uncached images (0-255: largest
 * and mean absolute), and with the demo model its evaluation scores (scripts/demo-model/evaluate.ts).
 *
 *   npm run bench:step-cache -- [--model demo | <checkpoint>] [--count 48] [--thresholds 0.05,0.1,0.2]
 *     [--steps 28] [--guidance G (default: the model's own)] [--sampler euler|dpmpp_2m] [--size 64] [--batch 1] [--threads N] [--int8] [--json]
 *
 * Images are generated --batch at a time (default 1, as one user asks for one image: the cache decides per
 * model call, so a batch shares its decisions). The configurations take turns on each batch, so that a change
 * in the machine's load falls on all of them alike.
 */
import * as os from 'node:os';
import { parseArgs } from 'node:util';
import { SD3Error } from '../src/core/errors.js';
import type { RGBImage } from '../src/image/image.js';
import { generationParameters } from '../src/pipelines/infotext.js';
import { loadPreset } from '../src/presets/index.js';
import { TextToImage } from '../src/presets/tasks.js';
import { checkSampler } from '../src/sampler/steppers.js';
import { analyse, evalCases, score } from '../scripts/demo-model/evaluate.js';

const { values: v } = parseArgs({
  options: {
    model: { type: 'string', default: 'demo' },
    count: { type: 'string', default: '48' },
    thresholds: { type: 'string', default: '0.05,0.1,0.2' },
    steps: { type: 'string', default: '28' },
    guidance: { type: 'string' },
    sampler: { type: 'string', default: 'euler' },
    size: { type: 'string' },
    batch: { type: 'string', default: '1' },
    threads: { type: 'string' },
    int8: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});
const num = (k: string, s: string, ok: (n: number) => boolean, expected: string): number => {
  const n = Number(s);
  if (s.trim() === '' || !ok(n)) throw new SD3Error(`--${k} must be ${expected}, got ${JSON.stringify(s)}`);
  return n;
};
const int1 = (n: number) => Number.isInteger(n) && n >= 1;
const count = num('count', v.count!, int1, 'an integer >= 1');
const steps = num('steps', v.steps!, int1, 'an integer >= 1');
const batch = num('batch', v.batch!, int1, 'an integer >= 1');
const givenGuidance = v.guidance !== undefined ? num('guidance', v.guidance, Number.isFinite, 'a number') : undefined;
const thresholds = v.thresholds!.split(',').map((s) => num('thresholds', s, (n) => n > 0 && n <= 1, 'thresholds in (0, 1], separated by commas'));
const sampler = checkSampler(v.sampler, '--sampler');
const demo = v.model === 'demo';
const size = v.size ? num('size', v.size, (n) => Number.isInteger(n) && n >= 16 && n % 16 === 0, 'a multiple of 16') : demo ? 64 : 256;
const cases = evalCases(count);

const loaded = await loadPreset(v.model!, {
  imageShape: { width: size, height: size },
  ...(v.threads ? { threads: Number(v.threads) } : {}),
  ...(v.int8 ? { dtype: 'int8' as const } : {}),
});
const t2i = new TextToImage(loaded.backbone, loaded.preprocessor, loaded.imageShape);
const guidance = givenGuidance ?? loaded.backbone.sampling.guidanceScale ?? TextToImage.defaults.guidanceScale;

interface Row {
  readonly threshold: number | null;
  seconds: number;
  reusedSteps: number;
  totalSteps: number;
  readonly images: RGBImage[];
}

// Configurations take turns on each batch of prompts, so that the machine's changing load (other jobs share
// its cores) falls on all of them alike; each one's time is the sum of its own generate calls.
const configs: (number | null)[] = [null, ...thresholds];
// One untimed call first: the models load (and ORT warms up) on the first generation.
await t2i.generate(cases[0]!.prompt, { seed: cases[0]!.seed, guidanceScale: guidance, numSteps: steps, sampler });
const rows: Row[] = configs.map((threshold) => ({ threshold, seconds: 0, reusedSteps: 0, totalSteps: 0, images: [] }));
for (let i = 0; i < cases.length; i += batch) {
  const part = cases.slice(i, i + batch);
  for (const row of rows) {
    const t0 = performance.now();
    const images = await t2i.generate(part.map((c) => c.prompt), {
      seeds: part.map((c) => c.seed), guidanceScale: guidance, numSteps: steps, sampler,
      ...(row.threshold !== null ? { stepCache: { threshold: row.threshold } } : {}),
    });
    row.seconds += (performance.now() - t0) / 1000;
    // The images of one call carry the same list of reused steps: it is counted once per call.
    row.reusedSteps += (generationParameters(images[0]!)?.cachedSteps as number[] | undefined)?.length ?? 0;
    row.totalSteps += steps;
    row.images.push(...images);
  }
}

function pixelDiff(a: readonly RGBImage[], b: readonly RGBImage[]): { max: number; mean: number } {
  let max = 0, sum = 0, n = 0;
  a.forEach((im, i) => {
    const d1 = im.data, d2 = b[i]!.data;
    for (let k = 0; k < d1.length; k++) {
      const d = Math.abs(d1[k]! - d2[k]!);
      if (d > max) max = d;
      sum += d;
    }
    n += d1.length;
  });
  return { max, mean: sum / n };
}

const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
const load = os.loadavg()[0]!.toFixed(1);
if (!v.json) console.log(`model ${v.model}, ${count} prompts, ${size}x${size}, ${steps} steps, guidance ${guidance}, ${v.sampler}, batch ${batch}${v.int8 ? ', int8' : ''}; CPU ${cpu} (${os.cpus().length} threads), load ${load}`);
const base = rows[0]!;
const results: Record<string, unknown>[] = [];
for (const row of rows) {
  const diff = pixelDiff(row.images, base.images);
  const scores = demo ? score(cases, row.images.map((im) => analyse(im))) : undefined;
  const r = {
    threshold: row.threshold, reused: row.reusedSteps / row.totalSteps, reusedSteps: row.reusedSteps, totalSteps: row.totalSteps,
    seconds: row.seconds, timeRatio: row.seconds / base.seconds, maxPixelDiff: diff.max, meanPixelDiff: diff.mean,
    ...(scores ? { scores } : {}),
  };
  results.push(r);
  if (!v.json) {
    const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
    const s = scores ? `  background ${pct(scores.background)} colour ${pct(scores.colour)} position ${pct(scores.position)} shape ${pct(scores.shape)} size ${pct(scores.size)}` : '';
    console.log(`${row.threshold === null ? 'uncached ' : `cache ${String(row.threshold).padEnd(4)}`}  reused ${pct(r.reused).padStart(6)} (${r.reusedSteps}/${r.totalSteps})  ${r.seconds.toFixed(1)} s = ${r.timeRatio.toFixed(3)}x  pixels max ${diff.max} mean ${diff.mean.toFixed(2)}${s}`);
  }
}
if (!v.json) console.log(`load at the end ${os.loadavg()[0]!.toFixed(1)}`);
if (v.json) console.log(JSON.stringify({ model: v.model, count, size, steps, guidance, sampler: v.sampler, batch, int8: v.int8, cpu, loadAverage: os.loadavg()[0], results }, null, 2));
await t2i.dispose();
