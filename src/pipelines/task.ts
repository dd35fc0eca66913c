/**
 * What the three tasks share: the backbone, the preprocessor, the image size, and `run`, the one generation
 * scaffold (encode the prompts, encode the image, noise, denoise, decode, tag the images with their parameters).
 */
import { AbortError, SD3Error } from '../core/errors.js';
import { type Tensor, tensor } from '../core/tensor.js';
import { RGBImage } from '../image/image.js';
import { imageToUint8 } from '../image/pixels.js';
import { sigmaSchedule, startIndex } from '../sampler/flow-match.js';
import { batchNoise } from '../sampler/noise.js';
import type { SD3Backbone } from './backbone.js';
import type { Conditioning, StepInfo } from './denoise.js';
import { type GenerateOptions, type ImageLike, type MaskLike, type Prompts, type Resolved, type TaskDefaults, maskToLatent, resolveOptions, samplerOptions, stackImages, toImageCHW } from './inputs.js';
import { modelName, pngMetadata } from './infotext.js';
import type { SD3Preprocessor } from './preprocessor.js';
import type { TextOptions } from './text-windows.js';
import * as path from 'node:path';

export type TaskName = 'text-to-image' | 'image-to-image' | 'inpaint';

/** What one task call hands to `SD3Task.run`: its prompts and, for the image tasks, its images and masks. */
export interface RunInput {
  readonly task: TaskName;
  readonly prompts: Prompts;
  /** One per prompt (already broadcast); absent for text-to-image. */
  readonly images?: readonly ImageLike[];
  /** Inpainting: one per prompt. */
  readonly masks?: readonly MaskLike[];
}

export interface ImageShape {
  readonly width: number;
  readonly height: number;
}

export const VERSION = '0.1.0';

export abstract class SD3Task {
  /** KerasHub's defaults of the task (each subclass declares its own). */
  static readonly defaults: TaskDefaults = { numSteps: 28, guidanceScale: 7.0 };

  constructor(readonly backbone: SD3Backbone, readonly preprocessor: SD3Preprocessor, readonly imageShape: ImageShape) {
    checkImageShape(imageShape, backbone);
  }

  /** The defaults of the class this task was made from (a subclass may declare others). */
  get defaults(): TaskDefaults {
    return (this.constructor as typeof SD3Task).defaults;
  }

  /**
   * The generation every task runs: options checked, inputs converted at imageShape (masks to the latent grid),
   * prompts encoded, the image encoded (image tasks), noise drawn per seed, the loop from the strength's first
   * step, the decode. An abort seen after the last step or after the decode still ends in an AbortError, so
   * that nothing is returned (and nothing saved) for a run that was asked to stop.
   */
  protected async run(input: RunInput, options: GenerateOptions & { readonly strength?: number } | undefined): Promise<RGBImage[]> {
    const p = input.prompts;
    const B = p.prompts.length;
    const o = resolveOptions(options, B, input.images ? this.defaults : { ...this.defaults, strength: 1 }, this.backbone.sampling);
    const signal = options?.signal;
    const { width, height } = this.imageShape;
    const images = input.images?.map((img, i) => toImageCHW(img, i, width, height));
    const shape = await this.latentShape(B);
    const [, C, lh, lw] = shape;
    let mask: Float32Array | undefined;
    if (input.masks) {
      mask = new Float32Array(B * lh * lw);
      input.masks.forEach((m, i) => mask!.set(maskToLatent(m, i, width, height, lw, lh), i * lh * lw));
    }
    const cond = await this.encodePrompts(p, o.guidanceScale, signal, options ?? {});
    const init = images ? await this.backbone.encodeImage(stackImages(images, width, height), o.seeds) : undefined;
    const noise = batchNoise(o.seeds, C * lh * lw);
    const sigmas = sigmaSchedule(o.numSteps, this.backbone.shift);
    // Image tasks start at KerasHub's and the reference's int(numSteps * (1 - strength)).
    const start = images ? startIndex(o.numSteps, o.strength) : 0;
    // With the step cache on, the steps that reused the model's output are recorded in the images' metadata.
    const cachedSteps: number[] = [];
    const userStep = options?.onStep;
    const onStep = o.stepCache ? (info: StepInfo) => { if (info.cached) cachedSteps.push(info.step); userStep?.(info); } : userStep;
    const latent = await this.backbone.denoise({
      shape, noise, sigmas, start, cond, guidanceScale: o.guidanceScale, ...samplerOptions(o),
      ...(init ? { init } : {}),
      ...(mask ? { mask } : {}),
      ...(onStep ? { onStep } : {}),
      ...(signal ? { signal } : {}),
    });
    if (signal?.aborted) throw new AbortError();
    const extra = o.stepCache ? { ...cond.meta, cachedSteps } : cond.meta;
    const out = await this.decodeImages(latent, shape, (i) => this.meta(input.task, p, o, i), cond.truncated, extra);
    if (signal?.aborted) throw new AbortError();
    return out;
  }

  /** The generation parameters of image i, as stored in its PNG metadata. */
  protected meta(task: TaskName, p: Prompts, o: Resolved, i: number): Record<string, unknown> {
    return {
      task, prompt: p.prompts[i], negativePrompt: p.negatives[i], seed: o.seeds[i], numSteps: o.numSteps,
      ...(task === 'text-to-image' ? {} : { strength: o.strength }),
      guidanceScale: o.guidanceScale, shift: this.backbone.shift, width: this.imageShape.width, height: this.imageShape.height, ...samplerOptions(o),
    };
  }

  /** Latent shape [B, 16, H/8, W/8]. */
  protected async latentShape(batch: number): Promise<[number, number, number, number]> {
    const f = await this.backbone.downsampleFactor();
    return [batch, this.backbone.mmditConfig.inChannels, this.imageShape.height / f, this.imageShape.width / f];
  }

  /**
   * Positive and (when guidance > 1) negative text embeddings, and which positive prompts CLIP cut short
   * (more than 75 tokens): their images say so in their metadata (`promptTruncated`).
   */
  protected async encodePrompts(p: Prompts, guidanceScale: number, signal?: AbortSignal, options: TextOptions = {}): Promise<Conditioning & { readonly truncated: readonly boolean[]; readonly meta: Record<string, unknown> }> {
    // Our AbortError, as when aborted between steps (throwIfAborted would throw the signal's reason instead).
    if (signal?.aborted) throw new AbortError();
    const cfg = guidanceScale > 1;
    const all = cfg ? [...p.prompts, ...p.negatives] : p.prompts;
    const text: TextOptions = {
      longPrompts: options.longPrompts ?? this.preprocessor.textOptions.longPrompts ?? 'truncate',
      promptWeights: options.promptWeights ?? this.preprocessor.textOptions.promptWeights ?? false,
    };
    const ids = this.preprocessor.generatePreprocess(all, text);
    const emb = await this.backbone.encodeText(ids, signal);
    const B = p.prompts.length;
    const truncated = ids.truncated.slice(0, B);
    // Recorded in every image's metadata: how the prompt was read, and the LoRAs applied.
    const loras = this.backbone.loras;
    const meta: Record<string, unknown> = {
      ...(text.longPrompts === 'chunk' ? { longPrompts: 'chunk', clipWindows: ids.windows ?? 1 } : {}),
      ...(text.promptWeights ? { promptWeights: true } : {}),
      ...(loras.length ? { loras: loras.map((l) => ({ file: path.basename(l.path), scale: l.scale })) } : {}),
    };
    if (!cfg) return { positive: emb, truncated, meta };
    const rows = (t: Tensor<'float32'>, from: number, to: number) => {
      const per = t.data.length / t.shape[0]!;
      return tensor('float32', [to - from, ...t.shape.slice(1)], t.data.slice(from * per, to * per));
    };
    return {
      positive: { context: rows(emb.context, 0, B), y: rows(emb.y, 0, B) },
      negative: { context: rows(emb.context, B, 2 * B), y: rows(emb.y, B, 2 * B) },
      truncated,
      meta,
    };
  }

  /** Model-space latents -> 8-bit images carrying their generation parameters. */
  protected async decodeImages(latent: Float32Array, shape: readonly number[], meta: (i: number) => Record<string, unknown>, truncated: readonly boolean[] = [], extra: Record<string, unknown> = {}): Promise<RGBImage[]> {
    const image = await this.backbone.decode(tensor('float32', shape, latent));
    // NaN would be written as black pixels: a damaged checkpoint (NaN or infinite weights) is named instead.
    const bad = (image.data as Float32Array).findIndex((v) => Number.isNaN(v));
    if (bad >= 0) {
      throw new SD3Error(`the decoded image holds NaN values (first at element ${bad}): the weights of ${this.backbone.weights.label} probably hold NaN or infinite values (the int8 mode names the tensor)`);
    }
    const u8 = imageToUint8(image);
    const [B, H, W] = u8.shape as [number, number, number, number];
    const model = modelName(this.backbone.weights.label);
    return Array.from({ length: B }, (_, i) => new RGBImage(W, H, (u8.data as Uint8Array).slice(i * H * W * 3, (i + 1) * H * W * 3),
      pngMetadata({ ...meta(i), model, ...extra, ...(truncated[i] ? { promptTruncated: true } : {}) }, VERSION)));
  }

  async dispose(): Promise<void> {
    await this.backbone.dispose();
  }
}

export function checkImageShape(s: ImageShape, backbone: SD3Backbone): void {
  const unit = 16;
  for (const [k, v] of Object.entries({ width: s?.width, height: s?.height })) {
    if (!Number.isInteger(v) || (v as number) < unit || (v as number) % unit !== 0) {
      throw new SD3Error(`imageShape.${k} must be a positive multiple of ${unit} (patch 2 x VAE factor 8), got ${v}`);
    }
  }
  const max = backbone.mmditConfig.posEmbedMaxSize * unit;
  if (s.width > max || s.height > max) throw new SD3Error(`imageShape ${s.width}x${s.height} exceeds the MMDiT's position grid (at most ${max}x${max})`);
}
