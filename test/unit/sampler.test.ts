import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readJson } from '../parity/lib.js';
import { addNoise, eulerStep, guide, sigmaSchedule, startIndex } from '../../src/sampler/flow-match.js';
import { batchNoise, gaussian } from '../../src/sampler/noise.js';

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
