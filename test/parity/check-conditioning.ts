/** Parity of SD3's conditioning glue (conditioning fixture): context with and without T5, pooled y; exact. */
import * as path from 'node:path';
import type { Tensor } from '../../src/core/tensor.js';
import { sd3Conditioning } from '../../src/models/conditioning.js';
import { type Check, type FixtureCase, compareOutputs, loadCase, readJson, toleranceOf } from './lib.js';

export async function checkConditioning(dir: string): Promise<Check[]> {
  const cfg = readJson(path.join(dir, 'config.json'));
  const tol = toleranceOf(cfg, { atol: 0, rtol: 0 });
  const checks: Check[] = [];
  for (const c of cfg.cases as FixtureCase[]) {
    const t = loadCase(dir, c);
    const need = (k: string): Tensor => {
      const v = t[k];
      if (!v) throw new Error(`${c.file}: no tensor "${k}"`);
      return v;
    };
    const clipL = { penultimate: need('input.clip_l_penultimate'), pooled: need('input.clip_l_pooled') };
    const clipG = { penultimate: need('input.clip_g_penultimate'), pooledProjected: need('input.clip_g_pooled') };
    const t5 = need('input.t5_last_hidden_state');
    const width = cfg.widths?.t5 ?? t5.shape[2];
    const withT5 = sd3Conditioning({ clipL, clipG, t5 });
    const withoutT5 = sd3Conditioning({ clipL, clipG }, { contextWidth: width });
    checks.push(...compareOutputs(c.name, {
      'output.context': withT5.context,
      'output.y': withT5.y,
      'output.context_without_t5': withoutT5.context,
    }, t, tol));
  }
  return checks;
}
