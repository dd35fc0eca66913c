/**
 * Latent previews: the least-squares fit recovers a decoder that is exactly linear, the projection maps each
 * latent cell to one pixel, and StepInfo.preview() gives one image per batch item at latent resolution.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Tensor, tensor } from '../../src/core/tensor.js';
import { type PreviewVAE, fitLatentPreview, projectLatent } from '../../src/pipelines/preview.js';
import { TextToImage } from '../../src/presets/tasks.js';
import { TINY_OPTIONS } from '../helpers/tiny.js';

const C = 16;

/** A fixed pseudo-random value in [-1, 1) per integer (so the 16 channels are linearly independent). */
function hashNoise(i: number): number {
  let h = Math.imul(i ^ 0x9e3779b9, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) / 2 ** 31 - 1;
}

/** A VAE whose decoder is exactly rgb = W latent + b per 8x8 block; the encoder fills all 16 channels. */
function linearVAE(W: Float32Array, b: Float32Array): PreviewVAE {
  return {
    async encodeImage(images: Tensor<'float32'>) {
      const [B, , H, Wd] = images.shape as [number, number, number, number];
      const h = H / 8;
      const w = Wd / 8;
      const out = new Float32Array(B * C * h * w);
      for (let n = 0; n < B; n++) for (let q = 0; q < h * w; q++) {
        const px = (Math.floor(q / w) * 8) * Wd + (q % w) * 8;
        const rgb = [0, 1, 2].map((c) => images.data[(n * 3 + c) * H * Wd + px]!);
        for (let k = 0; k < C; k++) out[(n * C + k) * h * w + q] = rgb[k % 3]! * (k + 1) / 8 + hashNoise(n * 100_000 + q * 100 + k);
      }
      return out;
    },
    async decode(latent: Tensor<'float32'>) {
      const [B, , h, w] = latent.shape as [number, number, number, number];
      const out = new Float32Array(B * 3 * h * 8 * w * 8);
      for (let n = 0; n < B; n++) for (let q = 0; q < h * w; q++) for (let c = 0; c < 3; c++) {
        let v = b[c]!;
        for (let k = 0; k < C; k++) v += W[c * C + k]! * latent.data[(n * C + k) * h * w + q]!;
        const [y0, x0] = [Math.floor(q / w) * 8, (q % w) * 8];
        for (let y = y0; y < y0 + 8; y++) for (let x = x0; x < x0 + 8; x++) out[(n * 3 + c) * h * 8 * w * 8 + y * w * 8 + x] = v;
      }
      return tensor('float32', [B, 3, h * 8, w * 8], out);
    },
  };
}

describe('latent previews', () => {
  it('the fit recovers a linear decoder (weights and bias within 1e-3)', async () => {
    const W = Float32Array.from({ length: 3 * C }, (_, i) => Math.cos(i * 1.7) * 0.2);
    const b = Float32Array.from([0.1, -0.2, 0.05]);
    const p = await fitLatentPreview(linearVAE(W, b), 8);
    assert.equal(p.channels, C);
    for (let i = 0; i < W.length; i++) assert.ok(Math.abs(p.weights[i]! - W[i]!) < 1e-3, `weight ${i}: ${p.weights[i]} vs ${W[i]}`);
    for (let c = 0; c < 3; c++) assert.ok(Math.abs(p.bias[c]! - b[c]!) < 1e-3, `bias ${c}: ${p.bias[c]} vs ${b[c]}`);
  });

  it('projects each latent cell to one pixel: rgb = bias + weights x latent, mapped from [-1, 1] to 0..255', () => {
    const weights = new Float32Array(3 * C);
    weights[0] = 1; // red = channel 0
    weights[C + 1] = -1; // green = -channel 1
    const p = { channels: C, weights, bias: Float32Array.from([0, 0, 0.5]) };
    const latent = new Float32Array(2 * C * 2);
    latent[0] = 1; // batch 0, channel 0, cell 0
    latent[2 + 1] = 0.5; // batch 0, channel 1, cell 1
    const [a, b2] = projectLatent(tensor('float32', [2, C, 1, 2], latent), p);
    assert.deepEqual([a!.width, a!.height, b2!.width], [2, 1, 2]);
    assert.deepEqual([...a!.data], [255, 128, 191, 128, 64, 191]);
    assert.deepEqual([...b2!.data], [128, 128, 191, 128, 128, 191]);
  });

  it('StepInfo.preview() gives one image per batch item at latent resolution, the same for the same latent', async () => {
    const task = await TextToImage.fromPreset('tiny-random', { ...TINY_OPTIONS, imageShape: { width: 96, height: 64 } });
    try {
      const previews: { step: number; sizes: string[]; bytes: number[] }[] = [];
      const pending: Promise<void>[] = [];
      await task.generate(['a', 'b'], {
        numSteps: 3, seed: 1, onStep: (s) => {
          assert.equal(typeof s.preview, 'function');
          pending.push(s.preview!().then((imgs) => { previews.push({ step: s.step, sizes: imgs.map((i) => `${i.width}x${i.height}`), bytes: [...imgs[0]!.data] }); }));
        },
      });
      await Promise.all(pending);
      assert.equal(previews.length, 3);
      for (const p of previews) assert.deepEqual(p.sizes, ['12x8', '12x8']);
      const again = await task.backbone.previewLatent(tensor('float32', [1, C, 8, 12], new Float32Array(C * 96)));
      const zero = await task.backbone.previewLatent(tensor('float32', [1, C, 8, 12], new Float32Array(C * 96)));
      assert.deepEqual([...again[0]!.data], [...zero[0]!.data]);
    } finally {
      await task.dispose();
    }
  });
});
