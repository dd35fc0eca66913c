/**
 * Input handling shared by the tasks: KerasHub's accepted prompt forms, option defaults and validation,
 * seeds, and conversions between images/masks and tensors. Every check names the value and what was expected.
 */
import { SD3Error, describe } from '../core/errors.js';
import { type Tensor, tensor } from '../core/tensor.js';
import { RGBImage, nearestSource, resizeNearest, resizeNearestHWC } from '../image/image.js';
import { uint8ToImage } from '../image/pixels.js';
import { checkSeed, randomSeed } from '../sampler/noise.js';
import { type SkipLayerGuidance, checkSkipLayerGuidance } from '../sampler/skip-layer-guidance.js';
import { type StepCache, checkStepCache } from '../sampler/step-cache.js';
import { type SamplerName, checkSampler } from '../sampler/steppers.js';
import type { StepInfo } from './denoise.js';
import type { SamplingDefaults } from './model-defaults.js';
import type { TextOptions } from './text-windows.js';

export type PromptInput = string | readonly string[] | { readonly prompts: string | readonly string[]; readonly negativePrompts?: string | readonly string[] };

/** An image: 8-bit RGB, or a [H, W, 3] tensor (float32 in [-1, 1], passed to the VAE as given; or uint8). */
export type ImageLike = RGBImage | Tensor;
/** A mask (1 / true / white = repaint): [H, W] tensor (bool, uint8 0..255 or float32 0..1), or an RGB image (red channel). */
export type MaskLike = RGBImage | Tensor;

export interface ImagePromptInput {
  readonly images: ImageLike | readonly ImageLike[];
  readonly prompts: string | readonly string[];
  readonly negativePrompts?: string | readonly string[];
}
export interface InpaintInput extends ImagePromptInput {
  readonly masks: MaskLike | readonly MaskLike[];
}

export interface GenerateOptions extends TextOptions {
  /** Denoising steps (default per model, README table: SD3 Medium 28 for text-to-image, 50 otherwise). */
  readonly numSteps?: number;
  /** Classifier-free guidance scale (default per model: 7.0 for SD3 Medium); <= 1 runs one pass without the negative prompt. */
  readonly guidanceScale?: number;
  /** 'euler' (flow-matching Euler) or 'dpmpp_2m' (DPM-Solver++(2M), as Stability's reference); default per model. */
  readonly sampler?: SamplerName;
  /**
   * Skip-layer guidance, off by default: { layers, scale, start, end }, e.g. Stability's SD3.5 Medium setting
   * { layers: [7, 8, 9], scale: 2.5, start: 0.01, end: 0.2 }. A third, positive-only pass with those joint
   * blocks bypassed on the steps k (from 0) with start * numSteps < k < end * numSteps.
   */
  readonly skipLayerGuidance?: SkipLayerGuidance;
  /**
   * Step caching, off by default: { threshold, start?, end?, maxSkips? }, e.g. { threshold: 0.1 }. A step k
   * (from 0) with start * numSteps <= k < end * numSteps (default 0.15 and 0.95 of the steps this run takes)
   * reuses the last model output instead of running the MMDiT while the summed estimate of the output's
   * relative change since then stays under threshold (in (0, 1]); the first two steps and the last always run
   * it. Faster, not exact: the image's metadata lists the reused steps (`cachedSteps`). See
   * sampler/step-cache.ts and BENCHMARKS.md for what it saves and changes.
   */
  readonly stepCache?: Partial<StepCache> & { readonly threshold: number };
  /** Seed of the whole batch: image i uses seed + i. */
  readonly seed?: number;
  /** One seed per image (image i is then reproducible alone, whatever the batch). */
  readonly seeds?: readonly number[];
  /** Checked between steps: aborting stops within one step with an AbortError. */
  readonly signal?: AbortSignal;
  readonly onStep?: (info: StepInfo) => void;
}

export interface StrengthOptions extends GenerateOptions {
  /** How much of the image is repainted: 1 starts from pure noise, 0 returns the image (VAE round trip). */
  readonly strength?: number;
}

export interface Prompts {
  readonly prompts: string[];
  readonly negatives: string[];
  /** The input was a single prompt (return one image, not a list). */
  readonly single: boolean;
}

function stringList(value: unknown, what: string): string[] {
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list)) throw new SD3Error(`${what} must be a string or a list of strings, got ${describe(value)}`);
  if (list.length === 0) throw new SD3Error(`${what} must not be an empty list`);
  list.forEach((p, i) => {
    if (typeof p !== 'string') throw new SD3Error(`${what}[${i}] must be a string, got ${describe(p)}`);
  });
  return [...list] as string[];
}

/** A prompt, a list, or { prompts, negativePrompts } (missing negative prompts are ""). */
export function normalizePrompts(input: unknown): Prompts {
  if (typeof input === 'string' || Array.isArray(input)) {
    const prompts = stringList(input, 'prompts');
    return { prompts, negatives: prompts.map(() => ''), single: typeof input === 'string' };
  }
  if (typeof input !== 'object' || input === null || !('prompts' in input)) {
    throw new SD3Error(`input must be a prompt, a list of prompts or { prompts, negativePrompts }, got ${describe(input)}`);
  }
  const o = input as { prompts: unknown; negativePrompts?: unknown };
  const prompts = stringList(o.prompts, 'prompts');
  let negatives = o.negativePrompts === undefined ? prompts.map(() => '') : stringList(o.negativePrompts, 'negativePrompts');
  if (negatives.length === 1 && prompts.length > 1) negatives = prompts.map(() => negatives[0]!);
  if (negatives.length !== prompts.length) throw new SD3Error(`got ${prompts.length} prompts but ${negatives.length} negative prompts`);
  return { prompts, negatives, single: typeof o.prompts === 'string' };
}

export interface Resolved {
  readonly numSteps: number;
  readonly guidanceScale: number;
  readonly seeds: number[];
  readonly strength: number;
  readonly sampler: SamplerName;
  readonly skipLayerGuidance?: SkipLayerGuidance;
  readonly stepCache?: StepCache;
}

/** A task's defaults (KerasHub's): steps, guidance and, for the image tasks, strength (text-to-image: 1). */
export interface TaskDefaults {
  readonly numSteps: number;
  readonly guidanceScale: number;
  readonly strength?: number;
}

/**
 * The most denoising steps one call takes: far beyond any sampler's use (SD3 runs 28-50), so that a mistyped
 * number is refused with a message instead of allocating a schedule of its size (4 MB at this bound) or
 * failing deep in the runtime. Servers set their own, lower cap.
 */
export const MAX_STEPS = 1_000_000;

/** The sampler options as the denoising loop takes them (and as image metadata records them). */
export function samplerOptions(o: Resolved): { sampler: SamplerName; skipLayerGuidance?: SkipLayerGuidance; stepCache?: StepCache } {
  return { sampler: o.sampler, ...(o.skipLayerGuidance ? { skipLayerGuidance: o.skipLayerGuidance } : {}), ...(o.stepCache ? { stepCache: o.stepCache } : {}) };
}

/** `model`: the model's own defaults (steps for every task, guidance, sampler), which override the task's. */
export function resolveOptions(o: StrengthOptions | undefined, batch: number, defaults: TaskDefaults, model?: SamplingDefaults): Resolved {
  const opts = o ?? {};
  if (typeof opts !== 'object') throw new SD3Error(`options must be an object, got ${describe(opts)}`);
  const numSteps = opts.numSteps ?? model?.numSteps ?? defaults.numSteps;
  if (!Number.isInteger(numSteps) || numSteps < 1) throw new SD3Error(`numSteps must be an integer >= 1, got ${describe(numSteps)}`);
  if (numSteps > MAX_STEPS) throw new SD3Error(`numSteps must be at most ${MAX_STEPS}, got ${numSteps}`);
  const sampler = checkSampler(opts.sampler ?? model?.sampler ?? 'euler');
  const slg = opts.skipLayerGuidance ?? model?.skipLayerGuidance;
  const skipLayerGuidance = slg === undefined ? undefined : checkSkipLayerGuidance(slg);
  const stepCache = opts.stepCache === undefined ? undefined : checkStepCache(opts.stepCache);
  const guidanceScale = opts.guidanceScale ?? model?.guidanceScale ?? defaults.guidanceScale;
  if (typeof guidanceScale !== 'number' || !Number.isFinite(guidanceScale)) throw new SD3Error(`guidanceScale must be a finite number, got ${describe(guidanceScale)}`);
  const strength = opts.strength ?? defaults.strength ?? 1;
  if (typeof strength !== 'number' || !(strength >= 0 && strength <= 1)) throw new SD3Error(`strength must be a number in [0, 1], got ${describe(strength)}`);
  let seeds: number[];
  if (opts.seeds !== undefined) {
    if (!Array.isArray(opts.seeds) || opts.seeds.length !== batch) throw new SD3Error(`seeds must list one seed per image (${batch}), got ${describe(opts.seeds)}`);
    seeds = opts.seeds.map((s, i) => checkSeed(s, `seeds[${i}]`));
  } else {
    const base = opts.seed === undefined ? randomSeed() : checkSeed(opts.seed);
    seeds = Array.from({ length: batch }, (_, i) => (base + i) % 0x100000000);
  }
  if (opts.signal !== undefined && !(opts.signal instanceof AbortSignal)) throw new SD3Error(`signal must be an AbortSignal, got ${describe(opts.signal)}`);
  if (opts.onStep !== undefined && typeof opts.onStep !== 'function') throw new SD3Error(`onStep must be a function, got ${describe(opts.onStep)}`);
  return { numSteps, guidanceScale, seeds, strength, sampler, ...(skipLayerGuidance ? { skipLayerGuidance } : {}), ...(stepCache ? { stepCache } : {}) };
}

export function asList<T>(v: T | readonly T[], what: string, n: number): T[] {
  const list = Array.isArray(v) ? [...(v as readonly T[])] : [v as T];
  if (list.length === 1 && n > 1) return Array.from({ length: n }, () => list[0]!);
  if (list.length !== n) throw new SD3Error(`got ${n} prompts but ${list.length} ${what}`);
  return list;
}

/**
 * An input image as the VAE takes it: float32 [3, height, width] in [-1, 1], resized to width x height
 * (nearest, as KerasHub). 8-bit pixels (RGBImage or a uint8 tensor) go through `uint8ToImage`, the
 * reference's x / 255 * 2 - 1 in float32; float32 tensors are used as given (KerasHub passes floats to the VAE
 * unchanged), so they are not quantized to 8 bits on the way.
 */
export function toImageCHW(img: ImageLike, i: number, width: number, height: number): Float32Array {
  if (img instanceof RGBImage) return rgbToCHW(resizeNearest(img, width, height));
  if (!img || typeof img !== 'object' || !('shape' in img) || !('data' in img)) {
    throw new SD3Error(`images[${i}] must be an RGBImage or a [height, width, 3] tensor, got ${describe(img)}`);
  }
  const t = img as Tensor;
  if (t.shape.length !== 3 || t.shape[2] !== 3) throw new SD3Error(`images[${i}] must be [height, width, 3] (channels last), got [${t.shape.join(', ')}]`);
  const [h, w] = t.shape as [number, number, number];
  if (t.dtype === 'uint8') return rgbToCHW(resizeNearest(new RGBImage(w, h, t.data as Uint8Array), width, height));
  if (t.dtype !== 'float32') throw new SD3Error(`images[${i}] must be float32 in [-1, 1] or uint8, got ${t.dtype}`);
  const d = t.data as Float32Array;
  if (d.length !== h * w * 3) throw new SD3Error(`images[${i}] has ${d.length} values, its shape [${t.shape.join(', ')}] needs ${h * w * 3}`);
  for (let k = 0; k < d.length; k++) {
    const v = d[k]!;
    if (!(v >= -1.0001 && v <= 1.0001)) throw new SD3Error(`images[${i}] float values must be in [-1, 1], found ${v}`);
  }
  const hwc = resizeNearestHWC(d, w, h, 3, width, height);
  const plane = width * height;
  const out = new Float32Array(3 * plane);
  for (let p = 0; p < plane; p++) for (let c = 0; c < 3; c++) out[c * plane + p] = hwc[p * 3 + c]!;
  return out;
}

function rgbToCHW(img: RGBImage): Float32Array {
  return uint8ToImage(tensor('uint8', [1, img.height, img.width, 3], img.data)).data;
}

/** Per-image [3, H, W] planes (from toImageCHW) -> one [B, 3, H, W] tensor. */
export function stackImages(images: readonly Float32Array[], width: number, height: number): Tensor<'float32'> {
  const per = 3 * width * height;
  const out = new Float32Array(images.length * per);
  images.forEach((img, b) => out.set(img, b * per));
  return tensor('float32', [images.length, 3, height, width], out);
}

/** RGB images of one size -> [B, 3, H, W] float32 in [-1, 1] (the pipeline's own conversion). */
export function imagesToTensor(images: readonly RGBImage[]): Tensor<'float32'> {
  const { width: W, height: H } = images[0]!;
  return stackImages(images.map((img) => rgbToCHW(img)), W, H);
}

/**
 * A mask at latent resolution, KerasHub's way: resized to the image size (nearest), thresholded at 0.5,
 * then resized to the latent grid (nearest, half-pixel centres: an 8x reduction takes pixel 8i + 4).
 */
export function maskToLatent(mask: MaskLike, i: number, width: number, height: number, lw: number, lh: number): Float32Array {
  let values: Float32Array;
  let mw: number;
  let mh: number;
  if (mask instanceof RGBImage) {
    [mw, mh] = [mask.width, mask.height];
    values = Float32Array.from({ length: mw * mh }, (_, p) => mask.data[p * 3]! / 255);
  } else if (mask && typeof mask === 'object' && 'shape' in mask) {
    const t = mask as Tensor;
    const shape = t.shape.length === 3 && t.shape[2] === 1 ? t.shape.slice(0, 2) : t.shape;
    if (shape.length !== 2) throw new SD3Error(`masks[${i}] must be [height, width], got [${t.shape.join(', ')}]`);
    [mh, mw] = shape as [number, number];
    if (t.dtype === 'bool') values = Float32Array.from(t.data as Uint8Array, (v) => (v ? 1 : 0));
    else if (t.dtype === 'uint8') values = Float32Array.from(t.data as Uint8Array, (v) => v / 255);
    else if (t.dtype === 'float32') values = t.data as Float32Array;
    else throw new SD3Error(`masks[${i}] must be bool, uint8 or float32, got ${t.dtype}`);
  } else {
    throw new SD3Error(`masks[${i}] must be an RGBImage or a [height, width] tensor, got ${describe(mask)}`);
  }
  const pick = nearestSource;
  const out = new Float32Array(lw * lh);
  for (let y = 0; y < lh; y++) {
    const iy = pick(y, height, lh); // pixel row at image size
    const my = pick(iy, mh, height); // mask row for that pixel
    for (let x = 0; x < lw; x++) {
      const mx = pick(pick(x, width, lw), mw, width);
      out[y * lw + x] = values[my * mw + mx]! > 0.5 ? 1 : 0;
    }
  }
  return out;
}
