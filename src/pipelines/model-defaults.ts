/**
 * The sampling defaults each model gets when the caller gives none (README, "SD3.5"). The variant comes from
 * the checkpoint's keys; SD3.5 Large and Large Turbo have the same keys, so Turbo is told by its file or
 * repository name, as Stability's reference does.
 */
import type { SkipLayerGuidance } from '../sampler/skip-layer-guidance.js';
import type { SamplerName } from '../sampler/steppers.js';

export interface SamplingDefaults {
  /** Steps for every task; undefined: the task's own (SD3 Medium: KerasHub's 28 text-to-image, 50 otherwise). */
  readonly numSteps?: number;
  /** undefined: the task's own (SD3 Medium: KerasHub's 7.0). */
  readonly guidanceScale?: number;
  readonly sampler: SamplerName;
  /** Skip-layer guidance is always opt-in (as in Stability's reference, diffusers and stable-diffusion.cpp). */
  readonly skipLayerGuidance?: SkipLayerGuidance;
  /** Where the numbers come from. */
  readonly source: string;
}

const SD3_MEDIUM: SamplingDefaults = { sampler: 'euler', source: "KerasHub's SD3 defaults (28 steps text-to-image, 50 image-to-image and inpainting, guidance 7)" };
const SD35: SamplingDefaults = {
  numSteps: 40, guidanceScale: 4.5, sampler: 'euler',
  source: "SD3.5's own settings: 40 steps, guidance 4.5 (Stability's reference for Large, KerasHub's converter check and the diffusers model card for Medium and Large); Euler as KerasHub and diffusers",
};
const TURBO: SamplingDefaults = {
  numSteps: 4, guidanceScale: 1.0, sampler: 'euler',
  source: "Large Turbo's own settings: 4 steps, no guidance (one pass), Euler (Stability's reference, KerasHub's converter check, the diffusers Space)",
};

/** The sampling defaults of a model, from its variant (keys) and its file or repository name (Turbo). */
export function samplingDefaults(variant: string, name: string): SamplingDefaults {
  if (variant === 'sd3.5_large' && /turbo/i.test(name)) return TURBO;
  if (variant === 'sd3.5_medium' || variant === 'sd3.5_large') return SD35;
  return SD3_MEDIUM;
}
