/**
 * GPU memory and time of one model on device 'webgpu', for each GPU buffer-cache mode (one process per mode so
 * each peak is its own). GPU memory is read from nvidia-smi every 200 ms (NVIDIA only).
 *
 *   npm run bench:gpu-memory -- --checkpoint <path> --part vae|mmdit [--size 1024] [--cache bucket,disabled] [--vae-tile 64,16] [--dtype float16]
 */
import { execFile, spawn, spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { tensor } from '../src/core/tensor.js';
import { openCheckpoint } from '../src/loaders/checkpoint.js';
import { MMDiT } from '../src/models/mmdit.js';
import { VAE } from '../src/models/vae.js';
import type { RuntimeOptions } from '../src/runtime/ort.js';
import { gaussian } from '../src/sampler/noise.js';

const { values: v } = parseArgs({
  options: {
    checkpoint: { type: 'string' },
    part: { type: 'string', default: 'vae' },
    size: { type: 'string', default: '1024' },
    cache: { type: 'string', default: 'bucket,disabled' },
    'vae-tile': { type: 'string' },
    dtype: { type: 'string', default: 'float32' },
  },
});
if (!v.checkpoint || !['vae', 'mmdit'].includes(v.part!) || !['float32', 'float16'].includes(v.dtype!)) {
  console.error('usage: npm run bench:gpu-memory -- --checkpoint <path> --part vae|mmdit [--size 1024] [--cache bucket,disabled,lazyRelease,simple] [--dtype float32|float16]');
  process.exit(2);
}
const caches = v.cache!.split(',') as NonNullable<RuntimeOptions['gpuBufferCache']>[];

if (caches.length > 1) {
  const rows: unknown[] = [];
  for (const cache of caches) {
    const args = ['--import', 'tsx', new URL(import.meta.url).pathname, '--checkpoint', v.checkpoint, '--part', v.part!, '--size', v.size!, '--cache', cache, '--dtype', v.dtype!,
      ...(v['vae-tile'] ? ['--vae-tile', v['vae-tile']] : [])];
    const r = spawnSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    const last = r.stdout.trim().split('\n').pop() ?? '';
    try { rows.push(JSON.parse(last)); } catch { rows.push({ cache, error: `exit ${r.status}` }); }
    console.log(last);
  }
  console.log(JSON.stringify(rows));
  process.exit(0);
}

/** Used GPU memory in MiB (first GPU), or NaN when nvidia-smi is missing. */
function gpuUsedMiB(): Promise<number> {
  return new Promise((resolve) => {
    execFile('nvidia-smi', ['--query-gpu=memory.used', '--format=csv,noheader,nounits'], (err, out) => resolve(err ? Number.NaN : Number(out.trim().split('\n')[0])));
  });
}

// nvidia-smi samples every 100 ms in its own process (polling from this event loop missed the peaks).
let peak = 0;
const sampler = spawn('nvidia-smi', ['--query-gpu=memory.used', '--format=csv,noheader,nounits', '-lms', '100'], { stdio: ['ignore', 'pipe', 'ignore'] });
sampler.on('error', () => { peak = Number.NaN; });
sampler.stdout.on('data', (chunk: Buffer) => {
  for (const line of chunk.toString().split('\n')) if (line.trim()) peak = Math.max(peak, Number(line.trim().split('\n')[0]));
});

const size = Number(v.size);
const cache = caches[0]!;
const dtype = v.dtype as 'float32' | 'float16';
const runtime: RuntimeOptions & { dtype: typeof dtype } = { device: 'webgpu', gpuBufferCache: cache, dtype };
const baseline = await gpuUsedMiB();
const { weights } = openCheckpoint(v.checkpoint);
const secs = (t0: number) => (performance.now() - t0) / 1000;
const runSeconds: number[] = [];
let t0 = performance.now();
let afterLoad = 0;
if (v.part === 'vae') {
  const vae = await VAE.load(weights.vae, runtime);
  const z = tensor('float32', [1, 16, size / 8, size / 8], gaussian(16 * (size / 8) ** 2, 2));
  const tile = v['vae-tile'] ? v['vae-tile'].split(',').map(Number) as [number, number] : undefined;
  afterLoad = await gpuUsedMiB();
  for (let i = 0; i < 2; i++) {
    t0 = performance.now();
    await vae.decode(z, tile ? { tile: { size: tile[0], overlap: tile[1] } } : {});
    runSeconds.push(secs(t0));
  }
  await vae.dispose();
} else {
  const mmdit = await MMDiT.load(weights.mmdit, runtime);
  afterLoad = await gpuUsedMiB();
  const h = size / 8;
  const x = tensor('float32', [2, 16, h, h], gaussian(2 * 16 * h * h, 1));
  const y = tensor('float32', [2, mmdit.config.admInChannels], gaussian(2 * mmdit.config.admInChannels, 3));
  const context = tensor('float32', [2, 154, mmdit.config.contextInFeatures], gaussian(2 * 154 * mmdit.config.contextInFeatures, 4));
  for (let i = 0; i < 2; i++) {
    t0 = performance.now();
    await mmdit.forward(x, tensor('float32', [2], new Float32Array([500, 500])), y, context);
    runSeconds.push(secs(t0));
  }
  await mmdit.dispose();
}
await new Promise((r) => setTimeout(r, 300));
sampler.kill();
weights.close?.();
console.log(JSON.stringify({ part: v.part, dtype, cache, size, vaeTile: v['vae-tile'], runSeconds, gpuBaselineMiB: baseline, gpuAfterLoadMiB: afterLoad, gpuPeakMiB: peak }));
