/**
 * Inpainting, KerasHub's algorithm: image-to-image whose latents outside the mask are replaced after every
 * step by the image latents re-noised to the next sigma (the clean latents after the last step). The mask acts
 * in latent space only; pixels are not composited afterwards.
 */
import { SD3Error } from '../core/errors.js';
import type { RGBImage } from '../image/image.js';
import { type InpaintInput, type StrengthOptions, asList, normalizePrompts } from './inputs.js';
import { SD3Task } from './task.js';

/** Loading from a preset: `Inpaint.fromPreset` in presets/tasks.ts (the public export). */
export class Inpaint extends SD3Task {
  static override readonly defaults = { numSteps: 50, guidanceScale: 7.0, strength: 0.6 };

  generate(input: InpaintInput & { prompts: string }, options?: StrengthOptions): Promise<RGBImage>;
  generate(input: InpaintInput & { prompts: readonly string[] }, options?: StrengthOptions): Promise<RGBImage[]>;
  generate(input: InpaintInput, options?: StrengthOptions): Promise<RGBImage | RGBImage[]>;
  async generate(input: InpaintInput, options?: StrengthOptions): Promise<RGBImage | RGBImage[]> {
    if (typeof input !== 'object' || input === null || !('images' in input) || !('masks' in input)) {
      throw new SD3Error('inpaint input must be { images, masks, prompts, negativePrompts? }');
    }
    const prompts = normalizePrompts(input);
    const B = prompts.prompts.length;
    const out = await this.run({ task: 'inpaint', prompts, images: asList(input.images, 'images', B), masks: asList(input.masks, 'masks', B) }, options);
    return prompts.single ? out[0]! : out;
  }
}
