/**
 * AUTOMATIC1111's web UI API (/sdapi/v1), as Open WebUI, modelfusion and A1111 scripts send it.
 *
 *   POST txt2img    {prompt, negative_prompt, seed (-1 random), steps, cfg_scale, width, height, batch_size, n_iter,
 *                   sampler_name | sampler_index ("Euler" | "DPM++ 2M"), override_settings.sd_model_checkpoint, send_images}
 *                   + extensions slg_scale, slg_layers, slg_start, slg_end, step_cache, step_cache_start, step_cache_end,
 *                   prompt_weights (default true), long_prompts
 *                   ("chunk" default | "truncate"); <lora:NAME:SCALE> prompt tags name files in --lora-dir
 *   GET  loras      the --lora-dir folder's .safetensors files {name, alias, path, metadata}
 *   POST img2img    + {init_images (the first is used), denoising_strength (0.75), mask (white = repaint; a mask with
 *                   transparency: alpha > 128 = repaint), inpainting_mask_invert, mask_blur (Gaussian, 4)};
 *                   resize_mode, inpainting_fill, inpaint_full_res... are accepted and ignored
 *   GET  progress   {progress, eta_relative, state, current_image, textinfo}
 *   POST interrupt  the running job stops within one step and returns what it has; skip does the same
 *   GET/POST options, GET sd-models, samplers, schedulers; POST png-info {image}
 *
 * Responses {images, parameters, info: JSON string}. Errors: 422 {detail: [{loc, msg, type}]} for a bad field,
 * else {error, detail, body, errors}.
 */
import { readPNGText } from '../image/image.js';
import { parseInfotext } from '../pipelines/infotext.js';
import { VERSION } from '../pipelines/task.js';
import { A1111_TEXT_OPTIONS } from '../pipelines/text-windows.js';
import type { SamplerName } from '../sampler/steppers.js';
import { type Route, type ServerContext, awaitJob, jobError } from './context.js';
import { modeDefaults } from './engine.js';
import { RequestError, fieldError } from './errors.js';
import { featureFields, listLoras } from './features.js';
import { KiB, MiB, readJSON, sendJSON } from './http.js';
import {
  base64Field, boolField, checkMaskSize, decodeUpload, luminance, maskImage, numberField, promptFields, seedField, sideField, stringField,
} from './params.js';
import type { JobSpec } from './queue.js';
import { RGBImage } from '../image/image.js';

export function sdapiError(e: RequestError): { status: number; body: unknown } {
  if (e.code === 'invalid_field' || (e.code === 'invalid_request' && e.status === 400)) {
    return { status: 422, body: { detail: [{ loc: e.param ? ['body', ...e.param.split('.')] : ['body'], msg: e.message, type: 'value_error' }] } };
  }
  return { status: e.status, body: { error: e.status === 404 ? 'HTTPException' : e.code, detail: e.message, body: '', errors: e.message } };
}

/**
 * A1111's sampler names (and k-diffusion's) -> ours. Both walk the model's flow-matching shift schedule; "DPM++ 2M
 * Karras" (and other schedule variants) would need a Karras sigma schedule this model does not sample with, so
 * they are refused with the supported names.
 */
const SAMPLER_NAMES: Record<string, SamplerName> = {
  euler: 'euler', k_euler: 'euler', 'euler flow': 'euler', flow_match_euler: 'euler', flowmatcheulerdiscretescheduler: 'euler',
  'dpm++ 2m': 'dpmpp_2m', dpmpp_2m: 'dpmpp_2m', k_dpmpp_2m: 'dpmpp_2m',
};
const SAMPLER_LIST = [
  { name: 'Euler', aliases: ['euler', 'k_euler', 'flow_match_euler'], options: {} },
  { name: 'DPM++ 2M', aliases: ['dpmpp_2m', 'k_dpmpp_2m'], options: {} },
];
const samplerTitle = (s: SamplerName | undefined) => (s === 'dpmpp_2m' ? 'DPM++ 2M' : 'Euler');

function title(ctx: ServerContext): string {
  return ctx.engine?.checkpoint ?? ctx.modelName;
}

function checkModel(v: unknown, ctx: ServerContext, field: string): void {
  if (v === undefined || v === null || v === '') return;
  const names = [title(ctx), ctx.modelName, `${title(ctx)}.safetensors`];
  if (typeof v !== 'string' || !names.some((n) => v === n || v.startsWith(`${n} [`))) {
    throw fieldError(field, `${field} must be the loaded model (${names.map((n) => JSON.stringify(n)).join(' or ')}); this server cannot switch models, got ${JSON.stringify(v)}`);
  }
}

/** A separable Gaussian blur of a 0..255 map (A1111's mask_blur, sigma = radius). */
function blur(values: Float32Array, w: number, h: number, sigma: number): Float32Array {
  // Written out: a 1-D kernel applied along rows then columns is all A1111's mask blur needs.
  const r = Math.ceil(sigma * 2.5);
  const k = Float32Array.from({ length: 2 * r + 1 }, (_, i) => Math.exp(-((i - r) ** 2) / (2 * sigma * sigma)));
  const sum = k.reduce((a, b) => a + b, 0);
  for (let i = 0; i < k.length; i++) k[i]! /= sum;
  const pass = (src: Float32Array, horizontal: boolean) => {
    const out = new Float32Array(src.length);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
      let acc = 0;
      for (let t = -r; t <= r; t++) {
        const xx = horizontal ? Math.min(w - 1, Math.max(0, x + t)) : x;
        const yy = horizontal ? y : Math.min(h - 1, Math.max(0, y + t));
        acc += k[t + r]! * src[yy * w + xx]!;
      }
      out[y * w + x] = acc;
    }
    return out;
  };
  return pass(pass(values, true), false);
}

function specOf(b: Record<string, unknown>, ctx: ServerContext, img2img: boolean): JobSpec {
  const { limits } = ctx;
  const { prompt, negativePrompt } = promptFields(b, limits);
  const samplerText = stringField(b, 'sampler_name') || stringField(b, 'sampler_index');
  const sampler = samplerText ? SAMPLER_NAMES[samplerText.trim().toLowerCase()] : undefined;
  if (samplerText && !sampler) {
    throw fieldError(b.sampler_name ? 'sampler_name' : 'sampler_index', `Sampler not found: ${JSON.stringify(samplerText)}; this model samples with ${SAMPLER_LIST.map((x) => `"${x.name}"`).join(' or ')} (on its flow-matching schedule; Karras and other schedules are not supported)`);
  }
  // A1111 reads emphasis and chunks long prompts: on here unless the request's prompt_weights / long_prompts say otherwise.
  const features = featureFields(b, prompt, ctx, { promptWeights: A1111_TEXT_OPTIONS.promptWeights ?? true, longPrompts: A1111_TEXT_OPTIONS.longPrompts ?? 'chunk' }, sampler);
  const overrides = b.override_settings;
  if (overrides !== undefined && overrides !== null) {
    if (typeof overrides !== 'object' || Array.isArray(overrides)) throw fieldError('override_settings', 'override_settings must be an object');
    checkModel((overrides as Record<string, unknown>).sd_model_checkpoint, ctx, 'override_settings.sd_model_checkpoint');
  }
  const batch = (numberField(b, 'batch_size', { int: true, min: 1, max: limits.maxBatch }) ?? 1) * (numberField(b, 'n_iter', { int: true, min: 1, max: limits.maxBatch }) ?? 1);
  if (batch > limits.maxBatch) throw fieldError('batch_size', `batch_size x n_iter must be at most ${limits.maxBatch}, got ${batch}`);
  let image: RGBImage | undefined;
  let mask: RGBImage | undefined;
  let strength: number | undefined;
  if (img2img) {
    const init = b.init_images;
    if (init === undefined || init === null || (Array.isArray(init) && init.length === 0)) throw new RequestError(404, 'Init image not found', 'not_found', 'init_images');
    if (!Array.isArray(init)) throw fieldError('init_images', 'init_images must be a list of base64 images');
    image = decodeUpload(base64Field(init[0], 'init_images.0'), 'init_images.0').image;
    strength = numberField(b, 'denoising_strength', { min: 0, max: 1 }) ?? 0.75;
    if (b.mask !== undefined && b.mask !== null && b.mask !== '') {
      const m = decodeUpload(base64Field(b.mask, 'mask'), 'mask');
      checkMaskSize(m.image, image, 'mask');
      const invert = (numberField(b, 'inpainting_mask_invert', { int: true, min: 0, max: 1 }) ?? 0) === 1;
      const radius = numberField(b, 'mask_blur', { min: 0, max: 64 }) ?? 4;
      let values: Float32Array = Float32Array.from({ length: image.width * image.height }, (_, i) => (m.alpha ? (m.alpha[i]! > 128 ? 255 : 0) : luminance(m.image, i)));
      if (invert) values = values.map((v) => 255 - v);
      if (radius > 0) values = blur(values, image.width, image.height, radius);
      mask = maskImage(image.width, image.height, (i) => values[i]! >= 127.5);
    }
  }
  const kind = mask ? 'inpaint' : image ? 'image-to-image' : 'text-to-image';
  const defaults = modeDefaults(kind, ctx.sampling);
  return {
    ...features, negativePrompt,
    width: sideField(b, 'width', limits.maxWidth) ?? ctx.defaultSize.width,
    height: sideField(b, 'height', limits.maxHeight) ?? ctx.defaultSize.height,
    steps: numberField(b, 'steps', { int: true, min: 1, max: limits.maxSteps }) ?? defaults.steps,
    cfgScale: numberField(b, 'cfg_scale', { min: 0, max: 30 }) ?? defaults.cfgScale,
    seed: seedField(b),
    batch,
    ...(image ? { image, strength: strength! } : {}),
    ...(mask ? { mask } : {}),
  };
}

/** What A1111 puts in `info` (Processed.js()), with the keys clients read. */
function info(spec: JobSpec, ctx: ServerContext, infotexts: string[], seeds: number[], interrupted: boolean, started: number | undefined): string {
  return JSON.stringify({
    prompt: spec.prompt, all_prompts: seeds.map(() => spec.prompt),
    negative_prompt: spec.negativePrompt, all_negative_prompts: seeds.map(() => spec.negativePrompt),
    seed: spec.seed, all_seeds: seeds, subseed: -1, all_subseeds: seeds.map(() => -1), subseed_strength: 0,
    width: spec.width, height: spec.height, sampler_name: samplerTitle(spec.sampler), cfg_scale: spec.cfgScale, steps: spec.steps,
    batch_size: spec.batch, restore_faces: false, face_restoration_model: null,
    sd_model_name: title(ctx), sd_model_hash: null, sd_vae_name: null, sd_vae_hash: null,
    seed_resize_from_w: -1, seed_resize_from_h: -1, denoising_strength: spec.strength ?? null,
    extra_generation_params: spec.image ? { inpaint_full_res: false } : {}, index_of_first_image: 0, infotexts, styles: [],
    job_timestamp: new Date(started ?? Date.now()).toISOString().replace(/[-:T]/g, '').slice(0, 14), clip_skip: 1,
    is_using_inpainting_conditioning: false, version: `sd3.ts ${VERSION}`, ...(interrupted ? { interrupted: true } : {}),
  });
}

function generateRoute(path: string, img2img: boolean): Route {
  const limit = img2img ? 48 * MiB : 1 * MiB;
  return {
    method: 'POST', path, family: 'sdapi', body: 'json', limit,
    async handle(req, res, _p, ctx) {
      const { queue } = ctx.ready();
      const b = await readJSON(req, limit);
      const spec = specOf(b, ctx, img2img);
      const send = boolField(b, 'send_images') ?? true;
      const job = await queue.submit(spec);
      await awaitJob(job, queue, req, res);
      if (job.status !== 'completed') throw jobError(job);
      const { init_images: _i, mask: _m, ...echo } = b;
      const seeds = job.images.map((img) => img.seed);
      sendJSON(res, 200, {
        images: send ? job.images.map((img) => img.png.toString('base64')) : [],
        parameters: { ...echo, ...(img2img ? { init_images: null, mask: null } : {}) },
        info: info(spec, ctx, job.images.map((img) => img.infotext), seeds, job.interrupted, job.started),
      });
    },
  };
}

export const sdapiRoutes: Route[] = [
  generateRoute('/sdapi/v1/txt2img', false),
  generateRoute('/sdapi/v1/img2img', true),
  {
    method: 'GET', path: '/sdapi/v1/progress', family: 'sdapi', body: 'none', limit: 0,
    async handle(req, res, _p, ctx) {
      const skipImage = new URL(req.url ?? '', 'http://x').searchParams.get('skip_current_image') === 'true';
      const q = ctx.queue;
      const job = q?.running;
      const state = {
        skipped: false, interrupted: job?.stopReason === 'interrupt', stopping_generation: false, job: job ? `job ${job.id}` : '',
        job_count: job ? 1 : 0, job_timestamp: job?.started ? new Date(job.started).toISOString().replace(/[-:T]/g, '').slice(0, 14) : '0',
        job_no: 0, sampling_step: job?.step ?? 0, sampling_steps: job?.total ?? 0,
      };
      if (!job || !q) {
        sendJSON(res, 200, { progress: 0, eta_relative: 0, state, current_image: null, textinfo: null, current_task: null });
        return;
      }
      const progress = Math.min(1, 0.01 + (job.total ? job.step / job.total : 0));
      sendJSON(res, 200, {
        progress, eta_relative: Math.round(q.estimate(job) * 100) / 100, state,
        current_image: !skipImage && job.preview ? job.preview.png.toString('base64') : null,
        textinfo: `step ${job.step} of ${job.total}`, current_task: job.id,
      });
    },
  },
  ...['/sdapi/v1/interrupt', '/sdapi/v1/skip'].map((path): Route => ({
    method: 'POST', path, family: 'sdapi', body: 'none', limit: 64 * KiB,
    async handle(_req, res, _p, ctx) {
      ctx.queue?.interrupt();
      sendJSON(res, 200, {});
    },
  })),
  {
    method: 'GET', path: '/sdapi/v1/options', family: 'sdapi', body: 'none', limit: 0,
    async handle(_req, res, _p, ctx) {
      sendJSON(res, 200, { sd_model_checkpoint: title(ctx), samples_format: 'png', live_previews_enable: true, show_progress_every_n_steps: 1, sd_checkpoint_hash: null });
    },
  },
  {
    method: 'POST', path: '/sdapi/v1/options', family: 'sdapi', body: 'json', limit: 64 * KiB,
    async handle(req, res, _p, ctx) {
      const b = await readJSON(req, 64 * KiB);
      checkModel(b.sd_model_checkpoint, ctx, 'sd_model_checkpoint');
      sendJSON(res, 200, null);
    },
  },
  {
    method: 'GET', path: '/sdapi/v1/sd-models', family: 'sdapi', body: 'none', limit: 0,
    async handle(_req, res, _p, ctx) {
      sendJSON(res, 200, [{ title: title(ctx), model_name: title(ctx), hash: null, sha256: null, filename: ctx.modelName, config: null }]);
    },
  },
  {
    method: 'GET', path: '/sdapi/v1/samplers', family: 'sdapi', body: 'none', limit: 0,
    async handle(_req, res) {
      sendJSON(res, 200, SAMPLER_LIST);
    },
  },
  {
    method: 'GET', path: '/sdapi/v1/loras', family: 'sdapi', body: 'none', limit: 0,
    async handle(_req, res, _p, ctx) {
      sendJSON(res, 200, ctx.loraDir === undefined ? [] : listLoras(ctx.loraDir));
    },
  },
  {
    method: 'POST', path: '/sdapi/v1/refresh-loras', family: 'sdapi', body: 'none', limit: 64 * KiB,
    async handle(_req, res) {
      // The folder is listed afresh on every request; nothing to refresh.
      sendJSON(res, 200, null);
    },
  },
  {
    method: 'GET', path: '/sdapi/v1/schedulers', family: 'sdapi', body: 'none', limit: 0,
    async handle(_req, res) {
      sendJSON(res, 200, [{ name: 'simple', label: 'Simple (flow-matching shift)', aliases: null, default_rho: -1, need_inner_model: false }]);
    },
  },
  {
    method: 'POST', path: '/sdapi/v1/png-info', family: 'sdapi', body: 'json', limit: 48 * MiB,
    async handle(req, res) {
      const b = await readJSON(req, 48 * MiB);
      const bytes = base64Field(b.image, 'image');
      if (bytes.length < 8 || bytes.readUInt32BE(0) !== 0x89504e47) throw fieldError('image', 'image must be a base64 PNG');
      const { parameters: text = '', ...items } = readPNGText(bytes);
      const parsed = parseInfotext(text);
      const params: Record<string, string> = { Prompt: parsed.prompt, 'Negative prompt': parsed.negativePrompt, ...parsed.params };
      const size = /^(\d+)x(\d+)$/.exec(params.Size ?? '');
      if (size) Object.assign(params, { 'Size-1': size[1]!, 'Size-2': size[2]! });
      sendJSON(res, 200, { info: text, items, parameters: params });
    },
  },
];
