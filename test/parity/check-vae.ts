/** VAE parity: encoder posterior and sample, latent format, decoder image and its two uint8 conversions. */
import type { Tensor } from '../../src/core/tensor.js';
import { imageToUint8 } from '../../src/image/pixels.js';
import { fromModelSpace, samplePosterior, toModelSpace, VAE } from '../../src/models/vae.js';
import { type Check, checkFixtureModel, compareOutputs, exact, type FixtureConfig, loadCase, FLOAT16_CODES, modelTolerance, parityDtype } from './lib.js';

/**
 * uint8 images compared code for code, passing when no value is more than `budget` codes off. The conversion
 * itself is checked exactly (budget 0) on the golden float image; our decoded image is within about 3e-6 of
 * that, which moves a value that sits on a code boundary by one (about 1 value in 2,000), so the end-to-end
 * check allows one code (a float16 VAE FLOAT16_CODES) and reports how many values differ.
 */
function compareCodes(name: string, actual: Tensor<'uint8'>, expected: Tensor, budget: number): Check {
  if (actual.shape.join() !== expected.shape.join()) return exact(name, false, `shape [${actual.shape}] != expected [${expected.shape}]`);
  const e = expected.data as Uint8Array;
  let off = 0;
  let worst = 0;
  for (let i = 0; i < e.length; i++) {
    const d = Math.abs(actual.data[i]! - e[i]!);
    if (d > 0) off++;
    worst = Math.max(worst, d);
  }
  const detail = off === 0 ? `exact (${e.length} values)` : `${off} of ${e.length} values differ, by up to ${worst} (allowed ${budget})`;
  return { name, ok: worst <= budget, ratio: budget > 0 ? worst / budget : worst === 0 ? 0 : Infinity, detail };
}

export function checkVAE(dir: string): Promise<Check[]> {
  return checkFixtureModel(dir, (store) => VAE.load(store, { threads: 1, dtype: parityDtype() }), checkVAECases);
}

/** The cases of a vae fixture (`dir`, its parsed `cfg`) on a loaded VAE. */
export async function checkVAECases(dir: string, cfg: FixtureConfig, vae: VAE): Promise<Check[]> {
  const tol = modelTolerance(cfg, 'vae');
  const checks: Check[] = [];
  for (const c of cfg.cases) {
    const t = loadCase(dir, c);
    const actual: Record<string, Tensor> = {};
    if (t['input.image']) {
      const posterior = await vae.encode(t['input.image']);
      actual['output.mean'] = posterior.mean;
      actual['output.logvar'] = posterior.logvar;
      if (t['input.eps']) {
        const sample = samplePosterior(posterior, t['input.eps']);
        actual['output.sample'] = sample;
        actual['output.latent_scaled'] = toModelSpace(sample);
      }
    }
    if (t['input.latent']) {
      actual['output.image'] = await vae.decode(t['input.latent']);
      const image = await vae.decode(fromModelSpace(t['input.latent']));
      actual['output.image_from_model_latent'] = image;
      const codes = { 'output.uint8_kerashub_round': 'round-half-even', 'output.uint8_reference_truncate': 'truncate' } as const;
      for (const [key, rounding] of Object.entries(codes)) {
        const expected = t[key];
        if (!expected) continue;
        checks.push(compareCodes(`${c.name}:${key}`, imageToUint8(image, rounding), expected, vae.dtype === 'float16' ? FLOAT16_CODES : 1));
        const golden = t['output.image_from_model_latent'];
        if (golden) checks.push(compareCodes(`${c.name}:${key} (conversion of the golden image)`, imageToUint8(golden, rounding), expected, 0));
      }
    }
    const floats = Object.fromEntries(Object.entries(t).filter(([k, v]) => k.startsWith('output.') && v.dtype !== 'uint8'));
    checks.push(...compareOutputs(c.name, actual, floats, tol));
  }
  return checks;
}
