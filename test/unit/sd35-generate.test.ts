/**
 * The SD3.5 options through the public tasks, on a tiny random MMDiT-X: per-model defaults, DPM++ 2M and
 * skip-layer guidance in text-to-image, image-to-image and inpainting, their metadata, and their input checks.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SD3Error } from '../../src/core/errors.js';
import { tensor } from '../../src/core/tensor.js';
import { MemoryStore } from '../../src/core/weights.js';
import { SD3Backbone } from '../../src/pipelines/backbone.js';
import { ImageToImage } from '../../src/pipelines/image-to-image.js';
import { Inpaint } from '../../src/pipelines/inpaint.js';
import { TextToImage } from '../../src/pipelines/text-to-image.js';
import { mmditLayout } from '../../src/presets/layout.js';
import { tinyRandomWeights } from '../../src/presets/tiny-random.js';
import { gaussian } from '../../src/sampler/noise.js';
import { maskImage, parameters, testImage } from '../helpers/tiny.js';

function tinySD35(label: string): SD3Backbone {
  const { weights } = tinyRandomWeights();
  const entries = mmditLayout('', { depth: 3, posEmbedMaxSize: 16, adm: 64, contextIn: 64, qkNorm: true, dual: [0, 2] });
  const mmdit = new MemoryStore(new Map(entries.map((e, k) => {
    const g = gaussian(e.shape.reduce((a, b) => a * b, 1), 77 + k);
    return [e.name, tensor('float32', e.shape, g.map((v) => (e.init.mean ?? 0) + e.init.std * v))] as const;
  })), label);
  return new SD3Backbone({ ...weights, label, mmdit }, { threads: 1 });
}

const shape = { width: 64, height: 64 };

test('a 3.5 model takes its own defaults; DPM++ 2M and skip-layer guidance run in all three tasks and are recorded', async () => {
  const backbone = tinySD35('sd3.5_medium (tiny random)');
  const { preprocessor } = tinyRandomWeights();
  const t2i = new TextToImage(backbone, preprocessor, shape);
  try {
    assert.equal(backbone.variant, 'sd3.5_medium');
    const plain = parameters(await t2i.generate('a', { seed: 1 }));
    assert.deepEqual([plain.numSteps, plain.guidanceScale, plain.sampler], [40, 4.5, 'euler']);
    const slg = { layers: [1], scale: 2.5, start: 0.01, end: 0.5 };
    const a = await t2i.generate('a', { seed: 1, numSteps: 6, sampler: 'dpmpp_2m', skipLayerGuidance: slg });
    assert.deepEqual([parameters(a).sampler, parameters(a).skipLayerGuidance], ['dpmpp_2m', slg]);
    const b = await t2i.generate('a', { seed: 1, numSteps: 6, sampler: 'dpmpp_2m' });
    assert.notDeepEqual(a.data, b.data, 'skip-layer guidance changes the image');
    const i2i = new ImageToImage(backbone, preprocessor, shape);
    const c = await i2i.generate({ images: testImage(64, 64), prompts: 'b' }, { seed: 2, numSteps: 6, strength: 0.7, sampler: 'dpmpp_2m', skipLayerGuidance: slg });
    assert.equal(parameters(c).sampler, 'dpmpp_2m');
    const inpaint = new Inpaint(backbone, preprocessor, shape);
    const d = await inpaint.generate({ images: testImage(64, 64), masks: maskImage(64, 64, (x) => x < 32), prompts: 'c' }, { seed: 3, numSteps: 6, sampler: 'dpmpp_2m', skipLayerGuidance: slg });
    assert.equal(parameters(d).sampler, 'dpmpp_2m');
    await assert.rejects(t2i.generate('a', { numSteps: 2, skipLayerGuidance: { ...slg, layers: [3] } }),
      (e: Error) => e instanceof SD3Error && /skipLayerGuidance\.layers: 3 is not a joint block of this model \(sd3\.5_medium, blocks 0-2\)/.test(e.message));
    await assert.rejects(t2i.generate('a', { numSteps: 2, sampler: 'heun' as never }), (e: Error) => e instanceof SD3Error && /sampler must be one of/.test(e.message));
  } finally {
    await t2i.dispose();
  }
});
