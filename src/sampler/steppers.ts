/**
 * The samplers the denoising loop can walk the sigmas with, as Stability's reference (`sd3_impls.py`) computes
 * them: flow-matching Euler and DPM-Solver++(2M). A stepper is made for one run (DPM++ keeps the previous
 * prediction) and moves x from sigmas[i] to sigmas[i + 1] given the guided velocity there.
 * Pure numbers: Float32Arrays in, Float32Arrays out.
 */
import { SD3Error } from '../core/errors.js';
import { eulerStep } from './flow-match.js';

export const SAMPLERS = ['euler', 'dpmpp_2m'] as const;
export type SamplerName = (typeof SAMPLERS)[number];

export function checkSampler(v: unknown, what = 'sampler'): SamplerName {
  if (!(SAMPLERS as readonly unknown[]).includes(v)) throw new SD3Error(`${what} must be one of ${SAMPLERS.map((s) => `'${s}'`).join(', ')}; got ${JSON.stringify(v)}`);
  return v as SamplerName;
}

export interface Stepper {
  /** x at sigmas[i] (updated in place or replaced) and the guided velocity v there -> x at sigmas[i + 1]. */
  step(x: Float32Array, v: Float32Array, i: number): Float32Array;
}

/** A fresh stepper for one run over `sigmas` (the full schedule; the run may start at any index). */
export function makeStepper(name: SamplerName, sigmas: Float32Array): Stepper {
  switch (name) {
    case 'euler': return { step: (x, v, i) => eulerStep(x, v, sigmas[i]!, sigmas[i + 1]!) };
    case 'dpmpp_2m': return new DPMpp2M(sigmas);
  }
}

const f = Math.fround;
/** The reference's t = -log(sigma), on float32 values. */
const lambda = (sigma: number) => f(-Math.log(sigma));

/**
 * DPM-Solver++(2M) (`sample_dpmpp_2m`) on the denoised prediction D = x - sigma * v. With t = -log(sigma) and
 * h = t_{i+1} - t_i: the first step of a run, and any step to sigma 0, is first order,
 * x <- (sigma_{i+1} / sigma_i) x - expm1(-h) D (to sigma 0 exactly x = D, without taking log 0); later steps use
 * D' = (1 + 1/(2r)) D - 1/(2r) D_prev with r = (t_i - t_{i-1}) / h. The scalars are rounded to float32 as the
 * reference computes them on float32 tensors.
 */
class DPMpp2M implements Stepper {
  private previous: Float32Array | undefined;
  constructor(private readonly sigmas: Float32Array) {}

  step(x: Float32Array, v: Float32Array, i: number): Float32Array {
    const sigma = this.sigmas[i]!;
    const next = this.sigmas[i + 1]!;
    const denoised = new Float32Array(x.length);
    for (let k = 0; k < x.length; k++) denoised[k] = x[k]! - f(v[k]! * sigma);
    const old = this.previous;
    this.previous = denoised;
    if (next === 0) return Float32Array.from(denoised);
    const t = lambda(sigma);
    const tNext = lambda(next);
    const h = f(tNext - t);
    const ratio = f(f(Math.exp(-tNext)) / f(Math.exp(-t)));
    const e = f(Math.expm1(-h)); // the reference's (-h).expm1(), negative
    const out = new Float32Array(x.length);
    if (!old) {
      for (let k = 0; k < x.length; k++) out[k] = f(ratio * x[k]!) - f(e * denoised[k]!);
      return out;
    }
    const r = f(f(t - lambda(this.sigmas[i - 1]!)) / h);
    const b = f(1 / f(2 * r));
    const a = f(1 + b);
    for (let k = 0; k < x.length; k++) {
      const d = f(f(a * denoised[k]!) - f(b * old[k]!));
      out[k] = f(ratio * x[k]!) - f(e * d);
    }
    return out;
  }
}
