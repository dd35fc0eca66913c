/** Parity of the T5 encoder (t5xxl fixture): last hidden state, per-block stream, position bias and buckets. */
import * as path from 'node:path';
import { SafetensorsFile } from '../../src/core/safetensors.js';
import type { Tensor } from '../../src/core/tensor.js';
import { SafetensorsStore, withPrefix } from '../../src/core/weights.js';
import { T5Encoder, relativePositionBuckets, t5ConfigFromHF } from '../../src/models/t5.js';
import { type Check, type FixtureCase, compareOutputs, exact, loadCase, readJson, toleranceOf } from './lib.js';

export async function checkT5(dir: string): Promise<Check[]> {
  const cfg = readJson(path.join(dir, 'config.json'));
  const file = SafetensorsFile.open(path.join(dir, cfg.weights_file ?? 'weights.safetensors'));
  const store = new SafetensorsStore([file], withPrefix(cfg.weights_prefix ?? ''));
  const tol = toleranceOf(cfg);
  const checks: Check[] = [];
  const encoder = await T5Encoder.load(store, t5ConfigFromHF(cfg.config ?? {}), { threads: 1, debug: true, label: cfg.component });
  try {
    for (const c of cfg.cases as FixtureCase[]) {
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
  } finally {
    await encoder.dispose();
    file.close();
  }
  return checks;
}
