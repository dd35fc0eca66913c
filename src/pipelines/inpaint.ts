/**
 * Inpainting, KerasHub's algorithm: image-to-image whose latents outside the mask are replaced after every
 * step by the image latents re-noised to the next sigma (the clean latents after the last step).
 */
import { SD3Error } from '../core/errors.js';
import type { RGBImage } from '../image/image.js';
import { sigmaSchedule, startIndex } from '../sampler/flow-match.js';
import { batchNoise } from '../sampler/noise.js';
import { type InpaintInput, type StrengthOptions, asList, imagesToTensor, maskToLatent, normalizePrompts, resolveOptions, toRGB } from './inputs.js';
import { SD3Task } from './task.js';
import { type PresetOptions, loadPreset } from '../presets/index.js';

export class Inpaint extends SD3Task {
  /** Loads a preset name, a local checkpoint (file or folder) or a hub id; see presets/index.ts. */
  static async fromPreset(preset: string, options: PresetOptions = {}): Promise<Inpaint> {
    const { backbone, preprocessor, imageShape } = await loadPreset(preset, options);
    return new Inpaint(backbone, preprocessor, imageShape);
  }

  static readonly defaults = { numSteps: 50, guidanceScale: 7.0, strength: 0.6 };

  generate(input: InpaintInput & { prompts: string }, options?: StrengthOptions): Promise<RGBImage>;
  generate(input: InpaintInput & { prompts: readonly string[] }, options?: StrengthOptions): Promise<RGBImage[]>;
  generate(input: InpaintInput, options?: StrengthOptions): Promise<RGBImage | RGBImage[]>;
  async generate(input: InpaintInput, options?: StrengthOptions): Promise<RGBImage | RGBImage[]> {
    // 1. Normalise the inputs and options; images and masks are taken at imageShape.
    if (typeof input !== 'object' || input === null || !('images' in input) || !('masks' in input)) {
      throw new SD3Error('inpaint input must be { images, masks, prompts, negativePrompts? }');
    }
    const p = normalizePrompts(input);
    const B = p.prompts.length;
    const o = resolveOptions(options, B, Inpaint.defaults);
    const { width, height } = this.imageShape;
    const images = asList(input.images, 'images', B).map((img, i) => toRGB(img, i, width, height));
    const shape = await this.latentShape(B);
    const [, , lh, lw] = shape;
    const masks = asList(input.masks, 'masks', B).map((m, i) => maskToLatent(m, i, width, height, lw, lh));
    const mask = new Float32Array(B * lh * lw);
    masks.forEach((m, i) => mask.set(m, i * lh * lw));
    // 2. Encode the prompts.
    const cond = await this.encodePrompts(p, o.guidanceScale, options?.signal, options);
    // 3. Encode the images to model-space latents.
    const init = await this.backbone.encodeImage(imagesToTensor(images), o.seeds);
    // 4. Denoise from the strength's first step, blending the re-noised image back outside the mask.
    const noise = batchNoise(o.seeds, shape[1] * lh * lw);
    const sigmas = sigmaSchedule(o.numSteps, this.backbone.shift);
    const start = startIndex(o.numSteps, o.strength);
    const latent = await this.backbone.denoise({
      shape, noise, init, mask, sigmas, start, cond, guidanceScale: o.guidanceScale,
      ...(options?.onStep ? { onStep: options.onStep } : {}),
      ...(options?.signal ? { signal: options.signal } : {}),
    });
    // 5. Decode (the mask acts in latent space only; pixels are not composited afterwards).
    const out = await this.decodeImages(latent, shape, (i) => ({
      task: 'inpaint', prompt: p.prompts[i], negativePrompt: p.negatives[i], seed: o.seeds[i], numSteps: o.numSteps,
      strength: o.strength, guidanceScale: o.guidanceScale, shift: this.backbone.shift, width, height, sampler: 'euler',
    }), cond.truncated, cond.meta);
    return p.single ? out[0]! : out;
  }
}
