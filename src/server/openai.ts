/**
 * The OpenAI Images API, as the `openai` SDK, Open WebUI and SillyTavern speak it.
 *
 *   POST /v1/images/generations   JSON {prompt, n, size, response_format, output_format, output_compression,
 *                                 stream, partial_images} + our extensions {negative_prompt, steps, cfg_scale,
 *                                 seed, strength, sampler ("euler" | "dpmpp_2m"), slg_scale, slg_layers, slg_start,
 *                                 slg_end, step_cache, step_cache_start, step_cache_end, prompt_weights (false),
 *                                 long_prompts ("truncate" | "chunk")}; <lora:NAME:SCALE>
 *                                 prompt tags name files in --lora-dir; other fields (model, quality, style, background, user...) are
 *                                 accepted and ignored
 *   POST /v1/images/edits         multipart: image | image[] (the first is used), mask (alpha 0 = repaint when the
 *                                 PNG has transparency, else white = repaint), the same fields as strings;
 *                                 or JSON {images: [{image_url}], mask: {image_url}} with data: URLs;
 *                                 a mask means inpainting, no mask image-to-image
 *   GET  /v1/models, /v1/models/:id
 *   GET  /v1/images/files/:job/:n.png   what response_format "url" points at
 *
 * Errors: {error: {message, type, param, code}}.
 */
import type * as http from 'node:http';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { type Route, type ServerContext, awaitJob, jobError } from './context.js';
import { TASK_DEFAULTS, modeDefaults, stepsRun } from './engine.js';
import { RequestError, fieldError } from './errors.js';
import { featureFields } from './features.js';
import { EventStream, MiB, mediaType, readJSON, readMultipart, sendJSON } from './http.js';
import {
  base64Field, boolField, checkMaskSize, decodeUpload, fitSize, luminance, maskImage, numberField, promptFields, seedField, sizeField, stringField,
} from './params.js';
import type { Job, JobBackend, JobSpec, SubmitOptions } from './queue.js';

export function openaiError(e: RequestError): { status: number; body: unknown } {
  const type = e.status === 429 ? 'rate_limit_error' : e.status === 401 ? 'authentication_error' : e.status === 403 ? 'permission_error'
    : e.status >= 500 ? 'server_error' : 'invalid_request_error';
  return { status: e.status, body: { error: { message: e.message, type, param: e.param, code: e.code } } };
}

type OutputFormat = 'png' | 'jpeg';

interface Reply {
  readonly format: OutputFormat;
  readonly quality: number;
  readonly responseFormat: 'b64_json' | 'url';
  readonly stream: boolean;
  readonly partialImages: number;
}

function replyFields(b: Record<string, unknown>): Reply {
  const rf = stringField(b, 'response_format') ?? 'b64_json';
  if (rf !== 'b64_json' && rf !== 'url') throw fieldError('response_format', `response_format must be "b64_json" or "url", got ${JSON.stringify(rf)}`);
  const of = stringField(b, 'output_format') ?? 'png';
  if (!['png', 'jpeg', 'webp'].includes(of)) throw fieldError('output_format', `output_format must be "png", "jpeg" or "webp", got ${JSON.stringify(of)}`);
  return {
    // WebP has no encoder here: such requests get PNG, and the response's output_format says so.
    format: of === 'jpeg' ? 'jpeg' : 'png',
    quality: numberField(b, 'output_compression', { int: true, min: 0, max: 100 }) ?? 100,
    responseFormat: rf,
    stream: boolField(b, 'stream') ?? false,
    partialImages: numberField(b, 'partial_images', { int: true, min: 0, max: 3 }) ?? 0,
  };
}

function encodeOutput(png: Buffer, r: Reply): Buffer {
  if (r.format === 'png') return png;
  const img = PNG.sync.read(png);
  return jpeg.encode({ data: img.data, width: img.width, height: img.height }, Math.max(1, r.quality)).data;
}

function commonSpec(b: Record<string, unknown>, ctx: ServerContext): Omit<JobSpec, 'width' | 'height' | 'steps'> & { size?: { width: number; height: number }; steps?: number } {
  const { limits } = ctx;
  const { prompt, negativePrompt } = promptFields(b, limits);
  const size = sizeField(b, 'size', limits);
  const steps = numberField(b, 'steps', { int: true, min: 1, max: limits.maxSteps });
  const features = featureFields(b, prompt, ctx, { promptWeights: false, longPrompts: ctx.longPrompts });
  return {
    ...features, negativePrompt,
    ...(size ? { size } : {}),
    ...(steps !== undefined ? { steps } : {}),
    cfgScale: numberField(b, 'cfg_scale', { min: 0, max: 30 }) ?? modeDefaults('text-to-image', ctx.sampling).cfgScale,
    seed: seedField(b),
    batch: numberField(b, 'n', { int: true, min: 1, max: Math.min(10, limits.maxBatch) }) ?? 1,
  };
}

/** Evenly spaced steps for `count` partial images of a `total`-step run (before the last step). */
export function partialSteps(total: number, count: number): number[] {
  const out = new Set<number>();
  for (let j = 1; j <= count; j++) {
    const s = Math.round((total * j) / (count + 1));
    if (s >= 1 && s < total) out.add(s);
  }
  return [...out];
}

/** The partial images a streamed reply asks for, told to the queue with the job (a remote worker needs them up front). */
function partialsFor(spec: JobSpec, reply: Reply): SubmitOptions {
  return reply.stream ? { decodeAt: partialSteps(stepsRun(spec), reply.partialImages) } : {};
}

async function respond(job: Job, queue: JobBackend, reply: Reply, kind: 'image_generation' | 'image_edit', req: http.IncomingMessage, res: http.ServerResponse, ctx: ServerContext): Promise<void> {
  const size = `${job.spec.width}x${job.spec.height}`;
  const created = Math.floor(Date.now() / 1000);
  const meta = { size, quality: 'auto', background: 'opaque', output_format: reply.format };
  if (reply.stream) {
    for (const s of partialSteps(job.total, reply.partialImages)) job.decodeAt.add(s);
    const stream = new EventStream(res);
    let index = 0;
    const off = job.subscribe((e) => {
      if (e.event !== 'decoded') return;
      const { pngs } = e.data as { pngs: Buffer[] };
      if (pngs[0]) stream.send({ type: `${kind}.partial_image`, b64_json: encodeOutput(pngs[0], reply).toString('base64'), partial_image_index: index++, created_at: Math.floor(Date.now() / 1000), ...meta });
    });
    try {
      await awaitJob(job, queue, req, res);
    } finally {
      off();
    }
    if (job.status !== 'completed') {
      const { body } = openaiError(jobError(job));
      stream.send(body, 'error');
    } else {
      for (const img of job.images) {
        stream.send({ type: `${kind}.completed`, b64_json: encodeOutput(img.png, reply).toString('base64'), created_at: Math.floor(Date.now() / 1000), ...meta, usage: { input_tokens: 0, output_tokens: 0, total_tokens: 0 } });
      }
    }
    stream.end();
    return;
  }
  await awaitJob(job, queue, req, res);
  if (job.status !== 'completed') throw jobError(job);
  const data = job.images.map((img, n) => reply.responseFormat === 'url'
    ? { url: `${ctx.origin(req)}/v1/images/files/${job.id}/${n}.${reply.format === 'jpeg' ? 'jpg' : 'png'}`, seed: img.seed }
    : { b64_json: encodeOutput(img.png, reply).toString('base64'), seed: img.seed });
  sendJSON(res, 200, { created, data, ...meta });
}

/** An image reference of the JSON form of edits: {image_url: data URL or base64}; file ids and web URLs are not fetched. */
function imageRef(v: unknown, label: string): Buffer | undefined {
  if (v === undefined || v === null) return undefined;
  const url = typeof v === 'string' ? v : typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>).image_url : undefined;
  if (typeof v === 'object' && v !== null && 'file_id' in v) throw fieldError(label, `${label}: file_id is not supported here; send image_url as a data: URL`);
  return base64Field(url, label);
}

/** The edits body, multipart (the SDK's way) or JSON ({images: [{image_url}], mask: {image_url}}). */
async function editBody(req: http.IncomingMessage): Promise<{ body: Record<string, unknown>; image?: Buffer; mask?: Buffer }> {
  if (mediaType(req) === 'application/json') {
    const body = await readJSON(req, EDIT_BODY);
    const images = body.images ?? body.image;
    const first = Array.isArray(images) ? images[0] : images;
    const image = imageRef(first, Array.isArray(images) ? 'images.0' : 'image');
    const mask = imageRef(body.mask, 'mask');
    return { body, ...(image ? { image } : {}), ...(mask ? { mask } : {}) };
  }
  const { fields, files } = await readMultipart(req, EDIT_BODY);
  const image = files.find((f) => f.field === 'image' || f.field === 'image[]')?.data;
  const mask = files.find((f) => f.field === 'mask')?.data;
  return { body: { ...fields }, ...(image ? { image } : {}), ...(mask ? { mask } : {}) };
}

/** Requests carry images of up to 4096x4096 (two files): 48 MiB in all. */
const EDIT_BODY = 48 * MiB;

export const openaiRoutes: Route[] = [
  {
    method: 'GET', path: '/v1/models', family: 'openai', body: 'none', limit: 0,
    async handle(_req, res, _p, ctx) {
      sendJSON(res, 200, { object: 'list', data: [{ id: ctx.modelName, object: 'model', created: 0, owned_by: 'sd3-ts' }] });
    },
  },
  {
    method: 'GET', path: /^\/v1\/models\/(.+)$/, family: 'openai', body: 'none', limit: 0,
    async handle(_req, res, [id], ctx) {
      let name = id!;
      try { name = decodeURIComponent(id!); } catch { /* a malformed escape: compare as sent */ }
      if (name !== ctx.modelName) throw new RequestError(404, `the model "${name}" does not exist; this server has "${ctx.modelName}"`, 'not_found', 'model');
      sendJSON(res, 200, { id: ctx.modelName, object: 'model', created: 0, owned_by: 'sd3-ts' });
    },
  },
  {
    method: 'POST', path: '/v1/images/generations', family: 'openai', body: 'json', limit: 1 * MiB,
    async handle(req, res, _p, ctx) {
      const { queue } = ctx.ready();
      const b = await readJSON(req, 1 * MiB);
      const reply = replyFields(b);
      const c = commonSpec(b, ctx);
      const spec = { ...c, ...(c.size ?? ctx.defaultSize), steps: c.steps ?? modeDefaults('text-to-image', ctx.sampling).steps };
      const job = await queue.submit(spec, partialsFor(spec, reply));
      await respond(job, queue, reply, 'image_generation', req, res, ctx);
    },
  },
  {
    method: 'POST', path: '/v1/images/edits', family: 'openai', body: 'json-or-multipart', limit: EDIT_BODY,
    async handle(req, res, _p, ctx) {
      const { queue } = ctx.ready();
      const { body: b, image: imageBytes, mask: maskBytes } = await editBody(req);
      const reply = replyFields(b);
      const c = commonSpec(b, ctx);
      if (!imageBytes) throw fieldError('image', 'image is required (a PNG or JPEG file in the multipart field "image" or "image[]", or JSON images: [{image_url}])');
      const image = decodeUpload(imageBytes, 'image').image;
      let mask;
      if (maskBytes) {
        const m = decodeUpload(maskBytes, 'mask');
        checkMaskSize(m.image, image, 'mask');
        // OpenAI's rule: fully transparent = edit. A mask without transparency is read as white = repaint.
        mask = m.alpha ? maskImage(image.width, image.height, (i) => m.alpha![i] === 0) : maskImage(image.width, image.height, (i) => luminance(m.image, i) >= 128);
      }
      const kind = mask ? 'inpaint' : 'image-to-image';
      const strength = numberField(b, 'strength', { min: 0, max: 1 }) ?? TASK_DEFAULTS[kind].strength;
      const spec = {
        ...c, ...(c.size ?? fitSize(image, ctx.limits.maxWidth, ctx.limits.maxHeight)),
        steps: c.steps ?? modeDefaults(kind, ctx.sampling).steps, image, strength, ...(mask ? { mask } : {}),
      };
      const job = await queue.submit(spec, partialsFor(spec, reply));
      await respond(job, queue, reply, 'image_edit', req, res, ctx);
    },
  },
  {
    method: 'GET', path: /^\/v1\/images\/files\/([0-9a-f-]{36})\/(\d+)\.(png|jpg)$/, family: 'openai', body: 'none', limit: 0,
    async handle(_req, res, [id, n, ext], ctx) {
      const { queue } = ctx.ready();
      const job = queue.get(id!);
      if (job === 'expired') throw new RequestError(410, `the image has expired`, 'expired');
      const img = job?.images[Number(n)];
      if (!job || !img) throw new RequestError(404, `no image ${id}/${n}`, 'not_found');
      const bytes = ext === 'jpg' ? encodeOutput(img.png, { format: 'jpeg', quality: 95, responseFormat: 'url', stream: false, partialImages: 0 }) : img.png;
      res.writeHead(200, { 'content-type': ext === 'jpg' ? 'image/jpeg' : 'image/png', 'content-length': bytes.length }).end(bytes);
    },
  },
];
