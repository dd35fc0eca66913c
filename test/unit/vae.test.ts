import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SD3Error } from '../../src/core/errors.js';
import { SafetensorsFile } from '../../src/core/safetensors.js';
import { type Tensor, numel, tensor } from '../../src/core/tensor.js';
import { MemoryStore, SafetensorsStore, type WeightStore, withPrefix } from '../../src/core/weights.js';
import {
  fromModelSpace, inferVAEConfig, LATENT_SCALE, LATENT_SHIFT, SD3_VAE_CONFIG, samplePosterior, toModelSpace, VAE,
} from '../../src/models/vae.js';

const fixture = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'vae', 'weights.safetensors');

function fixtureStore(): SafetensorsStore {
  return new SafetensorsStore([SafetensorsFile.open(fixture)], withPrefix('first_stage_model.'));
}

/** Names and shapes of a reference-layout VAE (sd3_impls.py VAEEncoder / VAEDecoder). */
function vaeShapes(ch: number, chMult: number[], blocks: number, z: number): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  const conv = (p: string, o: number, i: number, k: number) => { shapes.set(`${p}.weight`, [o, i, k, k]); shapes.set(`${p}.bias`, [o]); };
  const norm = (p: string, c: number) => { shapes.set(`${p}.weight`, [c]); shapes.set(`${p}.bias`, [c]); };
  const resnet = (p: string, i: number, o: number) => {
    norm(`${p}.norm1`, i); conv(`${p}.conv1`, o, i, 3); norm(`${p}.norm2`, o); conv(`${p}.conv2`, o, o, 3);
    if (i !== o) conv(`${p}.nin_shortcut`, o, i, 1);
  };
  const mid = (p: string, c: number) => {
    resnet(`${p}.mid.block_1`, c, c); resnet(`${p}.mid.block_2`, c, c);
    norm(`${p}.mid.attn_1.norm`, c);
    for (const n of ['q', 'k', 'v', 'proj_out']) conv(`${p}.mid.attn_1.${n}`, c, c, 1);
  };
  const n = chMult.length;
  conv('encoder.conv_in', ch, 3, 3);
  let c = ch;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < blocks; j++) { resnet(`encoder.down.${i}.block.${j}`, c, ch * chMult[i]!); c = ch * chMult[i]!; }
    if (i < n - 1) conv(`encoder.down.${i}.downsample.conv`, c, c, 3);
  }
  mid('encoder', c); norm('encoder.norm_out', c); conv('encoder.conv_out', 2 * z, c, 3);
  conv('decoder.conv_in', c, z, 3);
  mid('decoder', c);
  for (let i = n - 1; i >= 0; i--) {
    for (let j = 0; j <= blocks; j++) { resnet(`decoder.up.${i}.block.${j}`, c, ch * chMult[i]!); c = ch * chMult[i]!; }
    if (i > 0) conv(`decoder.up.${i}.upsample.conv`, c, c, 3);
  }
  norm('decoder.norm_out', c); conv('decoder.conv_out', 3, c, 3);
  return shapes;
}

/** A store that knows only names and shapes (enough to infer a configuration). */
function shapeStore(shapes: ReadonlyMap<string, number[]>): WeightStore {
  return {
    label: 'shapes',
    has: (n) => shapes.has(n),
    get: (n) => {
      const shape = shapes.get(n);
      if (!shape) throw new SD3Error(`shapes: missing weight "${n}"`);
      return { name: n, dtype: 'float32', shape };
    },
  };
}

/** Deterministic random weights for a shape table (fan-in scaled convs, GroupNorm near identity). */
function randomStore(shapes: ReadonlyMap<string, number[]>): MemoryStore {
  let seed = 12345;
  const next = () => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31 - 0.5; };
  const tensors = new Map<string, Tensor>();
  for (const [name, shape] of shapes) {
    const data = new Float32Array(numel(shape));
    const fan = shape.length === 4 ? shape[1]! * shape[2]! * shape[3]! : 1;
    for (let i = 0; i < data.length; i++) {
      data[i] = name.includes('norm') && name.endsWith('weight') ? 1 + 0.2 * next() : name.endsWith('bias') ? 0.2 * next() : (3.4 * next()) / Math.sqrt(fan);
    }
    tensors.set(name, tensor('float32', shape, data));
  }
  return new MemoryStore(tensors, 'random VAE');
}

function filled(shape: number[], f: (i: number) => number): Tensor<'float32'> {
  return tensor('float32', shape, Float32Array.from({ length: numel(shape) }, (_, i) => f(i)));
}

function maxDiff(a: Tensor, b: Tensor): number {
  let m = 0;
  for (let i = 0; i < a.data.length; i++) m = Math.max(m, Math.abs((a.data[i] as number) - (b.data[i] as number)));
  return m;
}

test('the configuration comes from the weights: the fixture, and SD3 Medium\'s real layout', () => {
  const store = fixtureStore();
  assert.deepEqual(inferVAEConfig(store), {
    ch: 32, chMult: [1, 2], numResBlocks: 1, inChannels: 3, outChannels: 3, zChannels: 16,
    groups: 32, eps: 1e-6, downsampleFactor: 2, hasEncoder: true, hasDecoder: true,
  });
  store.close();
  assert.deepEqual(inferVAEConfig(shapeStore(vaeShapes(128, [1, 2, 4, 4], 2, 16))), SD3_VAE_CONFIG);
  assert.deepEqual(inferVAEConfig(shapeStore(vaeShapes(64, [1, 1, 2], 3, 4))), {
    ch: 64, chMult: [1, 1, 2], numResBlocks: 3, inChannels: 3, outChannels: 3, zChannels: 4,
    groups: 32, eps: 1e-6, downsampleFactor: 4, hasEncoder: true, hasDecoder: true,
  });
});

test('inconsistent or foreign weights are refused with the reason', () => {
  const shapes = vaeShapes(32, [1, 2], 1, 16);
  const without = (pred: (k: string) => boolean) => shapeStore(new Map([...shapes].filter(([k]) => !pred(k))));
  const cases: [WeightStore, RegExp][] = [
    [without(() => true), /not an SD3 VAE: found neither encoder.conv_in.weight nor decoder.conv_in.weight/],
    [without((k) => k.includes('encoder.down.0.downsample')), /encoder level 0 of 2 lacks a downsample/],
    [without((k) => k.startsWith('decoder.up.1.block.1.')), /decoder level 1 has 1 ResNet blocks, level 0 has 2/],
    [shapeStore(new Map([...shapes].map(([k, s]) => [k, k === 'decoder.conv_in.weight' ? [64, 8, 3, 3] : s]))), /encoder \(.*16 latent channels\) and decoder \(.*8 latent channels\) do not match/],
  ];
  for (const [store, message] of cases) assert.throws(() => inferVAEConfig(store), (e: unknown) => e instanceof SD3Error && message.test(e.message));
});

test('one session per half takes any batch and size; batch items do not interact', async () => {
  const store = fixtureStore();
  const vae = await VAE.load(store, { threads: 1 });
  const a = filled([1, 16, 8, 12], (i) => Math.sin(i * 0.7));
  const b = filled([1, 16, 8, 12], (i) => Math.cos(i * 0.3));
  const both = tensor('float32', [2, 16, 8, 12], Float32Array.from([...a.data, ...b.data]));
  const [ia, ib, iboth] = [await vae.decode(a), await vae.decode(b), await vae.decode(both)];
  assert.deepEqual(iboth.shape, [2, 3, 16, 24]);
  assert.ok(maxDiff(ia, tensor('float32', ia.shape, iboth.data.subarray(0, ia.data.length))) < 1e-5);
  assert.ok(maxDiff(ib, tensor('float32', ib.shape, iboth.data.subarray(ia.data.length))) < 1e-5);
  assert.deepEqual((await vae.decode(filled([3, 16, 5, 7], Math.sin))).shape, [3, 3, 10, 14]);
  const post = await vae.encode(filled([3, 3, 6, 10], (i) => Math.sin(i) * 0.9));
  assert.deepEqual([post.mean.shape, post.logvar.shape], [[3, 16, 3, 5], [3, 16, 3, 5]]);
  await vae.dispose();
  store.close();
});

test('other tiny layouts build and run: three levels, two blocks, 8 latent channels', async () => {
  const vae = await VAE.load(randomStore(vaeShapes(32, [1, 2, 2], 2, 8)), { threads: 1 });
  assert.equal(vae.config.downsampleFactor, 4);
  const { mean, logvar } = await vae.encode(filled([2, 3, 24, 40], (i) => Math.sin(i * 0.01)));
  assert.deepEqual(mean.shape, [2, 8, 6, 10]);
  assert.deepEqual(logvar.shape, [2, 8, 6, 10]);
  const image = await vae.decode(mean);
  assert.deepEqual(image.shape, [2, 3, 24, 40]);
  assert.ok([...image.data].every(Number.isFinite));
  await vae.dispose();
});

test('a store with only the decoder decodes, and encoding says what is missing', async () => {
  const shapes = new Map([...vaeShapes(32, [1, 2], 1, 16)].filter(([k]) => k.startsWith('decoder.')));
  const vae = await VAE.load(randomStore(shapes), { threads: 1 });
  assert.equal(vae.config.hasEncoder, false);
  assert.deepEqual((await vae.decode(filled([1, 16, 4, 4], Math.cos))).shape, [1, 3, 8, 8]);
  await assert.rejects(vae.encode(filled([1, 3, 8, 8], Math.cos)), /holds no VAE encoder weights/);
  await vae.dispose();
});

test('bad inputs are refused before the runtime sees them, naming the value', async () => {
  const store = fixtureStore();
  const vae = await VAE.load(store, { threads: 1 });
  const cases: [() => Promise<unknown>, RegExp][] = [
    [() => vae.encode(filled([1, 4, 8, 8], Math.sin)), /image must have 3 channels \(NCHW\), got \[1, 4, 8, 8\]/],
    [() => vae.encode(filled([1, 8, 8, 3], Math.sin)), /image must have 3 channels \(NCHW\), got \[1, 8, 8, 3\]/],
    [() => vae.encode(filled([1, 3, 9, 8], Math.sin)), /image height and width must be multiples of 2, got 9x8/],
    [() => vae.encode(filled([3, 8, 8], Math.sin)), /image must be NCHW \[B, 3, H, W\], got rank 3/],
    [() => vae.encode(tensor('float64', [1, 3, 2, 2], new Float64Array(12))), /image must be float32, got float64/],
    [() => vae.encode(filled([0, 3, 2, 2], Math.sin)), /image must not be empty/],
    [() => vae.encode(new Float32Array(12) as never), /image must be a Tensor, got Float32Array of length 12/],
    [() => vae.decode(filled([1, 4, 8, 8], Math.sin)), /latent must have 16 channels \(NCHW\), got \[1, 4, 8, 8\]/],
    [() => vae.decode(tensor('float16', [1, 16, 1, 1], new Uint16Array(16))), /latent must be float32, got float16/],
    [() => vae.decode(filled([1, 16, 8, 8], Math.sin), { tile: { size: 4, overlap: 4 } }), /tile overlap must be an integer in \[0, 3\] for tile size 4, got 4/],
    [() => vae.decode(filled([1, 16, 8, 8], Math.sin), { tile: { size: 0, overlap: 0 } }), /tile size must be a positive integer \(latent cells\), got 0/],
  ];
  for (const [fn, message] of cases) await assert.rejects(fn(), (e: unknown) => e instanceof SD3Error && message.test(e.message));
  const post = { mean: filled([1, 16, 2, 2], Math.sin), logvar: filled([1, 16, 2, 2], Math.cos) };
  assert.throws(() => samplePosterior(post, filled([1, 16, 2, 3], Math.sin)), /eps must be float32 \[1, 16, 2, 2\] like the mean, got float32 \[1, 16, 2, 3\]/);
  await vae.dispose();
  store.close();
});

test('latent format: model = (vae - 0.0609) * 1.5305 and back', () => {
  assert.equal(LATENT_SCALE, 1.5305);
  assert.equal(LATENT_SHIFT, 0.0609);
  const z = filled([1, 16, 2, 2], (i) => Math.sin(i) * 3);
  const m = toModelSpace(z);
  for (let i = 0; i < z.data.length; i++) assert.ok(Math.abs(m.data[i]! - (z.data[i]! - 0.0609) * 1.5305) < 1e-6);
  assert.ok(maxDiff(fromModelSpace(m), z) < 1e-6);
  assert.throws(() => toModelSpace(tensor('float64', [1], new Float64Array(1))), /toModelSpace takes a float32 latent, got float64/);
});

test('posterior sample: mean + exp(logvar / 2) * eps, logvar clamped to [-30, 20]', () => {
  const mean = tensor('float32', [1, 1, 1, 4], Float32Array.from([0.5, 0.5, 0.5, -1]));
  const logvar = tensor('float32', [1, 1, 1, 4], Float32Array.from([0, 100, -100, Math.log(4)]));
  const eps = tensor('float32', [1, 1, 1, 4], Float32Array.from([1, 1, 1e12, -1]));
  const s = samplePosterior({ mean, logvar }, eps).data;
  assert.equal(s[0], Math.fround(1.5));
  assert.ok(Math.abs((s[1]! - 0.5) / Math.exp(10) - 1) < 1e-6, `${s[1]}`);
  assert.ok(Math.abs((s[2]! - 0.5) / (1e12 * Math.exp(-15)) - 1) < 1e-5, `${s[2]}`);
  assert.ok(Math.abs(s[3]! - -3) < 1e-6);
  assert.deepEqual([...samplePosterior({ mean, logvar }, tensor('float32', [1, 1, 1, 4], new Float32Array(4))).data], [...mean.data]);
});
