/**
 * SD3's diffusion transformer (MMDiT): one runtime session that serves any batch, latent size and context
 * length. Weights are the single-file checkpoint's names after `model.diffusion_model.`.
 *
 *   const mmdit = await MMDiT.load(prefixed(store, 'model.diffusion_model.'));
 *   const v = await mmdit.forward(x, t, y, context); // velocity, same shape as x
 */
import { SD3Error } from '../core/errors.js';
import { type Tensor, tensor } from '../core/tensor.js';
import type { WeightStore } from '../core/weights.js';
import type { QuantizedLinears } from '../nn/layers.js';
import { GraphBuilder } from '../onnx/builder.js';
import { type RuntimeOptions, Session, runtimeOptions } from '../runtime/ort.js';
import { type MMDiTConfig, inferMMDiTConfig } from './mmdit-config.js';
import { MMDIT_DEBUG_OUTPUTS, buildMMDiTGraph } from './mmdit-graph.js';

export { type MMDiTConfig, SD3_MEDIUM_MMDIT, inferMMDiTConfig } from './mmdit-config.js';
export { type MMDiTGraphOptions, buildMMDiTGraph } from './mmdit-graph.js';

export interface MMDiTLoadOptions extends RuntimeOptions {
  /** Keep worker threads spinning between operators (faster on an otherwise idle machine). */
  readonly spin?: boolean;
  /** Also build the intermediate outputs that `forwardDebug` returns. */
  readonly debug?: boolean;
  /** Pre-quantized Linear weights (int8 path). */
  readonly quant?: QuantizedLinears;
  /**
   * Weights that get a low-rank branch whose factors are fed at run time (LoRA, see src/lora): `setBranchFeeds`
   * switches them without rebuilding the session.
   */
  readonly loraSlots?: ReadonlySet<string>;
}

export type MMDiTDebug = Record<'model_output' | (typeof MMDIT_DEBUG_OUTPUTS)[number], Tensor<'float32'>>;

export class MMDiT {
  private branchFeeds: Readonly<Record<string, Tensor>> | undefined;

  private constructor(readonly config: MMDiTConfig, private readonly session: Session, readonly hasDebugOutputs: boolean, readonly loraSlots: ReadonlySet<string>) {}

  static async load(store: WeightStore, opts: MMDiTLoadOptions = {}): Promise<MMDiT> {
    const config = inferMMDiTConfig(store);
    const g = new GraphBuilder('mmdit');
    const slots = opts.loraSlots ?? new Set<string>();
    buildMMDiTGraph({ g, w: store, quant: opts.quant, ...(slots.size ? { lora: slots } : {}) }, config, { debug: opts.debug ?? false });
    const built = g.build();
    const session = await Session.create('MMDiT', built, { ...runtimeOptions(opts), spin: opts.spin ?? false });
    return new MMDiT(config, session, opts.debug ?? false, slots);
  }

  /** The inputs of every LoRA branch (from src/lora/branches.ts); replaces the previous ones. */
  setBranchFeeds(feeds: Readonly<Record<string, Tensor>>): void {
    const missing = this.session.inputNames.filter((n) => n.startsWith('lora:') && !(n in feeds));
    if (missing.length) throw new SD3Error(`MMDiT: LoRA branch inputs missing: ${missing.slice(0, 3).join(', ')}`);
    this.branchFeeds = feeds;
  }

  /**
   * The velocity prediction for latents x [B, C, H, W] at timesteps t [B] (sigma * 1000, float32), pooled
   * text vectors y [B, adm] and text sequences context [B, L, ctx].
   */
  async forward(x: Tensor, t: Tensor, y: Tensor, context: Tensor): Promise<Tensor<'float32'>> {
    const out = await this.session.run(this.feeds(x, t, y, context), ['model_output']);
    return out.model_output as Tensor<'float32'>;
  }

  /** `forward` plus the intermediate values t_freq, c, x_embedded, pos_embed_cropped (needs `debug: true`). */
  async forwardDebug(x: Tensor, t: Tensor, y: Tensor, context: Tensor): Promise<MMDiTDebug> {
    if (!this.hasDebugOutputs) throw new SD3Error('this MMDiT was loaded without debug outputs; load it with { debug: true }');
    return await this.session.run(this.feeds(x, t, y, context)) as MMDiTDebug;
  }

  async dispose(): Promise<void> { await this.session.dispose(); }

  private feeds(x: Tensor, t: Tensor, y: Tensor, context: Tensor): Record<string, Tensor> {
    checkMMDiTInputs(this.config, x, t, y, context);
    if (this.loraSlots.size && !this.branchFeeds) throw new SD3Error('MMDiT: loaded with LoRA branches but no LoRA feeds were set (setBranchFeeds)');
    return { ...this.branchFeeds, x, t, y, context };
  }
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
