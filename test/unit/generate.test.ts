/**
 * The generation product end to end on the `tiny-random` preset: reproducibility (seeds), the step callback and
 * cancellation, guidance, image-to-image, inpainting, input checks and PNG metadata. Tiny shapes, few steps.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { AbortError, SD3Error } from '../../src/core/errors.js';
import { type Tensor, tensor } from '../../src/core/tensor.js';
import { RGBImage, decodeImage, readImage, readPNGText, resizeNearest } from '../../src/image/image.js';
import { imageToUint8 } from '../../src/image/pixels.js';
import { MMDiT } from '../../src/models/mmdit.js';
import type { StepInfo } from '../../src/pipelines/denoise.js';
import { imagesToTensor } from '../../src/pipelines/inputs.js';
import { ImageToImage, Inpaint, TextToImage } from '../../src/presets/tasks.js';
import { startIndex } from '../../src/sampler/flow-match.js';
import {
  TINY, TINY_OPTIONS, assertDifferentPixels, assertLeftHalfRepainted, assertSamePixels, maskImage, parameters, rejectsWithSD3Error, testImage,
} from '../helpers/tiny.js';

let t2i: TextToImage;
let i2i: ImageToImage;
let inpaint: Inpaint;
let tmp: string;

before(async () => {
  t2i = await TextToImage.fromPreset('tiny-random', TINY_OPTIONS);
  // The three tasks share one backbone, as a caller switching tasks on a loaded model would.
  i2i = new ImageToImage(t2i.backbone, t2i.preprocessor, t2i.imageShape);
  inpaint = new Inpaint(t2i.backbone, t2i.preprocessor, t2i.imageShape);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd3-generate-test-'));
});

after(async () => {
  await t2i.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Records every MMDiT forward call (batch size of x) for the rest of the test; calls the real model. */
function countForwards(t: TestContext): { batches: number[] } {
  const batches: number[] = [];
  const forward = MMDiT.prototype.forward;
  t.mock.method(MMDiT.prototype, 'forward', function (this: MMDiT, x: Tensor, ...rest: [Tensor, Tensor, Tensor]) {
    batches.push(x.shape[0]!);
    return forward.call(this, x, ...rest);
  });
  return { batches };
}

/** Model-space latent [1, 16, h, w] -> 8-bit image through the task's own VAE decoder. */
async function decodeLatent(latent: Float32Array): Promise<RGBImage> {
  const f = await t2i.backbone.downsampleFactor();
  const shape = [1, 16, TINY.height / f, TINY.width / f];
  const u8 = imageToUint8(await t2i.backbone.decode(tensor('float32', shape, latent)));
  return new RGBImage(TINY.width, TINY.height, u8.data);
}

/** The image latent the tasks start from: VAE encode with the posterior sampled from `seed`. */
function imageLatent(img: RGBImage, seed: number): Promise<Float32Array> {
  return t2i.backbone.encodeImage(imagesToTensor([resizeNearest(img, TINY.width, TINY.height)]), [seed]);
}

function uint8Tensor(img: RGBImage): Tensor<'uint8'> {
  return tensor('uint8', [img.height, img.width, 3], Uint8Array.from(img.data));
}

/**
 * The picture as float32 in [-1, 1], computed in float32 steps as the reference (and uint8ToImage) do: float
 * inputs go to the VAE unquantized, so the same values must be given for the same result.
 */
function floatTensor(img: RGBImage): Tensor<'float32'> {
  return tensor('float32', [img.height, img.width, 3], Float32Array.from(img.data, (v) => Math.fround(Math.fround(Math.fround(v / 255) * 2) - 1)));
}

describe('seeds and reproducibility', () => {
  it('gives a byte-identical PNG for the same seed, across calls and across separately loaded presets', async () => {
    const a = await t2i.generate('a red fox in the snow', { numSteps: 3, seed: 42 });
    const b = await t2i.generate('a red fox in the snow', { numSteps: 3, seed: 42 });
    assert.ok(a.toPNG().equals(b.toPNG()), 'two calls on one task differ');
    const other = await TextToImage.fromPreset('tiny-random', TINY_OPTIONS);
    try {
      const c = await other.generate('a red fox in the snow', { numSteps: 3, seed: 42 });
      assert.ok(a.toPNG().equals(c.toPNG()), 'two loads of the preset differ');
    } finally {
      await other.dispose();
    }
    // ...and the seed is what makes them equal: another seed gives another picture.
    assertDifferentPixels(a, await t2i.generate('a red fox in the snow', { numSteps: 3, seed: 43 }), 'seeds 42 and 43');
  });

  it('reproduces one image of a batch alone from its entry in `seeds`', async () => {
    const batch = await t2i.generate(['a', 'b', 'c'], { numSteps: 2, seeds: [5, 6, 7] });
    assert.equal(batch.length, 3);
    const alone = await t2i.generate('b', { numSteps: 2, seeds: [6] });
    assertSamePixels(batch[1]!, alone, 'batch image 1 vs "b" with seed 6 alone');
    assert.deepEqual(batch.map((img) => parameters(img).seed), [5, 6, 7]);
    assert.deepEqual(batch.map((img) => parameters(img).prompt), ['a', 'b', 'c']);
  });

  it('uses seeds s, s+1, ... for a batch given `seed: s`', async () => {
    const batch = await t2i.generate(['a', 'b'], { numSteps: 2, seed: 10 });
    assert.deepEqual(batch.map((img) => parameters(img).seed), [10, 11]);
    assertSamePixels(batch[1]!, await t2i.generate('b', { numSteps: 2, seed: 11 }), 'batch image 1 vs seed 11 alone');
  });

  it('returns one image for a single prompt and a list for a list, even of one', async () => {
    assert.ok((await t2i.generate('a', { numSteps: 1, seed: 0 })) instanceof RGBImage);
    const list = await t2i.generate(['a'], { numSteps: 1, seed: 0 });
    assert.ok(Array.isArray(list) && list.length === 1);
    const obj = await t2i.generate({ prompts: ['a', 'b'], negativePrompts: 'blurry' }, { numSteps: 1, seed: 0 });
    assert.deepEqual(obj.map((img) => parameters(img).negativePrompt), ['blurry', 'blurry']);
  });
});

describe('onStep and cancellation', () => {
  it('reports (step, total, elapsed, latent) after every text-to-image step', async () => {
    const steps: StepInfo[] = [];
    const copies: Float32Array[] = [];
    const img = await t2i.generate('a lighthouse', {
      numSteps: 4, seed: 1, onStep: (s) => { steps.push(s); copies.push(s.latent.data.slice()); },
    });
    assert.deepEqual(steps.map((s) => [s.step, s.total]), [[1, 4], [2, 4], [3, 4], [4, 4]]);
    for (let i = 0; i < steps.length; i++) {
      const s = steps[i]!;
      assert.ok(s.elapsed >= 0 && (i === 0 || s.elapsed >= steps[i - 1]!.elapsed), `elapsed ${s.elapsed} at step ${s.step}`);
      assert.deepEqual(s.latent.shape, [1, 16, TINY.height / 8, TINY.width / 8]);
      // Each step's latent stays what it was at that step (not overwritten by later steps).
      assert.deepEqual(s.latent.data, copies[i], `latent of step ${s.step} changed after the callback returned`);
    }
    assert.notDeepEqual(copies[0], copies[3]);
    // The last step's latent is the one decoded.
    assertSamePixels(await decodeLatent(steps[3]!.latent.data), img, 'decode(last latent) vs output');
  });

  it('runs numSteps - start steps for image-to-image (10 steps at strength 0.5: 5 steps)', async () => {
    const totals: [number, number][] = [];
    const img = await i2i.generate({ images: testImage(64, 64), prompts: 'a painting' }, {
      numSteps: 10, strength: 0.5, seed: 2, onStep: (s) => totals.push([s.step, s.total]),
    });
    assert.deepEqual(totals, [[1, 5], [2, 5], [3, 5], [4, 5], [5, 5]]);
    assert.equal(parameters(img).numSteps, 10);
    assert.equal(parameters(img).strength, 0.5);
  });

  it('stops within one step when aborted from onStep: AbortError, no further step or model call', async (t) => {
    const { batches } = countForwards(t);
    const controller = new AbortController();
    let calls = 0;
    await assert.rejects(t2i.generate('a storm', {
      numSteps: 10, seed: 3, signal: controller.signal,
      onStep: (s) => { calls++; if (s.step === 2) controller.abort(); },
    }), AbortError);
    assert.equal(calls, 2);
    assert.equal(batches.length, 2, 'the MMDiT ran after the abort');
  });

  it('rejects an already-aborted signal with AbortError before any step', async (t) => {
    const { batches } = countForwards(t);
    const controller = new AbortController();
    controller.abort();
    let calls = 0;
    const onStep = () => { calls++; };
    await assert.rejects(t2i.generate('a storm', { numSteps: 10, seed: 3, signal: controller.signal, onStep }), AbortError);
    await assert.rejects(i2i.generate({ images: testImage(64, 64), prompts: 'x' }, { numSteps: 10, signal: controller.signal, onStep }), AbortError);
    await assert.rejects(inpaint.generate({ images: testImage(64, 64), masks: maskImage(64, 64, () => true), prompts: 'x' }, {
      numSteps: 10, signal: controller.signal, onStep,
    }), AbortError);
    assert.equal(calls, 0);
    assert.equal(batches.length, 0);
  });
});

describe('classifier-free guidance', () => {
  it('runs one unguided pass per step when guidanceScale <= 1: the negative prompt has no effect', async (t) => {
    const { batches } = countForwards(t);
    const a = await t2i.generate({ prompts: ['a cat', 'a dog'], negativePrompts: 'ugly' }, { numSteps: 3, seed: 4, guidanceScale: 1 });
    assert.deepEqual(batches, [2, 2, 2], 'expected 3 forward calls on the 2 positive rows only');
    const b = await t2i.generate({ prompts: ['a cat', 'a dog'], negativePrompts: 'blurry, dark' }, { numSteps: 3, seed: 4, guidanceScale: 1 });
    assertSamePixels(a[0]!, b[0]!, 'guidance 1, different negative prompts');
    assertSamePixels(a[1]!, b[1]!, 'guidance 1, different negative prompts');
    const c = await t2i.generate({ prompts: 'a cat', negativePrompts: 'blurry, dark' }, { numSteps: 3, seed: 4, guidanceScale: 0.5 });
    const d = await t2i.generate({ prompts: 'a cat' }, { numSteps: 3, seed: 4, guidanceScale: 0.5 });
    assertSamePixels(c, d, 'guidance 0.5, with and without a negative prompt');
  });

  it('runs positive and negative rows together when guidanceScale > 1, and the negative prompt matters', async (t) => {
    const { batches } = countForwards(t);
    const a = await t2i.generate({ prompts: ['a cat', 'a dog'], negativePrompts: 'ugly' }, { numSteps: 3, seed: 4, guidanceScale: 5 });
    assert.deepEqual(batches, [4, 4, 4], 'expected 3 forward calls on 2 positive + 2 negative rows');
    const b = await t2i.generate({ prompts: ['a cat', 'a dog'], negativePrompts: 'blurry, dark' }, { numSteps: 3, seed: 4, guidanceScale: 5 });
    assertDifferentPixels(a[0]!, b[0]!, 'guidance 5, different negative prompts');
    assertDifferentPixels(a[0]!, await t2i.generate('a cat', { numSteps: 3, seed: 4, guidanceScale: 1 }), 'guidance 5 vs 1');
  });
});

describe('image-to-image', () => {
  const picture = testImage(64, 64);

  it('returns the VAE round trip of the input at strength 0, with zero steps', async (t) => {
    const { batches } = countForwards(t);
    let calls = 0;
    const out = await i2i.generate({ images: picture, prompts: 'anything' }, { numSteps: 10, strength: 0, seed: 9, onStep: () => { calls++; } });
    assert.equal(calls, 0);
    assert.equal(batches.length, 0);
    assertSamePixels(out, await decodeLatent(await imageLatent(picture, 9)), 'strength 0 vs decode(encode(image))');
  });

  it('defaults to 50 steps at strength 0.8 (41 steps run: int(50 * (1 - 0.8)) = 9 in float64) and guidance 7', async (t) => {
    const { batches } = countForwards(t);
    const totals = new Set<number>();
    let calls = 0;
    const out = await i2i.generate({ images: picture, prompts: 'x' }, { seed: 1, onStep: (s) => { calls++; totals.add(s.total); } });
    assert.equal(50 - startIndex(50, 0.8), 41);
    assert.deepEqual([...totals], [41]);
    assert.equal(calls, 41);
    assert.ok(batches.every((n) => n === 2), 'guidance 7 runs positive and negative rows');
    assert.deepEqual(ImageToImage.defaults, { numSteps: 50, guidanceScale: 7.0, strength: 0.8 });
    const p = parameters(out);
    assert.deepEqual([p.numSteps, p.strength, p.guidanceScale, p.task], [50, 0.8, 7, 'image-to-image']);
  });

  it('accepts an RGBImage, a [H, W, 3] float32 tensor in [-1, 1] and a uint8 tensor alike', async () => {
    const options = { numSteps: 4, strength: 0.6, seed: 11 };
    const fromImage = await i2i.generate({ images: picture, prompts: 'a barn' }, options);
    assertSamePixels(await i2i.generate({ images: uint8Tensor(picture), prompts: 'a barn' }, options), fromImage, 'uint8 tensor vs RGBImage');
    assertSamePixels(await i2i.generate({ images: floatTensor(picture), prompts: 'a barn' }, options), fromImage, 'float tensor vs RGBImage');
    assertDifferentPixels(await i2i.generate({ images: testImage(64, 64, 99), prompts: 'a barn' }, options), fromImage, 'another input image');
  });

  it('passes float32 inputs to the VAE as given, not rounded to 8 bits', async () => {
    // Values between two 8-bit codes: quantizing them first would give the uint8 picture's latents exactly.
    const f = floatTensor(picture);
    const between = tensor('float32', f.shape, Float32Array.from(f.data as Float32Array, (v) => Math.max(-1, Math.min(1, v + 0.4 / 255))));
    const options = { numSteps: 3, strength: 0.6, seed: 11 };
    assertDifferentPixels(await i2i.generate({ images: between, prompts: 'a barn' }, options), await i2i.generate({ images: picture, prompts: 'a barn' }, options), 'in-between floats vs the 8-bit picture');
  });

  it('resizes an input of another size to imageShape (nearest)', async () => {
    const small = testImage(32, 48);
    const options = { numSteps: 3, strength: 0.7, seed: 12 };
    const out = await i2i.generate({ images: small, prompts: 'a boat' }, options);
    assert.deepEqual([out.width, out.height], [TINY.width, TINY.height]);
    assertSamePixels(out, await i2i.generate({ images: resizeNearest(small, 64, 64), prompts: 'a boat' }, options), 'resized inside vs before');
  });

  it('takes one image for a whole batch, or one per prompt', async () => {
    const options = { numSteps: 2, strength: 0.5, seeds: [1, 2] };
    const shared = await i2i.generate({ images: picture, prompts: ['a', 'b'] }, options);
    const each = await i2i.generate({ images: [picture, picture], prompts: ['a', 'b'] }, options);
    assert.equal(shared.length, 2);
    assertSamePixels(shared[1]!, each[1]!, 'one image broadcast vs one per prompt');
  });
});

describe('inpainting', () => {
  const picture = testImage(64, 64);
  const leftHalf = (x: number, _y: number, width: number) => x < width / 2;

  it('with an all-zero mask keeps the image latents exactly: the output is the strength-0 round trip', async () => {
    const steps: StepInfo[] = [];
    const zero = tensor('float32', [64, 64], new Float32Array(64 * 64));
    const out = await inpaint.generate({ images: picture, masks: zero, prompts: 'a tree' }, {
      numSteps: 4, strength: 0.6, seed: 8, onStep: (s) => steps.push(s),
    });
    assert.equal(steps.length, 4 - startIndex(4, 0.6));
    assert.deepEqual(steps.at(-1)!.latent.data, await imageLatent(picture, 8), 'last latent vs image latent');
    const roundTrip = await i2i.generate({ images: picture, prompts: 'a tree' }, { numSteps: 4, strength: 0, seed: 8 });
    assertSamePixels(out, roundTrip, 'inpaint with empty mask vs image-to-image at strength 0');
  });

  it('with an all-one mask is image-to-image at the same strength', async () => {
    const options = { numSteps: 4, strength: 0.6, seed: 8 };
    const out = await inpaint.generate({ images: picture, masks: maskImage(64, 64, () => true), prompts: 'a tree' }, options);
    assertSamePixels(out, await i2i.generate({ images: picture, prompts: 'a tree' }, options), 'full mask vs image-to-image');
  });

  it('repaints inside the mask only (in latent space)', async () => {
    const steps: StepInfo[] = [];
    await inpaint.generate({ images: picture, masks: maskImage(64, 64, (x) => leftHalf(x, 0, 64)), prompts: 'a tree' }, {
      numSteps: 4, strength: 1, seed: 8, onStep: (s) => steps.push(s),
    });
    const last = steps.at(-1)!.latent.data;
    const init = await imageLatent(picture, 8);
    assertLeftHalfRepainted(last, init, 8);
  });

  it('accepts boolean, uint8, float and RGBImage masks (any size) alike', async () => {
    const options = { numSteps: 3, strength: 0.8, seed: 13 };
    const values = Array.from({ length: 64 * 64 }, (_, p) => leftHalf(p % 64, 0, 64));
    const masks: [string, Tensor | RGBImage][] = [
      ['bool tensor', tensor('bool', [64, 64], Uint8Array.from(values, Number))],
      ['uint8 tensor', tensor('uint8', [64, 64], Uint8Array.from(values, (v) => (v ? 255 : 0)))],
      ['float tensor [H, W, 1]', tensor('float32', [64, 64, 1], Float32Array.from(values, Number))],
      ['RGBImage 32x32', maskImage(32, 32, (x) => leftHalf(x, 0, 32))],
    ];
    const reference = await inpaint.generate({ images: picture, masks: maskImage(64, 64, (x) => leftHalf(x, 0, 64)), prompts: 'a wall' }, options);
    for (const [what, mask] of masks) {
      assertSamePixels(await inpaint.generate({ images: picture, masks: mask, prompts: 'a wall' }, options), reference, `${what} vs RGBImage 64x64`);
    }
    assertDifferentPixels(await inpaint.generate({ images: picture, masks: maskImage(64, 64, (x) => x >= 32), prompts: 'a wall' }, options), reference, 'the other half');
  });

  it('defaults to 50 steps at strength 0.6 (30 steps run) and guidance 7', async () => {
    let calls = 0;
    const out = await inpaint.generate({ images: picture, masks: maskImage(64, 64, () => true), prompts: 'x' }, { seed: 1, onStep: () => { calls++; } });
    assert.equal(calls, 30);
    assert.deepEqual(Inpaint.defaults, { numSteps: 50, guidanceScale: 7.0, strength: 0.6 });
    const p = parameters(out);
    assert.deepEqual([p.numSteps, p.strength, p.guidanceScale, p.task], [50, 0.6, 7, 'inpaint']);
  });
});

describe('input checks: SD3Error naming the value', () => {
  const img = testImage(64, 64);
  const mask = maskImage(64, 64, () => true);

  it('rejects bad prompts', async () => {
    await rejectsWithSD3Error(() => t2i.generate([], { numSteps: 1 }), /prompts must not be an empty list/);
    await rejectsWithSD3Error(() => t2i.generate(['a', 3 as unknown as string], { numSteps: 1 }), /prompts\[1\] must be a string, got number 3/);
    await rejectsWithSD3Error(() => t2i.generate(42 as unknown as string, { numSteps: 1 }), /got number 42/);
    await rejectsWithSD3Error(() => t2i.generate({ prompts: ['a', 'b'], negativePrompts: ['x', 'y', 'z'] }, { numSteps: 1 }), /2 prompts but 3 negative prompts/);
    await rejectsWithSD3Error(() => i2i.generate({ images: img, prompts: [] }, { numSteps: 1 }), /prompts must not be an empty list/);
  });

  it('rejects batches of images, masks and prompts that do not match', async () => {
    await rejectsWithSD3Error(() => i2i.generate({ images: [img, img, img], prompts: ['a', 'b'] }), /2 prompts but 3 images/);
    await rejectsWithSD3Error(() => inpaint.generate({ images: [img, img], masks: [mask, mask, mask], prompts: ['a', 'b'] }), /2 prompts but 3 masks/);
    await rejectsWithSD3Error(() => inpaint.generate({ images: [img, img], masks: mask, prompts: 'a' }), /1 prompts but 2 images/);
    await rejectsWithSD3Error(() => i2i.generate({ prompts: 'a' } as never), /image-to-image input must be/);
    await rejectsWithSD3Error(() => inpaint.generate({ images: img, prompts: 'a' } as never), /inpaint input must be/);
  });

  it('rejects bad images and masks', async () => {
    await rejectsWithSD3Error(() => i2i.generate({ images: tensor('float32', [64, 64], new Float32Array(64 * 64)), prompts: 'a' }), /images\[0\] must be \[height, width, 3\].*got \[64, 64\]/);
    await rejectsWithSD3Error(() => i2i.generate({ images: tensor('float32', [2, 2, 3], new Float32Array(12).fill(3)), prompts: 'a' }), /images\[0\] float values must be in \[-1, 1\], found 3/);
    await rejectsWithSD3Error(() => i2i.generate({ images: 'in.png' as never, prompts: 'a' }), /images\[0\] must be an RGBImage.*got "in.png"/);
    await rejectsWithSD3Error(() => inpaint.generate({ images: img, masks: tensor('float32', [64, 64, 3], new Float32Array(64 * 64 * 3)), prompts: 'a' }), /masks\[0\] must be \[height, width\], got \[64, 64, 3\]/);
  });

  it('rejects strength outside [0, 1]', async () => {
    for (const strength of [-0.1, 1.5, Number.NaN]) {
      await rejectsWithSD3Error(() => i2i.generate({ images: img, prompts: 'a' }, { strength }), new RegExp(`strength must be a number in \\[0, 1\\], got number ${strength}`));
    }
    await rejectsWithSD3Error(() => inpaint.generate({ images: img, masks: mask, prompts: 'a' }, { strength: 2 }), /strength .* got number 2/);
  });

  it('rejects numSteps < 1 or not an integer', async () => {
    await rejectsWithSD3Error(() => t2i.generate('a', { numSteps: 0 }), /numSteps must be an integer >= 1, got number 0/);
    await rejectsWithSD3Error(() => t2i.generate('a', { numSteps: 2.5 }), /numSteps must be an integer >= 1, got number 2.5/);
    await rejectsWithSD3Error(() => i2i.generate({ images: img, prompts: 'a' }, { numSteps: -3 }), /numSteps .* got number -3/);
    await rejectsWithSD3Error(() => t2i.generate('a', { guidanceScale: Number.POSITIVE_INFINITY }), /guidanceScale must be a finite number, got number Infinity/);
  });

  it('rejects bad seeds', async () => {
    for (const seed of [-1, 1.5, 2 ** 32]) {
      await rejectsWithSD3Error(() => t2i.generate('a', { numSteps: 1, seed }), new RegExp(`seed must be an integer in \\[0, 4294967295\\], got ${seed}`));
    }
    await rejectsWithSD3Error(() => t2i.generate('a', { numSteps: 1, seed: '7' as unknown as number }), /seed must be an integer .* got 7/);
    await rejectsWithSD3Error(() => t2i.generate(['a', 'b'], { numSteps: 1, seeds: [1] }), /seeds must list one seed per image \(2\), got array of length 1/);
    await rejectsWithSD3Error(() => t2i.generate(['a', 'b'], { numSteps: 1, seeds: [1, -2] }), /seeds\[1\] must be an integer .* got -2/);
  });

  it('rejects an imageShape that is not a multiple of 16', async () => {
    await rejectsWithSD3Error(() => TextToImage.fromPreset('tiny-random', { imageShape: { width: 100, height: 64 } }), /imageShape.width must be a positive multiple of 16.*got 100/);
    await rejectsWithSD3Error(() => ImageToImage.fromPreset('tiny-random', { imageShape: [40, 64] }), /imageShape.height must be a positive multiple of 16.*got 40/);
    await rejectsWithSD3Error(() => TextToImage.fromPreset('tiny-random', { imageShape: [64, 64, 4] }), /imageShape as an array must be \[height, width\] or \[height, width, 3\].*\[64,64,4\]/);
    await rejectsWithSD3Error(() => TextToImage.fromPreset('no-such-preset'), /unknown preset "no-such-preset"/);
  });

  it('rejects an unreadable image file, naming it', async () => {
    const missing = path.join(tmp, 'missing.png');
    await rejectsWithSD3Error(() => readImage(missing), new RegExp(`cannot read image ${missing.replace(/[.\\]/g, '\\$&')}`));
    const text = path.join(tmp, 'notes.png');
    fs.writeFileSync(text, 'not a picture');
    await rejectsWithSD3Error(() => readImage(text), /notes\.png: not a PNG or JPEG file/);
    const truncated = path.join(tmp, 'truncated.png');
    fs.writeFileSync(truncated, testImage(16, 16).toPNG().subarray(0, 60));
    await rejectsWithSD3Error(() => readImage(truncated), /cannot read .*truncated\.png/);
  });

  it('rejects bad options objects and callbacks', async () => {
    await rejectsWithSD3Error(() => t2i.generate('a', { onStep: 5 as never }), /onStep must be a function, got number 5/);
    await rejectsWithSD3Error(() => t2i.generate('a', { signal: {} as never }), /signal must be an AbortSignal/);
  });
});

describe('PNG metadata', () => {
  it('marks the images whose prompt CLIP cut short (over 75 tokens), and only those', async () => {
    const long = Array.from({ length: 60 }, (_, i) => `word${i}`).join(' ');
    const [a, b] = await t2i.generate({ prompts: [long, 'a short prompt'] }, { numSteps: 1, seed: 3, guidanceScale: 2 });
    assert.equal(JSON.parse(a!.metadata['sd3-ts']!).promptTruncated, true);
    assert.equal('promptTruncated' in JSON.parse(b!.metadata['sd3-ts']!), false);
  });

  it('saves a PNG whose `sd3-ts` chunk has our JSON and whose `parameters` chunk is A1111\'s infotext', async () => {
    const img = await t2i.generate({ prompts: 'a quiet harbour at dawn', negativePrompts: 'people' }, { numSteps: 2, seed: 77, guidanceScale: 3.5 });
    const file = path.join(tmp, 'harbour.png');
    await img.save(file);
    const bytes = fs.readFileSync(file);
    const text = readPNGText(bytes);
    const p = JSON.parse(text['sd3-ts']!) as Record<string, unknown>;
    assert.equal(text.parameters, 'a quiet harbour at dawn\nNegative prompt: people\n'
      + 'Steps: 2, Sampler: Euler, Schedule type: Flow shift 3, CFG scale: 3.5, Seed: 77, Size: 64x64, Model: tiny-random, Version: sd3-ts 0.1.0');
    assert.equal(p.prompt, 'a quiet harbour at dawn');
    assert.equal(p.negativePrompt, 'people');
    assert.equal(p.seed, 77);
    assert.equal(p.numSteps, 2);
    assert.equal(p.guidanceScale, 3.5);
    assert.deepEqual([p.width, p.height, p.task], [64, 64, 'text-to-image']);
    assert.match(text.Software!, /^sd3-ts \d+\.\d+\.\d+/);
    // The file is a valid PNG with exactly the generated pixels.
    assertSamePixels(decodeImage(bytes), img, 'saved PNG vs generated image');
    assert.deepEqual(fs.readdirSync(tmp).filter((f) => f.endsWith('.tmp')), [], 'temporary file left behind');
  });

  it('keeps a prompt outside Latin-1 intact in the PNG text (iTXt, UTF-8)', async () => {
    const prompt = 'café, 東京の夜, 🐱 — "quoted"';
    const img = await t2i.generate(prompt, { numSteps: 1, seed: 5 });
    const png = img.toPNG();
    const text = readPNGText(png);
    const p = JSON.parse(text['sd3-ts']!) as Record<string, unknown>;
    assert.equal(p.prompt, prompt);
    assert.equal(text.parameters!.split('\n')[0], prompt);
    assert.ok(png.includes(Buffer.from('iTXtparameters\0')), 'the infotext is an iTXt chunk');
  });

  it('fails with an SD3Error naming the file when the folder does not exist', async () => {
    const img = await t2i.generate('a', { numSteps: 1, seed: 5 });
    await assert.rejects(img.save(path.join(tmp, 'no', 'such', 'dir.png')), (e: unknown) => e instanceof SD3Error && /could not write/.test(e.message));
  });
});
