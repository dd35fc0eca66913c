/**
 * Skip-layer guidance (SLG), as Stability's reference `SkipLayerCFGDenoiser` does it: besides the CFG pass, a
 * third pass on the positive prompt with some joint blocks bypassed (both streams), added as
 * scale * (pos - skipped). It runs on denoiser call k (0-based, one call per step, counted from the first step
 * this run takes) only when k > start * S and k < end * S, strictly, with S the full step count (also in
 * image-to-image, where fewer calls happen). stable-diffusion.cpp's window fires one step earlier; this is the
 * reference's. Pure numbers.
 */
import { SD3Error } from '../core/errors.js';

export interface SkipLayerGuidance {
  /** Joint blocks bypassed in the third pass (SD3.5 Medium: [7, 8, 9]). */
  readonly layers: readonly number[];
  /** Weight of scale * (pos - skipped); 0 turns the third pass off. */
  readonly scale: number;
  /** Window, as fractions of the step count: active for start * S < k < end * S. */
  readonly start: number;
  readonly end: number;
}

/** Stability's SD3.5 Medium setting (`sd3_infer.py` CONFIGS, opt-in there too). */
export const SD3_5_MEDIUM_SLG: SkipLayerGuidance = { layers: [7, 8, 9], scale: 2.5, start: 0.01, end: 0.2 };

/** Checks the option's types and ranges (the layers against the model when it runs); returns it. */
export function checkSkipLayerGuidance(v: unknown): SkipLayerGuidance {
  const o = v as Partial<SkipLayerGuidance> | null;
  const bad = (msg: string): never => { throw new SD3Error(`skipLayerGuidance: ${msg}`); };
  if (o === null || typeof o !== 'object' || Array.isArray(o)) bad(`expected { layers, scale, start, end }, got ${JSON.stringify(v)}`);
  for (const k of ['scale', 'start', 'end'] as const) {
    if (typeof o![k] !== 'number' || !Number.isFinite(o![k])) bad(`${k} must be a finite number, got ${JSON.stringify(o![k])}`);
  }
  // An empty list only with scale 0 (guidance off).
  if (!Array.isArray(o!.layers) || (o!.layers.length === 0 && o!.scale! > 0) || !o!.layers.every((l) => Number.isInteger(l) && l >= 0)) {
    bad(`layers must be a non-empty list of joint block indices (integers >= 0), got ${JSON.stringify(o!.layers)}`);
  }
  if (o!.scale! < 0) bad(`scale must be >= 0, got ${o!.scale}`);
  if (!(o!.start! >= 0 && o!.start! <= o!.end! && o!.end! <= 1)) bad(`start and end must satisfy 0 <= start <= end <= 1, got start ${o!.start}, end ${o!.end}`);
  return { layers: [...o!.layers!], scale: o!.scale!, start: o!.start!, end: o!.end! };
}

/** Whether denoiser call `k` (0-based in this run) of an S-step schedule has the skip-layer pass. */
export function skipLayerGuidanceActive(slg: SkipLayerGuidance, k: number, steps: number): boolean {
  return slg.scale > 0 && k > slg.start * steps && k < slg.end * steps;
}
