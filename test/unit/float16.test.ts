/**
 * dtype 'float16' graphs of the MMDiT and the VAE, checked on the CPU against the float32 golden fixtures at the
 * float16 tolerance (test/parity/lib.ts FLOAT16_TOLERANCE). ORT's CPU provider has no float16 kernels for these
 * operators: its optimiser casts around them and merges the casts, so on the CPU the graph computes in float32
 * with float16's rounding in the weights and at the graph's own casts. This checks the graphs (weights, casts,
 * islands, the numbers they give), not a GPU's float16 arithmetic: `npm run test:webgpu` runs the same checks
 * on WebGPU.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SafetensorsFile } from '../../src/core/safetensors.js';
import { f32ToF16 } from '../../src/core/tensor.js';
import { SafetensorsStore, type WeightRef, withPrefix } from '../../src/core/weights.js';
import { MMDiT } from '../../src/models/mmdit.js';
import { VAE } from '../../src/models/vae.js';
import { GraphBuilder } from '../../src/onnx/builder.js';
import { checkMMDiT } from '../parity/check-mmdit.js';
import { checkSampler } from '../parity/check-sampler.js';
import { checkVAE } from '../parity/check-vae.js';
import { type Check, loadCase, parityDtype, readJson } from '../parity/lib.js';

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
// The parity checkers load their models in $SD3_DTYPE; this file is its own process.
process.env.SD3_DTYPE = 'float16';

function assertAllPass(checks: readonly Check[], least: number): void {
  assert.ok(checks.length >= least, `only ${checks.length} checks`);
  const failed = checks.filter((c) => !c.ok);
  assert.deepEqual(failed.map((c) => `${c.name}: ${c.detail}`), []);
}

const ref = (dtype: 'float32' | 'float16', name: string): WeightRef => dtype === 'float16'
  ? { name, dtype, shape: [2], data: new Uint8Array(Uint16Array.from([1, 2], f32ToF16).buffer) }
  : { name, dtype, shape: [2], data: new Uint8Array(Float32Array.from([1, 2]).buffer) };

test("a float16 weight in a float16 graph is used as the file has it (no cast); others are cast once", () => {
  const g = new GraphBuilder('w');
  const half = g.weight(ref('float16', 'a'), 'float16');
  assert.equal(g.weight(ref('float16', 'a'), 'float16'), half, 'the same value on a second use');
  assert.equal(g.build().nodesByOp.Cast, undefined, 'no Cast for a float16 weight asked as float16');
  g.weight(ref('float32', 'b'), 'float16');
  g.weight(ref('float16', 'a'), 'float32');
  assert.equal(g.build().nodesByOp.Cast?.length, 2, 'float32 -> float16 and float16 -> float32');
  assert.throws(() => parityDtype({ SD3_DTYPE: 'bfloat16' }), /SD3_DTYPE must be 'float32' or 'float16', got "bfloat16"/);
});

test('the float16 MMDiT passes the mmdit fixture at the float16 tolerance, and differs from float32', async () => {
  assert.equal(parityDtype(), 'float16');
  assertAllPass(await checkMMDiT(path.join(fixtures, 'mmdit')), 12);
  // The same case through both precisions: not identical (so float16 really ran), every value finite.
  const dir = path.join(fixtures, 'mmdit');
  const config = readJson(path.join(dir, 'config.json'));
  const file = SafetensorsFile.open(path.join(dir, config.weights_file));
  try {
    const store = new SafetensorsStore([file], withPrefix(config.weights_prefix));
    const t = loadCase(dir, config.cases[0]);
    const run = async (dtype: 'float32' | 'float16') => {
      const m = await MMDiT.load(store, { threads: 1, dtype });
      try { return (await m.forward(t['input.x']!, t['input.t']!, t['input.y']!, t['input.context']!)).data; } finally { await m.dispose(); }
    };
    const [a, b] = [await run('float32'), await run('float16')];
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    assert.ok(b.every(Number.isFinite), 'finite');
    assert.ok(diff > 1e-5, `float16 output equals float32 (max diff ${diff}): the graph did not compute in float16`);
  } finally {
    file.close();
  }
});

test('the float16 VAE passes the vae fixture (encode, decode, uint8 images) at the float16 tolerance', async () => {
  assertAllPass(await checkVAE(path.join(fixtures, 'vae')), 10);
});

test('sampler runs with the float16 MMDiT and VAE pass the sampler fixture at the float16 tolerance', async () => {
  assertAllPass(await checkSampler(path.join(fixtures, 'sampler')), 20);
});

test('bad float16 combinations are refused, naming them', async () => {
  const dir = path.join(fixtures, 'mmdit');
  const config = readJson(path.join(dir, 'config.json'));
  const file = SafetensorsFile.open(path.join(dir, config.weights_file));
  try {
    const store = new SafetensorsStore([file], withPrefix(config.weights_prefix));
    const quant = { get: () => undefined };
    await assert.rejects(MMDiT.load(store, { dtype: 'float16', quant }), /dtype 'float16' and int8 Linear weights \(quant\) exclude each other/);
    await assert.rejects(MMDiT.load(store, { dtype: 'bfloat16' as never }), /MMDiT dtype must be 'float32' or 'float16', got "bfloat16"/);
    await assert.rejects(VAE.load(store, { dtype: 'int8' as never }), /VAE dtype must be 'float32' or 'float16', got "int8"/);
  } finally {
    file.close();
  }
});

