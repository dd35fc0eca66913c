/**
 * The server's runner of jobs on the loaded model: picks the task (a mask: inpainting; an image:
 * image-to-image; else text-to-image) at the job's own size (the graphs are dynamic, the tasks are cheap views
 * of the shared backbone), feeds step progress and previews to the job, and turns A1111's interrupt into the
 * images the latest latent decodes to.
 */
import { AbortError, SD3Error } from '../core/errors.js';
import { resolveLoraName } from '../lora/index.js';
import { tensor } from '../core/tensor.js';
import { RGBImage } from '../image/image.js';
import { imageToUint8 } from '../image/pixels.js';
import type { SD3Backbone } from '../pipelines/backbone.js';
import type { StepInfo } from '../pipelines/denoise.js';
import { ImageToImage } from '../pipelines/image-to-image.js';
import { JSON_KEYWORD, INFOTEXT_KEYWORD, modelName, pngMetadata } from '../pipelines/infotext.js';
import { Inpaint } from '../pipelines/inpaint.js';
import type { SD3Preprocessor } from '../pipelines/preprocessor.js';
import { type ImageShape, VERSION } from '../pipelines/task.js';
import { TextToImage } from '../pipelines/text-to-image.js';
import { startIndex } from '../sampler/flow-match.js';
import type { Job, JobResultImage, JobRunner, JobSpec } from './queue.js';
import { jobKind } from './queue.js';
import type { JobLora } from './features.js';

export interface LoadedModel {
  /** The name clients see (the -m argument). */
  readonly name: string;
  readonly backbone: SD3Backbone;
  readonly preprocessor: SD3Preprocessor;
  /** The default size. */
  readonly imageShape: ImageShape;
}

export const TASK_DEFAULTS = {
  'text-to-image': { steps: TextToImage.defaults.numSteps, strength: 1 },
  'image-to-image': { steps: ImageToImage.defaults.numSteps, strength: ImageToImage.defaults.strength },
  inpaint: { steps: Inpaint.defaults.numSteps, strength: Inpaint.defaults.strength },
} as const;

/**
 * The steps, guidance and strength a request gets for what it leaves out: the model's own sampling defaults
 * (SD3.5's 40 / 4.5, Turbo's 4 / 1, a checkpoint's metadata) where it has them, else KerasHub's per task.
 */
export function modeDefaults(kind: keyof typeof TASK_DEFAULTS, model?: { readonly numSteps?: number; readonly guidanceScale?: number }): { steps: number; cfgScale: number; strength: number } {
  return {
    steps: model?.numSteps ?? TASK_DEFAULTS[kind].steps,
    cfgScale: model?.guidanceScale ?? TextToImage.defaults.guidanceScale,
    strength: TASK_DEFAULTS[kind].strength,
  };
}

function isAbort(e: unknown): boolean {
  return e instanceof AbortError || (e as Error)?.name === 'AbortError';
}

/** Steps the denoising loop runs for this spec (strength cuts image-to-image short); needs no model. */
export function stepsRun(spec: JobSpec): number {
  const kind = jobKind(spec);
  return kind === 'text-to-image' ? spec.steps : spec.steps - startIndex(spec.steps, spec.strength ?? TASK_DEFAULTS[kind].strength);
}

export class Engine implements JobRunner {
  /** Shown in PNG metadata and A1111's sd_model_name. */
  readonly checkpoint: string;

  /** `loraDir`: the folder the LoRA names of jobs are resolved in (jobs naming LoRAs are refused without one). */
  constructor(readonly model: LoadedModel, private readonly opts: { previewDecodeEvery?: number; loraDir?: string } = {}) {
    this.checkpoint = modelName(model.backbone.weights.label);
  }

  /** Grid limit of the MMDiT: the largest width or height it can place. */
  get maxSize(): number {
    return this.model.backbone.mmditConfig.posEmbedMaxSize * 16;
  }

  stepsRun(spec: JobSpec): number {
    return stepsRun(spec);
  }

  async run(job: Job, signal: AbortSignal, onStep: (info: StepInfo) => void): Promise<JobResultImage[]> {
    const s = job.spec;
    const { backbone, preprocessor } = this.model;
    const shape = { width: s.width, height: s.height };
    const input = { prompts: Array.from({ length: s.batch }, () => s.prompt), negativePrompts: s.negativePrompt };
    const side: Promise<void>[] = [];
    await this.switchLoras(s.loras ?? []);
    const options = {
      numSteps: s.steps, guidanceScale: s.cfgScale, seed: s.seed, signal,
      ...(s.strength !== undefined ? { strength: s.strength } : {}),
      ...(s.sampler ? { sampler: s.sampler } : {}),
      ...(s.skipLayerGuidance ? { skipLayerGuidance: s.skipLayerGuidance } : {}),
      ...(s.stepCache ? { stepCache: s.stepCache } : {}),
      ...(s.promptWeights !== undefined ? { promptWeights: s.promptWeights } : {}),
      ...(s.longPrompts ? { longPrompts: s.longPrompts } : {}),
      onStep: (info: StepInfo) => {
        onStep(info);
        if (job.wantsPreviews && info.preview) side.push(this.cheapPreview(job, info));
        const every = this.opts.previewDecodeEvery;
        const vaePreview = every !== undefined && job.wantsPreviews && info.step % every === 0 && info.step < info.total;
        if (job.decodeAt.has(info.step) || vaePreview) side.push(this.decodedPreview(job, info, vaePreview));
      },
    };
    let images: RGBImage[];
    try {
      if (s.mask && s.image) images = await new Inpaint(backbone, preprocessor, shape).generate({ ...input, images: s.image, masks: s.mask }, options);
      else if (s.image) images = await new ImageToImage(backbone, preprocessor, shape).generate({ ...input, images: s.image }, options);
      else images = await new TextToImage(backbone, preprocessor, shape).generate(input, options);
    } catch (e) {
      if (!(isAbort(e) && job.stopReason === 'interrupt')) throw e;
      // A1111's interrupt: what the run has so far, decoded (nothing when no step had finished).
      images = job.lastStep ? await this.decodeLatent(job, job.lastStep) : [];
    } finally {
      await Promise.allSettled(side);
    }
    return images.map((img, i) => ({
      png: img.toPNG(),
      seed: (s.seed + i) % 0x100000000,
      infotext: img.metadata[INFOTEXT_KEYWORD] ?? '',
      parameters: JSON.parse(img.metadata[JSON_KEYWORD] ?? '{}') as Record<string, unknown>,
    }));
  }

  /**
   * Applies the job's LoRAs (resolved in this engine's folder) before it runs; called from the queue's one worker
   * loop, so jobs never race on the backbone's set. A backbone that never had LoRAs is left untouched by a job
   * without any (no branch rebuild).
   */
  private async switchLoras(loras: readonly JobLora[]): Promise<void> {
    const { backbone } = this.model;
    if (loras.length > 0 && this.opts.loraDir === undefined) {
      throw new SD3Error(`the job names LoRA ${JSON.stringify(loras[0]!.name)} but this worker has no LoRA folder (start it with --lora-dir DIR)`);
    }
    const specs = loras.map((l) => ({ path: resolveLoraName(this.opts.loraDir!, l.name), scale: l.scale }));
    if (specs.length === 0 && backbone.loras.length === 0) return;
    // setLoras reads a file once while its size and mtime stay, and refuses a bad set whole (an SD3Error: a 400).
    await backbone.setLoras(specs);
  }

  /** The latent preview of the first image, kept on the job and sent to its listeners. */
  private async cheapPreview(job: Job, info: StepInfo): Promise<void> {
    const [img] = await info.preview!();
    if (!img || job.terminal) return;
    job.setPreview(info.step, img.toPNG(), 'latent');
  }

  /** A true VAE decode of the current latent (OpenAI partial images; `previewDecodeEvery`). */
  private async decodedPreview(job: Job, info: StepInfo, asPreview: boolean): Promise<void> {
    const images = await this.decodeLatent(job, info, false);
    if (job.terminal) return;
    const pngs = images.map((img) => img.toPNG());
    if (job.decodeAt.has(info.step)) job.setDecoded(info.step, pngs);
    if (asPreview && pngs[0]) job.setPreview(info.step, pngs[0], 'vae');
  }

  private async decodeLatent(job: Job, info: StepInfo, interrupted = true): Promise<RGBImage[]> {
    const s = job.spec;
    const u8 = imageToUint8(await this.model.backbone.decode(tensor('float32', info.latent.shape, info.latent.data)));
    const [B, H, W] = u8.shape as [number, number, number, number];
    const kind = jobKind(s);
    return Array.from({ length: B }, (_, i) => new RGBImage(W, H, (u8.data as Uint8Array).slice(i * H * W * 3, (i + 1) * H * W * 3), pngMetadata({
      task: kind, prompt: s.prompt, negativePrompt: s.negativePrompt, seed: (s.seed + i) % 0x100000000, numSteps: s.steps,
      ...(kind !== 'text-to-image' ? { strength: s.strength ?? TASK_DEFAULTS[kind].strength } : {}),
      guidanceScale: s.cfgScale, shift: this.model.backbone.shift, width: W, height: H, sampler: s.sampler ?? 'euler',
      ...(s.stepCache ? { stepCache: s.stepCache } : {}), model: this.checkpoint,
      ...(interrupted ? { interrupted: true, stepsDone: info.step } : {}),
    }, VERSION)));
  }
}
