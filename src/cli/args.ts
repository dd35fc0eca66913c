/** Small helpers for typed command-line values. */
import { SD3Error } from '../core/errors.js';
import type { BackboneOptions } from '../pipelines/backbone.js';
import { SD3_5_MEDIUM_SLG, type SkipLayerGuidance } from '../sampler/skip-layer-guidance.js';
import { STEP_CACHE_DEFAULTS, type StepCache } from '../sampler/step-cache.js';
import { SAMPLERS, type SamplerName } from '../sampler/steppers.js';
import { type DeviceChoice, parseDevice } from '../runtime/ort.js';

export class UsageError extends SD3Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export function intArg(name: string, v: string | undefined, min: number, fallback?: number, max?: number): number | undefined {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got "${v}"`);
  if (max !== undefined && n > max) throw new UsageError(`--${name} must be at most ${max}, got "${v}"`);
  return n;
}

export function numArg(name: string, v: string | undefined, check: (n: number) => boolean, expected: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || !check(n)) throw new UsageError(`--${name} must be ${expected}, got "${v}"`);
  return n;
}

export function deviceArg(v: string): DeviceChoice {
  try {
    return parseDevice(v, '--device');
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/**
 * `--vae-tile N[,OVERLAP]`: tile size in latent cells and overlap (default a quarter of the size). The library
 * takes any size >= 1 (its tests decode tiny latents in tiles of 4); the command asks for at least 8 cells
 * (64 pixels), below which a real image would be decoded in hundreds of tiles with seams everywhere.
 */
export function tileArg(v: string): { size: number; overlap: number } {
  const m = /^(\d+)(?:,(\d+))?$/.exec(v);
  const size = m ? Number(m[1]) : Number.NaN;
  const overlap = m?.[2] !== undefined ? Number(m[2]) : Math.floor(size / 4);
  if (!m || size < 8 || overlap >= size) throw new UsageError(`--vae-tile must be N or N,OVERLAP with N >= 8 latent cells and OVERLAP < N, got "${v}"`);
  return { size, overlap };
}

/** The flags generate and serve share: the model, the image size and where and how it runs. */
export const MODEL_FLAGS = {
  model: { type: 'string', short: 'm' },
  width: { type: 'string' },
  height: { type: 'string' },
  threads: { type: 'string' },
  device: { type: 'string' },
  int8: { type: 'boolean' },
  'vae-int8': { type: 'boolean' },
  fp16: { type: 'boolean' },
} as const;

/**
 * --threads, --device, --int8, --vae-int8 and --fp16 as backbone options (shared by generate, serve and worker).
 * --fp16 runs on the GPU: without --device it means --device webgpu.
 */
export function runtimeArgs(v: { threads?: string; device?: string; int8?: boolean; 'vae-int8'?: boolean; fp16?: boolean }): Pick<BackboneOptions, 'threads' | 'device' | 'dtype' | 'vaeDtype'> {
  const threads = intArg('threads', v.threads, 1);
  let device = v.device !== undefined ? deviceArg(v.device) : undefined;
  if (device === 'webgpu' && v.int8) throw new UsageError('--int8 runs on the CPU only; drop it or use --device cpu');
  if (v.int8 && v.fp16) throw new UsageError('--int8 (CPU) and --fp16 (GPU) exclude each other; choose one');
  if (v['vae-int8'] && (v.fp16 || device === 'webgpu')) throw new UsageError('--vae-int8 runs on the CPU only; drop it or use --device cpu without --fp16');
  if (v.fp16 && device === 'cpu') throw new UsageError('--fp16 runs on the GPU only (ORT has no CPU float16 kernels for most operators); drop it or use --device webgpu');
  if (v.fp16) device ??= 'webgpu';
  return {
    ...(threads !== undefined ? { threads } : {}),
    ...(device ? { device } : {}),
    ...(v.int8 ? { dtype: 'int8' as const } : {}),
    ...(v.fp16 ? { dtype: 'float16' as const } : {}),
    ...(v['vae-int8'] ? { vaeDtype: 'int8' as const } : {}),
  };
}

/**
 * The sampler flags of `sd3 generate`: --sampler, skip-layer guidance's --slg-scale/-layers/-start/-end, and
 * the step cache's --step-cache/-start/-end.
 */
export const SAMPLER_FLAGS = {
  sampler: { type: 'string' },
  'slg-scale': { type: 'string' },
  'slg-layers': { type: 'string' },
  'slg-start': { type: 'string' },
  'slg-end': { type: 'string' },
  'step-cache': { type: 'string' },
  'step-cache-start': { type: 'string' },
  'step-cache-end': { type: 'string' },
} as const;

/**
 * --sampler euler|dpmpp_2m, and skip-layer guidance: on when --slg-scale X > 0 is given, with --slg-layers
 * (default 7,8,9), --slg-start (0.01) and --slg-end (0.2) defaulting to Stability's SD3.5 Medium setting.
 */
export function samplerArgs(v: { sampler?: string; 'slg-scale'?: string; 'slg-layers'?: string; 'slg-start'?: string; 'slg-end'?: string } & StepCacheFlags): { sampler?: SamplerName; skipLayerGuidance?: SkipLayerGuidance; stepCache?: StepCache } {
  const cache = stepCacheArgs(v);
  const rest = slgArgs(v);
  return cache ? { ...rest, stepCache: cache } : rest;
}

type StepCacheFlags = { 'step-cache'?: string; 'step-cache-start'?: string; 'step-cache-end'?: string };

/** --step-cache X (the threshold, in (0, 1]; off without it) with its window --step-cache-start/-end (0.15, 0.95). */
export function stepCacheArgs(v: StepCacheFlags): StepCache | undefined {
  const threshold = numArg('step-cache', v['step-cache'], (n) => n > 0 && n <= 1, 'a threshold in (0, 1] (e.g. 0.1)');
  const start = numArg('step-cache-start', v['step-cache-start'], (n) => n >= 0 && n <= 1, 'a number in [0, 1]');
  const end = numArg('step-cache-end', v['step-cache-end'], (n) => n >= 0 && n <= 1, 'a number in [0, 1]');
  if (threshold === undefined) {
    if (start !== undefined || end !== undefined) throw new UsageError('--step-cache-start and --step-cache-end need --step-cache X (the step cache is off without it)');
    return undefined;
  }
  const c = { threshold, start: start ?? STEP_CACHE_DEFAULTS.start, end: end ?? STEP_CACHE_DEFAULTS.end };
  if (c.start >= c.end) throw new UsageError(`--step-cache-start ${c.start} must be before --step-cache-end ${c.end}`);
  return c;
}

function slgArgs(v: { sampler?: string; 'slg-scale'?: string; 'slg-layers'?: string; 'slg-start'?: string; 'slg-end'?: string }): { sampler?: SamplerName; skipLayerGuidance?: SkipLayerGuidance } {
  if (v.sampler !== undefined && !(SAMPLERS as readonly string[]).includes(v.sampler)) throw new UsageError(`--sampler must be one of ${SAMPLERS.join(', ')}, got "${v.sampler}"`);
  const scale = numArg('slg-scale', v['slg-scale'], (n) => n >= 0, 'a number >= 0');
  const start = numArg('slg-start', v['slg-start'], (n) => n >= 0 && n <= 1, 'a number in [0, 1]');
  const end = numArg('slg-end', v['slg-end'], (n) => n >= 0 && n <= 1, 'a number in [0, 1]');
  let layers: number[] | undefined;
  if (v['slg-layers'] !== undefined) {
    layers = v['slg-layers'].split(',').map((x) => Number(x.trim()));
    if (layers.length === 0 || !layers.every((l) => Number.isInteger(l) && l >= 0)) throw new UsageError(`--slg-layers must be joint block numbers separated by commas (e.g. 7,8,9), got "${v['slg-layers']}"`);
  }
  const out: { sampler?: SamplerName; skipLayerGuidance?: SkipLayerGuidance } = v.sampler ? { sampler: v.sampler as SamplerName } : {};
  if (scale === undefined) {
    if (layers || start !== undefined || end !== undefined) throw new UsageError('--slg-layers, --slg-start and --slg-end need --slg-scale X (skip-layer guidance is off without it)');
    return out;
  }
  const slg = { layers: layers ?? [...SD3_5_MEDIUM_SLG.layers], scale, start: start ?? SD3_5_MEDIUM_SLG.start, end: end ?? SD3_5_MEDIUM_SLG.end };
  if (slg.start > slg.end) throw new UsageError(`--slg-start ${slg.start} is after --slg-end ${slg.end}`);
  return scale > 0 ? { ...out, skipLayerGuidance: slg } : out;
}

/** `--lora FILE[:SCALE]`: a LoRA file and its scale (default 1); only a trailing `:number` is a scale. */
export function loraArg(v: string): { path: string; scale: number } {
  const colon = v.lastIndexOf(':');
  const tail = colon >= 0 ? v.slice(colon + 1) : '';
  const head = v.slice(0, Math.max(0, colon));
  // "C:" alone is a Windows drive, not a file with a scale.
  if (colon > 0 && tail.trim() !== '' && Number.isFinite(Number(tail)) && !/^[a-zA-Z]$/.test(head)) return { path: head, scale: Number(tail) };
  if (v === '' || colon === v.length - 1) throw new UsageError(`--lora must be FILE or FILE:SCALE with a number SCALE, got "${v}"`);
  return { path: v, scale: 1 };
}

/** `--long-prompts truncate|chunk`. */
export function longPromptsArg(v: string | undefined): 'truncate' | 'chunk' | undefined {
  if (v === undefined) return undefined;
  if (v !== 'truncate' && v !== 'chunk') throw new UsageError(`--long-prompts must be truncate or chunk, got "${v}"`);
  return v;
}
