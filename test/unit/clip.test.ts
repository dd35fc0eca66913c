import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Tensor, float32ToHalf, tensor } from '../../src/core/tensor.js';
import { MemoryStore, readWeightFloat32 } from '../../src/core/weights.js';
import { CLIP_G_CONFIG, CLIP_L_CONFIG, CLIPTextEncoder, type CLIPTextConfig, clipConfigFromHF, clipWeightShapes, inferCLIPTextConfig } from '../../src/models/clip.js';
import { random, shapeStore } from '../helpers/stores.js';

/** Every CLIP weight name with its shape, for a config: the model's own table. */
const clipShapes = clipWeightShapes;

const TINY: CLIPTextConfig = { ...CLIP_L_CONFIG, vocabSize: 100, hiddenSize: 8, intermediateSize: 16, numHiddenLayers: 3, numAttentionHeads: 2, projectionDim: 8 };

function tinyStore(projection: boolean, drop?: string): MemoryStore {
  const rnd = random(7);
  const map = new Map<string, Tensor>();
  for (const [name, shape] of clipShapes(TINY, projection)) {
    if (name === drop) continue;
    const n = shape.reduce((a, b) => a * b, 1);
    const isNormWeight = /norm.*\.weight$/.test(name);
    map.set(name, tensor('float32', shape, Float32Array.from({ length: n }, () => (isNormWeight ? 1 : 0) + rnd() * 0.5)));
  }
  return new MemoryStore(map);
}

function ids(rows: number[][], length = 77): Tensor<'int64'> {
  const data = new BigInt64Array(rows.length * length);
  rows.forEach((r, b) => { for (let j = 0; j < length; j++) data[b * length + j] = BigInt(r[j] ?? 99); });
  return tensor('int64', [rows.length, length], data);
}

const TINY_OVERRIDES = { numAttentionHeads: 2, hiddenAct: 'quick_gelu' } as const;

const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

test('real CLIP-L and CLIP-G configs are inferred from shapes; CLIP-L without text_projection loads', () => {
  assert.deepEqual(inferCLIPTextConfig(shapeStore(clipShapes(CLIP_L_CONFIG, false))), CLIP_L_CONFIG);
  assert.deepEqual(inferCLIPTextConfig(shapeStore(clipShapes(CLIP_G_CONFIG, true))), CLIP_G_CONFIG);
});

test('Hugging Face config keys map to ours and override the width table', () => {
  const hf = { hidden_act: 'gelu', hidden_size: 8, num_attention_heads: 4, layer_norm_eps: 1e-6, unknown: 3 };
  assert.deepEqual(clipConfigFromHF(hf), { hiddenAct: 'gelu', hiddenSize: 8, numAttentionHeads: 4, layerNormEps: 1e-6 });
  const c = inferCLIPTextConfig(shapeStore(clipShapes(TINY, false)), clipConfigFromHF(hf));
  assert.equal(c.numAttentionHeads, 4);
  assert.equal(c.hiddenAct, 'gelu');
  assert.equal(c.numHiddenLayers, 3);
  assert.equal(c.intermediateSize, 16);
});

test('config errors name the bad value: unknown width, mismatched sizes, missing weights', () => {
  const store = shapeStore(clipShapes(TINY, false));
  assert.throws(() => inferCLIPTextConfig(store), /width 8 is not a known CLIP.*numAttentionHeads/);
  assert.throws(() => inferCLIPTextConfig(store, { numAttentionHeads: 3, hiddenAct: 'gelu' }), /hiddenSize 8 is not divisible by numAttentionHeads 3/);
  assert.throws(() => inferCLIPTextConfig(store, { numAttentionHeads: 2, hiddenAct: 'gelu', numHiddenLayers: 2 }), /numHiddenLayers is 2 but shapes holds 3 layers/);
  assert.throws(() => inferCLIPTextConfig(store, { numAttentionHeads: 2, hiddenAct: 'gelu', intermediateSize: 32 }), /"text_model.encoder.layers.0.mlp.fc1.weight" has shape \[16, 8\], expected \[32, 8\]/);
  assert.throws(() => inferCLIPTextConfig(store, { numAttentionHeads: 2, hiddenAct: 'relu' as never }), /hiddenAct must be "quick_gelu" or "gelu", got "relu"/);
  assert.throws(() => inferCLIPTextConfig(store, { numAttentionHeads: 2, hiddenAct: 'gelu', projectionDim: 4 }), /projectionDim is 4 but shapes has no "text_projection.weight"/);
  const shapes = clipShapes(TINY, false);
  shapes.delete('text_model.encoder.layers.1.mlp.fc2.bias');
  assert.throws(() => inferCLIPTextConfig(shapeStore(shapes), { numAttentionHeads: 2, hiddenAct: 'gelu' }), /missing weight "text_model.encoder.layers.1.mlp.fc2.bias"/);
  assert.throws(() => inferCLIPTextConfig(shapeStore(new Map())), /missing weight "text_model.embeddings.token_embedding.weight"/);
});

test('encode: shapes, pooled at the first end token, identity projection, causal attention', async () => {
  const enc = await CLIPTextEncoder.load(tinyStore(false), TINY_OVERRIDES, { threads: 1, debug: true });
  try {
    // row 0: end token (99) at 3; row 1: a larger id never appears, so the first 99 (index 5) is the pooled position
    const input = ids([[98, 5, 6, 99, 0, 0], [98, 7, 8, 9, 10, 99, 99]]);
    const out = await enc.encode(input);
    assert.deepEqual(out.penultimate.shape, [2, 77, 8]);
    assert.deepEqual(out.last.shape, [2, 77, 8]);
    assert.deepEqual(out.pooled.shape, [2, 8]);
    assert.deepEqual(out.hiddenStates!.shape, [4, 2, 77, 8]);
    for (const [b, at] of [[0, 3], [1, 5]] as const) {
      assert.deepEqual(out.pooled.data.subarray(b * 8, b * 8 + 8), out.last.data.subarray((b * 77 + at) * 8, (b * 77 + at + 1) * 8));
    }
    assert.deepEqual(out.pooledProjected.data, out.pooled.data);
    assert.deepEqual(out.penultimate.data, out.hiddenStates!.data.subarray(2 * 2 * 77 * 8, 3 * 2 * 77 * 8));

    // changing token 10 leaves rows 0..9 alone and changes rows 10.. (queries only see earlier keys)
    const changed = ids([[98, 5, 6, 99, 0, 0, 0, 0, 0, 0, 42]]);
    const a = (await enc.encode(ids([[98, 5, 6, 99, 0, 0, 0, 0, 0, 0, 0]]))).penultimate.data;
    const b = (await enc.encode(changed)).penultimate.data;
    assert.equal(maxDiff(a.subarray(0, 10 * 8), b.subarray(0, 10 * 8)), 0);
    assert.ok(maxDiff(a.subarray(10 * 8), b.subarray(10 * 8)) > 1e-3, "rows from 10 on should change");
  } finally {
    await enc.dispose();
  }
});

test('encode: the text projection is applied as x W^T', async () => {
  const store = tinyStore(true);
  const enc = await CLIPTextEncoder.load(store, TINY_OVERRIDES, { threads: 1 });
  try {
    const out = await enc.encode(ids([[98, 1, 2, 99]]));
    const w = store.get('text_projection.weight');
    const W = new Float32Array(w.data!.buffer, w.data!.byteOffset, 64);
    const expected = Float32Array.from({ length: 8 }, (_, o) => {
      let s = 0;
      for (let i = 0; i < 8; i++) s += out.pooled.data[i]! * W[o * 8 + i]!;
      return s;
    });
    const d = maxDiff(out.pooledProjected.data, expected);
    assert.ok(d < 1e-5, `projection differs by ${d}: ${out.pooledProjected.data} vs ${expected}`);
  } finally {
    await enc.dispose();
  }
});

test('bad ids are rejected before the runtime', async () => {
  const enc = await CLIPTextEncoder.load(tinyStore(false), TINY_OVERRIDES, { threads: 1, label: 'CLIP-L' });
  try {
    const good = ids([[98, 99]]);
    await assert.rejects(enc.encode(tensor('int32', [1, 77], new Int32Array(77))), /CLIP-L: token ids must be int64, got int32/);
    await assert.rejects(enc.encode(ids([[98, 99]], 76)), /must be 77 long .* got length 76/);
    await assert.rejects(enc.encode(tensor('int64', [77], good.data)), /shape \[batch, length\], got \[77\]/);
    await assert.rejects(enc.encode(ids([[98, 100]])), /token id 100 at \[0, 1\] is outside the vocabulary \[0, 100\)/);
    await assert.rejects(enc.encode(ids([[98, -1]])), /token id -1 at \[0, 1\]/);
    await assert.rejects(enc.encode(tensor('int64', [0, 77], new BigInt64Array(0))), /batch size 0/);
  } finally {
    await enc.dispose();
  }
});

test('a missing needed weight fails at load, naming it', async () => {
  await assert.rejects(CLIPTextEncoder.load(tinyStore(false, 'text_model.final_layer_norm.bias'), TINY_OVERRIDES, { threads: 1 }),
    /missing weight "text_model.final_layer_norm.bias"/);
});

test('half-precision weights kept resident (the CPU default) give the float32-folded results', async () => {
  // The same fp16 weights, widened per run (halfWeights) or once at load (folded casts, optimised session).
  const f32 = tinyStore(true);
  const map = new Map<string, Tensor>();
  for (const [name, shape] of clipShapes(TINY, true)) map.set(name, float32ToHalf(tensor('float32', shape, readWeightFloat32(f32.get(name))), 'float16'));
  const store = new MemoryStore(map);
  const input = ids([[49406 % 100, 5, 6, 7, 99]]);
  const half = await CLIPTextEncoder.load(store, TINY_OVERRIDES, { threads: 1, halfWeights: true });
  const folded = await CLIPTextEncoder.load(store, TINY_OVERRIDES, { threads: 1, halfWeights: false });
  const [a, b] = [await half.encode(input), await folded.encode(input)];
  for (const k of ['penultimate', 'last', 'pooled'] as const) {
    const scale = b[k].data.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    assert.ok(maxDiff(a[k].data, b[k].data) <= 1e-5 * scale, `${k}: ${maxDiff(a[k].data, b[k].data)} of ${scale}`);
  }
  await Promise.all([half.dispose(), folded.dispose()]);
});
