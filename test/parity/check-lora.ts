/**
 * LoRA fixtures (fixtures README "LoRA fixtures"): each case's LoRA files applied to the tiny SD3 MMDiT of
 * `../mmdit`, twice: (1) merged into the weights by the merge rule (src/lora/merge.ts), checked tensor by
 * tensor against `output.merged_checksums` and run as a plain MMDiT; (2) as the low-rank graph branches that
 * generation uses (LoraManager feeds on one session built once). Both outputs are compared with
 * `output.model_output`. Negative files must be refused with a message naming one of the expected keys, leaving
 * the previously selected LoRAs applied.
 */
import * as path from 'node:path';
import { SD3Error } from '../../src/core/errors.js';
import { SafetensorsFile } from '../../src/core/safetensors.js';
import type { Tensor } from '../../src/core/tensor.js';
import { SafetensorsStore, readWeightFloat32, withPrefix } from '../../src/core/weights.js';
import { LoraManager, mergedWeights, overlayStore, readLoraFile } from '../../src/lora/index.js';
import { MMDiT } from '../../src/models/mmdit.js';
import { type Check, type FixtureCase, compare, exact, loadCase, readJson, toleranceOf } from './lib.js';

interface Checksum { sum: number; abs_sum: number; row_moment: number; col_moment: number; delta_abs_sum: number }
interface LoraCase extends FixtureCase {
  name: string;
  file: string;
  loras: { file: string; scale: number }[];
  'output.merged_checksums': Record<string, Checksum>;
}
interface LoraConfig {
  base_weights: { file: string; prefix: string };
  cases: LoraCase[];
  negative_cases: { name: string; file: string; message_names_one_of: string[] }[];
  tolerance: { atol: number; rtol: number; loose?: { atol: number; rtol: number }; merged_checksums: { rtol_of_abs_sum: number; atol: number } };
}

/** The five float64 numbers of a merged tensor M viewed as R x C (fixtures README). */
function checksum(m: Float32Array, base: Float32Array, shape: readonly number[]): Checksum {
  const rows = shape[0] ?? 1;
  const cols = m.length / rows;
  const c: Checksum = { sum: 0, abs_sum: 0, row_moment: 0, col_moment: 0, delta_abs_sum: 0 };
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const v = m[i * cols + j]!;
      c.sum += v;
      c.abs_sum += Math.abs(v);
      c.row_moment += v * (i + 1) / rows;
      c.col_moment += v * (j + 1) / cols;
      c.delta_abs_sum += Math.abs(v - base[i * cols + j]!);
    }
  }
  return c;
}

export async function checkLora(dir: string): Promise<Check[]> {
  const config = readJson<LoraConfig>(path.join(dir, 'config.json'));
  const tol = toleranceOf(config);
  const ct = config.tolerance.merged_checksums;
  const file = SafetensorsFile.open(path.join(dir, config.base_weights.file));
  const store = new SafetensorsStore([file], withPrefix(config.base_weights.prefix));
  const prefix = config.base_weights.prefix;
  const checks: Check[] = [];
  const manager = new LoraManager(store);
  const branched = await MMDiT.load(store, { threads: 1, loraSlots: manager.allSlotsOf('mmdit') });
  try {
    const run = async (model: MMDiT, t: Record<string, Tensor>) => model.forward(t['input.x']!, t['input.t']!, t['input.y']!, t['input.context']!);
    const specs = (c: LoraCase) => c.loras.map((l) => ({ path: path.join(dir, l.file), scale: l.scale }));
    for (const c of config.cases) {
      const t = loadCase(dir, c);
      const expected = t['output.model_output']!;
      const applied = c.loras.map((l) => ({ file: readLoraFile(path.join(dir, l.file), manager.targets), scale: l.scale }));

      // (1) merged weights: checksums of every changed tensor, then the forward.
      const merged = mergedWeights(store, manager.targets, applied);
      const want = Object.keys(c['output.merged_checksums']).sort();
      const got = [...merged.keys()].map((k) => prefix + k).sort();
      checks.push(exact(`${c.name}:merged tensors`, want.join() === got.join(), `${got.length} changed, expected ${want.length}${want.join() === got.join() ? '' : `: extra [${got.filter((k) => !want.includes(k))}] missing [${want.filter((k) => !got.includes(k))}]`}`));
      let worst = 0;
      let worstName = '';
      for (const [name, m] of merged) {
        const exp = c['output.merged_checksums'][prefix + name];
        if (!exp) continue;
        const base = store.get(name);
        const act = checksum(m.data, readWeightFloat32(base), m.shape);
        for (const k of Object.keys(exp) as (keyof Checksum)[]) {
          const r = Math.abs(act[k] - exp[k]) / (ct.rtol_of_abs_sum * exp.abs_sum + ct.atol);
          if (!(r <= worst)) { worst = Number.isNaN(r) ? Infinity : r; worstName = `${name} ${k}`; }
        }
      }
      checks.push({ name: `${c.name}:output.merged_checksums`, ok: worst <= 1, ratio: worst, detail: `worst ${worstName}` });
      const mergedModel = await MMDiT.load(overlayStore(store, merged), { threads: 1 });
      try {
        checks.push(compare(`${c.name}:merged:output.model_output`, await run(mergedModel, t), expected, tol));
      } finally {
        await mergedModel.dispose();
      }

      // (2) low-rank branches fed to the one session.
      manager.select(specs(c));
      branched.setBranchFeeds(manager.feeds('mmdit', manager.allSlotsOf('mmdit')));
      checks.push(compare(`${c.name}:branches:output.model_output`, await run(branched, t), expected, tol));
      if (t['debug.base_model_output'] && c === config.cases[0]) {
        manager.select([]);
        branched.setBranchFeeds(manager.feeds('mmdit', manager.allSlotsOf('mmdit')));
        checks.push(compare(`${c.name}:branches:debug.base_model_output`, await run(branched, t), t['debug.base_model_output'], tol));
      }
    }

    // Negative files: refused naming a key; the selection before the attempt stays applied.
    const first = config.cases[0]!;
    const firstInputs = loadCase(dir, first);
    for (const n of config.negative_cases ?? []) {
      const neg = path.join(dir, n.file);
      let message = '';
      try {
        readLoraFile(neg, manager.targets);
      } catch (e) {
        message = e instanceof SD3Error ? e.message : `not an SD3Error: ${(e as Error).message}`;
      }
      const named = n.message_names_one_of.some((k) => message.includes(k));
      checks.push(exact(`${n.name}:refused naming a key`, named, message || 'not refused'));
      manager.select(specs(first));
      let refused = false;
      try {
        manager.select([...specs(first), { path: neg, scale: 1 }]);
      } catch (e) {
        refused = e instanceof SD3Error;
      }
      branched.setBranchFeeds(manager.feeds('mmdit', manager.allSlotsOf('mmdit')));
      const after = compare(`${n.name}:after refusal ${first.name}:output.model_output`, await run(branched, firstInputs), firstInputs['output.model_output']!, tol);
      checks.push({ ...after, ok: after.ok && refused, detail: `${refused ? 'set refused' : 'set NOT refused'}; ${after.detail}` });
    }
  } finally {
    await branched.dispose();
    file.close();
  }
  return checks;
}
