/** What the three tasks share: the backbone, the preprocessor, the image size, and the steps around the loop. */
import { AbortError, SD3Error } from '../core/errors.js';
import { type Tensor, tensor } from '../core/tensor.js';
import { RGBImage } from '../image/image.js';
import { imageToUint8 } from '../image/pixels.js';
import type { SD3Backbone } from './backbone.js';
import type { Conditioning } from './denoise.js';
import type { Prompts } from './inputs.js';
import type { SD3Preprocessor } from './preprocessor.js';
import type { TextOptions } from './text-windows.js';
import * as path from 'node:path';

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
    const emb = await this.backbone.encodeText(ids);
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
    const u8 = imageToUint8(image);
    const [B, H, W] = u8.shape as [number, number, number, number];
    return Array.from({ length: B }, (_, i) => new RGBImage(W, H, (u8.data as Uint8Array).slice(i * H * W * 3, (i + 1) * H * W * 3), {
      parameters: asciiJSON({ ...meta(i), ...extra, ...(truncated[i] ? { promptTruncated: true } : {}) }),
      Software: `sd3-ts ${VERSION}`,
    }));
  }

  async dispose(): Promise<void> {
    await this.backbone.dispose();
  }
}

/**
 * JSON with every non-ASCII character escaped (\uXXXX): PNG tEXt chunks are Latin-1 and HTTP headers carry
 * no more, so prompts in any script survive both and JSON.parse gives them back unchanged.
 */
export function asciiJSON(value: unknown): string {
  return JSON.stringify(value).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
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
