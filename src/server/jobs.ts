/**
 * The native API (the web page's): jobs with live progress.
 *
 *   POST /api/jobs                 JSON {prompt, negative_prompt?, image?, mask?, strength?, steps?, cfg_scale?,
 *                                  seed?, width?, height?, batch_size?, sampler? ("euler" | "dpmpp_2m"),
 *                                  slg_scale?, slg_layers?, slg_start?, slg_end?, step_cache?, step_cache_start?,
 *                                  step_cache_end?, prompt_weights? (false),
 *                                  long_prompts? ("truncate" | "chunk"; serve --long-prompts)} -> 202 {id, status, queue_position, events_url}
 *   GET  /api/jobs/:id             the job (404 unknown, 410 expired)
 *   GET  /api/jobs/:id/events      SSE: queued, started, progress (one per step), preview, completed | failed | cancelled
 *   GET  /api/jobs/:id/images/:n.png
 *   POST /api/jobs/:id/cancel      (also DELETE /api/jobs/:id): queued and running jobs
 *   GET  /api/config, GET /api/health
 *   POST /api/generate             synchronous: the same fields -> image/png (the first image)
 *
 * Errors: {error: {code, message, field}}.
 */
import type * as http from 'node:http';
import { type Route, type ServerContext, awaitJob, jobError } from './context.js';
import { TASK_DEFAULTS, modeDefaults } from './engine.js';
import { RequestError, fieldError } from './errors.js';
import { featureFields } from './features.js';
import { EventStream, KiB, MiB, readJSON, sendJSON } from './http.js';
import {
  base64Field, checkMaskSize, decodeUpload, fitSize, luminance, maskImage, numberField, promptFields, seedField, sideField,
} from './params.js';
import type { Job, JobBackend, JobSpec } from './queue.js';

export function nativeError(e: RequestError): { status: number; body: unknown } {
  return { status: e.status, body: { error: { code: e.code, message: e.message, field: e.param } } };
}

/** Our field names (snake_case, as the other families), with the old /api/generate camelCase names accepted. */
export function nativeSpec(body: Record<string, unknown>, ctx: ServerContext): JobSpec {
  const { limits } = ctx;
  const b = { ...body };
  if (b.negative_prompt === undefined && b.negativePrompt !== undefined) b.negative_prompt = b.negativePrompt;
  if (b.cfg_scale === undefined && b.cfgScale !== undefined) b.cfg_scale = b.cfgScale;
  const { prompt, negativePrompt } = promptFields(b, limits);
  let image;
  let mask;
  if (b.image !== undefined && b.image !== null && b.image !== '') image = decodeUpload(base64Field(b.image, 'image'), 'image').image;
  if (b.mask !== undefined && b.mask !== null && b.mask !== '') {
    if (!image) throw fieldError('mask', 'mask needs an image to paint into (send image too)');
    const m = decodeUpload(base64Field(b.mask, 'mask'), 'mask');
    checkMaskSize(m.image, image, 'mask');
    mask = maskImage(m.image.width, m.image.height, (i) => luminance(m.image, i) >= 128);
  }
  const kind = mask ? 'inpaint' : image ? 'image-to-image' : 'text-to-image';
  const defaults = modeDefaults(kind, ctx.sampling);
  const fallback = image ? fitSize(image, limits.maxWidth, limits.maxHeight) : ctx.defaultSize;
  const strength = numberField(b, 'strength', { min: 0, max: 1 });
  if (strength !== undefined && !image) throw fieldError('strength', 'strength applies to image-to-image and inpainting only (send image too)');
  const features = featureFields(b, prompt, ctx, { promptWeights: false, longPrompts: ctx.longPrompts });
  return {
    ...features, negativePrompt,
    width: sideField(b, 'width', limits.maxWidth) ?? fallback.width,
    height: sideField(b, 'height', limits.maxHeight) ?? fallback.height,
    steps: numberField(b, 'steps', { int: true, min: 1, max: limits.maxSteps }) ?? defaults.steps,
    cfgScale: numberField(b, 'cfg_scale', { min: 0, max: 30 }) ?? defaults.cfgScale,
    seed: seedField(b),
    batch: numberField(b, 'batch_size', { int: true, min: 1, max: limits.maxBatch }) ?? 1,
    ...(image ? { image, strength: strength ?? TASK_DEFAULTS[kind].strength } : {}),
    ...(mask ? { mask } : {}),
  };
}

/** A mode's defaults as /api/config shows them. */
function apiDefaults(kind: keyof typeof TASK_DEFAULTS, ctx: ServerContext): { steps: number; cfg_scale: number; strength: number } {
  const d = modeDefaults(kind, ctx.sampling);
  return { steps: d.steps, cfg_scale: d.cfgScale, strength: d.strength };
}

/** The job as the API shows it. */
export function renderJob(job: Job, queue: JobBackend): Record<string, unknown> {
  const eta = job.terminal ? 0 : Math.round(queue.estimate(job) * 100) / 100;
  return {
    id: job.id,
    status: job.status,
    kind: job.kind,
    queue_position: job.status === 'queued' ? queue.position(job) : 0,
    created: job.created,
    ...(job.started ? { started: job.started } : {}),
    ...(job.finished ? { finished: job.finished } : {}),
    progress: { step: job.step, total: job.total, eta },
    width: job.spec.width,
    height: job.spec.height,
    seed: job.spec.seed,
    ...(job.status === 'completed' ? {
      images: job.images.map((img, n) => ({ url: `/api/jobs/${job.id}/images/${n}.png`, seed: img.seed, parameters: img.parameters, infotext: img.infotext })),
    } : {}),
    ...(job.interrupted ? { interrupted: true } : {}),
    ...(job.worker !== undefined ? { worker: job.worker } : {}),
    ...(job.stopRequestedAt !== undefined ? { stop_requested_at_step: job.stopRequestedAt } : {}),
    ...(job.error && job.status !== 'completed' ? { error: { message: job.error.message, code: job.error.code } } : {}),
  };
}

function findJob(queue: JobBackend, id: string): Job {
  const job = queue.get(id);
  if (job === 'expired') throw new RequestError(410, `job ${id} has expired (finished jobs are kept for a limited time)`, 'expired');
  if (!job) throw new RequestError(404, `no job ${id}`, 'not_found');
  return job;
}

function sendPNG(res: http.ServerResponse, png: Buffer): void {
  res.writeHead(200, { 'content-type': 'image/png', 'content-length': png.length, 'cache-control': 'private, max-age=3600' }).end(png);
}

const ID = '([0-9a-f-]{36})';
/** Bodies with up to two base64 images of 4096x4096 fit. */
const IMAGE_BODY = 48 * MiB;

export const nativeRoutes: Route[] = [
  {
    method: 'GET', path: '/api/health', family: 'native', body: 'none', limit: 0,
    async handle(_req, res, _p, ctx) {
      const q = ctx.queue;
      // A cluster backend (src/cluster) adds what it reads from Redis: the queue across the cluster and the workers seen.
      const more = await q?.health?.();
      sendJSON(res, 200, {
        status: ctx.state, model: ctx.modelName, width: ctx.defaultSize.width, height: ctx.defaultSize.height,
        queue: { running: q?.running ? 1 : 0, pending: q?.pendingCount ?? 0, max: q?.maxQueue ?? 0 },
        ...more,
      });
    },
  },
  {
    method: 'GET', path: '/api/config', family: 'native', body: 'none', limit: 0,
    async handle(_req, res, _p, ctx) {
      const l = ctx.limits;
      sendJSON(res, 200, {
        model: ctx.modelName, status: ctx.state, width: ctx.defaultSize.width, height: ctx.defaultSize.height, auth: ctx.auth,
        limits: { max_steps: l.maxSteps, max_batch: l.maxBatch, max_width: l.maxWidth, max_height: l.maxHeight, max_prompt_chars: l.maxPromptChars, max_queue: ctx.queue?.maxQueue ?? 0 },
        defaults: { ...apiDefaults('text-to-image', ctx), strength: TASK_DEFAULTS['image-to-image'].strength },
        defaults_by_mode: Object.fromEntries((Object.keys(TASK_DEFAULTS) as (keyof typeof TASK_DEFAULTS)[]).map((k) => [k, apiDefaults(k, ctx)])),
      });
    },
  },
  {
    method: 'POST', path: '/api/jobs', family: 'native', body: 'json', limit: IMAGE_BODY,
    async handle(req, res, _p, ctx) {
      const { queue } = ctx.ready();
      const spec = nativeSpec(await readJSON(req, IMAGE_BODY), ctx);
      const job = await queue.submit(spec);
      sendJSON(res, 202, { id: job.id, status: job.status, queue_position: queue.position(job), events_url: `/api/jobs/${job.id}/events`, url: `/api/jobs/${job.id}` }, { location: `/api/jobs/${job.id}` });
    },
  },
  {
    method: 'GET', path: new RegExp(`^/api/jobs/${ID}$`), family: 'native', body: 'none', limit: 0,
    async handle(_req, res, [id], ctx) {
      const { queue } = ctx.ready();
      sendJSON(res, 200, renderJob(findJob(queue, id!), queue));
    },
  },
  {
    method: 'GET', path: new RegExp(`^/api/jobs/${ID}/images/(\\d+)\\.png$`), family: 'native', body: 'none', limit: 0,
    async handle(_req, res, [id, n], ctx) {
      const { queue } = ctx.ready();
      const job = findJob(queue, id!);
      if (job.status !== 'completed') throw new RequestError(404, `job ${id} has no images (it is ${job.status})`, 'not_found');
      const img = job.images[Number(n)];
      if (!img) throw new RequestError(404, `job ${id} has ${job.images.length} images (0-${job.images.length - 1}), not ${n}`, 'not_found');
      sendPNG(res, img.png);
    },
  },
  {
    method: 'GET', path: new RegExp(`^/api/jobs/${ID}/events$`), family: 'native', body: 'none', limit: 0,
    async handle(req, res, [id], ctx) {
      const { queue } = ctx.ready();
      const job = findJob(queue, id!);
      const stream = new EventStream(res);
      let n = 0;
      const off = job.subscribe((e) => {
        if (e.event === 'decoded') return;
        const data = e.event === 'completed' ? renderJob(job, queue)
          : e.event === 'progress' || e.event === 'queued' || e.event === 'preview' ? e.data
            : e.event === 'started' ? { queue_position: 0, total: job.total }
              : e.data ?? {};
        res.write(`id: ${n++}\n`);
        stream.send(data, e.event);
        if (e.event === 'completed' || e.event === 'failed' || e.event === 'cancelled') queueMicrotask(() => { off?.(); stream.end(); });
      });
      req.on('close', () => off());
      if (stream.closed) off();
    },
  },
  ...(['POST', 'DELETE'] as const).map((method): Route => ({
    method, path: new RegExp(method === 'POST' ? `^/api/jobs/${ID}/cancel$` : `^/api/jobs/${ID}$`), family: 'native', body: 'none', limit: 4 * KiB,
    async handle(_req, res, [id], ctx) {
      const { queue } = ctx.ready();
      const job = findJob(queue, id!);
      if (job.status === 'completed' || job.status === 'failed') {
        throw new RequestError(409, `job ${id} has already ${job.status === 'completed' ? 'completed' : 'failed'}; there is nothing to cancel`, 'conflict');
      }
      queue.cancel(job);
      // A running job stops within one step: wait a little for it, so the answer usually shows 'cancelled'.
      await Promise.race([job.done, new Promise((r) => setTimeout(r, 2000).unref())]);
      sendJSON(res, 200, renderJob(job, queue));
    },
  })),
  {
    method: 'POST', path: '/api/generate', family: 'native', body: 'json', limit: IMAGE_BODY,
    async handle(req, res, _p, ctx) {
      const { queue } = ctx.ready();
      const job = await queue.submit(nativeSpec(await readJSON(req, IMAGE_BODY), ctx));
      await awaitJob(job, queue, req, res);
      if (job.status !== 'completed' || job.images.length === 0) throw jobError(job);
      const img = job.images[0]!;
      // Only small values in headers: the prompt stays in the PNG, whose size has no such limit.
      res.setHeader('x-sd3-seed', String(img.seed));
      res.setHeader('x-sd3-job', job.id);
      sendPNG(res, img.png);
    },
  },
];
