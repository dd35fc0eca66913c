/** Parity of the T5 encoder (t5xxl fixture): last hidden state, per-block stream, position bias and buckets. */
import type { Tensor } from '../../src/core/tensor.js';
import { T5Encoder, relativePositionBuckets, t5ConfigFromHF } from '../../src/models/t5.js';
import { type Check, checkFixtureModel, type FixtureConfig, compareOutputs, exact, loadCase, toleranceOf } from './lib.js';

export function checkT5(dir: string): Promise<Check[]> {
  return checkFixtureModel(dir, (store, cfg) => T5Encoder.load(store, t5ConfigFromHF(cfg.config ?? {}), { threads: 1, debug: true, ...(cfg.component ? { label: cfg.component } : {}) }), checkT5Cases);
}

/** The cases of a t5xxl fixture (`dir`, its parsed `cfg`) on an encoder loaded with `debug: true`. */
export async function checkT5Cases(dir: string, cfg: FixtureConfig, encoder: T5Encoder): Promise<Check[]> {
  const tol = toleranceOf(cfg);
  const checks: Check[] = [];
  for (const c of cfg.cases) {
    const t = loadCase(dir, c);
    const ids = t['input.input_ids'] as Tensor<'int64'>;
    const out = await encoder.encodeDetailed(ids);
    const expectedBuckets = t['debug.relative_position_bucket'];
    if (expectedBuckets) {
      const { relativeAttentionNumBuckets: n, relativeAttentionMaxDistance: d } = encoder.config;
      const got = relativePositionBuckets(ids.shape[1]!, n, d).data;
      const want = expectedBuckets.data as ArrayLike<number | bigint>;
      const bad = got.findIndex((b, i) => b !== Number(want[i]));
      checks.push(exact(`${c.name}:debug.relative_position_bucket`, got.length === want.length && bad < 0, bad < 0 ? '' : `first mismatch at ${bad}`));
    }
    checks.push(...compareOutputs(c.name, {
      'output.last_hidden_state': out.lastHidden,
      'debug.hidden_states': out.hiddenStates,
      'debug.position_bias': out.positionBias,
    }, t, tol, { debug: true }));
  }
  return checks;
}
