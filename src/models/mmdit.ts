/**
 * SD3's diffusion transformer (MMDiT): one runtime session that serves any batch, latent size and context
 * length. Weights are the single-file checkpoint's names after `model.diffusion_model.`.
 *
 *   const mmdit = await MMDiT.load(prefixed(store, 'model.diffusion_model.'));
 *   const v = await mmdit.forward(x, t, y, context); // velocity, same shape as x
 */
import { SD3Error } from '../core/errors.js';
import { BYTES_PER_ELEMENT, type Tensor, tensor, toFloat32, viewBytes } from '../core/tensor.js';
import { type WeightRef, type WeightStore, readWeightBytes } from '../core/weights.js';
import type { QuantizedLinears } from '../nn/layers.js';
import { type FloatType, GraphBuilder, checkFloatType } from '../onnx/builder.js';
import { type RuntimeOptions, Session, runtimeOptions } from '../runtime/ort.js';
import { type MMDiTConfig, describeMMDiT, inferMMDiTConfig } from './mmdit-config.js';
import { MMDIT_DEBUG_OUTPUTS, buildMMDiTGraph } from './mmdit-graph.js';

export {
  type MMDiTConfig, SD3_5_LARGE_MMDIT, SD3_5_MEDIUM_MMDIT, SD3_MEDIUM_MMDIT, checkMMDiTWeights, describeMMDiT, inferMMDiTConfig, mmditVariant,
} from './mmdit-config.js';
export { type MMDiTGraphOptions, buildMMDiTGraph } from './mmdit-graph.js';

export interface MMDiTLoadOptions extends RuntimeOptions {
  /** Keep worker threads spinning between operators (faster on an otherwise idle machine). */
  readonly spin?: boolean;
  /** Also build the intermediate outputs that `forwardDebug` returns. */
  readonly debug?: boolean;
  /** Pre-quantized Linear weights (int8 path). */
  readonly quant?: QuantizedLinears;
  /**
   * Keep the file's 16-bit weights (SD3.5's bf16, SD3's fp16) resident and widen them to float32 as each layer
   * runs, instead of once at load: half the weight memory (3.5 Large: 16.3 GB instead of 32.6), the same numbers,
   * but the session runs unoptimised. Default off (int8 is the smaller and faster way to fit 3.5 Large).
   */
  readonly halfWeights?: boolean;
  /**
   * Weights that get a low-rank branch whose factors are fed at run time (LoRA, see src/lora): `setBranchFeeds`
   * switches them without rebuilding the session.
   */
  readonly loraSlots?: ReadonlySet<string>;
  /**
   * 'float16' computes the joint blocks in float16 with the file's float16 weights as they are (other files'
   * weights are cast once at load), float32 where it is not safe (see mmdit-graph.ts); inputs and output stay
   * float32. Meant for a GPU with `shader-f16`; on the CPU it runs in float32 arithmetic (see SessionOptions.float16).
   * Default 'float32'.
   */
  readonly dtype?: FloatType;
}

export type MMDiTDebug = Record<'model_output' | 'pos_embed_cropped' | Exclude<(typeof MMDIT_DEBUG_OUTPUTS)[number], 'context_after_block'>, Tensor<'float32'>>
  & { readonly context_after_block?: Tensor<'float32'> };

/**
 * Joint blocks to bypass (both streams pass through unchanged), as the reference's `skip_layers`: `layers` for
 * the batch rows from `fromRow` on (default every row). Skip-layer guidance appends its rows to a CFG batch.
 */
export interface LayerSkip {
  readonly layers?: readonly number[];
  readonly fromRow?: number;
}

export class MMDiT {
  private readonly crops = new Map<string, Tensor<'float32'>>();
  private branchFeeds: Readonly<Record<string, Tensor>> | undefined;

  private constructor(readonly config: MMDiTConfig, private readonly session: Session, readonly hasDebugOutputs: boolean, private readonly posEmbed: WeightRef, readonly loraSlots: ReadonlySet<string>) {}

  static async load(store: WeightStore, opts: MMDiTLoadOptions = {}): Promise<MMDiT> {
    const config = inferMMDiTConfig(store);
    const dtype = checkFloatType(opts.dtype, 'MMDiT dtype');
    const half = dtype === 'float16';
    if (half && opts.quant) throw new SD3Error("MMDiT: dtype 'float16' and int8 Linear weights (quant) exclude each other; choose one");
    const g = new GraphBuilder('mmdit');
    const slots = opts.loraSlots ?? new Set<string>();
    buildMMDiTGraph({ g, w: store, quant: opts.quant, dtype, ...(slots.size ? { lora: slots } : {}) }, config, { debug: opts.debug ?? false });
    const built = g.build();
    // Resident half weights (widened per layer) mean nothing in float16, where the weights are half anyway.
    const session = await Session.create(`MMDiT (${describeMMDiT(config)}${half ? ', float16' : ''})`, built, {
      ...runtimeOptions(opts), spin: opts.spin ?? false, ...(opts.halfWeights && !half ? { halfWeights: true } : {}), ...(half ? { float16: true } : {}),
    });
    return new MMDiT(config, session, opts.debug ?? false, store.get('pos_embed'), slots);
  }

  /** The inputs of every LoRA branch (from src/lora/branches.ts); replaces the previous ones. */
  setBranchFeeds(feeds: Readonly<Record<string, Tensor>>): void {
    const missing = this.session.inputNames.filter((n) => n.startsWith('lora:') && !(n in feeds));
    if (missing.length) throw new SD3Error(`MMDiT: LoRA branch inputs missing: ${missing.slice(0, 3).join(', ')}`);
    this.branchFeeds = feeds;
  }

  /**
   * The velocity prediction for latents x [B, C, H, W] at timesteps t [B] (sigma * 1000, float32), pooled
   * text vectors y [B, adm] and text sequences context [B, L, ctx]; `skip` bypasses joint blocks.
   */
  async forward(x: Tensor, t: Tensor, y: Tensor, context: Tensor, skip: LayerSkip = {}): Promise<Tensor<'float32'>> {
    const out = await this.session.run(this.feeds(x, t, y, context, skip), ['model_output']);
    return out.model_output as Tensor<'float32'>;
  }

  /** `forward` plus t_freq, c, x_embedded, pos_embed_cropped and both streams after each block (needs `debug: true`). */
  async forwardDebug(x: Tensor, t: Tensor, y: Tensor, context: Tensor, skip: LayerSkip = {}): Promise<MMDiTDebug> {
    if (!this.hasDebugOutputs) throw new SD3Error('this MMDiT was loaded without debug outputs; load it with { debug: true }');
    const feeds = this.feeds(x, t, y, context, skip);
    const out = await this.session.run(feeds);
    return { ...out, pos_embed_cropped: feeds.pos_embed_cropped } as MMDiTDebug;
  }

  /**
   * The centre crop of the position grid for h x w patches, [1, h*w, hidden]: top = (M - h) // 2,
   * left = (M - w) // 2 as in the reference. Only those rows are read from the checkpoint (cached per size).
   */
  positionCrop(h: number, w: number): Tensor<'float32'> {
    const key = `${h}x${w}`;
    let crop = this.crops.get(key);
    if (!crop) {
      const { posEmbedMaxSize: m, hiddenSize } = this.config;
      const top = Math.floor((m - h) / 2);
      const left = Math.floor((m - w) / 2);
      const size = BYTES_PER_ELEMENT[this.posEmbed.dtype];
      const data = new Float32Array(h * w * hiddenSize);
      for (let r = 0; r < h; r++) {
        const bytes = readWeightBytes(this.posEmbed, ((top + r) * m + left) * hiddenSize * size, w * hiddenSize * size);
        data.set(toFloat32(tensor(this.posEmbed.dtype, [w * hiddenSize], viewBytes(this.posEmbed.dtype, bytes))).data, r * w * hiddenSize);
      }
      crop = tensor('float32', [1, h * w, hiddenSize], data);
      this.crops.set(key, crop);
    }
    return crop;
  }

  async dispose(): Promise<void> {
    this.crops.clear();
    await this.session.dispose();
  }

  private feeds(x: Tensor, t: Tensor, y: Tensor, context: Tensor, skip: LayerSkip): Record<string, Tensor> {
    checkMMDiTInputs(this.config, x, t, y, context);
    if (this.loraSlots.size && !this.branchFeeds) throw new SD3Error('MMDiT: loaded with LoRA branches but no LoRA feeds were set (setBranchFeeds)');
    const [batch, , height, width] = x.shape as [number, number, number, number];
    const p = this.config.patchSize;
    return { ...this.branchFeeds, x, t, y, context, pos_embed_cropped: this.positionCrop(height / p, width / p), skip_layers: skipMask(this.config, batch, skip) };
  }
}

/** The [B, depth] bool mask of a LayerSkip; throws on a layer the model does not have. */
function skipMask(config: MMDiTConfig, batch: number, skip: LayerSkip): Tensor<'bool'> {
  const mask = new Uint8Array(batch * config.depth);
  const from = skip.fromRow ?? 0;
  if (!Number.isInteger(from) || from < 0 || from > batch) throw new SD3Error(`MMDiT: skip fromRow must be an integer in [0, ${batch}], got ${JSON.stringify(skip.fromRow)}`);
  for (const l of skip.layers ?? []) {
    if (!Number.isInteger(l) || l < 0 || l >= config.depth) {
      throw new SD3Error(`MMDiT: skip layer ${JSON.stringify(l)} is not a joint block of this ${describeMMDiT(config)}; expected integers 0-${config.depth - 1}`);
    }
    for (let b = from; b < batch; b++) mask[b * config.depth + l] = 1;
  }
  return tensor('bool', [batch, config.depth], mask);
}

function shapeText(t: Tensor): string { return `[${t.shape.join(', ')}]`; }

/** Throws an SD3Error naming the first input the MMDiT cannot take. */
export function checkMMDiTInputs(config: MMDiTConfig, x: Tensor, t: Tensor, y: Tensor, context: Tensor): void {
  const fail = (msg: string) => { throw new SD3Error(`MMDiT: ${msg}`); };
  for (const [name, v] of [['x', x], ['t', t], ['y', y], ['context', context]] as const) {
    if (v.dtype !== 'float32') fail(`${name} must be float32${name === 't' ? ' (sigma * 1000)' : ''}, got ${v.dtype}`);
  }
  const p = config.patchSize;
  const m = config.posEmbedMaxSize;
  if (x.shape.length !== 4) fail(`latent x must be [batch, ${config.inChannels}, height, width], got ${shapeText(x)}`);
  const [batch, channels, height, width] = x.shape as [number, number, number, number];
  if (batch < 1) fail(`latent x has batch ${batch}; expected at least 1`);
  if (channels !== config.inChannels) fail(`latent x has ${channels} channels, expected ${config.inChannels} (shape ${shapeText(x)})`);
  if (height < p || width < p || height % p || width % p) fail(`latent size ${height}x${width} must be a positive multiple of the patch size ${p}`);
  if (height / p > m || width / p > m) fail(`latent size ${height}x${width} is larger than the position grid allows (at most ${m * p}x${m * p})`);
  if (t.shape.length !== 1 || t.shape[0] !== batch) fail(`t must be [${batch}] (one timestep per latent), got ${shapeText(t)}`);
  if (y.shape.length !== 2 || y.shape[0] !== batch || y.shape[1] !== config.admInChannels) {
    fail(`pooled y must be [${batch}, ${config.admInChannels}], got ${shapeText(y)}`);
  }
  if (context.shape.length !== 3 || context.shape[0] !== batch || context.shape[2] !== config.contextInFeatures || context.shape[1]! < 1) {
    fail(`context must be [${batch}, length >= 1, ${config.contextInFeatures}], got ${shapeText(context)}`);
  }
}

/** The denoised latent the reference's sampler consumes: x - v * sigma with sigma = t / 1000, in float32. */
export function denoisedFromVelocity(x: Tensor<'float32'>, v: Tensor<'float32'>, t: Tensor<'float32'>): Tensor<'float32'> {
  if (x.shape.join() !== v.shape.join() || t.shape.length !== 1 || t.shape[0] !== x.shape[0]) {
    throw new SD3Error(`denoisedFromVelocity: x ${shapeText(x)}, v ${shapeText(v)} and t ${shapeText(t)} do not match`);
  }
  const out = new Float32Array(x.data.length);
  const per = x.data.length / Math.max(1, x.shape[0]!);
  for (let i = 0; i < out.length; i++) {
    const sigma = Math.fround(t.data[Math.floor(i / per)]! / 1000);
    out[i] = x.data[i]! - Math.fround(v.data[i]! * sigma);
  }
  return tensor('float32', x.shape, out);
}
