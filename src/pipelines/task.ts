/** What the three tasks share: the backbone, the preprocessor, the image size, and the steps around the loop. */
import { AbortError, SD3Error } from '../core/errors.js';
import { type Tensor, tensor } from '../core/tensor.js';
import { RGBImage } from '../image/image.js';
import { imageToUint8 } from '../image/pixels.js';
import type { SD3Backbone } from './backbone.js';
import type { Conditioning } from './denoise.js';
import { modelName, pngMetadata } from './infotext.js';
import type { Prompts } from './inputs.js';
import type { SD3Preprocessor } from './preprocessor.js';

export interface ImageShape {
  readonly width: number;
  readonly height: number;
}

export const VERSION = '0.1.0';

export abstract class SD3Task {
  constructor(readonly backbone: SD3Backbone, readonly preprocessor: SD3Preprocessor, readonly imageShape: ImageShape) {
    checkImageShape(imageShape, backbone);
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
  protected async encodePrompts(p: Prompts, guidanceScale: number, signal?: AbortSignal): Promise<Conditioning & { readonly truncated: readonly boolean[] }> {
    // Our AbortError, as when aborted between steps (throwIfAborted would throw the signal's reason instead).
    if (signal?.aborted) throw new AbortError();
    const cfg = guidanceScale > 1;
    const all = cfg ? [...p.prompts, ...p.negatives] : p.prompts;
    const ids = this.preprocessor.generatePreprocess(all);
    const emb = await this.backbone.encodeText(ids);
    const B = p.prompts.length;
    const truncated = ids.truncated.slice(0, B);
    if (!cfg) return { positive: emb, truncated };
    const rows = (t: Tensor<'float32'>, from: number, to: number) => {
      const per = t.data.length / t.shape[0]!;
      return tensor('float32', [to - from, ...t.shape.slice(1)], t.data.slice(from * per, to * per));
    };
    return {
      positive: { context: rows(emb.context, 0, B), y: rows(emb.y, 0, B) },
      negative: { context: rows(emb.context, B, 2 * B), y: rows(emb.y, B, 2 * B) },
      truncated,
    };
  }

  /** Model-space latents -> 8-bit images carrying their generation parameters. */
  protected async decodeImages(latent: Float32Array, shape: readonly number[], meta: (i: number) => Record<string, unknown>, truncated: readonly boolean[] = []): Promise<RGBImage[]> {
    const image = await this.backbone.decode(tensor('float32', shape, latent));
    const u8 = imageToUint8(image);
    const [B, H, W] = u8.shape as [number, number, number, number];
    const model = modelName(this.backbone.weights.label);
    return Array.from({ length: B }, (_, i) => new RGBImage(W, H, (u8.data as Uint8Array).slice(i * H * W * 3, (i + 1) * H * W * 3),
      pngMetadata({ ...meta(i), model, ...(truncated[i] ? { promptTruncated: true } : {}) }, VERSION)));
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
