import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { readAllSafetensors, SafetensorsFile } from '../../src/core/safetensors.js';
import { type Tensor, numel, tensor } from '../../src/core/tensor.js';
import { SafetensorsStore, withPrefix } from '../../src/core/weights.js';
import { decodeTiled, tileStarts } from '../../src/models/vae-tiling.js';
import { fromModelSpace, VAE } from '../../src/models/vae.js';

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'vae');

function filled(shape: number[], f: (i: number) => number): Tensor<'float32'> {
  return tensor('float32', shape, Float32Array.from({ length: numel(shape) }, (_, i) => f(i)));
}

function stats(a: Tensor, b: Tensor): { max: number; rms: number } {
  let max = 0;
  let sq = 0;
  for (let i = 0; i < a.data.length; i++) {
    const d = Math.abs((a.data[i] as number) - (b.data[i] as number));
    max = Math.max(max, d);
    sq += d * d;
  }
  return { max, rms: Math.sqrt(sq / a.data.length) };
}

/** A stand-in decoder where every pixel depends only on its own latent cell: tiles must agree exactly. */
async function pointwise(z: Tensor<'float32'>): Promise<Tensor<'float32'>> {
  const [B, , h, w] = z.shape as number[] as [number, number, number, number];
  const f = 4;
  const out = new Float32Array(B * 3 * h * f * w * f);
  for (let b = 0; b < B; b++) for (let c = 0; c < 3; c++) for (let y = 0; y < h * f; y++) for (let x = 0; x < w * f; x++) {
    out[((b * 3 + c) * h * f + y) * w * f + x] = z.data[((b * 16 + c) * h + Math.floor(y / f)) * w + Math.floor(x / f)]! * (1 + c);
  }
  return tensor('float32', [B, 3, h * f, w * f], out);
}

test('tiles cover the axis evenly, neighbours share at least the overlap', () => {
  assert.deepEqual(tileStarts(16, 8, 4), [0, 4, 8]);
  assert.deepEqual(tileStarts(128, 96, 32), [0, 32]);
  assert.deepEqual(tileStarts(128, 64, 16), [0, 32, 64]);
  assert.deepEqual(tileStarts(8, 8, 2), [0]);
  assert.deepEqual(tileStarts(5, 8, 2), [0]);
  for (let length = 1; length <= 40; length++) {
    for (const [size, overlap] of [[4, 0], [4, 1], [6, 3], [8, 2], [9, 8]] as const) {
      const s = tileStarts(length, size, overlap);
      assert.equal(s[0], 0);
      assert.equal(s.at(-1)! + Math.min(size, length), length, `last tile ends at the edge (${length}, ${size}, ${overlap})`);
      for (let k = 1; k < s.length; k++) {
        assert.ok(s[k]! > s[k - 1]!, 'starts increase');
        assert.ok(s[k - 1]! + size - s[k]! >= overlap, `overlap >= ${overlap} (${length}, ${size}: ${s})`);
      }
    }
  }
});

test('blending is a partition of unity: with a pointwise decoder, tiled equals untiled', async () => {
  const z = filled([2, 16, 10, 13], (i) => Math.sin(i * 0.37));
  const whole = await pointwise(z);
  for (const [size, overlap] of [[4, 0], [4, 2], [5, 3], [6, 1], [7, 6]] as const) {
    const tiled = await decodeTiled(z, { size, overlap }, 4, pointwise);
    assert.deepEqual(tiled.shape, whole.shape);
    assert.ok(stats(tiled, whole).max < 1e-6, `size ${size}, overlap ${overlap}: ${stats(tiled, whole).max}`);
  }
});

test('tiled decoding with the real (tiny) decoder: exact for one tile, seam error measured otherwise', async (t) => {
  const file = SafetensorsFile.open(path.join(fixtures, 'weights.safetensors'));
  const vae = await VAE.load(new SafetensorsStore([file], withPrefix('first_stage_model.')), { threads: 1 });
  const latent = readAllSafetensors(path.join(fixtures, 'cases', 'decode_16x16.safetensors')).tensors['input.latent']!;
  const z = fromModelSpace(latent); // [2, 16, 16, 16]
  const whole = await vae.decode(z);
  const peak = Math.max(...[...whole.data].map(Math.abs));
  assert.deepEqual([...(await vae.decode(z, { tile: { size: 16, overlap: 4 } })).data], [...whole.data]);
  assert.deepEqual([...(await vae.decode(z, { tile: false })).data], [...whole.data]);
  // GroupNorm statistics and the middle attention see one tile only, and the receptive field is wider than
  // the overlap, so tiles disagree. Measured on these random weights (peak |image| 3.36):
  //   tiles 12, overlap 8: max 0.587, rms 0.113;   tiles 8, overlap 4: max 1.472, rms 0.259.
  // The bounds are 1.1x those (the decode is deterministic; hard seams instead of the ramps give rms 0.309 at 8/4 and fail), and the larger
  // overlap must stay clearly better than the smaller one.
  const bounds: [number, number, number, number][] = [[12, 8, 0.587 * 1.1, 0.113 * 1.1], [8, 4, 1.472 * 1.1, 0.259 * 1.1]];
  const errors: number[] = [];
  for (const [size, overlap, maxBound, rmsBound] of bounds) {
    const tiled = await vae.decode(z, { tile: { size, overlap } });
    assert.deepEqual(tiled.shape, whole.shape);
    const e = stats(tiled, whole);
    t.diagnostic(`tiles ${size}, overlap ${overlap}: max |tiled - whole| ${e.max.toFixed(3)} (${(e.max / peak).toFixed(3)} of peak), rms ${e.rms.toFixed(3)}`);
    assert.ok(e.max <= maxBound && e.rms <= rmsBound, `seam error grew: max ${e.max} (bound ${maxBound}), rms ${e.rms} (bound ${rmsBound})`);
    errors.push(e.rms);
  }
  assert.ok(errors[0]! < 0.6 * errors[1]!, `overlap 8 of 12 should disagree far less than 4 of 8: rms ${errors}`);
  const odd = await vae.decode(filled([1, 16, 8, 12], (i) => Math.cos(i * 0.11)), { tile: { size: 6, overlap: 2 } });
  assert.deepEqual(odd.shape, [1, 3, 16, 24]);
  await vae.dispose();
  file.close();
});
