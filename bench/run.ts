/**
 * Full-size benchmark: load, text encoding, denoising steps (CFG batch 2) and VAE decode, with peak RSS.
 *
 *   npm run bench -- --checkpoint <path> [--size 512] [--steps 2] [--mode fp32|int8|resident] [--threads N] [--json] [--profile]
 *   npm run bench -- --checkpoint <path> --size 256,512,1024,768x1344 --mode fp32,int8   (each run in its own process)
 *   npm run bench -- --checkpoint <path> --size 1024 --vae-tile 64,16   (also: tiled decode, its time and max difference)
 *   npm run bench -- --checkpoint <path> --device webgpu   (the GPU; also reports warm step and decode times)
 *
 * Make a random checkpoint first: npm run make-random-checkpoint -- /path/sd3_random.safetensors
 */
import { spawnSync } from 'node:child_process';
import * as os from 'node:os';
import { parseArgs } from 'node:util';
import { tensor } from '../src/core/tensor.js';
import { openCheckpoint } from '../src/loaders/checkpoint.js';
import { CLIPTextEncoder } from '../src/models/clip.js';
import { sd3Conditioning } from '../src/models/conditioning.js';
import { MMDiT } from '../src/models/mmdit.js';
import { VAE, fromModelSpace } from '../src/models/vae.js';
import { clipLinearNames, mmditInt8LinearNames } from '../src/pipelines/backbone.js';
import { parseDevice } from '../src/runtime/ort.js';
import { gaussian } from '../src/sampler/noise.js';

const { values: v } = parseArgs({
  options: {
    checkpoint: { type: 'string' },
    size: { type: 'string', default: '512' },
    steps: { type: 'string', default: '2' },
    mode: { type: 'string', default: 'fp32' },
    threads: { type: 'string' },
    device: { type: 'string', default: 'cpu' },
    json: { type: 'boolean' },
    'no-decode': { type: 'boolean' },
    'vae-tile': { type: 'string' },
    'int8-clip': { type: 'boolean' },
  },
});

if (!v.checkpoint) {
  console.error('usage: npm run bench -- --checkpoint <path.safetensors> [--size 512] [--steps 2] [--mode fp32|int8] [--json]');
  process.exit(2);
}

const sizes = v.size!.split(',');
const modes = v.mode!.split(',');
if (sizes.length > 1 || modes.length > 1) {
  // One process per configuration, so each peak RSS is its own.
  const rows: Record<string, unknown>[] = [];
  for (const mode of modes) for (const size of sizes) {
    const args = ['--import', 'tsx', new URL(import.meta.url).pathname, '--checkpoint', v.checkpoint, '--size', String(size), '--steps', v.steps!, '--mode', mode, '--json',
      '--device', v.device!, ...(v.threads ? ['--threads', v.threads] : []), ...(v['no-decode'] ? ['--no-decode'] : []), ...(v['vae-tile'] ? ['--vae-tile', v['vae-tile']] : []),
      ...(v['int8-clip'] ? ['--int8-clip'] : [])];
    const r = spawnSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    const last = r.stdout.trim().split('\n').pop() ?? '';
    try { rows.push(JSON.parse(last)); } catch { rows.push({ mode, size, error: `exit ${r.status}` }); }
  }
  printTable(rows);
  if (v.json) console.log(JSON.stringify(rows));
  process.exit(0);
}

function printTable(rows: Record<string, unknown>[]): void {
  const f = (x: unknown, d = 2) => (typeof x === 'number' ? x.toFixed(d) : String(x ?? '-'));
  console.log('| device | mode | size | load s | encode s | s/step (CFG, batch 2) | decode s | peak RSS GB |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.device ?? 'cpu'} | ${r.mode} | ${r.size} | ${f(r.loadSeconds, 1)} | ${f(r.encodeSeconds)} | ${f(r.secondsPerStep)} | ${f(r.decodeSeconds)} | ${f(typeof r.peakRssBytes === 'number' ? r.peakRssBytes / 2 ** 30 : undefined)} |`);
  }
}

const [width, height] = (() => {
  const m = /^(\d+)(?:x(\d+))?$/.exec(sizes[0]!);
  if (!m) { console.error(`--size must be N or WxH, got ${sizes[0]}`); process.exit(2); }
  const w = Number(m[1]);
  return [w, m[2] ? Number(m[2]) : w] as const;
})();
const size = width === height ? `${width}²` : `${width}x${height}`;
const steps = Number(v.steps);
// 'resident': fp32 math with the file's 16-bit MMDiT weights kept resident and widened per layer.
const mode = modes[0] as 'fp32' | 'int8' | 'resident';
const device = parseDevice(v.device!, '--device');
const threads = { ...(v.threads ? { threads: Number(v.threads) } : {}), device };
const secs = (t0: number) => (performance.now() - t0) / 1000;
const rss = () => process.resourceUsage().maxRSS * 1024;

const { weights, preprocessor } = openCheckpoint(v.checkpoint);
const load: Record<string, number> = {};
// --int8-clip quantizes the CLIP encoders' Linear layers too (the pipeline's clipDtype: 'int8').
const clipQuant = (m: 'clipL' | 'clipG') => {
  if (!v['int8-clip']) return {};
  return { quant: weights.quantize!(m, clipLinearNames(weights[m], weights[`${m}Config`])) };
};
let t0 = performance.now();
const clipL = await CLIPTextEncoder.load(weights.clipL, weights.clipLConfig ?? {}, { ...threads, label: 'CLIP-L', ...clipQuant('clipL') });
load.clipL = secs(t0);
t0 = performance.now();
const clipG = await CLIPTextEncoder.load(weights.clipG, weights.clipGConfig ?? {}, { ...threads, label: 'CLIP-G', ...clipQuant('clipG') });
load.clipG = secs(t0);
t0 = performance.now();
let quant;
if (mode === 'int8') {
  quant = weights.quantize!('mmdit', mmditInt8LinearNames(weights.mmdit));
  load.int8Cache = secs(t0);
  t0 = performance.now();
}
const mmdit = await MMDiT.load(weights.mmdit, { ...threads, spin: true, ...(quant ? { quant } : {}), ...(mode === 'resident' ? { halfWeights: true } : {}) });
load.mmdit = secs(t0);
const vae = await VAE.load(weights.vae, threads);
const rssLoaded = rss();

// Text encoding: positive and negative prompt as one batch of 2.
t0 = performance.now();
const ids = preprocessor.generatePreprocess(['a photograph of an astronaut riding a horse on the moon, detailed, 8k', '']);
const cond = sd3Conditioning({ clipL: await clipL.encode(ids.clipL), clipG: await clipG.encode(ids.clipG) }, { contextWidth: mmdit.config.contextInFeatures });
const encodeSeconds = secs(t0);

// Denoising steps at batch 2 (CFG).
const h = height / 8;
const w = width / 8;
const x = tensor('float32', [2, 16, h, w], gaussian(2 * 16 * h * w, 1));
const stepTimes: number[] = [];
let finite = true;
for (let i = 0; i < steps; i++) {
  const sigma = 1 - i / Math.max(steps, 1);
  t0 = performance.now();
  const out = await mmdit.forward(x, tensor('float32', [2], new Float32Array([sigma * 1000, sigma * 1000])), cond.y, cond.context);
  stepTimes.push(secs(t0));
  for (const a of out.data) if (!Number.isFinite(a)) { finite = false; break; }
}
const rssAfterSteps = rss();

// VAE decode of one image (the session is built on first use; its build time is reported separately).
let decodeSeconds: number | undefined;
let decodeWarmSeconds: number | undefined;
let tiledDecodeSeconds: number | undefined;
let tiledMaxDiff: number | undefined;
let tiledPeakAbs: number | undefined;
if (!v['no-decode']) {
  const z = fromModelSpace(tensor('float32', [1, 16, h, w], gaussian(16 * h * w, 2)));
  t0 = performance.now();
  await vae.decode(tensor('float32', [1, 16, 8, 8], new Float32Array(16 * 64)));
  load.vaeDecoder = secs(t0);
  t0 = performance.now();
  const img = await vae.decode(z);
  decodeSeconds = secs(t0);
  if (device !== 'cpu') {
    // A GPU compiles its kernels for new shapes on the first run: time a second decode too.
    t0 = performance.now();
    await vae.decode(z);
    decodeWarmSeconds = secs(t0);
  }
  for (const a of img.data) if (!Number.isFinite(a)) { finite = false; break; }
  if (v['vae-tile']) {
    const [tile, overlap] = v['vae-tile'].split(',').map(Number) as [number, number];
    t0 = performance.now();
    const tiled = await vae.decode(z, { tile: { size: tile, overlap } });
    tiledDecodeSeconds = secs(t0);
    let max = 0;
    let peakAbs = 0;
    for (let i = 0; i < img.data.length; i++) {
      max = Math.max(max, Math.abs(tiled.data[i]! - img.data[i]!));
      peakAbs = Math.max(peakAbs, Math.abs(img.data[i]!));
    }
    tiledMaxDiff = max;
    tiledPeakAbs = peakAbs;
  }
}

const result = {
  device,
  mode,
  size,
  steps,
  threads: v.threads ? Number(v.threads) : os.availableParallelism(),
  cpu: os.cpus()[0]?.model,
  loadSeconds: Object.values(load).reduce((a, b) => a + b, 0),
  load,
  encodeSeconds,
  secondsPerStep: stepTimes.reduce((a, b) => a + b, 0) / stepTimes.length,
  stepSeconds: stepTimes,
  ...(stepTimes.length > 1 ? { warmSecondsPerStep: stepTimes.slice(1).reduce((a, b) => a + b, 0) / (stepTimes.length - 1) } : {}),
  decodeSeconds,
  ...(decodeWarmSeconds !== undefined ? { decodeWarmSeconds } : {}),
  ...(tiledDecodeSeconds !== undefined ? { vaeTile: v['vae-tile'], tiledDecodeSeconds, tiledMaxDiff, tiledPeakAbs } : {}),
  peakRssBytes: rss(),
  rssAfterLoadBytes: rssLoaded,
  rssAfterStepsBytes: rssAfterSteps,
  finite,
};
if (!v.json) {
  printTable([result]);
  console.log(`load by component (s): ${Object.entries(load).map(([k, s]) => `${k} ${s.toFixed(1)}`).join(', ')}; steps: ${stepTimes.map((s) => s.toFixed(2)).join(', ')}; finite: ${finite}`);
}
console.log(JSON.stringify(result));
await Promise.all([clipL.dispose(), clipG.dispose(), mmdit.dispose(), vae.dispose()]);
weights.close?.();
