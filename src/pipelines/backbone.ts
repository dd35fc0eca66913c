/**
 * SD3's backbone: owns the models and exposes the generation steps (KerasHub's shape):
 * encodeText, encodeImage, addNoise, denoise, decode. Models are loaded on first use and can be released
 * one by one (`lowMemory` releases each as soon as the run no longer needs it).
 */
import { SD3Error } from '../core/errors.js';
import { type Tensor, tensor } from '../core/tensor.js';
import type { WeightStore } from '../core/weights.js';
import { type CLIPTextConfig, CLIPTextEncoder, buildCLIPTextModel, inferCLIPTextConfig } from '../models/clip.js';
import { sd3Conditioning } from '../models/conditioning.js';
import { MMDiT, type MMDiTConfig, buildMMDiTGraph, inferMMDiTConfig } from '../models/mmdit.js';
import { GraphBuilder } from '../onnx/builder.js';
import { LinearRecorder } from '../quant/int8.js';
import { type T5Config, T5Encoder, buildT5EncoderModel, inferT5Config } from '../models/t5.js';
import { VAE, fromModelSpace, samplePosterior, toModelSpace } from '../models/vae.js';
import { checkTileOptions } from '../models/vae-tiling.js';
import type { QuantizedLinears } from '../nn/layers.js';
import { type DeviceChoice, defaultDevice, parseDevice } from '../runtime/ort.js';
import { addNoise } from '../sampler/flow-match.js';
import { batchNoise } from '../sampler/noise.js';
import { type PromptEmbedding, type SampleOptions, sampleLatents } from './denoise.js';
import type { TokenIds } from './preprocessor.js';

/** Where each model's weights are (names without component prefixes) and what the shapes cannot tell. */
export interface SD3Weights {
  readonly label: string;
  readonly mmdit: WeightStore;
  readonly vae: WeightStore;
  readonly clipL: WeightStore;
  readonly clipG: WeightStore;
  readonly t5?: WeightStore | undefined;
  readonly clipLConfig?: Partial<CLIPTextConfig>;
  readonly clipGConfig?: Partial<CLIPTextConfig>;
  readonly t5Config?: Partial<T5Config>;
  /** The VAE's GroupNorm groups when not SD3's 32 (the demo checkpoint's metadata says 8). */
  readonly vaeGroups?: number;
  /** Flow-matching shift (3.0 for SD3 Medium). */
  readonly shift: number;
  /** int8 Linear weights for the named Linear layers of a model (cached next to the checkpoint). */
  readonly quantize?: (model: 'mmdit' | 't5' | 'clipL' | 'clipG', linearNames: readonly string[]) => QuantizedLinears;
  /** Closes open files. */
  readonly close?: () => void;
}

export interface BackboneOptions {
  /** CPU threads per operator (default: every core). */
  readonly threads?: number;
  /**
   * Where the models run: 'cpu' (default, or $SD3_DEVICE), 'webgpu' (the GPU through onnxruntime-node's
   * bundled WebGPU provider; float32 only) or 'auto' (the GPU when one is found, else the CPU).
   */
  readonly device?: DeviceChoice;
  /** Release each model as soon as a generation no longer needs it (slower repeated runs, lower peak memory). */
  readonly lowMemory?: boolean;
  /** 'int8' quantizes the MMDiT's Linear weights (cached next to the checkpoint). */
  readonly dtype?: 'float32' | 'int8';
  /**
   * Let the MMDiT's worker threads spin between operators (default true on the CPU: 6-10% faster steps measured
   * on a 2-core machine; set false when the CPU is shared with other busy work). Never on a GPU.
   */
  readonly spin?: boolean;
  /**
   * CLIP encoders' precision (default 'float32', with the file's fp16 weights kept resident on the CPU: 1.6 GB).
   * 'int8' saves about 0.4 GB more but per-tensor int8 activations lose much of CLIP's residual stream (16-21%
   * relative RMS on the tiny fixtures): opt in only to fit a very tight budget.
   */
  readonly clipDtype?: 'float32' | 'int8';
  /** T5-XXL precision when the weights are on disk: 'int8' (default, 4.8 GB) or 'float32' (fp16 weights resident on the CPU: 9.5 GB). */
  readonly t5Dtype?: 'float32' | 'int8';
  /** Decode in overlapping tiles of this many latent cells (off by default). */
  readonly vaeTile?: { readonly size: number; readonly overlap: number };
}

/** A model loaded on first use, releasable. */
class Lazy<T extends { dispose(): Promise<void> }> {
  private value: Promise<T> | undefined;
  constructor(private readonly make: () => Promise<T>) {}
  get loaded(): boolean { return this.value !== undefined; }
  get(): Promise<T> {
    this.value ??= this.make();
    this.value.catch(() => { this.value = undefined; });
    return this.value;
  }
  async release(): Promise<void> {
    const v = this.value;
    this.value = undefined;
    if (v) await (await v).dispose();
  }
}

export class SD3Backbone {
  readonly mmditConfig: MMDiTConfig;
  private readonly clipL: Lazy<CLIPTextEncoder>;
  private readonly clipG: Lazy<CLIPTextEncoder>;
  private readonly t5: Lazy<T5Encoder> | undefined;
  private readonly mmdit: Lazy<MMDiT>;
  private readonly vae: Lazy<VAE>;
  private vaeFactor: number | undefined;

  constructor(readonly weights: SD3Weights, readonly options: BackboneOptions = {}) {
    checkBackboneOptions(options);
    this.mmditConfig = inferMMDiTConfig(weights.mmdit);
    const choice = options.device ?? defaultDevice();
    const int8 = options.dtype === 'int8';
    const anyInt8 = int8 || options.clipDtype === 'int8';
    if (choice === 'webgpu' && anyInt8) {
      // ORT's int8 matrix multiply (DynamicQuantizeMatMul) exists only on the CPU provider: on a GPU every Linear
      // would round-trip through host memory.
      throw new SD3Error(`dtype 'int8' runs on the CPU only; with device '${choice}' use dtype 'float32'`);
    }
    // Every model gets the same placement and thread count ('auto' with int8 means the CPU).
    const device: DeviceChoice = choice === 'auto' && anyInt8 ? 'cpu' : choice;
    const runtime = { ...(options.threads !== undefined ? { threads: options.threads } : {}), device };
    const quant = (): QuantizedLinears => {
      if (!weights.quantize) throw new SD3Error(`int8 mode needs weights on disk (${weights.label} has none)`);
      return weights.quantize('mmdit', mmditInt8LinearNames(weights.mmdit));
    };
    // T5-XXL is 4.76 B parameters (19 GB as float32): on disk it always runs with int8 Linear weights (4.8 GB),
    // loaded alone and released right after encoding; see README "Memory".
    const t5Quant = (store: WeightStore): { quant?: QuantizedLinears } =>
      weights.quantize && options.t5Dtype !== 'float32' ? { quant: weights.quantize('t5', t5LinearNames(store, weights.t5Config)) } : {};
    const clipQuant = (m: 'clipL' | 'clipG', store: WeightStore, config: Partial<CLIPTextConfig> | undefined): { quant?: QuantizedLinears } =>
      options.clipDtype === 'int8' && weights.quantize ? { quant: weights.quantize(m, clipLinearNames(store, config)) } : {};
    this.clipL = new Lazy(() => CLIPTextEncoder.load(weights.clipL, weights.clipLConfig ?? {}, { ...runtime, label: 'CLIP-L', ...clipQuant('clipL', weights.clipL, weights.clipLConfig) }));
    this.clipG = new Lazy(() => CLIPTextEncoder.load(weights.clipG, weights.clipGConfig ?? {}, { ...runtime, label: 'CLIP-G', ...clipQuant('clipG', weights.clipG, weights.clipGConfig) }));
    // An int8 T5 runs on the CPU whatever the device (see the int8 note above); it runs once per generation.
    this.t5 = weights.t5 ? new Lazy(() => {
      const q = t5Quant(weights.t5!);
      return T5Encoder.load(weights.t5!, weights.t5Config ?? {}, { ...runtime, ...(q.quant ? { device: 'cpu' as const } : {}), label: 'T5-XXL', ...q });
    }) : undefined;
    this.mmdit = new Lazy(() => MMDiT.load(weights.mmdit, { ...runtime, spin: options.spin ?? true, ...(int8 ? { quant: quant() } : {}) }));
    this.vae = new Lazy(() => VAE.load(weights.vae, { ...runtime, ...(weights.vaeGroups !== undefined ? { groups: weights.vaeGroups } : {}) }));
  }

  get hasT5(): boolean { return this.t5 !== undefined; }
  get shift(): number { return this.weights.shift; }

  /** Pixels per latent cell (8 for SD3). */
  async downsampleFactor(): Promise<number> {
    this.vaeFactor ??= (await this.vae.get()).config.downsampleFactor;
    return this.vaeFactor;
  }

  /** Text embeddings of B prompts from their token ids: context [B, 77 + T, width], y [B, pooled]. */
  async encodeText(ids: TokenIds): Promise<PromptEmbedding> {
    const clipL = await (await this.clipL.get()).encode(ids.clipL);
    if (this.options.lowMemory) await this.clipL.release();
    const clipG = await (await this.clipG.get()).encode(ids.clipG);
    if (this.options.lowMemory) await this.clipG.release();
    let t5: Tensor | undefined;
    if (this.t5 && !ids.t5) throw new SD3Error(`${this.weights.label}: T5-XXL is loaded but there is no T5 tokenizer (spiece.model or tokenizer.json); add one, or load without t5`);
    if (this.t5 && ids.t5) {
      // Make room: T5 runs alone, then is released.
      await Promise.all([this.mmdit.release(), this.vae.release(), this.clipL.release(), this.clipG.release()]);
      t5 = await (await this.t5.get()).encode(ids.t5);
      await this.t5.release();
    }
    const { context, y } = sd3Conditioning({ clipL, clipG, t5 }, { contextWidth: this.mmditConfig.contextInFeatures });
    return { context, y };
  }

  /** Images [B, 3, H, W] in [-1, 1] -> model-space latents, sampling the posterior with seeded noise. */
  async encodeImage(images: Tensor<'float32'>, seeds: readonly number[]): Promise<Float32Array> {
    const vae = await this.vae.get();
    const posterior = await vae.encode(images);
    const per = posterior.mean.data.length / seeds.length;
    // A stream distinct from the diffusion noise of the same seed.
    const eps = batchNoise(seeds.map((s) => (s ^ 0x5bd1e995) >>> 0), per);
    const latent = toModelSpace(samplePosterior(posterior, tensor('float32', posterior.mean.shape, eps)));
    if (this.options.lowMemory) await vae.release('encoder');
    return latent.data;
  }

  /** sigma * noise + (1 - sigma) * latent */
  addNoise(latent: Float32Array, noise: Float32Array, sigma: number): Float32Array {
    return addNoise(latent, noise, sigma);
  }

  /** Runs the denoising loop (see denoise.ts) on the MMDiT. */
  async denoise(o: Omit<SampleOptions, 'model'>): Promise<Float32Array> {
    const model = await this.mmdit.get();
    const out = await sampleLatents({ ...o, model });
    if (this.options.lowMemory) await this.mmdit.release();
    return out;
  }

  /** Model-space latents [B, 16, h, w] -> images [B, 3, H, W], roughly in [-1, 1]. */
  async decode(latent: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    const vae = await this.vae.get();
    const image = await vae.decode(fromModelSpace(latent), this.options.vaeTile ? { tile: this.options.vaeTile } : {});
    if (this.options.lowMemory) await vae.release('decoder');
    return image;
  }

  /** Loads every model now (otherwise each loads on first use). */
  async loadAll(): Promise<void> {
    await Promise.all([this.clipL.get(), this.clipG.get(), this.mmdit.get(), this.vae.get(), this.t5?.get()]);
  }

  /** Releases the text encoders (e.g. between encoding and denoising, to bound memory). */
  async releaseTextEncoders(): Promise<void> {
    await Promise.all([this.clipL.release(), this.clipG.release(), this.t5?.release()]);
  }

  async dispose(): Promise<void> {
    await Promise.all([this.clipL.release(), this.clipG.release(), this.t5?.release(), this.mmdit.release(), this.vae.release()]);
    this.weights.close?.();
  }
}

/** Throws an SD3Error naming the first option that is not one of its choices. */
function checkBackboneOptions(o: BackboneOptions): void {
  if (o === null || typeof o !== 'object') throw new SD3Error(`options must be an object, got ${JSON.stringify(o)}`);
  const oneOf = (name: string, v: unknown, choices: readonly string[], hint = '') => {
    if (v !== undefined && !choices.includes(v as string)) {
      throw new SD3Error(`${name} must be one of ${choices.map((c) => `'${c}'`).join(', ')}; got ${JSON.stringify(v)}${hint}`);
    }
  };
  const halfHint = " (half-precision compute has no CPU kernels in ORT; the file's fp16 weights are used as float32)";
  const dtype: unknown = o.dtype;
  oneOf('dtype', dtype, ['float32', 'int8'], dtype === 'float16' || dtype === 'bfloat16' ? halfHint : '');
  oneOf('clipDtype', o.clipDtype, ['float32', 'int8']);
  oneOf('t5Dtype', o.t5Dtype, ['float32', 'int8']);
  if (o.device !== undefined) parseDevice(o.device, 'device');
  if (o.threads !== undefined && (!Number.isInteger(o.threads) || o.threads < 1)) throw new SD3Error(`threads must be a positive integer, got ${JSON.stringify(o.threads)}`);
  for (const k of ['lowMemory', 'spin'] as const) {
    if (o[k] !== undefined && typeof o[k] !== 'boolean') throw new SD3Error(`${k} must be true or false, got ${JSON.stringify(o[k])}`);
  }
  if (o.vaeTile !== undefined) checkTileOptions(o.vaeTile);
}

/**
 * The MMDiT Linear layers that int8 mode leaves in float32: the timestep, pooled-text and context embedders and
 * the final layer. The first two see two rows per step (one per-tensor activation scale cannot serve both the
 * sinusoidal timestep features and the pooled vector) and every block's modulation derives from them; together
 * they hold under 1% of the weights and of the compute. Measured on the fixtures (`npm run bench:int8-quality`):
 * sampler latents 1.4-4.6% relative RMS from float32, against 4-14% with every Linear quantized.
 */
const MMDIT_FLOAT_LINEARS = /^(t_embedder|y_embedder|context_embedder|final_layer)\./;

/** The MMDiT's int8 Linear weight names, learned by building its graph once with a recorder. */
export function mmditInt8LinearNames(store: WeightStore): string[] {
  const rec = new LinearRecorder();
  buildMMDiTGraph({ g: new GraphBuilder('record'), w: store, quant: rec }, inferMMDiTConfig(store));
  return rec.names.filter((n) => !MMDIT_FLOAT_LINEARS.test(n));
}

/** T5's Linear weight names, learned the same way. */
function t5LinearNames(store: WeightStore, config: Partial<T5Config> | undefined): string[] {
  const rec = new LinearRecorder();
  buildT5EncoderModel(store, inferT5Config(store, config ?? {}), { quant: rec });
  return rec.names;
}

/** A CLIP encoder's Linear weight names, learned the same way. */
export function clipLinearNames(store: WeightStore, config: Partial<CLIPTextConfig> | undefined): string[] {
  const rec = new LinearRecorder();
  buildCLIPTextModel(store, inferCLIPTextConfig(store, config ?? {}), { quant: rec });
  return rec.names;
}
