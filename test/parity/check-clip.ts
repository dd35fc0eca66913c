/** Parity of the CLIP text towers (clip_l and clip_g fixtures): every output, the debug stream, the pooled index. */
import type { Tensor } from '../../src/core/tensor.js';
import { CLIPTextEncoder, type CLIPTextOutput, clipConfigFromHF } from '../../src/models/clip.js';
import { type Check, checkFixtureModel, type FixtureConfig, compareOutputs, exact, loadCase, toleranceOf } from './lib.js';

/**
 * Whether the encoder pooled each row at the golden end-token index: its pooled row must be bit-identical to its
 * last hidden state at that index (the graph picks the position itself, by ArgMax of the ids).
 */
function pooledAt(out: CLIPTextOutput, eos: readonly bigint[]): boolean {
  const [b, l, w] = out.last.shape as [number, number, number];
  for (let r = 0; r < b; r++) {
    const at = Number(eos[r]!);
    if (!(at >= 0 && at < l)) return false;
    for (let k = 0; k < w; k++) if (!Object.is(out.pooled.data[r * w + k], out.last.data[(r * l + at) * w + k])) return false;
  }
  return true;
}

export function checkCLIP(dir: string): Promise<Check[]> {
  return checkFixtureModel(dir, (store, cfg) => CLIPTextEncoder.load(store, clipConfigFromHF(cfg.config ?? {}), { threads: 1, debug: true, ...(cfg.component ? { label: cfg.component } : {}) }), checkCLIPCases);
}

export interface CLIPCaseOptions {
  /** Golden outputs that do not apply to this encoder (not compared). */
  readonly skip?: readonly string[];
  /** Further checks per case on the encoder's outputs. */
  readonly extra?: (caseName: string, out: CLIPTextOutput) => Check[];
}

/** The cases of a clip_l / clip_g fixture (`dir`, its parsed `cfg`) on an encoder loaded with `debug: true`. */
export async function checkCLIPCases(dir: string, cfg: FixtureConfig, encoder: CLIPTextEncoder, opts: CLIPCaseOptions = {}): Promise<Check[]> {
  const tol = toleranceOf(cfg);
  const checks: Check[] = [];
  for (const c of cfg.cases) {
    const t = loadCase(dir, c);
    const ids = t['input.input_ids'] as Tensor<'int64'>;
    const out = await encoder.encode(ids);
    const eos = t['input.eos_index'];
    if (eos) checks.push(exact(`${c.name}:eos_index`, pooledAt(out, [...(eos.data as BigInt64Array)]), 'pooled row = last hidden state at the golden eos_index'));
    const expected = Object.fromEntries(Object.entries(t).filter(([k]) => !opts.skip?.includes(k)));
    checks.push(...compareOutputs(c.name, {
      'output.penultimate_hidden_state': out.penultimate,
      'output.last_hidden_state': out.last,
      'output.pooled': out.pooled,
      'output.pooled_projected': out.pooledProjected,
      'debug.hidden_states': out.hiddenStates,
    }, expected, tol, { debug: true }));
    if (opts.extra) checks.push(...opts.extra(c.name, out));
  }
  return checks;
}
