/**
 * Flow-matching Euler sampling for SD3 (rectified flow): x_t = sigma * noise + (1 - sigma) * x_0, the model
 * predicts the velocity v = noise - x_0, and one Euler step moves x by (sigma_next - sigma) * v.
 * Pure numbers: no runtime, no tensors beyond Float32Arrays.
 */
import { SD3Error } from '../core/errors.js';

export const DEFAULT_SHIFT = 3.0;
export const NUM_TRAIN_TIMESTEPS = 1000;

/** The shifted sigma of a training timestep t in [0, 1000]. */
export function shiftedSigma(t: number, shift: number): number {
  const s = t / NUM_TRAIN_TIMESTEPS;
  return (shift * s) / (1 + (shift - 1) * s);
}

/**
 * The sigmas walked by an N-step run, with a final 0 appended (length N + 1).
 * Timesteps run evenly from 1000 * sigma(1000) down to 1000 * sigma(1), and each is shifted again, so the
 * low end is shifted twice, as in the reference and KerasHub. Values are rounded to float32 as they are there.
 */
export function sigmaSchedule(steps: number, shift = DEFAULT_SHIFT): Float32Array {
  if (!Number.isInteger(steps) || steps < 1) throw new SD3Error(`numSteps must be an integer >= 1, got ${steps}`);
  if (!(shift > 0)) throw new SD3Error(`shift must be a positive number, got ${shift}`);
  const hi = NUM_TRAIN_TIMESTEPS * Math.fround(shiftedSigma(NUM_TRAIN_TIMESTEPS, shift));
  const lo = NUM_TRAIN_TIMESTEPS * Math.fround(shiftedSigma(1, shift));
  const sigmas = new Float32Array(steps + 1);
  for (let i = 0; i < steps; i++) {
    const t = steps === 1 ? hi : hi + ((lo - hi) * i) / (steps - 1);
    sigmas[i] = shiftedSigma(Math.fround(t), shift);
  }
  sigmas[steps] = 0;
  return sigmas;
}

/** The timestep the model takes for a sigma. */
export function timestepOf(sigma: number): number {
  return Math.fround(sigma * NUM_TRAIN_TIMESTEPS);
}

/**
 * First step of an image-to-image run: int(steps * (1 - strength)), as KerasHub and the reference compute it
 * (in float64, truncated: 10 steps at 0.8 start at 1). diffusers uses int(steps - steps * strength), which can
 * start one step later (10 steps at 0.8 -> 2).
 */
export function startIndex(steps: number, strength: number): number {
  if (!(strength >= 0 && strength <= 1)) throw new SD3Error(`strength must be in [0, 1], got ${strength}`);
  return Math.trunc(steps * (1 - strength));
}

/** x = sigma * noise + (1 - sigma) * latent (a new array). */
export function addNoise(latent: Float32Array, noise: Float32Array, sigma: number): Float32Array {
  if (latent.length !== noise.length) throw new SD3Error(`noise has ${noise.length} values, latent ${latent.length}`);
  const out = new Float32Array(latent.length);
  for (let i = 0; i < out.length; i++) out[i] = sigma * noise[i]! + (1 - sigma) * latent[i]!;
  return out;
}

/** Classifier-free guidance on velocities: neg + scale * (pos - neg). */
export function guide(pos: Float32Array, neg: Float32Array, scale: number): Float32Array {
  const out = new Float32Array(pos.length);
  for (let i = 0; i < out.length; i++) out[i] = neg[i]! + scale * (pos[i]! - neg[i]!);
  return out;
}

/** One Euler step in place: x += (sigmaNext - sigma) * v. */
export function eulerStep(x: Float32Array, v: Float32Array, sigma: number, sigmaNext: number): Float32Array {
  const dt = sigmaNext - sigma;
  for (let i = 0; i < x.length; i++) x[i] = x[i]! + dt * v[i]!;
  return x;
}
