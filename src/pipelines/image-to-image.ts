/** Image-to-image: encode the image, noise it to the strength's starting sigma, denoise, decode. */
import { SD3Error } from '../core/errors.js';
import type { RGBImage } from '../image/image.js';
import { sigmaSchedule, startIndex } from '../sampler/flow-match.js';
import { batchNoise } from '../sampler/noise.js';
import { type ImagePromptInput, type StrengthOptions, asList, imagesToTensor, normalizePrompts, resolveOptions, toRGB } from './inputs.js';
import { SD3Task } from './task.js';
import { type PresetOptions, loadPreset } from '../presets/index.js';

export class ImageToImage extends SD3Task {
  /** Loads a preset name, a local checkpoint (file or folder) or a hub id; see presets/index.ts. */
  static async fromPreset(preset: string, options: PresetOptions = {}): Promise<ImageToImage> {
    const { backbone, preprocessor, imageShape } = await loadPreset(preset, options);
    return new ImageToImage(backbone, preprocessor, imageShape);
  }

  static readonly defaults = { numSteps: 50, guidanceScale: 7.0, strength: 0.8 };

  generate(input: ImagePromptInput & { prompts: string }, options?: StrengthOptions): Promise<RGBImage>;
  generate(input: ImagePromptInput & { prompts: readonly string[] }, options?: StrengthOptions): Promise<RGBImage[]>;
  generate(input: ImagePromptInput, options?: StrengthOptions): Promise<RGBImage | RGBImage[]>;
  async generate(input: ImagePromptInput, options?: StrengthOptions): Promise<RGBImage | RGBImage[]> {
    // 1. Normalise the inputs and options; images are resized to imageShape (nearest, as KerasHub).
    if (typeof input !== 'object' || input === null || !('images' in input)) throw new SD3Error('image-to-image input must be { images, prompts, negativePrompts? }');
    const p = normalizePrompts(input);
    const o = resolveOptions(options, p.prompts.length, ImageToImage.defaults);
    const { width, height } = this.imageShape;
    const images = asList(input.images, 'images', p.prompts.length).map((img, i) => toRGB(img, i, width, height));
    // 2. Encode the prompts.
    const cond = await this.encodePrompts(p, o.guidanceScale, options?.signal, options);
    // 3. Encode the images to model-space latents (posterior sampled with the image's seed).
    const init = await this.backbone.encodeImage(imagesToTensor(images), o.seeds);
    // 4. Noise, then denoise from the strength's first step: int(numSteps * (1 - strength)).
    const shape = await this.latentShape(p.prompts.length);
    const noise = batchNoise(o.seeds, shape[1] * shape[2] * shape[3]);
    const sigmas = sigmaSchedule(o.numSteps, this.backbone.shift);
    const start = startIndex(o.numSteps, o.strength);
    const latent = await this.backbone.denoise({
      shape, noise, init, sigmas, start, cond, guidanceScale: o.guidanceScale,
      ...(options?.onStep ? { onStep: options.onStep } : {}),
      ...(options?.signal ? { signal: options.signal } : {}),
    });
    // 5. Decode.
    const out = await this.decodeImages(latent, shape, (i) => ({
      task: 'image-to-image', prompt: p.prompts[i], negativePrompt: p.negatives[i], seed: o.seeds[i], numSteps: o.numSteps,
      strength: o.strength, guidanceScale: o.guidanceScale, shift: this.backbone.shift, width, height, sampler: 'euler',
    }), cond.truncated, cond.meta);
    return p.single ? out[0]! : out;
  }
}
