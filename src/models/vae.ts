/**
 * SD3's VAE: encode images to latents, decode latents to images.
 *
 *   image [B, 3, H, W] in [-1, 1] --encode--> mean, logvar [B, 16, H/8, W/8]
 *   --samplePosterior(eps)--> VAE latent --toModelSpace--> model latent (what the MMDiT denoises)
 *   model latent --fromModelSpace--> VAE latent --decode--> image [B, 3, H, W]
 *
 * The encoder and decoder are separate sessions, each built on first use (text-to-image needs only the decoder).
 */
import { describe, SD3Error } from '../core/errors.js';
import { type Tensor, tensor } from '../core/tensor.js';
import type { WeightStore } from '../core/weights.js';
import { type BuiltModel, type FloatType, checkFloatType } from '../onnx/builder.js';
import { type RuntimeOptions, Session, SessionCache, runtimeOptions } from '../runtime/ort.js';
import { inferVAEConfig, type VAEConfig } from './vae-config.js';
import { buildVAEDecoder, buildVAEEncoder } from './vae-graph.js';
import { checkTileOptions, decodeTiled, type TileOptions } from './vae-tiling.js';

export { inferVAEConfig, SD3_VAE_CONFIG, type VAEConfig } from './vae-config.js';
export type { TileOptions } from './vae-tiling.js';

// ---- latent format: the one place where SD3's scale and shift are applied ----

/** SD3's latent scale (reference `SD3LatentFormat.scale_factor`, KerasHub's VAE `scale`). */
export const LATENT_SCALE = 1.5305;
/** SD3's latent shift (reference `SD3LatentFormat.shift_factor`, KerasHub's VAE `shift`). */
export const LATENT_SHIFT = 0.0609;

function mapLatent(z: Tensor, what: string, f: (v: number) => number): Tensor<'float32'> {
  if (z.dtype !== 'float32') throw new SD3Error(`${what} takes a float32 latent, got ${z.dtype}`);
  const src = z.data as Float32Array;
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f(src[i]!);
  return tensor('float32', z.shape, out);
}

const SCALE32 = Math.fround(LATENT_SCALE);
const SHIFT32 = Math.fround(LATENT_SHIFT);

/** VAE latent -> model latent: (z - 0.0609) * 1.5305 (reference `process_in`, after encoding). */
export function toModelSpace(z: Tensor): Tensor<'float32'> {
  return mapLatent(z, 'toModelSpace', (v) => Math.fround(v - SHIFT32) * SCALE32);
}

/** Model latent -> VAE latent: z / 1.5305 + 0.0609 (reference `process_out`, before decoding). */
export function fromModelSpace(z: Tensor): Tensor<'float32'> {
  return mapLatent(z, 'fromModelSpace', (v) => Math.fround(v / SCALE32) + SHIFT32);
}

export interface Posterior {
  /** [B, z, h, w] */
  readonly mean: Tensor<'float32'>;
  /** [B, z, h, w], raw (not clamped) */
  readonly logvar: Tensor<'float32'>;
}

/**
 * A sample of the encoder's diagonal Gaussian: mean + exp(0.5 * clamp(logvar, -30, 20)) * eps, with the
 * caller's standard-normal `eps` (seeded noise) of the same shape. The reference always samples; pass zeros
 * for eps (or use `mean`) to take the mode.
 */
export function samplePosterior(posterior: Posterior, eps: Tensor): Tensor<'float32'> {
  const { mean, logvar } = posterior;
  if (eps.dtype !== 'float32' || eps.shape.join() !== mean.shape.join()) {
    throw new SD3Error(`eps must be float32 [${mean.shape.join(', ')}] like the mean, got ${eps.dtype} [${eps.shape.join(', ')}]`);
  }
  const m = mean.data;
  const lv = logvar.data;
  const e = eps.data as Float32Array;
  const out = new Float32Array(m.length);
  for (let i = 0; i < m.length; i++) {
    const std = Math.fround(Math.exp(Math.fround(0.5 * Math.min(20, Math.max(-30, lv[i]!)))));
    out[i] = m[i]! + Math.fround(std * e[i]!);
  }
  return tensor('float32', mean.shape, out);
}

// ---- input checks ----

function checkNCHW(x: unknown, what: string, channels: number, factor: number): Tensor<'float32'> {
  const t = x as Tensor;
  if (!t || typeof t !== 'object' || !Array.isArray(t.shape) || !ArrayBuffer.isView(t.data)) {
    throw new SD3Error(`${what} must be a Tensor, got ${describe(x)}`);
  }
  const dims = `[${t.shape.join(', ')}]`;
  if (t.dtype !== 'float32') throw new SD3Error(`${what} must be float32, got ${t.dtype} ${dims}`);
  if (t.shape.length !== 4) throw new SD3Error(`${what} must be NCHW [B, ${channels}, H, W], got rank ${t.shape.length} ${dims}`);
  const [b, c, h, w] = t.shape as [number, number, number, number];
  if (c !== channels) throw new SD3Error(`${what} must have ${channels} channels (NCHW), got ${dims}`);
  if (b < 1 || h < 1 || w < 1) throw new SD3Error(`${what} must not be empty, got ${dims}`);
  if (h % factor !== 0 || w % factor !== 0) {
    throw new SD3Error(`${what} height and width must be multiples of ${factor}, got ${h}x${w}`);
  }
  return t as Tensor<'float32'>;
}

// ---- the model ----

export interface VAEOptions extends RuntimeOptions {
  /** GroupNorm groups, which the weights cannot show (default 32, SD3's); the demo checkpoint records 8. */
  readonly groups?: number;
  /**
   * 'float16' computes the convolutions in float16 (GroupNorm and the middle attention in float32; input and
   * output float32), for a GPU with `shader-f16` (see MMDiTLoadOptions.dtype). Default 'float32'.
   */
  readonly dtype?: FloatType;
  /**
   * 'int8' runs the decoder's 3x3 convolutions after conv_in (resnets, upsamples, conv_out) as int8 products (int8 weights quantized at
   * load, per-tensor uint8 activations; CPU only, float32 `dtype` only): about 2x faster decodes on CPUs with
   * VNNI or AMX, not exact (BENCHMARKS.md "int8 VAE decode"). Default 'float32', the exact decoder. The encoder
   * is float32 either way.
   */
  readonly decoderDtype?: 'float32' | 'int8';
}

export interface DecodeOptions {
  /** Decode in overlapping latent tiles to bound memory (off by default; not bit-exact, see vae-tiling.ts). */
  readonly tile?: TileOptions | false;
}

/**
 * SD3's autoencoder on onnxruntime.
 *
 * @example
 * const vae = await VAE.load(prefixed(store, 'first_stage_model.'));
 * const image = await vae.decode(fromModelSpace(latent));         // [1, 3, 1024, 1024]
 * const { mean } = await vae.encode(image);                        // [1, 16, 128, 128]
 * await vae.dispose();
 */
export class VAE {
  private readonly sessions = new SessionCache();

  private constructor(readonly config: VAEConfig, private readonly store: WeightStore, private readonly opts: VAEOptions) {}

  /** Reads the configuration from `store` (VAE names without prefix); sessions are built on first use. */
  static async load(store: WeightStore, opts: VAEOptions = {}): Promise<VAE> {
    checkFloatType(opts.dtype, 'VAE dtype');
    if (opts.decoderDtype !== undefined && opts.decoderDtype !== 'float32' && opts.decoderDtype !== 'int8') {
      throw new SD3Error(`VAE decoderDtype must be 'float32' or 'int8', got ${JSON.stringify(opts.decoderDtype)}`);
    }
    if (opts.decoderDtype === 'int8' && (opts.dtype ?? 'float32') !== 'float32') {
      throw new SD3Error(`VAE decoderDtype 'int8' computes around its int8 convolutions in float32; it cannot be combined with dtype '${opts.dtype}'`);
    }
    if (opts.decoderDtype === 'int8' && opts.device === 'webgpu') {
      throw new SD3Error(`VAE decoderDtype 'int8' runs on the CPU only (ORT's int8 matrix multiply), not on device '${opts.device}'`);
    }
    return new VAE(inferVAEConfig(store, opts.groups === undefined ? {} : { groups: opts.groups }), store, opts);
  }

  /** image [B, 3, H, W] in [-1, 1], H and W multiples of the downsampling factor -> posterior [B, 16, H/f, W/f]. */
  async encode(image: Tensor): Promise<Posterior> {
    if (!this.config.hasEncoder) throw new SD3Error(`${this.store.label} holds no VAE encoder weights`);
    const x = checkNCHW(image, 'image', this.config.inChannels, this.config.downsampleFactor);
    const session = await this.session('encoder', () => buildVAEEncoder(this.store, this.config, this.dtype));
    const out = await session.run({ image: x });
    return { mean: out.mean as Tensor<'float32'>, logvar: out.logvar as Tensor<'float32'> };
  }

  /** VAE-space latent [B, 16, h, w] (see fromModelSpace) -> image [B, 3, h*f, w*f], roughly [-1, 1], not clamped. */
  async decode(latent: Tensor, opts: DecodeOptions = {}): Promise<Tensor<'float32'>> {
    if (!this.config.hasDecoder) throw new SD3Error(`${this.store.label} holds no VAE decoder weights`);
    const z = checkNCHW(latent, 'latent', this.config.zChannels, 1);
    if (opts.tile) checkTileOptions(opts.tile);
    const int8 = this.opts.decoderDtype === 'int8';
    const session = await this.session('decoder', () => buildVAEDecoder(this.store, this.config, this.dtype, { int8 }));
    const run = async (t: Tensor<'float32'>) => (await session.run({ latent: t })).image as Tensor<'float32'>;
    return opts.tile ? decodeTiled(z, opts.tile, this.config.downsampleFactor, run) : run(z);
  }

  /** What the convolutions compute in. */
  get dtype(): FloatType { return this.opts.dtype ?? 'float32'; }

  /** Frees one half's session (e.g. the encoder once an init image is encoded); it is rebuilt if used again. */
  async release(part: 'encoder' | 'decoder'): Promise<void> {
    await this.sessions.release(part);
  }

  async dispose(): Promise<void> {
    await this.sessions.releaseAll();
  }

  private session(part: 'encoder' | 'decoder', build: () => BuiltModel): Promise<Session> {
    return this.sessions.get(part, async () => {
      const model = build();
      const half = this.dtype === 'float16';
      const int8 = part === 'decoder' && this.opts.decoderDtype === 'int8';
      // An int8 decoder has only CPU kernels, so 'auto' means the CPU for it.
      const placed = { ...runtimeOptions(this.opts), ...(int8 ? { device: 'cpu' as const } : {}) };
      return Session.create(`VAE ${part}${half ? ' (float16)' : int8 ? ' (int8)' : ''}`, model, { ...placed, ...(half ? { float16: true } : {}) });
    });
  }
}
