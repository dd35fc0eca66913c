import type { Tensor } from '../../src/core/tensor.js';
import { MMDiT, denoisedFromVelocity, describeMMDiT, mmditVariant } from '../../src/models/mmdit.js';
import { type Check, checkFixtureModel, type FixtureConfig, compare, compareOutputs, exact, loadCase, modelTolerance, parityDtype } from './lib.js';

/** The timestep features are checked at 1e-4 absolute (fixtures README, "Tolerances"). */
const T_FREQ_TOLERANCE = { atol: 1e-4, rtol: 0 };

export function checkMMDiT(dir: string): Promise<Check[]> {
  return checkFixtureModel(dir, (store) => MMDiT.load(store, { threads: 1, debug: true, dtype: parityDtype() }), checkMMDiTCases);
}

/** The cases of an mmdit fixture (`dir`, its parsed `config`) on a model loaded with `debug: true`. */
export async function checkMMDiTCases(dir: string, config: FixtureConfig, model: MMDiT): Promise<Check[]> {
  const tol = modelTolerance(config, 'mmdit');
  const checks: Check[] = [];
  // A fixture that names its variant (config.variant) must be recognised as that variant from its keys alone.
  const variant = (config as { variant?: unknown }).variant;
  if (typeof variant === 'string') {
    checks.push(exact('variant', mmditVariant(model.config) === variant, `expected ${variant}, read ${describeMMDiT(model.config)}`));
  }
  for (const c of config.cases) {
    const t = loadCase(dir, c);
    const x = t['input.x'] as Tensor<'float32'>;
    const ts = t['input.t'] as Tensor<'float32'>;
    // skip_layers: the joint blocks this case bypasses (the reference's MMDiTX.forward(..., skip_layers)).
    const skip = Array.isArray(c.skip_layers) ? { layers: c.skip_layers as number[] } : {};
    const out = await model.forwardDebug(x, ts, t['input.y']!, t['input.context']!, skip);
    const actual: Record<string, Tensor> = {
      'output.model_output': out.model_output,
      'output.denoised': denoisedFromVelocity(x, out.model_output, ts),
      'debug.c': out.c,
      'debug.x_embedded': out.x_embedded,
      'debug.pos_embed_cropped': out.pos_embed_cropped,
      'debug.x_after_block': out.x_after_block,
      ...(out.context_after_block ? { 'debug.context_after_block': out.context_after_block } : {}),
    };
    checks.push(...compareOutputs(c.name, actual, t, tol, { debug: true }));
    if (t['debug.t_freq']) checks.push(compare(`${c.name}:debug.t_freq`, out.t_freq, t['debug.t_freq'], T_FREQ_TOLERANCE));
  }
  return checks;
}
