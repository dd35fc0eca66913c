/** DPM++ 2M, skip-layer guidance's window, and how the loop batches the skip pass (fake model, exact numbers). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SD3Error } from '../../src/core/errors.js';
import { type Tensor, tensor } from '../../src/core/tensor.js';
import { sampleLatents } from '../../src/pipelines/denoise.js';
import { sigmaSchedule } from '../../src/sampler/flow-match.js';
import { SD3_5_MEDIUM_SLG, checkSkipLayerGuidance, skipLayerGuidanceActive } from '../../src/sampler/skip-layer-guidance.js';
import { checkSampler, makeStepper } from '../../src/sampler/steppers.js';

const window = (slg: Parameters<typeof skipLayerGuidanceActive>[0], calls: number, steps: number) =>
  Array.from({ length: calls }, (_, k) => k).filter((k) => skipLayerGuidanceActive(slg, k, steps));

test("skip-layer guidance's window is the reference's strict rule on the call counter", () => {
  const slg = { ...SD3_5_MEDIUM_SLG, layers: [0] };
  assert.deepEqual(window(slg, 50, 50), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual(window(slg, 28, 28), [1, 2, 3, 4, 5]);
  assert.deepEqual(window({ ...slg, start: 0.05, end: 0.2 }, 20, 20), [2, 3]); // both ends exact integers: excluded
  assert.deepEqual(window({ ...slg, end: 0.5 }, 7, 10), [1, 2, 3, 4]); // img2img: 7 calls of a 10-step schedule
  assert.deepEqual(window({ ...slg, scale: 0 }, 50, 50), []);
});

test('skip-layer guidance options are checked', () => {
  const bad = (v: unknown, m: RegExp) => assert.throws(() => checkSkipLayerGuidance(v), (e: Error) => e instanceof SD3Error && m.test(e.message));
  bad({ layers: [], scale: 1, start: 0, end: 1 }, /layers must be a non-empty list/);
  bad({ layers: [1.5], scale: 1, start: 0, end: 1 }, /layers must be/);
  bad({ layers: [1], scale: -1, start: 0, end: 1 }, /scale must be >= 0/);
  bad({ layers: [1], scale: 1, start: 0.5, end: 0.2 }, /0 <= start <= end <= 1/);
  bad({ layers: [1], scale: 'x', start: 0, end: 1 }, /scale must be a finite number/);
  assert.throws(() => checkSampler('heun'), /sampler must be one of 'euler', 'dpmpp_2m'; got "heun"/);
});

test('DPM++ 2M: first order on the first and last steps, second order between', () => {
  const sigmas = Float32Array.from([1, 0.5, 0.25, 0]);
  const s = makeStepper('dpmpp_2m', sigmas);
  const v = Float32Array.from([0.5]);
  // step 0: D = x - v = 1.5; x' = (0.5/1) x - expm1(-ln 2) D = 1 + 0.75 = 1.75
  let x = s.step(Float32Array.from([2]), v, 0);
  assert.ok(Math.abs(x[0]! - 1.75) < 1e-6, `${x[0]}`);
  // step 1: D = 1.75 - 0.25 = 1.5, r = 1, D' = 1.5 D - 0.5 D_prev = 1.5; x' = 0.5 x + 0.5 D' = 1.625
  x = s.step(x, v, 1);
  assert.ok(Math.abs(x[0]! - 1.625) < 1e-6, `${x[0]}`);
  // last step (to sigma 0): exactly the denoised prediction 1.625 - 0.125
  x = s.step(x, v, 2);
  assert.equal(x[0], Math.fround(1.625 - Math.fround(0.5 * 0.25)));
});

test('the loop appends the skip pass to the CFG batch on the window steps only, and combines it', async () => {
  const calls: { rows: number; skip?: { layers?: readonly number[]; fromRow?: number } }[] = [];
  // v = row value: positive rows 1, negative rows 0.5, skipped rows 0.25 (told apart by their y)
  const model = {
    async forward(x: Tensor, _t: Tensor, y: Tensor, _c: Tensor, skip?: { layers?: readonly number[]; fromRow?: number }) {
      const rows = x.shape[0]!;
      calls.push({ rows, ...(skip ? { skip } : {}) });
      const per = x.data.length / rows;
      const out = new Float32Array(x.data.length);
      for (let r = 0; r < rows; r++) out.fill(r >= (skip?.fromRow ?? rows) ? 0.25 : (y.data as Float32Array)[r]!, r * per, (r + 1) * per);
      return tensor('float32', x.shape, out);
    },
  };
  const emb = (v: number) => ({ context: tensor('float32', [1, 1, 1], Float32Array.of(0)), y: tensor('float32', [1, 1], Float32Array.of(v)) });
  const steps = 10;
  const sigmas = sigmaSchedule(steps);
  const seen: Float32Array[] = [];
  const xs: Float32Array[] = [];
  await sampleLatents({
    model, shape: [1, 1, 1, 2], noise: Float32Array.of(1, -1), sigmas, start: 3, cond: { positive: emb(1), negative: emb(0.5) },
    guidanceScale: 3, sampler: 'euler', skipLayerGuidance: { layers: [4, 7], scale: 2, start: 0.01, end: 0.5 },
    denoisedTrace: (d) => seen.push(d), trace: (x) => xs.push(Float32Array.from(x)),
  });
  assert.deepEqual(calls.map((c) => c.rows), [2, 3, 3, 3, 3, 2, 2]);
  assert.deepEqual(calls[1]!.skip, { layers: [4, 7], fromRow: 2 });
  assert.equal(calls[0]!.skip, undefined);
  // guided v = 0.5 + 3 * 0.5 = 2, plus 2 * (1 - 0.25) = 1.5 inside the window
  const vOf = (i: number) => (xs[i]![0]! - seen[i]![0]!) / sigmas[i + 3]!;
  assert.ok(Math.abs(vOf(0) - 2) < 1e-5 && Math.abs(vOf(1) - 3.5) < 1e-5, `${vOf(0)} ${vOf(1)}`);
});

test('the CLI sampler flags: --sampler, and --slg-* defaulting to Stability\'s SD3.5 Medium window', async () => {
  const { samplerArgs } = await import('../../src/cli/args.js');
  assert.deepEqual(samplerArgs({}), {});
  assert.deepEqual(samplerArgs({ sampler: 'dpmpp_2m' }), { sampler: 'dpmpp_2m' });
  assert.deepEqual(samplerArgs({ 'slg-scale': '2.5' }), { skipLayerGuidance: { layers: [7, 8, 9], scale: 2.5, start: 0.01, end: 0.2 } });
  assert.deepEqual(samplerArgs({ 'slg-scale': '3', 'slg-layers': '1, 4', 'slg-start': '0.1', 'slg-end': '0.9' }), { skipLayerGuidance: { layers: [1, 4], scale: 3, start: 0.1, end: 0.9 } });
  assert.deepEqual(samplerArgs({ 'slg-scale': '0' }), {});
  assert.throws(() => samplerArgs({ sampler: 'ddim' }), /--sampler must be one of euler, dpmpp_2m, got "ddim"/);
  assert.throws(() => samplerArgs({ 'slg-layers': '7' }), /need --slg-scale/);
  assert.throws(() => samplerArgs({ 'slg-scale': '1', 'slg-layers': '7,x' }), /--slg-layers must be joint block numbers/);
  assert.throws(() => samplerArgs({ 'slg-scale': '1', 'slg-start': '0.5', 'slg-end': '0.2' }), /--slg-start 0.5 is after --slg-end 0.2/);
});
