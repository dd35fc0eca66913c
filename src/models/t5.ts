/**
 * T5 v1.1 encoder (T5-XXL in SD3) as an ONNX graph, computed in float32.
 *
 * ids -> embed_tokens -> N blocks of [RMSNorm, self-attention with a relative position bias and no
 * 1/sqrt(d) scaling] and [RMSNorm, gated tanh-GELU feed-forward] -> final RMSNorm. No biases anywhere. The
 * position bias comes from block 0's bucket embedding and is shared by every block (reference: sd3.5
 * `other_impls.py` T5Stack). Buckets are computed here in TypeScript and fed in, so one session takes any
 * sequence length.
 *
 * Weights use Hugging Face T5EncoderModel names (`encoder.block.N.layer.0.SelfAttention.q.weight`, ...).
 */
import { SD3Error, describe } from '../core/errors.js';
import { type Tensor, tensor } from '../core/tensor.js';
import type { WeightStore } from '../core/weights.js';
import { type NN, type QuantizedLinears, linear, param } from '../nn/layers.js';
import { type BuiltModel, GraphBuilder, type Value } from '../onnx/builder.js';
import { type RuntimeOptions, Session, runtimeOptions } from '../runtime/ort.js';
import { checkIds, checkWeightShapes, countLayers, pickRenamed, positiveInt } from './text-encoder-checks.js';

export interface T5Config {
  readonly vocabSize: number;
  readonly dModel: number;
  /** Width of one attention head; numHeads * dKv is the attention's inner width. */
  readonly dKv: number;
  readonly dFf: number;
  readonly numHeads: number;
  readonly numLayers: number;
  readonly relativeAttentionNumBuckets: number;
  readonly relativeAttentionMaxDistance: number;
  readonly layerNormEpsilon: number;
}

/** Google T5 v1.1 XXL encoder, as in SD3 Medium. */
export const T5_XXL_CONFIG: T5Config = {
  vocabSize: 32128, dModel: 4096, dKv: 64, dFf: 10240, numHeads: 64, numLayers: 24,
  relativeAttentionNumBuckets: 32, relativeAttentionMaxDistance: 128, layerNormEpsilon: 1e-6,
};

const EMBED = 'encoder.embed_tokens.weight';
const RELATIVE_BIAS = 'encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight';
const blockName = (i: number) => `encoder.block.${i}`;

/** Our config keys from a Hugging Face `T5Config` JSON object (keys it lacks are left out). */
export function t5ConfigFromHF(hf: Readonly<Record<string, unknown>>): Partial<T5Config> {
  const ff = hf.feed_forward_proj;
  if (ff !== undefined && ff !== 'gated-gelu') {
    throw new SD3Error(`T5 encoder: feed_forward_proj ${JSON.stringify(ff)} is not supported (T5 v1.1 uses "gated-gelu")`);
  }
  const keys: [keyof T5Config, string][] = [
    ['vocabSize', 'vocab_size'], ['dModel', 'd_model'], ['dKv', 'd_kv'], ['dFf', 'd_ff'], ['numHeads', 'num_heads'],
    ['numLayers', 'num_layers'], ['relativeAttentionNumBuckets', 'relative_attention_num_buckets'],
    ['relativeAttentionMaxDistance', 'relative_attention_max_distance'], ['layerNormEpsilon', 'layer_norm_epsilon'],
  ];
  return pickRenamed(hf, keys);
}

/** The config of the T5 encoder in `store`, from the weights' shapes; overrides must agree with them. */
export function inferT5Config(store: WeightStore, overrides: Partial<T5Config> = {}): T5Config {
  const what = 'T5 encoder';
  for (const n of [EMBED, RELATIVE_BIAS, `${blockName(0)}.layer.0.SelfAttention.q.weight`, `${blockName(0)}.layer.1.DenseReluDense.wi_0.weight`]) {
    if (!store.has(n)) throw new SD3Error(`${what}: ${store.label}: missing weight "${n}"`);
  }
  const [vocab, dModel] = store.get(EMBED).shape as [number, number];
  const [buckets, heads] = store.get(RELATIVE_BIAS).shape as [number, number];
  const inner = store.get(`${blockName(0)}.layer.0.SelfAttention.q.weight`).shape[0]!;
  const layers = countLayers(store, (i) => `${blockName(i)}.layer.0.SelfAttention.q.weight`);
  const given = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined)) as Partial<T5Config>;
  const h = given.numHeads ?? heads;
  if (given.dKv === undefined && inner % h !== 0) throw new SD3Error(`${what}: attention width ${inner} is not divisible by numHeads ${h}`);
  const config: T5Config = {
    vocabSize: vocab,
    dModel,
    dKv: inner / h,
    dFf: store.get(`${blockName(0)}.layer.1.DenseReluDense.wi_0.weight`).shape[0]!,
    numHeads: heads,
    numLayers: layers,
    relativeAttentionNumBuckets: buckets,
    relativeAttentionMaxDistance: T5_XXL_CONFIG.relativeAttentionMaxDistance,
    layerNormEpsilon: T5_XXL_CONFIG.layerNormEpsilon,
    ...given,
  };
  for (const k of ['vocabSize', 'dModel', 'dKv', 'dFf', 'numHeads', 'numLayers', 'relativeAttentionNumBuckets', 'relativeAttentionMaxDistance'] as const) {
    positiveInt(what, k, config[k]);
  }
  if (typeof config.layerNormEpsilon !== 'number' || !(config.layerNormEpsilon > 0)) throw new SD3Error(`${what}: config layerNormEpsilon must be a positive number, got ${describe(config.layerNormEpsilon)}`);
  if (config.relativeAttentionNumBuckets < 4 || config.relativeAttentionNumBuckets % 2 !== 0) {
    throw new SD3Error(`${what}: config relativeAttentionNumBuckets must be an even number >= 4, got ${config.relativeAttentionNumBuckets}`);
  }
  if (config.numLayers !== layers) throw new SD3Error(`${what}: config numLayers is ${config.numLayers} but ${store.label} holds ${layers} blocks`);
  const hint = `dModel ${config.dModel}, numHeads ${config.numHeads} x dKv ${config.dKv}, dFf ${config.dFf}, vocabSize ${config.vocabSize}, ${config.relativeAttentionNumBuckets} buckets`;
  checkWeightShapes(what, store, t5WeightShapes(config), hint);
  return config;
}

/** Every weight the graph reads, with its shape. */
function t5WeightShapes(c: T5Config): Map<string, number[]> {
  const D = c.dModel;
  const inner = c.numHeads * c.dKv;
  const m = new Map<string, number[]>([[EMBED, [c.vocabSize, D]], [RELATIVE_BIAS, [c.relativeAttentionNumBuckets, c.numHeads]]]);
  for (let i = 0; i < c.numLayers; i++) {
    const a = `${blockName(i)}.layer.0`;
    const f = `${blockName(i)}.layer.1`;
    for (const n of ['q', 'k', 'v']) m.set(`${a}.SelfAttention.${n}.weight`, [inner, D]);
    m.set(`${a}.SelfAttention.o.weight`, [D, inner]);
    m.set(`${a}.layer_norm.weight`, [D]);
    m.set(`${f}.DenseReluDense.wi_0.weight`, [c.dFf, D]);
    m.set(`${f}.DenseReluDense.wi_1.weight`, [c.dFf, D]);
    m.set(`${f}.DenseReluDense.wo.weight`, [D, c.dFf]);
    m.set(`${f}.layer_norm.weight`, [D]);
  }
  m.set('encoder.final_layer_norm.weight', [D]);
  return m;
}

/**
 * Bidirectional relative-position buckets, [L, L] with entry [i, j] for d = j - i: half the buckets for d > 0;
 * |d| below a quarter of the buckets maps to itself, larger |d| logarithmically up to `maxDistance`
 * (evaluated in float32, as the reference does).
 */
export function relativePositionBuckets(length: number, numBuckets = 32, maxDistance = 128): Tensor<'int32'> {
  const half = numBuckets / 2;
  const exact = half / 2;
  const logRange = Math.fround(Math.log(maxDistance / exact));
  const byDistance = (n: number) => {
    if (n < exact) return n;
    const r = Math.fround(Math.fround(Math.log(Math.fround(n / exact))) / logRange);
    return Math.min(exact + Math.trunc(Math.fround(r * (half - exact))), half - 1);
  };
  const out = new Int32Array(length * length);
  for (let i = 0; i < length; i++) {
    for (let j = 0; j < length; j++) out[i * length + j] = (j > i ? half : 0) + byDistance(Math.abs(j - i));
  }
  return tensor('int32', [length, length], out);
}

// ---- graph ----

function selfAttention(nn: NN, p: string, x: Value, bias: Value, c: T5Config): Value {
  const q = linear(nn, `${p}.q`, x, { bias: false });
  const k = linear(nn, `${p}.k`, x, { bias: false });
  const v = linear(nn, `${p}.v`, x, { bias: false });
  const o = nn.g.attention(q, k, v, { heads: c.numHeads, scale: 1, bias }); // [B, L, heads * dKv]
  return linear(nn, `${p}.o`, o, { bias: false });
}

function gatedFeedForward(nn: NN, p: string, x: Value): Value {
  const { g } = nn;
  const gate = g.gelu(linear(nn, `${p}.wi_0`, x, { bias: false }), 'tanh'); // [B, L, dFf]
  return linear(nn, `${p}.wo`, g.mul(gate, linear(nn, `${p}.wi_1`, x, { bias: false })), { bias: false });
}

function block(nn: NN, p: string, x: Value, bias: Value, c: T5Config): Value {
  const { g } = nn;
  const eps = c.layerNormEpsilon;
  const h = g.add(x, selfAttention(nn, `${p}.layer.0.SelfAttention`, g.rmsNorm(x, param(nn, `${p}.layer.0.layer_norm.weight`), eps), bias, c));
  return g.add(h, gatedFeedForward(nn, `${p}.layer.1.DenseReluDense`, g.rmsNorm(h, param(nn, `${p}.layer.1.layer_norm.weight`), eps)));
}

/**
 * The T5 encoder graph: inputs `input_ids` int64 [B, L] and `position_bucket` int32 [L, L]
 * (`relativePositionBuckets(L)`); output `last_hidden_state` [B, L, dModel], and with `debug`
 * `hidden_states` [layers, B, L, dModel] (after each block) and `position_bias` [1, heads, L, L].
 */
export function buildT5EncoderModel(store: WeightStore, config: T5Config, opts: { debug?: boolean; quant?: QuantizedLinears } = {}): BuiltModel {
  const g = new GraphBuilder('t5_encoder');
  const nn: NN = { g, w: store, ...(opts.quant ? { quant: opts.quant } : {}) };
  const ids = g.input('input_ids', 'int64', ['B', 'L']);
  const buckets = g.input('position_bucket', 'int32', ['L', 'L']);

  let x = g.gather(param(nn, EMBED), ids); // [B, L, D]
  const bias = g.unsqueeze(g.transpose(g.gather(param(nn, RELATIVE_BIAS), buckets), [2, 0, 1]), [0]); // [1, heads, L, L]
  const states: Value[] = [];
  for (let i = 0; i < config.numLayers; i++) {
    x = g.within(`block${i}`, () => block(nn, blockName(i), x, bias, config));
    states.push(x);
  }
  g.output(g.rmsNorm(x, param(nn, 'encoder.final_layer_norm.weight'), config.layerNormEpsilon), 'last_hidden_state');
  if (opts.debug) {
    g.output(g.concat(states.map((s) => g.unsqueeze(s, [0])), 0), 'hidden_states');
    g.output(bias, 'position_bias');
  }
  return g.build();
}

// ---- runnable encoder ----

export interface T5Output {
  /** [B, L, dModel] final RMSNorm of the last block: what SD3 uses. */
  readonly lastHidden: Tensor<'float32'>;
  /** [layers, B, L, dModel], only when loaded with `debug`. */
  readonly hiddenStates?: Tensor<'float32'>;
  /** [1, heads, L, L], only when loaded with `debug`. */
  readonly positionBias?: Tensor<'float32'>;
}

export interface T5LoadOptions extends RuntimeOptions {
  /** Also output every block's stream and the position bias. */
  readonly debug?: boolean;
  /** Name used in errors (e.g. "T5-XXL"). */
  readonly label?: string;
  /** Pre-quantized Linear weights (int8 path). */
  readonly quant?: QuantizedLinears;
  /** Keep fp16 weights resident, widened per run (float32 T5-XXL in 9.5 GB instead of 19). Default: CPU without int8. */
  readonly halfWeights?: boolean;
}

/**
 * A loaded T5 encoder; one session serves every sequence length.
 *
 * @example
 *   const t5 = await T5Encoder.load(prefixed(store, 'text_encoders.t5xxl.transformer.'));
 *   const context = await t5.encode(ids); // ids: int64 [B, L] -> float32 [B, L, 4096]
 */
export class T5Encoder {
  private readonly buckets = new Map<number, Tensor<'int32'>>();
  private constructor(readonly config: T5Config, private readonly session: Session, readonly label: string) {}

  static async load(store: WeightStore, config: Partial<T5Config> = {}, opts: T5LoadOptions = {}): Promise<T5Encoder> {
    const label = opts.label ?? 'T5 encoder';
    const full = inferT5Config(store, config);
    const built = buildT5EncoderModel(store, full, { debug: opts.debug ?? false, ...(opts.quant ? { quant: opts.quant } : {}) });
    const session = await Session.create(label, built, {
      ...runtimeOptions(opts),
      halfWeights: opts.halfWeights ?? (opts.quant ? false : 'on-cpu'),
    });
    return new T5Encoder(full, session, label);
  }

  /** Encodes int64 ids [B, L] to the final hidden states [B, L, dModel]. */
  async encode(ids: Tensor): Promise<Tensor<'float32'>> {
    return (await this.encodeDetailed(ids)).lastHidden;
  }

  /** `encode`, plus the debug tensors when loaded with `debug`. */
  async encodeDetailed(ids: Tensor): Promise<T5Output> {
    checkIds(this.label, ids, { vocab: this.config.vocabSize });
    const L = ids.shape[1]!;
    let buckets = this.buckets.get(L);
    if (!buckets) {
      buckets = relativePositionBuckets(L, this.config.relativeAttentionNumBuckets, this.config.relativeAttentionMaxDistance);
      this.buckets.set(L, buckets);
    }
    const out = await this.session.run({ input_ids: ids, position_bucket: buckets });
    return {
      lastHidden: out.last_hidden_state as Tensor<'float32'>,
      ...(out.hidden_states ? { hiddenStates: out.hidden_states as Tensor<'float32'> } : {}),
      ...(out.position_bias ? { positionBias: out.position_bias as Tensor<'float32'> } : {}),
    };
  }

  async dispose(): Promise<void> { await this.session.dispose(); }
}
