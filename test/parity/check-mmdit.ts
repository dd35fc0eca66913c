import type { Tensor } from '../../src/core/tensor.js';
import { MMDiT, denoisedFromVelocity } from '../../src/models/mmdit.js';
import { type Check, checkFixtureModel, type FixtureConfig, compare, compareOutputs, loadCase, toleranceOf } from './lib.js';

/** The timestep features are checked at 1e-4 absolute (fixtures README, "Tolerances"). */
const T_FREQ_TOLERANCE = { atol: 1e-4, rtol: 0 };

export function checkMMDiT(dir: string): Promise<Check[]> {
  return checkFixtureModel(dir, (store) => MMDiT.load(store, { threads: 1, debug: true }), checkMMDiTCases);
}

/** The cases of an mmdit fixture (`dir`, its parsed `config`) on a model loaded with `debug: true`. */
export async function checkMMDiTCases(dir: string, config: FixtureConfig, model: MMDiT): Promise<Check[]> {
  const tol = toleranceOf(config);
  const checks: Check[] = [];
  for (const c of config.cases) {
    const t = loadCase(dir, c);
    const x = t['input.x'] as Tensor<'float32'>;
    const ts = t['input.t'] as Tensor<'float32'>;
    const out = await model.forwardDebug(x, ts, t['input.y']!, t['input.context']!);
    const actual: Record<string, Tensor> = {
      'output.model_output': out.model_output,
      'output.denoised': denoisedFromVelocity(x, out.model_output, ts),
      'debug.c': out.c,
      'debug.x_embedded': out.x_embedded,
      'debug.pos_embed_cropped': out.pos_embed_cropped,
    };
    checks.push(...compareOutputs(c.name, actual, t, tol, { debug: true }));
    if (t['debug.t_freq']) checks.push(compare(`${c.name}:debug.t_freq`, out.t_freq, t['debug.t_freq'], T_FREQ_TOLERANCE));
  }
  return checks;
}
