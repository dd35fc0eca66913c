/**
 * Step caching (sampler/step-cache.ts): off by default and then the plain loop bit for bit; with a model whose
 * output does not move it reuses every step it may (and the result is still exact, since the velocity is what
 * is reused); never the first two steps or the last; a moving output is recomputed; the window, maxSkips and
 * skip-layer guidance's rows bound it; bad options are refused; the images' metadata records it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it, test } from 'node:test';
import { SD3Error } from '../../src/core/errors.js';
import { type Tensor, tensor } from '../../src/core/tensor.js';
import { type RGBImage, readPNGText } from '../../src/image/image.js';
import { type StepInfo, type VelocityModel, sampleLatents } from '../../src/pipelines/denoise.js';
import { generationParameters, parseInfotext } from '../../src/pipelines/infotext.js';
import { resolveOptions } from '../../src/pipelines/inputs.js';
import { ImageToImage, Inpaint, TextToImage } from '../../src/presets/tasks.js';
import { guide, sigmaSchedule } from '../../src/sampler/flow-match.js';
import { STEP_CACHE_DEFAULTS, checkStepCache } from '../../src/sampler/step-cache.js';
import { TINY_OPTIONS, assertDifferentPixels, assertSamePixels, maskImage, parameters, rejectsWithSD3Error, testImage } from '../helpers/tiny.js';

/** A fake MMDiT: v = f(x, t) per element, each row offset by its pooled y (positive 1, negative 0.5). Counts calls. */
function fakeModel(f: (x: number, t: number) => number): VelocityModel & { calls: { rows: number; t: number }[] } {
  const calls: { rows: number; t: number }[] = [];
  return {
    calls,
    async forward(x: Tensor, t: Tensor, y: Tensor) {
      const rows = x.shape[0]!;
      const per = x.data.length / rows;
      calls.push({ rows, t: (t.data as Float32Array)[0]! });
      const out = new Float32Array(x.data.length);
      for (let r = 0; r < rows; r++) {
        for (let k = 0; k < per; k++) out[r * per + k] = f((x.data as Float32Array)[r * per + k]!, (t.data as Float32Array)[r]!) + (y.data as Float32Array)[r]!;
      }
      return tensor('float32', x.shape, out);
    },
  };
}

const emb = (v: number) => ({ context: tensor('float32', [1, 1, 1], Float32Array.of(0)), y: tensor('float32', [1, 1], Float32Array.of(v)) });
const cond = { positive: emb(1), negative: emb(0.5) };
const noise = Float32Array.of(0.3, -1.2, 0.8, 2.1);

async function run(model: VelocityModel, steps: number, extra: Partial<Parameters<typeof sampleLatents>[0]> = {}): Promise<{ x: Float32Array; cached: number[] }> {
  const cached: number[] = [];
  const x = await sampleLatents({
    model, shape: [1, 1, 2, 2], noise, sigmas: sigmaSchedule(steps), start: 0, cond, guidanceScale: 3, sampler: 'euler',
    onStep: (s: StepInfo) => { if (s.cached) cached.push(s.step - 1); }, ...extra,
  });
  return { x, cached };
}

test('off by default: no stepCache in the resolved options, every step runs the model, and the loop is the plain Euler loop bit for bit', async () => {
  assert.equal('stepCache' in resolveOptions({}, 1, { numSteps: 28, guidanceScale: 7 }), false);
  const f = (x: number, t: number) => Math.sin(3 * x) * (t / 1000) + 0.1 * x;
  const steps = 12;
  for (const extra of [{}, { stepCache: undefined }]) {
    const model = fakeModel(f);
    const { x, cached } = await run(model, steps, extra);
    assert.equal(model.calls.length, steps);
    assert.deepEqual(cached, []);
    // The same loop written out here: x += (sigma_next - sigma) * guide(v_pos, v_neg, 3), in float32.
    const sigmas = sigmaSchedule(steps);
    const ref = Float32Array.from(noise, (v) => sigmas[0]! * v);
    for (let i = 0; i < steps; i++) {
      const t = Math.fround(sigmas[i]! * 1000);
      const pos = Float32Array.from(ref, (v) => f(v, t) + 1);
      const neg = Float32Array.from(ref, (v) => f(v, t) + 0.5);
      const vg = guide(pos, neg, 3);
      for (let k = 0; k < ref.length; k++) ref[k] = ref[k]! + (sigmas[i + 1]! - sigmas[i]!) * vg[k]!;
    }
    assert.deepEqual([...x], [...ref]);
  }
});

test('a model whose output does not move: every step of the window reuses it, never the first two or the last, and the result is exact', async () => {
  const constant = (_x: number, _t: number) => 0.7;
  const steps = 20;
  const plain = await run(fakeModel(constant), steps);
  // The whole run as the window: only steps 0 and 1 (the rate needs two model runs) and 19 (the last) run the model.
  const model = fakeModel(constant);
  const all = await run(model, steps, { stepCache: { threshold: 0.05, start: 0, end: 1 } });
  assert.deepEqual(all.cached, Array.from({ length: 17 }, (_, i) => i + 2));
  assert.deepEqual(model.calls.map((c) => Math.round(c.t)), [0, 1, 19].map((i) => Math.round(Math.fround(sigmaSchedule(steps)[i]! * 1000))));
  // Reusing the velocity of a constant-velocity model changes nothing (an output - input residual would).
  assert.deepEqual([...all.x], [...plain.x]);
  // The default window: steps k with 0.15 * 20 <= k < 0.95 * 20.
  assert.deepEqual((await run(fakeModel(constant), steps, { stepCache: { threshold: 0.05 } })).cached, Array.from({ length: 16 }, (_, i) => i + 3));
  // maxSkips: at most 2 reused steps in a row.
  const capped = await run(fakeModel(constant), steps, { stepCache: { threshold: 0.05, start: 0, end: 1, maxSkips: 2 } });
  assert.deepEqual(capped.cached, [2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]);
  // Image-to-image: the window and the first/last rule count the steps this run takes (start at 12 of 20).
  const i2i = await run(fakeModel(constant), steps, { start: 12, init: Float32Array.of(0.1, 0.2, 0.3, 0.4), stepCache: { threshold: 0.05, start: 0, end: 1 } });
  assert.deepEqual(i2i.cached, [2, 3, 4, 5, 6]);
});

test('an output that moves with the input or the timestep is recomputed; the threshold sets how much change is tolerated', async () => {
  // v = 50 x: the output moves 50 times as far as the input, an estimated change of about 50 |dt| (1.75 at
  // 20 steps) per step, far above the threshold: nothing is reused.
  const steep = fakeModel((x) => 50 * x);
  assert.deepEqual((await run(steep, 20, { stepCache: { threshold: 0.1, start: 0, end: 1 } })).cached, []);
  assert.equal(steep.calls.length, 20);
  // v = x: the output follows the input (rate 1), so each step adds |dx| / |v| = |dt| to the sum; a larger
  // threshold tolerates more steps in a row, a tiny one none.
  const linear = (x: number) => x;
  const counts = [];
  for (const threshold of [1e-6, 0.1, 0.3, 1]) counts.push((await run(fakeModel(linear), 28, { guidanceScale: 1, stepCache: { threshold, start: 0, end: 1 } })).cached.length);
  assert.equal(counts[0], 0);
  assert.ok(counts[1]! > 0 && counts[1]! < counts[2]! && counts[2]! <= counts[3]!, `reused steps per threshold: ${counts}`);
  assert.ok(counts[3]! <= 28 - 3, 'the first two and the last always run');
});

test('a step that needs the skip-layer pass is not served by a cached step without it (and one with it serves both)', async () => {
  const model = fakeModel(() => 0.7);
  // SLG on calls 0 < k < 0.5 * 20 (k = 1..9): calls 0 (2 rows), 1 (3 rows), then cached 3 rows serve steps 2..18.
  const slg = { layers: [0], scale: 2, start: 0.01, end: 0.5 };
  const r = await run(model, 20, { skipLayerGuidance: slg, stepCache: { threshold: 0.05, start: 0, end: 1 } });
  assert.deepEqual(model.calls.map((c) => c.rows), [2, 3, 2]);
  assert.deepEqual(r.cached, Array.from({ length: 17 }, (_, i) => i + 2));
  assert.deepEqual([...r.x], [...(await run(fakeModel(() => 0.7), 20, { skipLayerGuidance: slg })).x]);
  // SLG starting later (k = 5..9): the 2-row cache cannot serve step 5, which runs the model with its third pass.
  const later = fakeModel(() => 0.7);
  const r2 = await run(later, 20, { skipLayerGuidance: { ...slg, start: 0.22 }, stepCache: { threshold: 0.05, start: 0, end: 1 } });
  assert.deepEqual(later.calls.map((c) => c.rows), [2, 2, 3, 2]);
  assert.equal(r2.cached.includes(5), false);
});

test('bad step-cache options are refused with the value and what was expected', () => {
  const bad = (v: unknown, m: RegExp) => {
    assert.throws(() => checkStepCache(v), (e: Error) => e instanceof SD3Error && m.test(e.message), JSON.stringify(v));
    assert.throws(() => resolveOptions({ stepCache: v as never }, 1, { numSteps: 28, guidanceScale: 7 }), (e: Error) => e instanceof SD3Error && m.test(e.message));
  };
  for (const t of [0, -0.1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '0.1', null]) bad({ threshold: t }, /stepCache: threshold must be a number in \(0, 1\]/);
  bad({}, /threshold must be a number in \(0, 1\].*got undefined/);
  bad(0.1, /stepCache: expected \{ threshold, start\?, end\?, maxSkips\? \}, got 0\.1/);
  bad([0.1], /expected \{ threshold/);
  bad({ threshold: 0.1, start: -1 }, /start must be a number in \[0, 1\], got -1/);
  bad({ threshold: 0.1, end: 2 }, /end must be a number in \[0, 1\], got 2/);
  bad({ threshold: 0.1, start: 0.9, end: 0.5 }, /start must be before end, got start 0.9, end 0.5/);
  bad({ threshold: 0.1, maxSkips: 0 }, /maxSkips must be an integer >= 1, got 0/);
  bad({ threshold: 0.1, window: [0, 1] }, /unknown field "window"/);
  assert.deepEqual(checkStepCache({ threshold: 0.1 }), { threshold: 0.1, ...STEP_CACHE_DEFAULTS });
});

test('the CLI flags: --step-cache X with its window, refused when out of range or given without it', async () => {
  const { samplerArgs } = await import('../../src/cli/args.js');
  assert.equal(samplerArgs({}).stepCache, undefined);
  assert.deepEqual(samplerArgs({ 'step-cache': '0.1' }).stepCache, { threshold: 0.1, start: 0.15, end: 0.95 });
  assert.deepEqual(samplerArgs({ 'step-cache': '0.2', 'step-cache-start': '0', 'step-cache-end': '0.5', 'slg-scale': '2' }).stepCache, { threshold: 0.2, start: 0, end: 0.5 });
  assert.throws(() => samplerArgs({ 'step-cache': '0' }), /--step-cache must be a threshold in \(0, 1\] \(e\.g\. 0\.1\), got "0"/);
  assert.throws(() => samplerArgs({ 'step-cache': 'fast' }), /--step-cache must be a threshold in \(0, 1\].*got "fast"/);
  assert.throws(() => samplerArgs({ 'step-cache': '2' }), /got "2"/);
  assert.throws(() => samplerArgs({ 'step-cache-end': '0.5' }), /need --step-cache X/);
  assert.throws(() => samplerArgs({ 'step-cache': '0.1', 'step-cache-start': '0.6', 'step-cache-end': '0.5' }), /--step-cache-start 0.6 must be before --step-cache-end 0.5/);
});

describe('through the tasks (tiny-random)', () => {
  let t2i: TextToImage;
  before(async () => { t2i = await TextToImage.fromPreset('tiny-random', TINY_OPTIONS); });
  after(async () => { await t2i.dispose(); });
  // A threshold of 1 over the whole run: the tiny model's output moves slowly enough for some steps to reuse it.
  const on = { threshold: 1, start: 0, end: 1 };
  const base = { seed: 5, numSteps: 10 };

  it('off: the same pixels as an option-less run, and no step-cache fields in the metadata', async () => {
    const plain = await t2i.generate('a lighthouse', base);
    assertSamePixels(await t2i.generate('a lighthouse', { ...base, stepCache: undefined }), plain, 'stepCache: undefined');
    const p = parameters(plain);
    assert.equal('stepCache' in p || 'cachedSteps' in p, false);
    assert.doesNotMatch(plain.metadata.parameters!, /Step cache|Cached steps/);
  });

  it('on: the image says it was cached (JSON and infotext, read back), and steps were reused', async () => {
    const seen: number[] = [];
    const img = await t2i.generate('a lighthouse', { ...base, stepCache: on, onStep: (s) => { if (s.cached) seen.push(s.step); } });
    const p = parameters(img);
    assert.deepEqual(p.stepCache, on);
    assert.deepEqual(p.cachedSteps, seen);
    assert.ok(seen.length > 0 && !seen.includes(1) && !seen.includes(2) && !seen.includes(10), `reused steps ${seen}`);
    assertDifferentPixels(img, await t2i.generate('a lighthouse', base), 'cached vs uncached');
    const info = parseInfotext(img.metadata.parameters!).params;
    assert.equal(info['Step cache'], '1');
    assert.equal(info['Cached steps'], `${seen.length}/10`);
    // Through a PNG file's bytes too.
    const png = img.toPNG();
    assert.deepEqual(generationParameters(png)?.cachedSteps, seen);
    assert.equal(parseInfotext(readPNGText(png).parameters!).params['Cached steps'], `${seen.length}/10`);
  });

  it('image-to-image and inpainting take it too, counting the steps they run', async () => {
    const image = testImage(64, 64, 3);
    const i2i = new ImageToImage(t2i.backbone, t2i.preprocessor, t2i.imageShape);
    const a = await i2i.generate({ images: image, prompts: 'a boat' }, { ...base, numSteps: 20, strength: 0.7, stepCache: on }) as RGBImage;
    const pa = parameters(a);
    assert.deepEqual(pa.stepCache, on);
    assert.ok(Array.isArray(pa.cachedSteps));
    assert.equal(parseInfotext(a.metadata.parameters!).params['Cached steps'], `${(pa.cachedSteps as number[]).length}/14`);
    const inp = new Inpaint(t2i.backbone, t2i.preprocessor, t2i.imageShape);
    const b = await inp.generate({ images: image, masks: maskImage(64, 64, (x) => x < 32), prompts: 'a boat' }, { ...base, numSteps: 20, strength: 0.7, stepCache: on }) as RGBImage;
    assert.deepEqual(parameters(b).stepCache, on);
    await rejectsWithSD3Error(() => i2i.generate({ images: image, prompts: 'a boat' }, { stepCache: { threshold: 0 } }), /stepCache: threshold must be a number in \(0, 1\].*got 0$/);
  });
});
