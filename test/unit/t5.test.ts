import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Tensor, tensor } from '../../src/core/tensor.js';
import { MemoryStore } from '../../src/core/weights.js';
import { T5_XXL_CONFIG, T5Encoder, type T5Config, inferT5Config, relativePositionBuckets, t5ConfigFromHF } from '../../src/models/t5.js';
import { random, shapeStore } from '../helpers/stores.js';

function t5Shapes(c: T5Config): Map<string, number[]> {
  const D = c.dModel;
  const inner = c.numHeads * c.dKv;
  const m = new Map<string, number[]>([
    ['encoder.embed_tokens.weight', [c.vocabSize, D]],
    ['encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight', [c.relativeAttentionNumBuckets, c.numHeads]],
    ['encoder.final_layer_norm.weight', [D]],
  ]);
  for (let i = 0; i < c.numLayers; i++) {
    const p = `encoder.block.${i}.layer`;
    for (const n of ['q', 'k', 'v']) m.set(`${p}.0.SelfAttention.${n}.weight`, [inner, D]);
    m.set(`${p}.0.SelfAttention.o.weight`, [D, inner]);
    m.set(`${p}.0.layer_norm.weight`, [D]);
    m.set(`${p}.1.DenseReluDense.wi_0.weight`, [c.dFf, D]);
    m.set(`${p}.1.DenseReluDense.wi_1.weight`, [c.dFf, D]);
    m.set(`${p}.1.DenseReluDense.wo.weight`, [D, c.dFf]);
    m.set(`${p}.1.layer_norm.weight`, [D]);
  }
  return m;
}

const TINY: T5Config = { ...T5_XXL_CONFIG, vocabSize: 50, dModel: 8, dKv: 3, dFf: 12, numHeads: 2, numLayers: 2 };

function tinyStore(): MemoryStore {
  const rnd = random(11);
  const map = new Map<string, Tensor>();
  for (const [name, shape] of t5Shapes(TINY)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const norm = name.endsWith('layer_norm.weight');
    map.set(name, tensor('float32', shape, Float32Array.from({ length: n }, () => (norm ? 1 : 0) + rnd() * 0.5)));
  }
  return new MemoryStore(map);
}

function ids(rows: number[][]): Tensor<'int64'> {
  return tensor('int64', [rows.length, rows[0]!.length], BigInt64Array.from(rows.flat().map(BigInt)));
}

const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

test('relative position buckets: exact below 8, logarithmic up to 128, half the buckets for keys after the query', () => {
  // |d| -> bucket for the 32-bucket, max-distance-128 table (d <= 0); d > 0 adds 16
  const table: [number, number][] = [[0, 0], [1, 1], [7, 7], [8, 8], [11, 8], [12, 9], [16, 10], [22, 10], [23, 11], [31, 11],
    [32, 12], [45, 12], [46, 13], [63, 13], [64, 14], [90, 14], [91, 15], [128, 15], [199, 15]];
  const L = 200;
  const b = relativePositionBuckets(L).data;
  for (const [n, bucket] of table) {
    assert.equal(b[n * L + 0], bucket, `key ${n} before the query`);
    if (n > 0) assert.equal(b[0 * L + n], 16 + bucket, `key ${n} after the query`);
  }
  assert.deepEqual([...relativePositionBuckets(3).data], [0, 17, 18, 1, 0, 17, 2, 1, 0]);
});

test('the real T5-XXL config is inferred from shapes (heads from the bucket table)', () => {
  assert.deepEqual(inferT5Config(shapeStore(t5Shapes(T5_XXL_CONFIG))), T5_XXL_CONFIG);
  assert.deepEqual(inferT5Config(shapeStore(t5Shapes(TINY))), TINY);
  assert.deepEqual(t5ConfigFromHF({ d_model: 8, d_kv: 3, num_heads: 2, feed_forward_proj: 'gated-gelu', model_type: 't5' }), { dModel: 8, dKv: 3, numHeads: 2 });
});

test('config errors name the bad value', () => {
  const store = shapeStore(t5Shapes(TINY));
  assert.throws(() => t5ConfigFromHF({ feed_forward_proj: 'relu' }), /feed_forward_proj "relu" is not supported/);
  assert.throws(() => inferT5Config(store, { numHeads: 4 }), /attention width 6 is not divisible by numHeads 4/);
  assert.throws(() => inferT5Config(store, { numHeads: 3 }), /relative_attention_bias.weight" has shape \[32, 2\], expected \[32, 3\]/);
  assert.throws(() => inferT5Config(store, { numLayers: 3 }), /numLayers is 3 but shapes holds 2 blocks/);
  assert.throws(() => inferT5Config(store, { dFf: 10 }), /wi_0.weight" has shape \[12, 8\], expected \[10, 8\]/);
  const shapes = t5Shapes(TINY);
  shapes.delete('encoder.block.1.layer.1.DenseReluDense.wo.weight');
  assert.throws(() => inferT5Config(shapeStore(shapes)), /missing weight "encoder.block.1.layer.1.DenseReluDense.wo.weight"/);
});

test('one session takes any length; batch rows are independent', async () => {
  const enc = await T5Encoder.load(tinyStore(), {}, { threads: 1, debug: true });
  try {
    const a = [5, 9, 1, 0, 0];
    const b = [7, 3, 4, 2, 1];
    const both = await enc.encodeDetailed(ids([a, b]));
    assert.deepEqual(both.lastHidden.shape, [2, 5, 8]);
    assert.deepEqual(both.hiddenStates!.shape, [2, 2, 5, 8]);
    assert.deepEqual(both.positionBias!.shape, [1, 2, 5, 5]);
    const alone = await enc.encode(ids([b]));
    const d = maxDiff(both.lastHidden.data.subarray(40), alone.data);
    assert.ok(d < 1e-5, `row 1 alone differs by ${d}`);
    const long = await enc.encode(ids([Array.from({ length: 140 }, (_, i) => (i * 7) % 50)]));
    assert.deepEqual(long.shape, [1, 140, 8]);
    assert.ok(long.data.every(Number.isFinite), 'finite output at length 140');
  } finally {
    await enc.dispose();
  }
});

test('bad ids are rejected before the runtime', async () => {
  const enc = await T5Encoder.load(tinyStore(), {}, { threads: 1, label: 'T5-XXL' });
  try {
    await assert.rejects(enc.encode(tensor('float32', [1, 3], new Float32Array(3))), /T5-XXL: token ids must be int64, got float32/);
    await assert.rejects(enc.encode(ids([[1, 50]])), /token id 50 at \[0, 1\] is outside the vocabulary \[0, 50\)/);
    await assert.rejects(enc.encode(tensor('int64', [1, 1, 2], new BigInt64Array(2))), /shape \[batch, length\], got \[1, 1, 2\]/);
    await assert.rejects(enc.encode(tensor('int64', [1, 0], new BigInt64Array(0))), /length 0/);
  } finally {
    await enc.dispose();
  }
});
