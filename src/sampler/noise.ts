/**
 * Seeded Gaussian noise. Each image of a batch draws from its own generator seeded by its own seed, so image i
 * is reproducible alone whatever the batch. The stream is xoroshiro128+ (pure-rand) through Box-Muller; it is
 * our own (not torch's or Keras's: neither is reproducible from the other anyway).
 */
import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import { SD3Error } from '../core/errors.js';

export function checkSeed(seed: unknown, what = 'seed'): number {
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new SD3Error(`${what} must be an integer in [0, 4294967295], got ${String(seed)}`);
  }
  return seed;
}

/** `count` standard-normal float32 values from one seed. */
export function gaussian(count: number, seed: number): Float32Array {
  const rng = xoroshiro128plus(checkSeed(seed) | 0);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i += 2) {
    const u1 = 1 - uniformFloat64(rng); // (0, 1]
    const u2 = uniformFloat64(rng);
    const r = Math.sqrt(-2 * Math.log(u1));
    out[i] = r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < count) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  return out;
}

/** Noise for a batch: image i from seeds[i], each `perImage` values, concatenated. */
export function batchNoise(seeds: readonly number[], perImage: number): Float32Array {
  const out = new Float32Array(seeds.length * perImage);
  seeds.forEach((s, i) => out.set(gaussian(perImage, s), i * perImage));
  return out;
}

/** A random seed when the user gives none. */
export function randomSeed(): number {
  return Math.floor(Math.random() * 0x100000000);
}
