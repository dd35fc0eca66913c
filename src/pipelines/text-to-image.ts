/** Text-to-image: noise -> denoising loop conditioned on the prompts -> VAE decode. */
import type { RGBImage } from '../image/image.js';
import { sigmaSchedule } from '../sampler/flow-match.js';
import { batchNoise } from '../sampler/noise.js';
import { type GenerateOptions, type PromptInput, normalizePrompts, resolveOptions } from './inputs.js';
import { SD3Task } from './task.js';
import { type PresetOptions, loadPreset } from '../presets/index.js';

export class TextToImage extends SD3Task {
  /** Loads a preset name, a local checkpoint (file or folder) or a hub id; see presets/index.ts. */
  static async fromPreset(preset: string, options: PresetOptions = {}): Promise<TextToImage> {
    const { backbone, preprocessor, imageShape } = await loadPreset(preset, options);
    return new TextToImage(backbone, preprocessor, imageShape);
  }

  static readonly defaults = { numSteps: 28, guidanceScale: 7.0 };

  generate(prompt: string | { prompts: string; negativePrompts?: string | readonly string[] }, options?: GenerateOptions): Promise<RGBImage>;
  generate(prompts: readonly string[] | { prompts: readonly string[]; negativePrompts?: string | readonly string[] }, options?: GenerateOptions): Promise<RGBImage[]>;
  generate(input: PromptInput, options?: GenerateOptions): Promise<RGBImage | RGBImage[]>;
  async generate(input: PromptInput, options?: GenerateOptions): Promise<RGBImage | RGBImage[]> {
    // 1. Normalise the inputs and options.
    const p = normalizePrompts(input);
    const o = resolveOptions(options, p.prompts.length, { numSteps: TextToImage.defaults.numSteps, strength: 1 });
    // 2. Encode the prompts (and negative prompts when guidance is on).
    const cond = await this.encodePrompts(p, o.guidanceScale, options?.signal, options);
    // 3. Draw the starting noise, one seed per image.
    const shape = await this.latentShape(p.prompts.length);
    const noise = batchNoise(o.seeds, shape[1] * shape[2] * shape[3]);
    // 4. Denoise from sigma 1 to 0.
    const sigmas = sigmaSchedule(o.numSteps, this.backbone.shift);
    const latent = await this.backbone.denoise({
      shape, noise, sigmas, start: 0, cond, guidanceScale: o.guidanceScale,
      ...(options?.onStep ? { onStep: options.onStep } : {}),
      ...(options?.signal ? { signal: options.signal } : {}),
    });
    // 5. Decode to 8-bit images that carry their parameters.
    const images = await this.decodeImages(latent, shape, (i) => ({
      task: 'text-to-image', prompt: p.prompts[i], negativePrompt: p.negatives[i], seed: o.seeds[i], numSteps: o.numSteps,
      guidanceScale: o.guidanceScale, shift: this.backbone.shift, width: this.imageShape.width, height: this.imageShape.height, sampler: 'euler',
    }), cond.truncated, cond.meta);
    return p.single ? images[0]! : images;
  }
}
