/**
 * Shared fixtures for the generation tests: tasks on the `tiny-random` preset (in-memory weights, one thread),
 * deterministic test pictures, and assertions on images and SD3Errors.
 */
import assert from 'node:assert/strict';
import { SD3Error } from '../../src/core/errors.js';
import { RGBImage } from '../../src/image/image.js';

/** Small enough to keep every run in milliseconds, big enough for an 8x8 latent. */
export const TINY = { width: 64, height: 64 } as const;
export const TINY_OPTIONS = { imageShape: TINY, threads: 1 } as const;

/** A deterministic colour picture (gradients plus a square), not symmetric in any axis. */
export function testImage(width: number, height: number, salt = 0): RGBImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const p = (y * width + x) * 3;
      const inside = x > width / 4 && x < width / 2 && y > height / 3 && y < (3 * height) / 4;
      data[p] = Math.round((255 * x) / (width - 1));
      data[p + 1] = Math.round((255 * y) / (height - 1));
      data[p + 2] = inside ? 255 - salt : (x * 7 + y * 13 + salt) % 256;
    }
  }
  return new RGBImage(width, height, data);
}

/** A mask image: white (repaint) where `repaint(x, y)`, black elsewhere. */
export function maskImage(width: number, height: number, repaint: (x: number, y: number) => boolean): RGBImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) if (repaint(x, y)) data.fill(255, (y * width + x) * 3, (y * width + x) * 3 + 3);
  return new RGBImage(width, height, data);
}

/** Same size and byte-identical pixels (a clear message instead of a 12k-element array diff). */
export function assertSamePixels(actual: RGBImage, expected: RGBImage, what = 'images'): void {
  assert.equal(`${actual.width}x${actual.height}`, `${expected.width}x${expected.height}`, `${what}: sizes differ`);
  const diff = countDiff(actual.data, expected.data);
  assert.equal(diff, 0, `${what}: ${diff} of ${actual.data.length} bytes differ`);
}

export function assertDifferentPixels(a: RGBImage, b: RGBImage, what = 'images'): void {
  assert.ok(countDiff(a.data, b.data) > 0, `${what}: expected different pixels, got identical ones`);
}

/**
 * Inpainting with the left half of the image masked, checked in latent terms as KerasHub's blend defines it:
 * every latent of the right half equals the image's latent bit for bit, every latent of the left half differs.
 */
export function assertLeftHalfRepainted(last: ArrayLike<number>, init: ArrayLike<number>, latentWidth: number): void {
  let keptOutside = 0;
  let changedInside = 0;
  for (let i = 0; i < last.length; i++) {
    const x = i % latentWidth;
    if (x >= latentWidth / 2 && last[i] === init[i]) keptOutside++;
    if (x < latentWidth / 2 && last[i] !== init[i]) changedInside++;
  }
  assert.equal(keptOutside, last.length / 2, 'latents outside the mask must be the image latents');
  assert.equal(changedInside, last.length / 2, 'latents inside the mask must be repainted');
}

export function countDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'lengths differ');
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

/** Rejects with an SD3Error (not a TypeError or a crash deeper down) whose message matches `pattern`. */
export async function rejectsWithSD3Error(run: () => Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(run, (e: unknown) => {
    assert.ok(e instanceof SD3Error, `expected an SD3Error, got ${(e as Error)?.name}: ${(e as Error)?.message}`);
    assert.match(e.message, pattern);
    return true;
  });
}

export function parameters(img: RGBImage): Record<string, unknown> {
  const p = img.metadata['sd3-ts'];
  assert.ok(p !== undefined, 'image has no sd3-ts (JSON parameters) metadata');
  return JSON.parse(p) as Record<string, unknown>;
}
