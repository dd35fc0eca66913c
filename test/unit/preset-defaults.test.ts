/**
 * presetSamplingDefaults: a preset's steps and guidance known without loading it (what a server front end whose
 * workers hold the model gives requests that name none).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readAllSafetensors } from '../../src/core/safetensors.js';
import { demoCheckpointPath } from '../../src/presets/demo.js';
import { presetSamplingDefaults } from '../../src/presets/index.js';

test('built-in names get their table defaults, the demo its metadata, an unread hub id none', () => {
  const pick = (name: string) => {
    const d = presetSamplingDefaults(name);
    return d && { steps: d.numSteps, guidance: d.guidanceScale };
  };
  assert.deepEqual(pick('stable_diffusion_3.5_large_turbo'), { steps: 4, guidance: 1 });
  assert.deepEqual(pick('stable_diffusion_3.5_large'), { steps: 40, guidance: 4.5 });
  assert.deepEqual(pick('stable_diffusion_3.5_medium'), { steps: 40, guidance: 4.5 });
  assert.deepEqual(pick('stable_diffusion_3_medium'), { steps: undefined, guidance: undefined }, 'the task defaults (28 / 50, 7) apply');
  assert.deepEqual(pick('tiny-random'), { steps: undefined, guidance: undefined });
  const stated = Number(readAllSafetensors(demoCheckpointPath()).metadata['sampling.guidance_scale']);
  assert.deepEqual(pick('demo'), { steps: undefined, guidance: stated });
  assert.deepEqual(pick(demoCheckpointPath()), { steps: undefined, guidance: stated }, 'a local single file: from its header');
  assert.equal(presetSamplingDefaults('someone/some-model'), undefined);
});
