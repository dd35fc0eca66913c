/** Image-to-image: encode the image, noise it to the strength's starting sigma, denoise, decode (SD3Task.run). */
import { SD3Error } from '../core/errors.js';
import type { RGBImage } from '../image/image.js';
import { type ImagePromptInput, type StrengthOptions, asList, normalizePrompts } from './inputs.js';
import { SD3Task } from './task.js';

/** Loading from a preset: `ImageToImage.fromPreset` in presets/tasks.ts (the public export). */
export class ImageToImage extends SD3Task {
  static override readonly defaults = { numSteps: 50, guidanceScale: 7.0, strength: 0.8 };

  generate(input: ImagePromptInput & { prompts: string }, options?: StrengthOptions): Promise<RGBImage>;
  generate(input: ImagePromptInput & { prompts: readonly string[] }, options?: StrengthOptions): Promise<RGBImage[]>;
  generate(input: ImagePromptInput, options?: StrengthOptions): Promise<RGBImage | RGBImage[]>;
  async generate(input: ImagePromptInput, options?: StrengthOptions): Promise<RGBImage | RGBImage[]> {
    if (typeof input !== 'object' || input === null || !('images' in input)) throw new SD3Error('image-to-image input must be { images, prompts, negativePrompts? }');
    const prompts = normalizePrompts(input);
    // Images are resized to imageShape (nearest, as KerasHub); one image serves the whole batch.
    const images = asList(input.images, 'images', prompts.prompts.length);
    const out = await this.run({ task: 'image-to-image', prompts, images }, options);
    return prompts.single ? out[0]! : out;
  }
}
