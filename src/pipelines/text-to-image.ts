/** Text-to-image: noise -> denoising loop conditioned on the prompts -> VAE decode (SD3Task.run). */
import type { RGBImage } from '../image/image.js';
import { type GenerateOptions, type PromptInput, normalizePrompts } from './inputs.js';
import { SD3Task } from './task.js';

/** Loading from a preset: `TextToImage.fromPreset` in presets/tasks.ts (the public export). */
export class TextToImage extends SD3Task {
  static override readonly defaults = { numSteps: 28, guidanceScale: 7.0 };

  generate(prompt: string | { prompts: string; negativePrompts?: string | readonly string[] }, options?: GenerateOptions): Promise<RGBImage>;
  generate(prompts: readonly string[] | { prompts: readonly string[]; negativePrompts?: string | readonly string[] }, options?: GenerateOptions): Promise<RGBImage[]>;
  generate(input: PromptInput, options?: GenerateOptions): Promise<RGBImage | RGBImage[]>;
  async generate(input: PromptInput, options?: GenerateOptions): Promise<RGBImage | RGBImage[]> {
    const prompts = normalizePrompts(input);
    const images = await this.run({ task: 'text-to-image', prompts }, options);
    return prompts.single ? images[0]! : images;
  }
}
