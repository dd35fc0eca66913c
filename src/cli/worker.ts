/** `sd3 worker`: loads one model and runs the cluster's jobs for it from Redis (src/worker) until stopped. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { redisOptions } from '../cluster/protocol.js';
import { type WorkerOptions, startWorker } from '../worker/index.js';
import { MODEL_FLAGS, UsageError, intArg, runtimeArgs } from './args.js';
import { loadServedModel } from './serve.js';

const HELP = `Usage: sd3 worker -m MODEL --redis redis://HOST:PORT [options]

Runs the jobs that "sd3 serve --redis URL" front ends queue for MODEL: loads the model once, takes one job at a
time (or --concurrency N) from that model's BullMQ queue, reports each step and preview back, and stores the
images in Redis. Start as many as you like, on as many machines; each only takes jobs for its own model.
SIGTERM (or Ctrl-C) drains: the running job finishes, no new one is taken, then it exits. A worker that is
killed mid-job loses nothing: after --lock-ms another worker takes the job over.

  -m, --model MODEL            preset, .safetensors file, folder or hub id (default stable_diffusion_3_medium);
                               the front end must be started with the same -m
      --redis URL              the Redis the front end uses (required)
      --concurrency N          jobs at once (default 1: one generation already uses every core)
      --lock-ms N              a job's lock lasts this long unrenewed (default 30000): a dead worker's job is
                               taken over after about this long
      --stalled-interval-ms N  how often to look for jobs of dead workers (default 30000)
      --max-attempts N         runs of one job at most, counting takeovers after a worker died (default 2);
                               a job that kills every worker it runs on then fails with a clear error
      --result-ttl SECONDS     images are kept in Redis this long (default 3600)
      --results-dir DIR        write the images to DIR (a disk the front ends share, given the same
                               --results-dir) instead of Redis; each job's files appear at once (rename)
      --job-timeout SECONDS    a running job is stopped after this long (default 3600)
      --preview-vae N          also VAE-decode a preview every N steps
      --lora-dir DIR           resolve the <lora:NAME:SCALE> tags of jobs in DIR (give it the front end's
                               folder, or a copy; without it a job naming a LoRA fails with a 400)
      --width N, --height N    the size the model is first built for (requests bring their own)
      --threads N              CPU threads (default: all cores)
      --device cpu|webgpu|auto where to run (default cpu, or $SD3_DEVICE)
      --int8                   int8 Linear weights (CPU)
      --vae-int8               int8 VAE decoder convolutions (CPU; faster decodes, not exact)
      --fp16                   float16 MMDiT and VAE on the GPU (implies --device webgpu; needs WebGPU shader-f16)
  -h, --help`;

/** The flags serve's local worker shares with sd3 worker. */
export const WORKER_FLAGS = {
  concurrency: { type: 'string' },
  'lock-ms': { type: 'string' },
  'stalled-interval-ms': { type: 'string' },
  'max-attempts': { type: 'string' },
  'result-ttl': { type: 'string' },
  'results-dir': { type: 'string' },
  'lora-dir': { type: 'string' },
} as const;

type WorkerFlags = { [K in keyof typeof WORKER_FLAGS]?: string } & { 'preview-vae'?: string; 'job-timeout'?: string };

/** --redis must be a redis:// URL (a usage error otherwise). */
export function checkRedisArg(url: string): void {
  try {
    redisOptions(url);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** --results-dir: an existing folder (made if missing), as an absolute path. */
export function resultsDirArg(dir: string): string {
  const abs = path.resolve(dir);
  try {
    fs.mkdirSync(abs, { recursive: true });
    fs.accessSync(abs, fs.constants.W_OK | fs.constants.R_OK);
  } catch (e) {
    throw new UsageError(`--results-dir ${JSON.stringify(dir)} cannot be used as a folder to read and write: ${(e as Error).message}`);
  }
  return abs;
}

/** --lora-dir: an existing, readable folder, as an absolute path. */
export function loraDirArg(dir: string): string {
  const abs = path.resolve(dir);
  try {
    if (!fs.statSync(abs).isDirectory()) throw new Error('not a folder');
    fs.accessSync(abs, fs.constants.R_OK);
  } catch (e) {
    throw new UsageError(`--lora-dir ${JSON.stringify(dir)} must be a readable folder: ${(e as Error).message}`);
  }
  return abs;
}

/** The worker's options from its flags (checked before the model loads). */
export function workerOptions(v: WorkerFlags, url: string, device: string): Omit<WorkerOptions, 'model'> {
  const n = (name: keyof WorkerFlags, min: number) => intArg(name, v[name], min);
  const o = {
    concurrency: n('concurrency', 1), lockMs: n('lock-ms', 100), stalledIntervalMs: n('stalled-interval-ms', 100),
    maxAttempts: n('max-attempts', 1), resultTtl: n('result-ttl', 1), jobTimeout: n('job-timeout', 1), previewDecodeEvery: n('preview-vae', 1),
  };
  return {
    url, device,
    ...Object.fromEntries(Object.entries(o).filter(([, x]) => x !== undefined)),
    ...(v['results-dir'] !== undefined ? { resultsDir: resultsDirArg(v['results-dir']) } : {}),
    ...(v['lora-dir'] !== undefined ? { loraDir: loraDirArg(v['lora-dir']) } : {}),
    log: (line) => process.stderr.write(`sd3 worker: ${line}\n`),
  };
}

export async function runWorker(argv: string[], signal: AbortSignal): Promise<number> {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      ...MODEL_FLAGS,
      ...WORKER_FLAGS,
      redis: { type: 'string' },
      'job-timeout': { type: 'string' },
      'preview-vae': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) {
    console.log(HELP);
    return 0;
  }
  if (!v.redis) throw new UsageError('--redis URL is required (the Redis the front end queues jobs in, e.g. redis://127.0.0.1:6379)');
  checkRedisArg(v.redis);
  const model = v.model ?? 'stable_diffusion_3_medium';
  const size = model === 'tiny-random' ? 256 : 1024;
  const imageShape = { width: intArg('width', v.width, 16, size)!, height: intArg('height', v.height, 16, size)! };
  const runtime = runtimeArgs(v);
  const options = workerOptions(v, v.redis, runtime.device ?? 'cpu');
  const loaded = await loadServedModel(model, imageShape, runtime, signal);
  const stop = new Promise<void>((resolve) => {
    signal.addEventListener('abort', () => resolve(), { once: true });
    process.once('SIGTERM', () => resolve());
  });
  try {
    const worker = await startWorker({ ...options, model: loaded });
    await worker.ready;
    console.log(`sd3 worker ${worker.id} ready: ${model} jobs from ${v.redis}`);
    await stop;
    process.stderr.write('sd3 worker: draining (finishing the running job, taking no new one)\n');
    await worker.close();
    console.log(`sd3 worker ${worker.id} stopped`);
  } finally {
    await loaded.backbone.dispose();
  }
  return 0;
}
