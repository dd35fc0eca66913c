/**
 * The public task classes: the pipelines' TextToImage, ImageToImage and Inpaint with KerasHub's `fromPreset`.
 * Loading lives here, above the pipelines, so that data flows one way (pipelines never import presets).
 */
import { ImageToImage as ImageToImageTask } from '../pipelines/image-to-image.js';
import { Inpaint as InpaintTask } from '../pipelines/inpaint.js';
import type { SD3Task } from '../pipelines/task.js';
import { TextToImage as TextToImageTask } from '../pipelines/text-to-image.js';
import { type PresetOptions, loadPreset } from './index.js';

type TaskClass<T extends SD3Task> = new (...args: ConstructorParameters<typeof TextToImageTask>) => T;

/**
 * Loads a preset name, a local checkpoint (file or folder) or a hub id (see presets/index.ts) into a task.
 * An image shape the model refuses closes the checkpoint it opened before the error goes up.
 */
export async function fromPreset<T extends SD3Task>(Task: TaskClass<T>, preset: string, options: PresetOptions = {}): Promise<T> {
  const { backbone, preprocessor, imageShape } = await loadPreset(preset, options);
  try {
    return new Task(backbone, preprocessor, imageShape);
  } catch (e) {
    await backbone.dispose();
    throw e;
  }
}

export class TextToImage extends TextToImageTask {
  static fromPreset(preset: string, options: PresetOptions = {}): Promise<TextToImage> {
    return fromPreset(TextToImage, preset, options);
  }
}

export class ImageToImage extends ImageToImageTask {
  static fromPreset(preset: string, options: PresetOptions = {}): Promise<ImageToImage> {
    return fromPreset(ImageToImage, preset, options);
  }
}

export class Inpaint extends InpaintTask {
  static fromPreset(preset: string, options: PresetOptions = {}): Promise<Inpaint> {
    return fromPreset(Inpaint, preset, options);
  }
}
