/**
 * SD3's backbone: owns the models and exposes the generation steps (KerasHub's shape):
 * encodeText, encodeImage, addNoise, denoise, decode. Models are loaded on first use and can be released
 * one by one (`lowMemory` releases each as soon as the run no longer needs it).
 */
import * as os from 'node:os';
import { SD3Error } from '../core/errors.js';
import { type Tensor, tensor } from '../core/tensor.js';
import type { WeightStore } from '../core/weights.js';
import { type CLIPTextConfig, CLIPTextEncoder, buildCLIPTextModel, inferCLIPTextConfig } from '../models/clip.js';
import { sd3Conditioning } from '../models/conditioning.js';
import { MMDiT, type MMDiTConfig, buildMMDiTGraph, inferMMDiTConfig, mmditVariant } from '../models/mmdit.js';
import { GraphBuilder } from '../onnx/builder.js';
import { LoraManager, type LoraReport, type LoraSpec, checkLoraSpecs } from '../lora/index.js';
import { LinearRecorder } from '../quant/int8.js';
import { type T5Config, T5Encoder, buildT5EncoderModel, inferT5Config } from '../models/t5.js';
import { VAE, fromModelSpace, samplePosterior, toModelSpace } from '../models/vae.js';
import { checkTileOptions } from '../models/vae-tiling.js';
import type { QuantizedLinears } from '../nn/layers.js';
import { type DeviceChoice, defaultDevice, parseDevice, resolveDevice } from '../runtime/ort.js';
import { addNoise } from '../sampler/flow-match.js';
import { batchNoise } from '../sampler/noise.js';
import type { RGBImage } from '../image/image.js';
import { type PromptEmbedding, type SampleOptions, sampleLatents } from './denoise.js';
import { type LatentProjection, fitLatentPreview, projectLatent } from './preview.js';
import { type SamplingDefaults, samplingDefaults } from './model-defaults.js';
import { firstWindows, joinWindows, weightTokens } from './prompt-weights.js';
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
  /** The VAE's GroupNorm groups when not SD3's 32 (the demo checkpoint's metadata says 4). */
  readonly vaeGroups?: number;
  /** Sampling defaults the checkpoint states for itself (its metadata); they win over the variant's. */
  readonly sampling?: { readonly guidanceScale?: number; readonly numSteps?: number };
  /** Flow-matching shift (3.0 for SD3 Medium). */
  readonly shift: number;
  /** int8 Linear weights for the named Linear layers of a model (cached next to the checkpoint); blocks while it builds (scripts). */
  readonly quantize?: (model: 'mmdit' | 't5' | 'clipL' | 'clipG', linearNames: readonly string[]) => QuantizedLinears;
  /** The same cache built without blocking the event loop and stoppable by the signal (what the backbone uses). */
  readonly quantizeAsync?: (model: 'mmdit' | 't5' | 'clipL' | 'clipG', linearNames: readonly string[], opts?: { readonly signal?: AbortSignal }) => Promise<QuantizedLinears>;
  /** Closes open files. */
  readonly close?: () => void;
}

export interface BackboneOptions {
  /** CPU threads per operator (default: every core). */
  readonly threads?: number;
  /**
   * Where the models run: 'cpu' (default, or $SD3_DEVICE), 'webgpu' (the GPU through onnxruntime-node's
   * bundled WebGPU provider; float32 or float16) or 'auto' (the GPU when one is found, else the CPU).
   */
  readonly device?: DeviceChoice;
  /** Release each model as soon as a generation no longer needs it (slower repeated runs, lower peak memory). */
  readonly lowMemory?: boolean;
  /**
   * 'int8' quantizes the MMDiT's Linear weights (cached next to the checkpoint; CPU only). 'float16' computes the
   * MMDiT and the VAE in float16 with float32 islands (models/mmdit-graph.ts, vae-graph.ts) on a GPU whose
   * WebGPU adapter has `shader-f16` (a clear error otherwise, and on the CPU, whose ORT provider has no float16
   * kernels for their main operators); the text encoders stay float32 (T5 int8 on the CPU).
   */
  readonly dtype?: 'float32' | 'int8' | 'float16';
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
  /**
   * The MMDiT's 16-bit weights kept resident and widened to float32 per layer (half the weight memory, same
   * numbers, slower steps). Default: on when the float32 MMDiT would take more than half of this machine's
   * memory and its file weights are 16-bit (SD3.5 Large: 32.6 GB in float32, 16.3 GB resident); off with int8.
   */
  readonly mmditHalfWeights?: boolean;
  /**
   * 'int8' decodes with the VAE decoder's 3x3 convolutions as int8 products (VAE `decoderDtype`; CPU only, with
   * float32 or int8 `dtype`): about 2x faster at 512² on a 2-core Xeon with AMX, not exact (BENCHMARKS.md "int8 VAE
   * decode"). Default 'float32', the exact decoder, in every mode.
   */
  readonly vaeDtype?: 'float32' | 'int8';
  /** Decode in overlapping tiles of this many latent cells (off by default). */
  readonly vaeTile?: { readonly size: number; readonly overlap: number };
  /**
   * LoRA files for the MMDiT and the CLIP encoders (diffusers/PEFT, kohya or ComfyUI form), each with its scale
   * (default 1). The models get low-rank branches on the weights the LoRAs change, so that `setLoras` switches
   * without a reload (see `setLoras`).
   */
  readonly loras?: readonly LoraSpec[];
}

/** A model loaded on first use, releasable (exported for its tests). */
export class Lazy<T extends { dispose(): Promise<void> }> {
  private value: Promise<T> | undefined;
  constructor(private readonly make: (signal?: AbortSignal) => Promise<T>) {}
  get loaded(): boolean { return this.value !== undefined; }
  /** The model, loading it first if needed; `signal` can stop a long first load (an int8 cache build). */
  get(signal?: AbortSignal): Promise<T> {
    if (this.value) return this.value;
    const p = this.make(signal);
    this.value = p;
    // A failed load is forgotten (the next get() retries), unless a newer load has replaced it meanwhile.
    p.catch(() => { if (this.value === p) this.value = undefined; });
    return p;
  }
  async release(): Promise<void> {
    const v = this.value;
    this.value = undefined;
    if (v) await (await v).dispose();
  }
}

export class SD3Backbone {
  readonly mmditConfig: MMDiTConfig;
  /** Where every model is placed ('auto' with an int8 model becomes 'cpu'). */
  readonly device: DeviceChoice;
  private readonly clipL: Lazy<CLIPTextEncoder>;
  private readonly clipG: Lazy<CLIPTextEncoder>;
  private readonly t5: Lazy<T5Encoder> | undefined;
  private readonly mmdit: Lazy<MMDiT>;
  private readonly vae: Lazy<VAE>;
  private lora: LoraManager | undefined;
  /** The LoRA branches each loaded model was built with. */
  private readonly branches: Partial<Record<'mmdit' | 'clipL' | 'clipG', ReadonlySet<string>>> = {};
  private vaeFactor: number | undefined;
  private projection: Promise<LatentProjection> | undefined;

  constructor(readonly weights: SD3Weights, readonly options: BackboneOptions = {}) {
    checkBackboneOptions(options);
    this.mmditConfig = inferMMDiTConfig(weights.mmdit);
    const choice = options.device ?? defaultDevice();
    const int8 = options.dtype === 'int8';
    const half = options.dtype === 'float16';
    const anyInt8 = int8 || options.clipDtype === 'int8';
    if (half && choice === 'cpu') throw new SD3Error(float16OnCpu(choice));
    if (choice === 'webgpu' && anyInt8) {
      // ORT's int8 matrix multiply (DynamicQuantizeMatMul) exists only on the CPU provider: on a GPU every Linear
      // would round-trip through host memory.
      throw new SD3Error(`dtype 'int8' runs on the CPU only; with device '${choice}' use dtype 'float32'`);
    }
    // Every model gets the same placement and thread count ('auto' with int8 means the CPU).
    const device: DeviceChoice = choice === 'auto' && anyInt8 ? 'cpu' : choice;
    this.device = device;
    const runtime = { ...(options.threads !== undefined ? { threads: options.threads } : {}), device };
    // int8 caches are built without blocking the event loop (minutes for a full model) and stop on the signal.
    const canQuantize = weights.quantizeAsync !== undefined || weights.quantize !== undefined;
    const quantized = async (m: 'mmdit' | 't5' | 'clipL' | 'clipG', names: string[], signal?: AbortSignal): Promise<QuantizedLinears> => {
      if (weights.quantizeAsync) return weights.quantizeAsync(m, names, signal ? { signal } : {});
      if (weights.quantize) return weights.quantize(m, names);
      throw new SD3Error(`int8 mode needs weights on disk (${weights.label} has none)`);
    };
    // T5-XXL is 4.76 B parameters (19 GB as float32): on disk it always runs with int8 Linear weights (4.8 GB),
    // loaded alone and released right after encoding; see README "Memory".
    const t5Quant = async (store: WeightStore, signal?: AbortSignal): Promise<{ quant?: QuantizedLinears }> =>
      canQuantize && options.t5Dtype !== 'float32' ? { quant: await quantized('t5', t5LinearNames(store, weights.t5Config), signal) } : {};
    const clipQuant = async (m: 'clipL' | 'clipG', store: WeightStore, config: Partial<CLIPTextConfig> | undefined, signal?: AbortSignal): Promise<{ quant?: QuantizedLinears }> =>
      options.clipDtype === 'int8' && canQuantize ? { quant: await quantized(m, clipLinearNames(store, config), signal) } : {};
    // With LoRAs, the CLIP encoders get branches too (text-encoder keys of the files), fed like the MMDiT's.
    const clipLoad = async (m: 'clipL' | 'clipG', store: WeightStore, config: Partial<CLIPTextConfig> | undefined, label: string, signal?: AbortSignal) => {
      const lora = this.lora;
      const slots = lora?.slotsOf(m);
      const enc = await CLIPTextEncoder.load(store, config ?? {}, { ...runtime, label, ...(await clipQuant(m, store, config, signal)), ...(slots ? { loraSlots: slots } : {}) });
      if (lora && slots) enc.setBranchFeeds(lora.feeds(m, slots));
      this.branches[m] = slots ?? new Set();
      return enc;
    };
    this.clipL = new Lazy((signal) => clipLoad('clipL', weights.clipL, weights.clipLConfig, 'CLIP-L', signal));
    this.clipG = new Lazy((signal) => clipLoad('clipG', weights.clipG, weights.clipGConfig, 'CLIP-G', signal));
    // An int8 T5 runs on the CPU whatever the device (see the int8 note above); it runs once per generation.
    this.t5 = weights.t5 ? new Lazy(async (signal) => {
      const q = await t5Quant(weights.t5!, signal);
      return T5Encoder.load(weights.t5!, weights.t5Config ?? {}, { ...runtime, ...(q.quant ? { device: 'cpu' as const } : {}), label: 'T5-XXL', ...q });
    }) : undefined;
    if (options.loras !== undefined) {
      this.lora = this.newLoraManager();
      this.lora.select(checkLoraSpecs(options.loras));
    }
    const halfWeights = !int8 && !half && (options.mmditHalfWeights ?? mmditTooLargeForFloat32(weights.mmdit, this.mmditConfig));
    // float16 on 'auto' needs the GPU it finds; the models' sessions check its shader-f16.
    const float16 = async (): Promise<{ dtype?: 'float16' }> => {
      if (!half) return {};
      if ((await resolveDevice(device)) === 'cpu') throw new SD3Error(float16OnCpu(device));
      return { dtype: 'float16' };
    };
    this.mmdit = new Lazy(async (signal) => {
      const lora = this.lora;
      const slots = lora?.slotsOf('mmdit');
      const m = await MMDiT.load(weights.mmdit, {
        ...runtime, spin: options.spin ?? true, ...(int8 ? { quant: await quantized('mmdit', mmditInt8LinearNames(weights.mmdit), signal) } : {}),
        ...(halfWeights ? { halfWeights } : {}), ...(slots ? { loraSlots: slots } : {}), ...(await float16()),
      });
      if (lora && slots) m.setBranchFeeds(lora.feeds('mmdit', slots));
      this.branches.mmdit = slots ?? new Set();
      return m;
    });
    const vaeInt8 = options.vaeDtype === 'int8' ? { decoderDtype: 'int8' as const } : {};
    this.vae = new Lazy(async () => VAE.load(weights.vae, {
      ...runtime, ...(weights.vaeGroups !== undefined ? { groups: weights.vaeGroups } : {}), ...(await float16()), ...vaeInt8,
    }));
  }

  /** 'sd3_medium', 'sd3.5_medium' or 'sd3.5_large', from the MMDiT's keys. */
  get variant(): string { return mmditVariant(this.mmditConfig); }
  /** Steps, guidance and sampler when a generation names none (per model; Turbo by its name). */
  get sampling(): SamplingDefaults {
    const base = samplingDefaults(this.variant, this.weights.label);
    const own = this.weights.sampling;
    if (!own) return base;
    const stated = [own.guidanceScale !== undefined ? `guidance ${own.guidanceScale}` : '', own.numSteps !== undefined ? `${own.numSteps} steps` : ''].filter(Boolean).join(', ');
    return { ...base, ...own, source: `the checkpoint's own metadata (${stated}); otherwise ${base.source}` };
  }

  /** The LoRAs applied now (path, scale, formats, modules, ignored keys). */
  get loras(): readonly LoraReport[] { return this.lora?.report() ?? []; }

  /**
   * Replaces the applied LoRAs (files are read once and kept while unchanged). A bad file refuses the whole set
   * and the current one stays. Switching among LoRAs that change weights already given a branch only feeds new
   * low-rank factors to the loaded models; a LoRA that changes other weights rebuilds the models concerned once.
   */
  async setLoras(loras: readonly LoraSpec[]): Promise<readonly LoraReport[]> {
    const specs = checkLoraSpecs(loras);
    this.lora ??= this.newLoraManager();
    const lora = this.lora;
    const report = lora.select(specs);
    // A loaded model whose branches cover every weight the LoRAs change takes new feeds; otherwise it is
    // rebuilt with more branches on next use (once per new weight set: the branches only ever grow).
    const models = { mmdit: this.mmdit, clipL: this.clipL, clipG: this.clipG } as const;
    for (const [name, model] of Object.entries(models) as [keyof typeof models, Lazy<MMDiT | CLIPTextEncoder>][]) {
      if (!model.loaded) continue;
      const built = this.branches[name] ?? new Set<string>();
      const needed = lora.slotsOf(name);
      if ([...needed].every((w) => built.has(w))) (await model.get()).setBranchFeeds(lora.feeds(name, built));
      else await model.release();
    }
    return report;
  }

  private newLoraManager(): LoraManager {
    const w = this.weights;
    return new LoraManager(w.mmdit, { clipL: { store: w.clipL, ...(w.clipLConfig ? { config: w.clipLConfig } : {}) }, clipG: { store: w.clipG, ...(w.clipGConfig ? { config: w.clipGConfig } : {}) } });
  }
  get shift(): number { return this.weights.shift; }

  /** Pixels per latent cell (8 for SD3). */
  async downsampleFactor(): Promise<number> {
    this.vaeFactor ??= (await this.vae.get()).config.downsampleFactor;
    return this.vaeFactor;
  }

  /** Text embeddings of B prompts from their token ids: context [B, 77 + T, width], y [B, pooled]. */
  async encodeText(ids: TokenIds, signal?: AbortSignal): Promise<PromptEmbedding> {
    const clipL = await encodeWindows(await this.clipL.get(signal), ids.clipL, ids, ids.weights?.emptyClipL);
    if (this.options.lowMemory) await this.clipL.release();
    const clipG = await encodeWindows(await this.clipG.get(signal), ids.clipG, ids, ids.weights?.emptyClipG);
    if (this.options.lowMemory) await this.clipG.release();
    let t5: Tensor | undefined;
    if (this.t5 && !ids.t5) throw new SD3Error(`${this.weights.label}: T5-XXL is loaded but there is no T5 tokenizer (spiece.model or tokenizer.json); add one, or load without t5`);
    if (this.t5 && ids.t5) {
      // Make room: T5 runs alone, then is released.
      await Promise.all([this.mmdit.release(), this.vae.release(), this.clipL.release(), this.clipG.release()]);
      t5 = await (await this.t5.get(signal)).encode(ids.t5);
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
    const bad = o.skipLayerGuidance?.layers.find((l) => !(Number.isInteger(l) && l >= 0 && l < this.mmditConfig.depth));
    if (bad !== undefined) throw new SD3Error(`skipLayerGuidance.layers: ${bad} is not a joint block of this model (${this.variant}, blocks 0-${this.mmditConfig.depth - 1})`);
    const model = await this.mmdit.get(o.signal);
    const onStep = o.onStep;
    const out = await sampleLatents({ ...o, model, ...(onStep ? { onStep: (info) => onStep({ ...info, preview: () => this.previewLatent(info.latent) }) } : {}) });
    if (this.options.lowMemory) await this.mmdit.release();
    return out;
  }

  /** One small RGB image per batch item of a model-space latent, a pixel per latent cell (preview.ts). */
  async previewLatent(latent: Tensor<'float32'>): Promise<RGBImage[]> {
    this.projection ??= this.downsampleFactor().then((f) => fitLatentPreview(this, f));
    this.projection.catch(() => { this.projection = undefined; });
    return projectLatent(latent, await this.projection);
  }

  /** Model-space latents [B, 16, h, w] -> images [B, 3, H, W], roughly in [-1, 1]. */
  async decode(latent: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    const vae = await this.vae.get();
    const image = await vae.decode(fromModelSpace(latent), this.options.vaeTile ? { tile: this.options.vaeTile } : {});
    if (this.options.lowMemory) await vae.release('decoder');
    return image;
  }

  /**
   * Loads the CLIPs, the MMDiT and the VAE now rather than at the first generation (the server does this so
   * that its first request does not pay for the load). T5, when used, still loads alone at encoding time.
   */
  async loadAll(signal?: AbortSignal): Promise<void> {
    await Promise.all([this.clipL.get(signal), this.clipG.get(signal), this.mmdit.get(signal), this.vae.get(signal)]);
  }

  async dispose(): Promise<void> {
    await Promise.all([this.clipL.release(), this.clipG.release(), this.t5?.release(), this.mmdit.release(), this.vae.release()]);
    this.weights.close?.();
  }
}

/** Why dtype 'float16' is refused on the CPU (with the device choice that led there). */
function float16OnCpu(choice: DeviceChoice): string {
  const where = choice === 'auto' ? "device 'auto' found no GPU here" : `device '${choice}'`;
  return `dtype 'float16' runs on a GPU only (device 'webgpu'), and ${where}: ORT's CPU provider has no float16 kernels for the MMDiT's and VAE's main operators and would run them in float32 through casts (no gain); on the CPU use 'float32' or 'int8'`;
}

/** Whether the MMDiT's weights are 16-bit and would take more than half of the machine's memory as float32. */
function mmditTooLargeForFloat32(store: WeightStore, config: MMDiTConfig): boolean {
  const probe = store.get(`joint_blocks.0.x_block.attn.qkv.weight`);
  if (probe.dtype !== 'float16' && probe.dtype !== 'bfloat16') return false;
  // 12 H^2 per block and stream (qkv 3, proj 1, MLP 8), plus the dual blocks' attn2 (4 H^2) and adaLN.
  const H = config.hiddenSize;
  const params = config.depth * 2 * 18 * H * H + config.dualAttentionLayers.length * 7 * H * H;
  return params * 4 > os.totalmem() / 2;
}

/**
 * A CLIP encoder's output for token rows that may be windows of long prompts and may carry prompt weights:
 * weights applied per window row (pipelines/prompt-weights.ts), windows joined along the sequence, pooled
 * vectors from each prompt's first window.
 */
async function encodeWindows(clip: CLIPTextEncoder, rows: Tensor<'int64'>, ids: TokenIds, empty: Tensor<'int64'> | undefined): Promise<{ penultimate: Tensor<'float32'>; pooled: Tensor<'float32'>; pooledProjected: Tensor<'float32'> }> {
  const out = await clip.encode(rows);
  const W = ids.windows ?? 1;
  let seq = out.penultimate;
  if (ids.weights && empty) seq = weightTokens(seq, (await clip.encode(empty)).penultimate, ids.weights.tokens.data);
  if (W === 1) return { penultimate: seq, pooled: out.pooled, pooledProjected: out.pooledProjected };
  return { penultimate: joinWindows(seq, W), pooled: firstWindows(out.pooled, W), pooledProjected: firstWindows(out.pooledProjected, W) };
}

/** Throws an SD3Error naming the first option that is not one of its choices. */
function checkBackboneOptions(o: BackboneOptions): void {
  if (o === null || typeof o !== 'object') throw new SD3Error(`options must be an object, got ${JSON.stringify(o)}`);
  const oneOf = (name: string, v: unknown, choices: readonly string[], hint = '') => {
    if (v !== undefined && !choices.includes(v as string)) {
      throw new SD3Error(`${name} must be one of ${choices.map((c) => `'${c}'`).join(', ')}; got ${JSON.stringify(v)}${hint}`);
    }
  };
  const halfHint = " ('float16' is the half-precision mode, on a GPU; the file's bf16 weights are used as float32 or float16)";
  const dtype: unknown = o.dtype;
  oneOf('dtype', dtype, ['float32', 'int8', 'float16'], dtype === 'bfloat16' ? halfHint : '');
  oneOf('clipDtype', o.clipDtype, ['float32', 'int8']);
  oneOf('t5Dtype', o.t5Dtype, ['float32', 'int8']);
  oneOf('vaeDtype', o.vaeDtype, ['float32', 'int8']);
  if (o.vaeDtype === 'int8' && (o.dtype === 'float16' || o.device === 'webgpu')) {
    throw new SD3Error(`vaeDtype 'int8' runs on the CPU only (ORT's int8 matrix multiply); it cannot be combined with ${o.dtype === 'float16' ? "dtype 'float16'" : "device 'webgpu'"}`);
  }
  if (o.device !== undefined) parseDevice(o.device, 'device');
  if (o.threads !== undefined && (!Number.isInteger(o.threads) || o.threads < 1)) throw new SD3Error(`threads must be a positive integer, got ${JSON.stringify(o.threads)}`);
  for (const k of ['lowMemory', 'spin', 'mmditHalfWeights'] as const) {
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
