/**
 * CLIP text transformer (OpenAI CLIP-L/14 and OpenCLIP bigG text towers) as an ONNX graph.
 *
 * ids -> token + position embeddings -> N causal pre-LayerNorm blocks -> final LayerNorm; pooled = the final
 * row at the first end token (argmax of the ids), optionally through the text projection. SD3 reads the
 * penultimate block's output (no final LayerNorm) as the sequence, CLIP-L's unprojected pooled vector and
 * CLIP-G's projected one (reference: sd3.5 `other_impls.py` CLIPTextModel_).
 *
 * Weights use Hugging Face CLIPTextModel names (`text_model.encoder.layers.N.self_attn.q_proj.weight`, ...).
 */
import { SD3Error, describe } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';
import type { WeightStore } from '../core/weights.js';
import { type NN, type QuantizedLinears, hasParam, layerNorm, linear, param } from '../nn/layers.js';
import { type BuiltModel, GraphBuilder, type Value } from '../onnx/builder.js';
import { type RuntimeOptions, Session, runtimeOptions } from '../runtime/ort.js';
import { checkIds, checkWeightShapes, countLayers, pickRenamed, positiveInt } from './text-encoder-checks.js';

export type CLIPActivation = 'quick_gelu' | 'gelu';

export interface CLIPTextConfig {
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numHiddenLayers: number;
  readonly numAttentionHeads: number;
  readonly maxPositionEmbeddings: number;
  readonly layerNormEps: number;
  readonly hiddenAct: CLIPActivation;
  /** Width of `pooledProjected`; equals hiddenSize when the file has no `text_projection.weight` (identity). */
  readonly projectionDim: number;
}

/** OpenAI CLIP ViT-L/14 text tower, as in SD3 Medium. */
export const CLIP_L_CONFIG: CLIPTextConfig = {
  vocabSize: 49408, hiddenSize: 768, intermediateSize: 3072, numHiddenLayers: 12, numAttentionHeads: 12,
  maxPositionEmbeddings: 77, layerNormEps: 1e-5, hiddenAct: 'quick_gelu', projectionDim: 768,
};

/** OpenCLIP ViT-bigG/14 text tower, as in SD3 Medium. */
export const CLIP_G_CONFIG: CLIPTextConfig = {
  vocabSize: 49408, hiddenSize: 1280, intermediateSize: 5120, numHiddenLayers: 32, numAttentionHeads: 20,
  maxPositionEmbeddings: 77, layerNormEps: 1e-5, hiddenAct: 'gelu', projectionDim: 1280,
};

/** What the shapes cannot tell: heads and activation, known for the real widths. */
const BY_WIDTH: Record<number, CLIPTextConfig> = { 768: CLIP_L_CONFIG, 1280: CLIP_G_CONFIG };

const TOKEN_EMBEDDING = 'text_model.embeddings.token_embedding.weight';
const POSITION_EMBEDDING = 'text_model.embeddings.position_embedding.weight';
const PROJECTION = 'text_projection.weight';
const layerName = (i: number) => `text_model.encoder.layers.${i}`;

/** SD3's CLIP towers have 64-wide attention heads (CLIP-L 768 / 12, CLIP-G 1280 / 20). */
const SD3_HEAD_WIDTH = 64;

/**
 * What a single-file checkpoint's slot tells about a CLIP tower whose width is not a real one (the built-in
 * `demo` model): SD3's own choices for that slot, CLIP-L's quick GELU or CLIP-G's GELU, and 64-wide heads.
 * Empty for the real widths (768, 1280), whose configs are known.
 */
export function sd3SlotConfig(store: WeightStore, slot: 'clipL' | 'clipG'): Partial<CLIPTextConfig> {
  if (!store.has(TOKEN_EMBEDDING)) return {};
  const width = store.get(TOKEN_EMBEDDING).shape[1]!;
  if (BY_WIDTH[width] || width % SD3_HEAD_WIDTH !== 0) return {};
  return { hiddenAct: slot === 'clipL' ? 'quick_gelu' : 'gelu', numAttentionHeads: width / SD3_HEAD_WIDTH };
}

/** Our config keys from a Hugging Face `CLIPTextConfig` JSON object (keys it lacks are left out). */
export function clipConfigFromHF(hf: Readonly<Record<string, unknown>>): Partial<CLIPTextConfig> {
  const keys: [keyof CLIPTextConfig, string][] = [
    ['vocabSize', 'vocab_size'], ['hiddenSize', 'hidden_size'], ['intermediateSize', 'intermediate_size'],
    ['numHiddenLayers', 'num_hidden_layers'], ['numAttentionHeads', 'num_attention_heads'],
    ['maxPositionEmbeddings', 'max_position_embeddings'], ['layerNormEps', 'layer_norm_eps'],
    ['hiddenAct', 'hidden_act'], ['projectionDim', 'projection_dim'],
  ];
  return pickRenamed(hf, keys);
}

/**
 * The config of the CLIP text tower in `store`: sizes from the weights' shapes; heads and activation from
 * `overrides`, else from the real model of that width (768: CLIP-L, 1280: CLIP-G). Overrides must agree
 * with the weights.
 */
export function inferCLIPTextConfig(store: WeightStore, overrides: Partial<CLIPTextConfig> = {}): CLIPTextConfig {
  const what = 'CLIP text encoder';
  if (!store.has(TOKEN_EMBEDDING)) throw new SD3Error(`${what}: ${store.label}: missing weight "${TOKEN_EMBEDDING}"`);
  const [vocab, width] = store.get(TOKEN_EMBEDDING).shape as [number, number];
  const layers = countLayers(store, (i) => `${layerName(i)}.self_attn.q_proj.weight`);
  if (layers === 0) throw new SD3Error(`${what}: ${store.label}: no encoder layers (missing "${layerName(0)}.self_attn.q_proj.weight")`);
  const fc1 = `${layerName(0)}.mlp.fc1.weight`;
  if (!store.has(POSITION_EMBEDDING)) throw new SD3Error(`${what}: ${store.label}: missing weight "${POSITION_EMBEDDING}"`);
  if (!store.has(fc1)) throw new SD3Error(`${what}: ${store.label}: missing weight "${fc1}"`);
  const known = BY_WIDTH[width];
  const given = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined)) as Partial<CLIPTextConfig>;
  const heads = given.numAttentionHeads ?? known?.numAttentionHeads;
  const act = given.hiddenAct ?? known?.hiddenAct;
  if (heads === undefined || act === undefined) {
    throw new SD3Error(`${what}: width ${width} is not a known CLIP (768: CLIP-L, 1280: CLIP-G); the config must give numAttentionHeads and hiddenAct`);
  }
  const config: CLIPTextConfig = {
    vocabSize: vocab,
    hiddenSize: width,
    intermediateSize: store.get(fc1).shape[0]!,
    numHiddenLayers: layers,
    numAttentionHeads: heads,
    maxPositionEmbeddings: store.get(POSITION_EMBEDDING).shape[0]!,
    layerNormEps: known?.layerNormEps ?? 1e-5,
    hiddenAct: act,
    projectionDim: store.has(PROJECTION) ? store.get(PROJECTION).shape[0]! : width,
    ...given,
  };
  validateCLIPConfig(config);
  if (config.numHiddenLayers !== layers) {
    throw new SD3Error(`${what}: config numHiddenLayers is ${config.numHiddenLayers} but ${store.label} holds ${layers} layers`);
  }
  if (!store.has(PROJECTION) && config.projectionDim !== config.hiddenSize) {
    throw new SD3Error(`${what}: config projectionDim is ${config.projectionDim} but ${store.label} has no "${PROJECTION}" (identity, width ${config.hiddenSize})`);
  }
  checkWeightShapes(what, store, clipWeightShapes(config, store.has(PROJECTION)), describeConfig(config));
  return config;
}

function validateCLIPConfig(c: CLIPTextConfig): void {
  const what = 'CLIP text encoder';
  for (const k of ['vocabSize', 'hiddenSize', 'intermediateSize', 'numHiddenLayers', 'numAttentionHeads', 'maxPositionEmbeddings', 'projectionDim'] as const) {
    positiveInt(what, k, c[k]);
  }
  if (c.hiddenAct !== 'quick_gelu' && c.hiddenAct !== 'gelu') throw new SD3Error(`${what}: config hiddenAct must be "quick_gelu" or "gelu", got ${JSON.stringify(c.hiddenAct)}`);
  if (typeof c.layerNormEps !== 'number' || !(c.layerNormEps > 0)) throw new SD3Error(`${what}: config layerNormEps must be a positive number, got ${describe(c.layerNormEps)}`);
  if (c.hiddenSize % c.numAttentionHeads !== 0) {
    throw new SD3Error(`${what}: hiddenSize ${c.hiddenSize} is not divisible by numAttentionHeads ${c.numAttentionHeads}`);
  }
}

function describeConfig(c: CLIPTextConfig): string {
  return `hiddenSize ${c.hiddenSize}, intermediateSize ${c.intermediateSize}, vocabSize ${c.vocabSize}, maxPositionEmbeddings ${c.maxPositionEmbeddings}`;
}

/** Every weight the CLIP graph reads (names after the component prefix), with its shape. */
export function clipWeightShapes(c: CLIPTextConfig, projection: boolean): Map<string, number[]> {
  const W = c.hiddenSize;
  const I = c.intermediateSize;
  const m = new Map<string, number[]>([[TOKEN_EMBEDDING, [c.vocabSize, W]], [POSITION_EMBEDDING, [c.maxPositionEmbeddings, W]]]);
  for (let i = 0; i < c.numHiddenLayers; i++) {
    const p = layerName(i);
    for (const n of ['layer_norm1', 'layer_norm2']) { m.set(`${p}.${n}.weight`, [W]); m.set(`${p}.${n}.bias`, [W]); }
    for (const n of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) { m.set(`${p}.self_attn.${n}.weight`, [W, W]); m.set(`${p}.self_attn.${n}.bias`, [W]); }
    m.set(`${p}.mlp.fc1.weight`, [I, W]); m.set(`${p}.mlp.fc1.bias`, [I]);
    m.set(`${p}.mlp.fc2.weight`, [W, I]); m.set(`${p}.mlp.fc2.bias`, [W]);
  }
  m.set('text_model.final_layer_norm.weight', [W]); m.set('text_model.final_layer_norm.bias', [W]);
  if (projection) m.set(PROJECTION, [c.projectionDim, W]);
  return m;
}

// ---- graph ----

/** [1, 1, P, P] additive mask: query i sees keys j <= i. */
function causalMask(g: GraphBuilder, P: number): Value {
  const m = new Float32Array(P * P);
  for (let i = 0; i < P; i++) for (let j = i + 1; j < P; j++) m[i * P + j] = -Infinity;
  return g.constant({ dtype: 'float32', shape: [1, 1, P, P], data: m });
}

function selfAttention(nn: NN, p: string, x: Value, mask: Value, c: CLIPTextConfig): Value {
  const q = linear(nn, `${p}.q_proj`, x, { bias: true });
  const k = linear(nn, `${p}.k_proj`, x, { bias: true });
  const v = linear(nn, `${p}.v_proj`, x, { bias: true });
  const heads = c.numAttentionHeads;
  const o = nn.g.attention(q, k, v, { heads, scale: 1 / Math.sqrt(c.hiddenSize / heads), bias: mask }); // [B, P, W]
  return linear(nn, `${p}.out_proj`, o, { bias: true });
}

function mlp(nn: NN, p: string, x: Value, c: CLIPTextConfig): Value {
  const h = linear(nn, `${p}.fc1`, x, { bias: true }); // [B, P, I]
  const a = c.hiddenAct === 'quick_gelu' ? nn.g.quickGelu(h) : nn.g.gelu(h);
  return linear(nn, `${p}.fc2`, a, { bias: true });
}

function encoderLayer(nn: NN, p: string, x: Value, mask: Value, c: CLIPTextConfig): Value {
  const eps = c.layerNormEps;
  const h = nn.g.add(x, selfAttention(nn, `${p}.self_attn`, layerNorm(nn, `${p}.layer_norm1`, x, eps), mask, c));
  return nn.g.add(h, mlp(nn, `${p}.mlp`, layerNorm(nn, `${p}.layer_norm2`, h, eps), c));
}

/**
 * The CLIP text graph: input `input_ids` int64 [B, P]; outputs `penultimate` and `last_hidden_state`
 * [B, P, W], `pooled` [B, W], `pooled_projected` [B, projectionDim], and with `debug` `hidden_states`
 * [layers + 1, B, P, W] (embeddings, then the stream after each layer).
 */
export function buildCLIPTextModel(store: WeightStore, config: CLIPTextConfig, opts: { debug?: boolean; quant?: QuantizedLinears; lora?: ReadonlySet<string> } = {}): BuiltModel {
  const g = new GraphBuilder('clip_text');
  const nn: NN = { g, w: store, ...(opts.quant ? { quant: opts.quant } : {}), ...(opts.lora?.size ? { lora: opts.lora } : {}) };
  const P = config.maxPositionEmbeddings;
  const ids = g.input('input_ids', 'int64', ['B', P]);

  let x = g.add(g.gather(param(nn, TOKEN_EMBEDDING), ids), param(nn, POSITION_EMBEDDING)); // [B, P, W]
  const mask = causalMask(g, P);
  const states = [x];
  for (let i = 0; i < config.numHiddenLayers; i++) {
    x = g.within(`layer${i}`, () => encoderLayer(nn, layerName(i), x, mask, config));
    states.push(x);
  }
  const last = layerNorm(nn, 'text_model.final_layer_norm', x, config.layerNormEps);

  // pooled: the row of the first end token, i.e. the first occurrence of the largest id
  const eos = g.node('ArgMax', [g.cast(ids, 'int32')], { axis: 1, keepdims: 1 }); // [B, 1]
  const pooled = g.node('GatherND', [last, eos], { batch_dims: 1 }); // [B, W]
  const projected = hasParam(nn, PROJECTION) ? linear(nn, 'text_projection', pooled, { bias: false }) : pooled;

  g.output(states[states.length - 2]!, 'penultimate');
  g.output(last, 'last_hidden_state');
  g.output(pooled, 'pooled');
  g.output(projected, 'pooled_projected');
  if (opts.debug) g.output(g.concat(states.map((s) => g.unsqueeze(s, [0])), 0), 'hidden_states');
  return g.build();
}

// ---- runnable encoder ----

export interface CLIPTextOutput {
  /** [B, P, W] stream after the second-to-last layer, without the final LayerNorm: SD3's sequence. */
  readonly penultimate: Tensor<'float32'>;
  /** [B, P, W] final LayerNorm of the last layer's output. */
  readonly last: Tensor<'float32'>;
  /** [B, W] `last` at the first end token (argmax of the ids). */
  readonly pooled: Tensor<'float32'>;
  /** [B, projectionDim] `pooled` through the text projection (identity when the file has none). */
  readonly pooledProjected: Tensor<'float32'>;
  /** [layers + 1, B, P, W], only when loaded with `debug`. */
  readonly hiddenStates?: Tensor<'float32'>;
}

export interface CLIPLoadOptions extends RuntimeOptions {
  /** Also output every layer's stream (`hiddenStates`). */
  readonly debug?: boolean;
  /** Name used in errors (e.g. "CLIP-L"). */
  readonly label?: string;
  /**
   * Keep the file's fp16 weights as they are and widen them to float32 per run: half the weight memory (CLIP-G
   * 1.4 GB instead of 2.8) for about 0.5 s more per encode. Default: on for the CPU without int8.
   */
  readonly halfWeights?: boolean;
  /** Pre-quantized Linear weights (int8 path). */
  readonly quant?: QuantizedLinears;
  /** Linear weights with a LoRA branch whose factors are fed at run time (see src/lora, `setBranchFeeds`). */
  readonly loraSlots?: ReadonlySet<string>;
}

/**
 * A loaded CLIP text tower.
 *
 * @example
 *   const clipL = await CLIPTextEncoder.load(prefixed(store, 'text_encoders.clip_l.transformer.'));
 *   const { penultimate, pooled } = await clipL.encode(ids); // ids: int64 [B, 77]
 */
export class CLIPTextEncoder {
  private branchFeeds: Readonly<Record<string, Tensor>> = {};

  private constructor(readonly config: CLIPTextConfig, private readonly session: Session, readonly label: string) {}

  /** The inputs of every LoRA branch (src/lora/branches.ts); replaces the previous ones. */
  setBranchFeeds(feeds: Readonly<Record<string, Tensor>>): void {
    const missing = this.session.inputNames.filter((n) => n.startsWith('lora:') && !(n in feeds));
    if (missing.length) throw new SD3Error(`${this.label}: LoRA branch inputs missing: ${missing.slice(0, 3).join(', ')}`);
    this.branchFeeds = feeds;
  }

  static async load(store: WeightStore, config: Partial<CLIPTextConfig> = {}, opts: CLIPLoadOptions = {}): Promise<CLIPTextEncoder> {
    const label = opts.label ?? 'CLIP text encoder';
    const full = inferCLIPTextConfig(store, config);
    const built = buildCLIPTextModel(store, full, { debug: opts.debug ?? false, ...(opts.quant ? { quant: opts.quant } : {}), ...(opts.loraSlots ? { lora: opts.loraSlots } : {}) });
    const session = await Session.create(label, built, {
      ...runtimeOptions(opts),
      halfWeights: opts.halfWeights ?? (opts.quant ? false : 'on-cpu'),
    });
    return new CLIPTextEncoder(full, session, label);
  }

  /** Encodes int64 ids [B, maxPositionEmbeddings] (one padded 77-token chunk per prompt). */
  async encode(ids: Tensor): Promise<CLIPTextOutput> {
    checkIds(this.label, ids, { vocab: this.config.vocabSize, length: this.config.maxPositionEmbeddings });
    if (this.session.inputNames.length > 1 && Object.keys(this.branchFeeds).length === 0) throw new SD3Error(`${this.label}: loaded with LoRA branches but no LoRA feeds were set (setBranchFeeds)`);
    const out = await this.session.run({ ...this.branchFeeds, input_ids: ids });
    const f32 = (name: string) => out[name] as Tensor<'float32'>;
    return {
      penultimate: f32('penultimate'),
      last: f32('last_hidden_state'),
      pooled: f32('pooled'),
      pooledProjected: f32('pooled_projected'),
      ...(out.hidden_states ? { hiddenStates: f32('hidden_states') } : {}),
    };
  }

  async dispose(): Promise<void> { await this.session.dispose(); }
}
