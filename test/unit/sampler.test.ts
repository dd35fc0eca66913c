import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readJson } from '../parity/lib.js';
import { addNoise, eulerStep, guide, sigmaSchedule, startIndex } from '../../src/sampler/flow-match.js';
import { batchNoise, gaussian } from '../../src/sampler/noise.js';
import { type Tensor, tensor } from '../../src/core/tensor.js';
import { sampleLatents } from '../../src/pipelines/denoise.js';

test('sigma schedules match the golden table within 1e-6', () => {
  const table = readJson(new URL('../fixtures/sampler/schedules.json', import.meta.url).pathname);
  assert.ok(table.schedules.length >= 6);
  for (const s of table.schedules) {
    const got = sigmaSchedule(s.steps, s.shift);
    assert.equal(got.length, s.reference.length);
    for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i]! - s.reference[i]) <= 1e-6, `${s.steps}/${s.shift}[${i}]: ${got[i]} vs ${s.reference[i]}`);
  }
  for (const e of table.start_index_examples) assert.equal(startIndex(e.steps, e.denoise), e.start_index, `${e.steps} ${e.denoise}`);
});

test('bad schedule arguments are named in the error', () => {
  assert.throws(() => sigmaSchedule(0), /numSteps must be an integer >= 1, got 0/);
  assert.throws(() => sigmaSchedule(2.5), /got 2.5/);
  assert.throws(() => startIndex(10, 1.5), /strength must be in \[0, 1\], got 1.5/);
});

test('noise is reproducible per seed and independent of the batch', () => {
  const a = gaussian(1000, 42);
  assert.deepEqual(a, gaussian(1000, 42));
  assert.notDeepEqual(a, gaussian(1000, 43));
  const batch = batchNoise([7, 42], 1000);
  assert.deepEqual(batch.subarray(1000), a);
  let mean = 0, sq = 0;
  const big = gaussian(100000, 1);
  for (const v of big) { mean += v; sq += v * v; }
  mean /= big.length; sq /= big.length;
  assert.ok(Math.abs(mean) < 0.02 && Math.abs(sq - 1) < 0.02, `mean ${mean} var ${sq}`);
  assert.throws(() => gaussian(4, -1), /seed must be an integer/);
});

test('Euler, noising and guidance arithmetic', () => {
  const x = Float32Array.from([1, 2]);
  eulerStep(x, Float32Array.from([1, -1]), 1, 0.75);
  assert.deepEqual([...x], [0.75, 2.25]);
  assert.deepEqual([...addNoise(Float32Array.from([2]), Float32Array.from([4]), 0.25)], [2.5]);
  assert.deepEqual([...guide(Float32Array.from([3]), Float32Array.from([1]), 7)], [15]);
});

test("guidance <= 1 runs one positive pass by default, and both passes with alwaysGuide (the reference's rule)", async () => {
  // A velocity model that returns each row's pooled value: +1 for the positive rows, -1 for the negative.
  const calls: number[] = [];
  const rows = (v: number) => ({ context: tensor('float32', [1, 2, 4], new Float32Array(8).fill(v)), y: tensor('float32', [1, 4], new Float32Array(4).fill(v)) });
  const velocity = { forward: async (x: Tensor, _t: Tensor, y: Tensor) => {
    const [n, c, h, w] = x.shape as [number, number, number, number];
    calls.push(n);
    const per = c * h * w;
    const out = new Float32Array(n * per);
    for (let b = 0; b < n; b++) out.fill((y.data as Float32Array)[b * 4]!, b * per, (b + 1) * per);
    return tensor('float32', [n, c, h, w], out);
  } };
  const run = (guidanceScale: number, alwaysGuide?: boolean) => sampleLatents({
    model: velocity, shape: [1, 1, 2, 2], noise: new Float32Array(4), sigmas: Float32Array.from([1, 0]), start: 0,
    cond: { positive: rows(1), negative: rows(-1) }, guidanceScale, ...(alwaysGuide !== undefined ? { alwaysGuide } : {}),
  });
  // x1 = x0 + (0 - 1) * v: v = +1 (positive alone), v = -1 + 0 * 2 = -1 (scale 0, both passes), v = -1 + 0.5 * 2 = 0.
  calls.length = 0;
  assert.deepEqual([...await run(0)], [-1, -1, -1, -1]);
  assert.deepEqual(calls, [1], 'one pass of batch 1');
  calls.length = 0;
  assert.deepEqual([...await run(0, true)], [1, 1, 1, 1]);
  assert.deepEqual(calls, [2], 'one pass of batch 2: positive and negative');
  assert.deepEqual([...await run(0.5, true)], [0, 0, 0, 0]);
  assert.deepEqual([...await run(7)], [-13, -13, -13, -13], '-1 + 7 * 2 = 13');
});
