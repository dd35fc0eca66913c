/** `sd3 serve`: starts the image server (src/server) on one model and runs until Ctrl-C. */
import { parseArgs } from 'node:util';
import { createProgressBar } from '../hub/index.js';
import { defaultImageShape, loadPreset, presetSamplingDefaults } from '../presets/index.js';
import { RedisJobQueue } from '../cluster/redis-queue.js';
import { startServer } from '../server/index.js';
import type { LoadedModel } from '../server/engine.js';
import { startWorker, type WorkerHandle } from '../worker/index.js';
import { MODEL_FLAGS, UsageError, intArg, runtimeArgs } from './args.js';
import { LONG_PROMPTS, type LongPrompts } from '../pipelines/text-windows.js';
import { WORKER_FLAGS, checkRedisArg, loraDirArg, resultsDirArg, workerOptions } from './worker.js';

const HELP = `Usage: sd3 serve [-m MODEL] [options]

Serves the OpenAI Images API (/v1), AUTOMATIC1111's API (/sdapi/v1), a jobs API with live progress (/api) and a
web page, all on one model and one queue. Point clients at it:
  openai SDK      new OpenAI({ baseURL: 'http://127.0.0.1:7860/v1', apiKey: 'unused' })
  Open WebUI      Images > Automatic1111, base URL http://127.0.0.1:7860 (or OpenAI, http://127.0.0.1:7860/v1)
  A1111 scripts   POST http://127.0.0.1:7860/sdapi/v1/txt2img

  -m, --model MODEL            preset, .safetensors file, folder or hub id (default stable_diffusion_3_medium)
      --port N                 port (default 7860; 0 picks a free one)
      --host ADDR              address to listen on (default 127.0.0.1; another address exposes the server:
                               use --api-key then)
      --api-key KEY            require "Authorization: Bearer KEY" on the API (or set $SD3_API_KEY)
      --cors ORIGIN            let pages from ORIGIN (or *) call the API from a browser (default: no CORS)
      --allowed-host NAME      accept this Host name too on a loopback listener (repeatable)
      --width N, --height N    default image size (1024; 256 for tiny-random); requests may ask for others
      --max-queue N            jobs waiting at most (default 8); more get 429 with Retry-After
      --max-steps N            steps per job at most (default 150)
      --max-batch N            images per job at most (default 4)
      --max-size N             width and height at most (default 1536, and the model's position grid)
      --max-prompt-chars N     prompt length at most (default 2000)
      --job-timeout SECONDS    a running job is stopped after this long (default 3600)
      --keep-results SECONDS   finished jobs and their images are kept this long (default 3600), then 410
      --preview-vae N          also VAE-decode a preview every N steps (default off: cheap latent previews)
      --lora-dir DIR           LoRA files (.safetensors) that prompts name with <lora:NAME:SCALE> (every API);
                               names stay inside DIR; listed at /sdapi/v1/loras. Without it tags are refused
      --long-prompts MODE      truncate (default) or chunk: prompts past 75 CLIP tokens in the OpenAI and jobs
                               APIs when a request has no long_prompts field (A1111's API chunks by default)
      --threads N              CPU threads (default: all cores)
      --device cpu|webgpu|auto where to run (default cpu, or $SD3_DEVICE)
      --int8                   int8 Linear weights (CPU)
      --vae-int8               int8 VAE decoder convolutions (CPU; faster decodes, not exact)
      --fp16                   float16 MMDiT and VAE on the GPU (implies --device webgpu; needs WebGPU shader-f16)

Scale-out (jobs in Redis with BullMQ, run by "sd3 worker" processes; see sd3 worker --help):
      --redis URL              queue jobs in Redis (redis://HOST:PORT) for the cluster's workers
      --no-local-worker        with --redis: load no model here, only serve the APIs (a thin front end)
      --results-dir DIR        read the images workers wrote to this shared folder (their --results-dir)
      --lock-ms, --stalled-interval-ms, --max-attempts, --result-ttl   the local worker's, as for sd3 worker
                               (--job-timeout and --preview-vae too: each worker applies its own)
  -h, --help`;

export async function runServe(argv: string[], signal: AbortSignal): Promise<number> {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      ...MODEL_FLAGS,
      port: { type: 'string' },
      host: { type: 'string' },
      'api-key': { type: 'string' },
      cors: { type: 'string' },
      'allowed-host': { type: 'string', multiple: true },
      'max-queue': { type: 'string' },
      'max-steps': { type: 'string' },
      'max-batch': { type: 'string' },
      'max-size': { type: 'string' },
      'max-prompt-chars': { type: 'string' },
      'job-timeout': { type: 'string' },
      'keep-results': { type: 'string' },
      'preview-vae': { type: 'string' },
      'long-prompts': { type: 'string' },
      redis: { type: 'string' },
      'no-local-worker': { type: 'boolean' },
      ...WORKER_FLAGS,
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) {
    console.log(HELP);
    return 0;
  }
  const port = intArg('port', v.port, 0, 7860)!;
  if (port > 65535) throw new UsageError(`--port must be at most 65535, got ${port}`);
  const model = v.model ?? 'stable_diffusion_3_medium';
  const size = defaultImageShape(model);
  const imageShape = { width: intArg('width', v.width, 16, size.width)!, height: intArg('height', v.height, 16, size.height)! };
  const runtime = runtimeArgs(v);
  const apiKey = v['api-key'] ?? process.env.SD3_API_KEY;
  if (apiKey !== undefined && apiKey.length < 8) throw new UsageError('--api-key must be at least 8 characters');
  const opt = (name: string, min: number) => intArg(name, (v as Record<string, string | undefined>)[name], min);
  if (v['no-local-worker'] && !v.redis) throw new UsageError('--no-local-worker needs --redis URL (the workers that run the jobs take them from Redis)');
  if (v.redis) checkRedisArg(v.redis);
  const localModel = !v['no-local-worker'];
  const loraDir = v['lora-dir'] !== undefined ? loraDirArg(v['lora-dir']) : undefined;
  const longPrompts = v['long-prompts'];
  if (longPrompts !== undefined && !(LONG_PROMPTS as readonly string[]).includes(longPrompts)) {
    throw new UsageError(`--long-prompts must be ${LONG_PROMPTS.join(' or ')}, got ${JSON.stringify(longPrompts)}`);
  }
  // The local worker's flags, checked before the (long) model load.
  const localWorker = v.redis && localModel ? workerOptions(v, v.redis, runtime.device ?? 'cpu') : undefined;
  const loading = localModel ? loadServedModel(model, imageShape, runtime, signal) : undefined;
  loading?.catch(() => undefined);
  const numbers = {
    maxQueue: opt('max-queue', 0), maxSteps: opt('max-steps', 1), maxBatch: opt('max-batch', 1), maxSize: opt('max-size', 16),
    maxPromptChars: opt('max-prompt-chars', 1), jobTimeout: opt('job-timeout', 1), keepSeconds: opt('keep-results', 1), previewDecodeEvery: opt('preview-vae', 1),
  };
  const handle = await startServer({
    ...(loading ? { model: loading } : {}),
    ...(v.redis ? { backend: new RedisJobQueue({
      url: v.redis, model,
      ...(v['results-dir'] !== undefined ? { resultsDir: resultsDirArg(v['results-dir']) } : {}),
      ...(numbers.maxQueue !== undefined ? { maxQueue: numbers.maxQueue } : {}),
      ...(numbers.keepSeconds !== undefined ? { keepSeconds: numbers.keepSeconds } : {}),
    }) } : {}),
    imageShape,
    // the model's own defaults (SD3.5's 40 / 4.5, Turbo's 4 / 1) before it has loaded, and on a front end without it
    sampling: localModel ? quietSampling(model) : frontEndSampling(model),
    modelName: model,
    ...(loraDir !== undefined ? { loraDir } : {}),
    ...(longPrompts !== undefined ? { longPrompts: longPrompts as LongPrompts } : {}),
    port,
    ...(v.host ? { host: v.host } : {}),
    ...(apiKey !== undefined ? { apiKey } : {}),
    ...(v.cors ? { cors: v.cors } : {}),
    ...(v['allowed-host'] ? { allowedHosts: v['allowed-host'] } : {}),
    ...Object.fromEntries(Object.entries(numbers).filter(([, n]) => n !== undefined)),
  });
  console.log(`sd3 serving ${model} at ${handle.url} ${v.redis ? `(jobs in Redis at ${v.redis}${localModel ? '; loading the local worker\'s model...' : ', run by sd3 worker processes'})` : '(loading the model...)'}`);
  if (v.host && !/^(127\.|localhost$|::1$)/.test(v.host) && apiKey === undefined) {
    process.stderr.write(`sd3 serve: warning: listening on ${v.host} without --api-key: anyone who can reach this address can queue jobs and read the images\n`);
  }
  const stopped = new Promise<void>((resolve) => {
    signal.addEventListener('abort', () => resolve(), { once: true });
    // A container's stop: the same as Ctrl-C.
    process.once('SIGTERM', () => resolve());
  });
  let worker: WorkerHandle | undefined;
  try {
    const first = await Promise.race([(loading ?? Promise.resolve()).then(() => 'loaded' as const), stopped.then(() => 'stopped' as const)]);
    if (first === 'loaded') {
      if (localWorker && loading) worker = await startWorker({ ...localWorker, model: await loading });
      console.log(`sd3 ready: ${handle.url}  (OpenAI: ${handle.url}/v1, A1111: ${handle.url}/sdapi/v1, jobs: ${handle.url}/api/jobs)`);
      await stopped;
    }
  } finally {
    // Ctrl-C: running and queued jobs are aborted (within one step), then every connection closes.
    await handle.close();
    await worker?.close();
    await loading?.then((m) => m.backbone.dispose(), () => undefined);
  }
  return 0;
}

/** Loads the model for serving: every component resident, so the first request does not wait for a load. */
export async function loadServedModel(model: string, imageShape: { width: number; height: number }, runtime: ReturnType<typeof runtimeArgs>, signal: AbortSignal): Promise<LoadedModel> {
  const loaded = await loadPreset(model, { imageShape, ...runtime, signal, ...(process.stderr.isTTY ? { onProgress: createProgressBar() } : {}) });
  await loaded.backbone.loadAll(signal);
  return { name: model, ...loaded };
}

/** The steps and guidance of a model's sampling defaults, as the server takes them. */
function stepsAndGuidance(d: { numSteps?: number; guidanceScale?: number } | undefined): { numSteps?: number; guidanceScale?: number } {
  return { ...(d?.numSteps !== undefined ? { numSteps: d.numSteps } : {}), ...(d?.guidanceScale !== undefined ? { guidanceScale: d.guidanceScale } : {}) };
}

/** The sampling defaults a front end without the model gives requests: the model's when readable here. */
function frontEndSampling(model: string): { numSteps?: number; guidanceScale?: number } {
  const d = presetSamplingDefaults(model);
  if (d) return stepsAndGuidance(d);
  process.stderr.write(`sd3 serve: note: ${model} is not readable here, so requests that name no steps or guidance get KerasHub's defaults (28 or 50 steps, guidance 7)\n`);
  return {};
}

/** The same for a server that loads the model itself (its load reports a bad file; the model's own win once loaded). */
function quietSampling(model: string): { numSteps?: number; guidanceScale?: number } {
  try {
    return stepsAndGuidance(presetSamplingDefaults(model));
  } catch {
    return {};
  }
}
