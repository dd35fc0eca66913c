import assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SD3Error } from '../../src/core/errors.js';
import { readAllSafetensors, SafetensorsFile } from '../../src/core/safetensors.js';
import { type Tensor, numel, tensor } from '../../src/core/tensor.js';
import { MemoryStore, SafetensorsStore, type WeightStore, withPrefix } from '../../src/core/weights.js';
import { MMDiT, SD3_5_LARGE_MMDIT, SD3_5_MEDIUM_MMDIT, SD3_MEDIUM_MMDIT, buildMMDiTGraph, denoisedFromVelocity, inferMMDiTConfig, mmditVariant } from '../../src/models/mmdit.js';
import { GraphBuilder } from '../../src/onnx/builder.js';
import { type MMDiTSizes, SD3_5_LARGE_MMDIT_SIZES, SD3_5_MEDIUM_MMDIT_SIZES, SD3_MEDIUM_MMDIT_SIZES, mmditLayout } from '../../src/presets/layout.js';

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'mmdit');
const STRICT = { atol: 1e-6, rtol: 1e-5 };

let file: SafetensorsFile;
let store: WeightStore;
let model: MMDiT;

before(async () => {
  file = SafetensorsFile.open(path.join(fixtures, 'weights.safetensors'));
  store = new SafetensorsStore([file], withPrefix('model.diffusion_model.'));
  model = await MMDiT.load(store, { threads: 1 });
});

after(async () => {
  await model.dispose();
  file.close();
});

function loadCase(name: string): Record<string, Tensor<'float32'>> {
  return readAllSafetensors(path.join(fixtures, 'cases', `${name}.safetensors`)).tensors as Record<string, Tensor<'float32'>>;
}

/** Rows [from, to) of a tensor along dimension 0. */
function rows(t: Tensor<'float32'>, from: number, to: number): Tensor<'float32'> {
  const per = numel(t.shape.slice(1));
  return tensor('float32', [to - from, ...t.shape.slice(1)], t.data.slice(from * per, to * per));
}

function assertClose(actual: Tensor<'float32'>, expected: Tensor<'float32'>, what: string): void {
  assert.deepEqual(actual.shape, expected.shape, `${what}: shape`);
  let maxAbs = 0;
  let maxDiff = 0;
  for (let i = 0; i < expected.data.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(expected.data[i]!));
    maxDiff = Math.max(maxDiff, Math.abs(actual.data[i]! - expected.data[i]!));
  }
  assert.ok(maxDiff <= STRICT.atol + STRICT.rtol * maxAbs, `${what}: max diff ${maxDiff} (largest value ${maxAbs})`);
}

/** A seeded uniform generator in [-1, 1). */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  };
}

/** Random weights of an SD3-layout MMDiT with the given depth, position grid, pooled and context widths. */
function randomMMDiT(depth: number, grid: number, adm: number, ctx: number): MemoryStore {
  const next = random(depth * 1000 + grid);
  const hidden = 64 * depth;
  const weights = new Map<string, Tensor>();
  const add = (name: string, shape: number[], scale: number) => {
    weights.set(name, tensor('float32', shape, Float32Array.from({ length: numel(shape) }, () => next() * scale)));
  };
  const lin = (name: string, out: number, inp: number) => { add(`${name}.weight`, [out, inp], 1 / Math.sqrt(inp)); add(`${name}.bias`, [out], 0.1); };
  add('x_embedder.proj.weight', [hidden, 16, 2, 2], 1 / 8);
  add('x_embedder.proj.bias', [hidden], 0.1);
  add('pos_embed', [1, grid * grid, hidden], 0.5);
  lin('t_embedder.mlp.0', hidden, 256);
  lin('t_embedder.mlp.2', hidden, hidden);
  lin('y_embedder.mlp.0', hidden, adm);
  lin('y_embedder.mlp.2', hidden, hidden);
  lin('context_embedder', hidden, ctx);
  for (let i = 0; i < depth; i++) {
    for (const branch of ['context_block', 'x_block']) {
      const p = `joint_blocks.${i}.${branch}`;
      const preOnly = branch === 'context_block' && i === depth - 1;
      lin(`${p}.adaLN_modulation.1`, (preOnly ? 2 : 6) * hidden, hidden);
      lin(`${p}.attn.qkv`, 3 * hidden, hidden);
      if (preOnly) continue;
      lin(`${p}.attn.proj`, hidden, hidden);
      lin(`${p}.mlp.fc1`, 4 * hidden, hidden);
      lin(`${p}.mlp.fc2`, hidden, 4 * hidden);
    }
  }
  lin('final_layer.adaLN_modulation.1', 2 * hidden, hidden);
  lin('final_layer.linear', 64, hidden);
  return new MemoryStore(weights, 'random MMDiT');
}

function randomInputs(batch: number, height: number, width: number, length: number, adm: number, ctx: number) {
  const next = random(batch * 7 + height * 31 + width);
  const fill = (shape: number[]) => tensor('float32', shape, Float32Array.from({ length: numel(shape) }, next));
  return {
    x: fill([batch, 16, height, width]),
    t: tensor('float32', [batch], Float32Array.from({ length: batch }, (_, i) => 1000 - 137.5 * i)),
    y: fill([batch, adm]),
    context: fill([batch, length, ctx]),
  };
}

test('reads the configuration from weight shapes', () => {
  assert.deepEqual(inferMMDiTConfig(store), {
    depth: 2, hiddenSize: 128, numHeads: 2, patchSize: 2, inChannels: 16, outChannels: 16, posEmbedMaxSize: 16,
    admInChannels: 64, contextInFeatures: 96, mlpHidden: 512, frequencyEmbeddingSize: 256, qkNorm: null, dualAttentionLayers: [],
  });
});

/** A store with the names and shapes of a layout (no data: for configuration and graph building only). */
function layoutStore(sizes: MMDiTSizes, label: string, edit: (m: Map<string, readonly number[]>) => void = () => {}): WeightStore {
  const prefix = 'model.diffusion_model.';
  const layout = new Map<string, readonly number[]>(mmditLayout(prefix, sizes).map((e) => [e.name.slice(prefix.length), e.shape]));
  edit(layout);
  return {
    label,
    has: (n) => layout.has(n),
    get: (n) => {
      const shape = layout.get(n);
      if (!shape) throw new SD3Error(`no ${n}`);
      return { name: n, dtype: 'bfloat16', shape, chunks: [{ file: '/nowhere/sd3.safetensors', offset: 0, length: numel(shape) * 2 }] };
    },
  };
}

test("reads SD3 Medium's configuration from the real checkpoint's shapes and builds its graph", () => {
  const real = layoutStore(SD3_MEDIUM_MMDIT_SIZES, 'SD3 Medium layout');
  const config = inferMMDiTConfig(real);
  assert.deepEqual(config, SD3_MEDIUM_MMDIT);
  assert.equal(mmditVariant(config), 'sd3_medium');
  const g = new GraphBuilder('mmdit');
  buildMMDiTGraph({ g, w: real }, config);
  const built = g.build();
  assert.deepEqual(built.inputs, ['x', 't', 'y', 'context', 'pos_embed_cropped', 'skip_layers']);
  assert.deepEqual(built.outputs, ['model_output']);
  assert.equal(built.externalFolder, '/nowhere');
  // exactly the timestep embedding's sine and cosine stay on the CPU when the rest runs on a GPU
  assert.deepEqual(built.hostNodes.map((n) => n.split('/').pop()!.replace(/_\d+$/, '')).sort(), ['Cos', 'Sin']);
});

test("reads SD3.5 Medium's and Large's configurations from their keys alone", () => {
  const medium = inferMMDiTConfig(layoutStore(SD3_5_MEDIUM_MMDIT_SIZES, 'SD3.5 Medium layout'));
  assert.deepEqual(medium, SD3_5_MEDIUM_MMDIT);
  assert.equal(mmditVariant(medium), 'sd3.5_medium');
  const large = inferMMDiTConfig(layoutStore(SD3_5_LARGE_MMDIT_SIZES, 'SD3.5 Large layout'));
  assert.deepEqual(large, SD3_5_LARGE_MMDIT);
  assert.equal(mmditVariant(large), 'sd3.5_large');
  // the graph reads no position grid: it is cut on the host
  const g = new GraphBuilder('mmdit');
  buildMMDiTGraph({ g, w: layoutStore(SD3_5_MEDIUM_MMDIT_SIZES, 'SD3.5 Medium layout') }, medium);
  assert.ok(!new TextDecoder().decode(g.build().bytes).includes('w:pos_embed'));
  // parameter counts of the real models (pos_embed included), as computed from the architecture in SD35-NOTES
  const count = (z: MMDiTSizes) => mmditLayout(undefined, z).reduce((n, e) => n + numel(e.shape), 0);
  assert.deepEqual([SD3_MEDIUM_MMDIT_SIZES, SD3_5_MEDIUM_MMDIT_SIZES, SD3_5_LARGE_MMDIT_SIZES].map(count), [2_084_951_104, 2_469_663_936, 8_146_280_768]);
  // dual blocks need not be contiguous
  const odd = inferMMDiTConfig(layoutStore({ depth: 4, posEmbedMaxSize: 16, adm: 8, contextIn: 12, qkNorm: true, dual: [0, 2] }, 'odd'));
  assert.deepEqual(odd.dualAttentionLayers, [0, 2]);
});

test('refuses SD3.5 files with a missing key, a wrong shape or inconsistent dual layers, naming the key', () => {
  const sizes: MMDiTSizes = { depth: 3, posEmbedMaxSize: 16, adm: 8, contextIn: 12, qkNorm: true, dual: [0] };
  const H = 192;
  const refuse = (what: string, edit: (m: Map<string, readonly number[]>) => void, message: RegExp) =>
    assert.throws(() => inferMMDiTConfig(layoutStore(sizes, 'broken.safetensors', edit)), (e: Error) => e instanceof SD3Error && message.test(e.message) && e.message.includes('broken.safetensors'), what);
  refuse('missing ln_k of the pre-only branch', (m) => m.delete('joint_blocks.2.context_block.attn.ln_k.weight'),
    /missing weight "joint_blocks\.2\.context_block\.attn\.ln_k\.weight"/);
  refuse('q/k norm of width 128', (m) => m.set('joint_blocks.1.x_block.attn.ln_q.weight', [128]),
    /"joint_blocks\.1\.x_block\.attn\.ln_q\.weight" is \[128\], expected \[64\]/);
  refuse('9 chunks without attn2', (m) => m.set('joint_blocks.1.x_block.adaLN_modulation.1.weight', [9 * H, H]),
    /"joint_blocks\.1\.x_block\.adaLN_modulation\.1\.weight" has 9 modulation chunks .* "joint_blocks\.1\.x_block\.attn2\.qkv\.weight" is missing/);
  refuse('attn2 with 6 chunks', (m) => { m.set('joint_blocks.0.x_block.adaLN_modulation.1.weight', [6 * H, H]); m.set('joint_blocks.0.x_block.adaLN_modulation.1.bias', [6 * H]); },
    /"joint_blocks\.0\.x_block\.adaLN_modulation\.1\.weight" is \[1152, 192\], expected \[1728, 192\]/);
  refuse('attn2 without its projection', (m) => m.delete('joint_blocks.0.x_block.attn2.proj.weight'), /missing weight "joint_blocks\.0\.x_block\.attn2\.proj\.weight"/);
  refuse('attn2 pieces on a plain block', (m) => m.set('joint_blocks.1.x_block.attn2.proj.weight', [H, H]), /unexpected weight "joint_blocks\.1\.x_block\.attn2\.proj\.weight"/);
  refuse('q/k norm missing from block 0 only', (m) => { m.delete('joint_blocks.0.x_block.attn.ln_q.weight'); },
    /unexpected weight "joint_blocks\.1\.context_block\.attn\.ln_q\.weight"|missing weight "joint_blocks\.0\.x_block\.attn\.ln_q\.weight"/);
  refuse('LayerNorm q/k norm', (m) => m.set('joint_blocks.0.x_block.attn.ln_q.bias', [64]), /LayerNorm q\/k normalisation \("joint_blocks\.0\.x_block\.attn\.ln_q\.bias"/);
  refuse('SwiGLU', (m) => m.set('joint_blocks.1.context_block.mlp.w1.weight', [512, H]), /SwiGLU MLP \("joint_blocks\.1\.context_block\.mlp\.w1\.weight"\)/);
  refuse('registers', (m) => m.set('register', [1, 16, H]), /register tokens/);
  refuse('wrong MLP shape', (m) => m.set('joint_blocks.1.x_block.mlp.fc2.weight', [H, 100]), /"joint_blocks\.1\.x_block\.mlp\.fc2\.weight" is \[192, 100\], expected \[192, 768\]/);
  const missingBlock: WeightStore = { label: 'truncated', has: (n) => !n.startsWith('joint_blocks.1.') && store.has(n), get: (n) => store.get(n) };
  assert.throws(() => inferMMDiTConfig(missingBlock), /found 1 joint blocks, but hidden size 128 means depth 2/);
});

test('refuses skip layers the model does not have', async () => {
  const c = loadCase('square_8x8');
  await assert.rejects(model.forward(c['input.x']!, c['input.t']!, c['input.y']!, c['input.context']!, { layers: [2] }),
    (e: Error) => e instanceof SD3Error && /skip layer 2 is not a joint block .* expected integers 0-1/.test(e.message));
});

test('one session serves two latent sizes and two batch sizes', async () => {
  const square = loadCase('square_8x8'); // batch 2, 8x8 latent, 154 context tokens
  const wide = loadCase('nonsquare_8x12'); // 8x12 latent, 9 context tokens
  const v1 = await model.forward(square['input.x']!, square['input.t']!, square['input.y']!, square['input.context']!);
  assertClose(v1, square['output.model_output']!, 'square batch 2');
  const one = (k: string) => rows(wide[k]!, 1, 2);
  const v2 = await model.forward(one('input.x'), one('input.t'), one('input.y'), one('input.context'));
  assertClose(v2, one('output.model_output'), 'wide batch 1 (second row alone)');
  const v3 = await model.forward(square['input.x']!, square['input.t']!, square['input.y']!, square['input.context']!);
  assert.deepEqual(v3.data, v1.data);
});

test('crops the position grid on the host for large and non-square latents', async () => {
  const grid = 96;
  const weights = randomMMDiT(1, grid, 8, 12);
  const big = await MMDiT.load(weights, { threads: 1, debug: true });
  try {
    const pos = weights.get('pos_embed');
    const posData = new Float32Array(pos.data!.buffer, pos.data!.byteOffset, grid * grid * 64);
    for (const [batch, height, width] of [[2, 64, 64], [1, 96, 168], [1, 2, 192]] as const) {
      const inputs = randomInputs(batch, height, width, 3, 8, 12);
      const out = await big.forwardDebug(inputs.x, inputs.t, inputs.y, inputs.context);
      const h = height / 2;
      const w = width / 2;
      const top = Math.floor((grid - h) / 2);
      const left = Math.floor((grid - w) / 2);
      const expected = new Float32Array(h * w * 64);
      for (let r = 0; r < h; r++) expected.set(posData.subarray(((top + r) * grid + left) * 64, ((top + r) * grid + left + w) * 64), r * w * 64);
      assert.deepEqual(out.pos_embed_cropped.shape, [1, h * w, 64]);
      assert.deepEqual(out.pos_embed_cropped.data, expected, `crop of ${height}x${width}`);
      assert.deepEqual(out.model_output.shape, [batch, 16, height, width]);
      assert.ok(out.model_output.data.every(Number.isFinite));
    }
  } finally {
    await big.dispose();
  }
});

test('rejects bad inputs before the runtime sees them', async () => {
  const c = loadCase('nonsquare_8x12');
  const x = c['input.x']!;
  const t = c['input.t']!;
  const y = c['input.y']!;
  const ctx = c['input.context']!;
  const zeros = (shape: number[]) => tensor('float32', shape, new Float32Array(numel(shape)));
  const cases: [string, Promise<unknown>, RegExp][] = [
    ['channels', model.forward(zeros([2, 4, 8, 12]), t, y, ctx), /4 channels, expected 16/],
    ['odd size', model.forward(zeros([2, 16, 8, 7]), t, y, ctx), /8x7 must be a positive multiple of the patch size 2/],
    ['too large', model.forward(zeros([2, 16, 34, 8]), t, y, ctx), /34x8 is larger than the position grid allows \(at most 32x32\)/],
    ['context width', model.forward(x, t, y, zeros([2, 9, 95])), /context must be \[2, length >= 1, 96\], got \[2, 9, 95\]/],
    ['empty context', model.forward(x, t, y, zeros([2, 0, 96])), /context must be/],
    ['y width', model.forward(x, t, zeros([2, 63]), ctx), /pooled y must be \[2, 64\], got \[2, 63\]/],
    ['batch of y', model.forward(x, t, zeros([1, 64]), ctx), /pooled y must be \[2, 64\], got \[1, 64\]/],
    ['batch of t', model.forward(x, zeros([3]), y, ctx), /t must be \[2\]/],
    ['t dtype', model.forward(x, tensor('int64', [2], new BigInt64Array([1000n, 500n])), y, ctx), /t must be float32 \(sigma \* 1000\), got int64/],
    ['rank', model.forward(zeros([16, 8, 12]), t, y, ctx), /latent x must be \[batch, 16, height, width\]/],
    ['debug outputs', model.forwardDebug(x, t, y, ctx), /loaded without debug outputs/],
  ];
  for (const [what, promise, message] of cases) {
    await assert.rejects(promise, (e: Error) => e instanceof SD3Error && message.test(e.message), what);
  }
});

test('denoised = x - v * t / 1000', () => {
  const x = tensor('float32', [2, 1, 1, 2], Float32Array.from([1, 2, 3, 4]));
  const v = tensor('float32', [2, 1, 1, 2], Float32Array.from([0.5, -1, 2, 0]));
  const t = tensor('float32', [2], Float32Array.from([1000, 250]));
  assert.deepEqual([...denoisedFromVelocity(x, v, t).data], [0.5, 3, 2.5, 4]);
});

test('bf16 weights kept resident and widened per layer give the 3.5 Large goldens', async () => {
  const dir = path.join(fixtures, '..', 'mmdit_sd35l');
  const f = SafetensorsFile.open(path.join(dir, 'weights.safetensors'));
  try {
    const resident = await MMDiT.load(new SafetensorsStore([f], withPrefix('model.diffusion_model.')), { threads: 1, halfWeights: true });
    try {
      const c = readAllSafetensors(path.join(dir, 'cases', 'nonsquare_6x10_b2.safetensors')).tensors as Record<string, Tensor<'float32'>>;
      assertClose(await resident.forward(c['input.x']!, c['input.t']!, c['input.y']!, c['input.context']!), c['output.model_output']!, 'resident bf16');
    } finally {
      await resident.dispose();
    }
  } finally {
    f.close();
  }
});
