/**
 * Full-size benchmark through SD3Backbone (the product's path): load, text encoding, denoising steps (CFG
 * batch 2, guidance 7) and VAE decode, with peak RSS.
 *
 *   npm run bench -- --checkpoint <path> [--size 512] [--steps 2] [--mode fp32|int8|resident] [--threads N] [--json]
 *   npm run bench -- --checkpoint <path> --size 256,512,1024,768x1344 --mode fp32,int8   (each run in its own process)
 *   npm run bench -- --checkpoint <path> --size 1024 --vae-tile 64,16   (also: tiled decode, its time and max difference)
 *   npm run bench -- --checkpoint <path> --mode int8 --vae-int8   (int8 VAE decoder; also its difference from the exact decode)
 *   npm run bench -- --checkpoint <path> --device webgpu   (the GPU; also reports warm step and decode times)
 *   npm run bench -- --checkpoint <path> --device webgpu --mode fp32,fp16   (float16 MMDiT and VAE on the GPU)
 *   npm run bench -- --checkpoint <path> --profile   (ORT's profiler: a table of kernel time by operator type per model)
 *
 * Make a random checkpoint first: npm run make-random-checkpoint -- /path/sd3_random.safetensors
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type Tensor, tensor } from '../src/core/tensor.js';
import { openCheckpoint } from '../src/loaders/checkpoint.js';
import { SD3Backbone, mmditInt8LinearNames } from '../src/pipelines/backbone.js';
import { type PromptEmbedding } from '../src/pipelines/denoise.js';
import { endProfilingAll, profileSessionsInto, resolveDevice } from '../src/runtime/ort.js';
import { sigmaSchedule } from '../src/sampler/flow-match.js';
import { gaussian } from '../src/sampler/noise.js';
import { BENCH_MODES, RUN_USAGE, childRunArgs, orExit, parseRunArgs, withArgs } from './args.js';
import { profileTable, summarizeProfileFile } from './profile.js';

const a = withArgs(parseRunArgs, RUN_USAGE);

function printTable(rows: Record<string, unknown>[]): void {
  const f = (x: unknown, d = 2) => (typeof x === 'number' ? x.toFixed(d) : String(x ?? '-'));
  console.log('| device | mode | size | load s | encode s | s/step (CFG, batch 2) | decode s | peak RSS GB |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.device ?? 'cpu'} | ${r.mode} | ${r.size} | ${f(r.loadSeconds, 1)} | ${f(r.encodeSeconds)} | ${f(r.secondsPerStep)} | ${f(r.decodeSeconds)} | ${f(typeof r.peakRssBytes === 'number' ? r.peakRssBytes / 2 ** 30 : undefined)} |`);
  }
}

if (a.sizes.length > 1 || a.modes.length > 1) {
  // One process per configuration, so each peak RSS is its own.
  const rows: Record<string, unknown>[] = [];
  for (const mode of a.modes) for (const size of a.sizes) {
    const args = ['--import', 'tsx', new URL(import.meta.url).pathname, ...childRunArgs(a, mode, size)];
    const r = spawnSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    const lines = r.stdout.trim().split('\n');
    // The child's profile tables (when profiling) come before its JSON line.
    if (a.profile) console.log(lines.slice(0, -1).filter((l) => !l.startsWith('{')).join('\n'));
    try { rows.push(JSON.parse(lines.pop() ?? '')); } catch { rows.push({ mode, size: size.text, error: `exit ${r.status}` }); }
  }
  printTable(rows);
  if (a.json) console.log(JSON.stringify(rows));
  process.exit(0);
}

const { width, height } = a.sizes[0]!;
const size = width === height ? `${width}²` : `${width}x${height}`;
const mode = a.modes[0]!;
const dtype = BENCH_MODES[mode];
const device = await resolveDevice(a.device);
const secs = (t0: number) => (performance.now() - t0) / 1000;
const rss = () => process.resourceUsage().maxRSS * 1024;
const profileDir = a.profile ? (a.profileDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'sd3-profile-'))) : undefined;
if (profileDir) profileSessionsInto(profileDir);

const { weights, preprocessor } = orExit(() => openCheckpoint(a.checkpoint));
const options = {
  dtype, device, ...(a.threads !== undefined ? { threads: a.threads } : {}),
  ...(a.int8Clip ? { clipDtype: 'int8' as const } : {}),
  ...(mode === 'resident' ? { mmditHalfWeights: true } : {}),
  ...(a.vaeInt8 ? { vaeDtype: 'int8' as const } : {}),
} as const;
const load: Record<string, number> = {};
let t0 = performance.now();
if (dtype === 'int8') {
  // Builds the int8 cache next to the checkpoint on the first int8 run (the backbone then only opens it).
  weights.quantize!('mmdit', mmditInt8LinearNames(weights.mmdit));
  load.int8Cache = secs(t0);
}
const backbone = new SD3Backbone(weights, options);
t0 = performance.now();
await backbone.loadAll();
load.models = secs(t0);
const rssLoaded = rss();

// Text encoding: positive and negative prompt as one batch of 2.
t0 = performance.now();
const ids = preprocessor.generatePreprocess(['a photograph of an astronaut riding a horse on the moon, detailed, 8k', '']);
const both = await backbone.encodeText(ids);
const encodeSeconds = secs(t0);
const row = (t: Tensor<'float32'>, i: number): Tensor<'float32'> => {
  const per = t.data.length / t.shape[0]!;
  return tensor('float32', [1, ...t.shape.slice(1)], t.data.slice(i * per, (i + 1) * per));
};
const embedding = (i: number): PromptEmbedding => ({ context: row(both.context, i), y: row(both.y, i) });

// Denoising steps: one latent, guidance 7, so every step runs the MMDiT at batch 2.
const h = height / 8;
const w = width / 8;
const shape = [1, 16, h, w] as const;
const stepTimes: number[] = [];
let last = 0;
const latent = await backbone.denoise({
  shape, noise: gaussian(16 * h * w, 1), sigmas: sigmaSchedule(a.steps, backbone.shift), start: 0,
  cond: { positive: embedding(0), negative: embedding(1) }, guidanceScale: 7,
  onStep: ({ elapsed }) => { stepTimes.push(elapsed - last); last = elapsed; },
});
let finite = latent.every(Number.isFinite);
const rssAfterSteps = rss();

// VAE decode of the denoised latent (the decoder's session is built on first use; its build is timed apart).
let decodeSeconds: number | undefined;
let decodeWarmSeconds: number | undefined;
let tiled: { vaeTile: string; tiledDecodeSeconds: number; tiledMaxDiff: number; tiledPeakAbs: number } | undefined;
let vaeInt8: { exactDecodeSeconds: number; relativeRms: number; meanCodeDiff: number; maxCodeDiff: number } | undefined;
if (!a.noDecode) {
  const z = tensor('float32', shape, latent);
  t0 = performance.now();
  await backbone.decode(tensor('float32', [1, 16, 8, 8], new Float32Array(16 * 64)));
  load.vaeDecoder = secs(t0);
  t0 = performance.now();
  const img = await backbone.decode(z);
  decodeSeconds = secs(t0);
  if (device !== 'cpu') {
    // A GPU compiles its kernels for new shapes on the first run: time a second decode too.
    t0 = performance.now();
    await backbone.decode(z);
    decodeWarmSeconds = secs(t0);
  }
  finite &&= img.data.every(Number.isFinite);
  if (a.vaeTile) {
    // A second backbone over the same weights, used only to decode with tiles.
    const tiler = new SD3Backbone(weights, { ...options, vaeTile: a.vaeTile });
    await tiler.decode(tensor('float32', [1, 16, 8, 8], new Float32Array(16 * 64))); // builds its decoder session
    t0 = performance.now();
    const tiledImg = await tiler.decode(z);
    const tiledDecodeSeconds = secs(t0);
    let max = 0;
    let peakAbs = 0;
    for (let i = 0; i < img.data.length; i++) {
      max = Math.max(max, Math.abs(tiledImg.data[i]! - img.data[i]!));
      peakAbs = Math.max(peakAbs, Math.abs(img.data[i]!));
    }
    tiled = { vaeTile: `${a.vaeTile.size},${a.vaeTile.overlap}`, tiledDecodeSeconds, tiledMaxDiff: max, tiledPeakAbs: peakAbs };
    await tiler.dispose();
  }
  if (a.vaeInt8) {
    // The exact (float32) decoder on the same latent: its time, and how far the int8 image is from it.
    const exact = new SD3Backbone(weights, { ...options, vaeDtype: 'float32' });
    await exact.decode(tensor('float32', [1, 16, 8, 8], new Float32Array(16 * 64)));
    t0 = performance.now();
    const ref = await exact.decode(z);
    const exactDecodeSeconds = secs(t0);
    await exact.dispose();
    const code = (v: number) => Math.round((Math.min(1, Math.max(-1, v)) + 1) * 127.5);
    let e = 0;
    let n = 0;
    let codes = 0;
    let maxCode = 0;
    for (let i = 0; i < ref.data.length; i++) {
      const [x, r] = [img.data[i]!, ref.data[i]!];
      e += (x - r) ** 2;
      n += r ** 2;
      const d = Math.abs(code(x) - code(r));
      codes += d;
      maxCode = Math.max(maxCode, d);
    }
    vaeInt8 = { exactDecodeSeconds, relativeRms: Math.sqrt(e / n), meanCodeDiff: codes / ref.data.length, maxCodeDiff: maxCode };
  }
}

const result = {
  device,
  mode,
  size,
  steps: a.steps,
  threads: a.threads ?? os.availableParallelism(),
  cpu: os.cpus()[0]?.model,
  // The machine may be shared: its load (1, 5, 15 minutes) when the run ended, to read the timings by.
  loadAverage: os.loadavg(),
  loadSeconds: Object.values(load).reduce((x, y) => x + y, 0),
  load,
  encodeSeconds,
  secondsPerStep: stepTimes.reduce((x, y) => x + y, 0) / stepTimes.length,
  stepSeconds: stepTimes,
  ...(stepTimes.length > 1 ? { warmSecondsPerStep: stepTimes.slice(1).reduce((x, y) => x + y, 0) / (stepTimes.length - 1) } : {}),
  decodeSeconds,
  ...(decodeWarmSeconds !== undefined ? { decodeWarmSeconds } : {}),
  ...(tiled ?? {}),
  ...(vaeInt8 ? { vaeInt8 } : {}),
  peakRssBytes: rss(),
  rssAfterLoadBytes: rssLoaded,
  rssAfterStepsBytes: rssAfterSteps,
  finite,
  ...(profileDir ? { profileDir } : {}),
};
await backbone.dispose();
if (profileDir) {
  // One table per session, in creation order (the tiled decoder's session is its own).
  for (const p of endProfilingAll()) {
    // Each decoder session's first run is an 8x8 warm-up.
    const warmup = p.label.startsWith('VAE decoder');
    const s = summarizeProfileFile(p.path, `${p.label} (${mode}, ${size})`, warmup ? 1 : 0);
    if (s.runs > 0) console.log(`\n${profileTable(s)}\n(profile: ${p.path})\n`);
  }
}
if (!a.json) {
  printTable([result]);
  if (vaeInt8) {
    console.log(`int8 VAE decode ${decodeSeconds?.toFixed(2)} s against exact ${vaeInt8.exactDecodeSeconds.toFixed(2)} s; difference: relative RMS ${vaeInt8.relativeRms.toExponential(2)}, `
      + `8-bit codes mean ${vaeInt8.meanCodeDiff.toFixed(2)}, max ${vaeInt8.maxCodeDiff}`);
  }
  console.log(`load by part (s): ${Object.entries(load).map(([k, s]) => `${k} ${s.toFixed(1)}`).join(', ')}; steps: ${stepTimes.map((s) => s.toFixed(2)).join(', ')}; finite: ${finite}`);
}
console.log(JSON.stringify(result));
