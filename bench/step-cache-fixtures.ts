/**
 * Step caching on the tiny parity fixtures: the sampler cases of 10 steps or more (SD3 DPM++ 2M, SD3.5 Euler and
 * DPM++ 2M with skip-layer guidance) run uncached and at each threshold on the tiny MMDiTs; prints the share of
 * steps that reused the model's output and the final latent's difference from the uncached run and from the
 * fixture's reference latent (Stability's sampler). Numbers, not pass/fail.
 *
 *   npm run bench:step-cache:fixtures [-- --thresholds 0.1,0.2,0.3]
 */
import { relativeErrors } from './relative-error.js';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { SafetensorsFile } from '../src/core/safetensors.js';
import type { Tensor } from '../src/core/tensor.js';
import { SafetensorsStore, withPrefix } from '../src/core/weights.js';
import { MMDiT } from '../src/models/mmdit.js';
import { sampleLatents } from '../src/pipelines/denoise.js';
import { sigmaSchedule, startIndex } from '../src/sampler/flow-match.js';
import { checkSkipLayerGuidance } from '../src/sampler/skip-layer-guidance.js';
import { checkSampler } from '../src/sampler/steppers.js';
import { loadCase, readJson } from '../test/parity/lib.js';

const { values: v } = parseArgs({ options: { thresholds: { type: 'string', default: '0.1,0.2,0.3' } } });
const thresholds = v.thresholds!.split(',').map(Number);
const root = new URL('../test/fixtures/', import.meta.url).pathname;

function diff(a: Float32Array, b: Float32Array): string {
  const e = relativeErrors(a, b);
  return `max ${e.maxRel.toExponential(2)}, RMS ${e.rmsRel.toExponential(2)}`;
}

const f32 = (t: Tensor | undefined) => t as Tensor<'float32'>;
for (const folder of ['sampler_sd3_dpmpp', 'sampler_sd35']) {
  const dir = path.join(root, folder);
  const config = readJson(path.join(dir, 'config.json'));
  const mcfg = readJson(path.join(dir, config.mmdit.config_file));
  const file = SafetensorsFile.open(path.join(dir, config.mmdit.weights_file));
  const mmdit = await MMDiT.load(new SafetensorsStore([file], withPrefix(mcfg.weights_prefix ?? '')), { threads: 1 });
  for (const c of config.cases) {
    const p = c.params;
    const start = startIndex(p.steps, p.denoise);
    if (p.steps - start < 10) continue;
    const io = loadCase(dir, c);
    const noise = f32(io['input.noise']);
    const init = io['input.init_latent'];
    const slg = p.skip_layer_guidance ? checkSkipLayerGuidance(p.skip_layer_guidance) : undefined;
    const runWith = (threshold?: number) => {
      let reused = 0;
      return sampleLatents({
        model: mmdit, shape: noise.shape as [number, number, number, number], noise: noise.data, ...(init ? { init: f32(init).data } : {}),
        sigmas: sigmaSchedule(p.steps, p.shift), start, guidanceScale: p.cfg_scale, alwaysGuide: true, sampler: checkSampler(p.sampler),
        cond: {
          positive: { context: f32(io['input.cond_context']), y: f32(io['input.cond_y']) },
          negative: { context: f32(io['input.uncond_context']), y: f32(io['input.uncond_y']) },
        },
        ...(slg ? { skipLayerGuidance: slg } : {}),
        ...(threshold !== undefined ? { stepCache: { threshold } } : {}),
        onStep: (s) => { if (s.cached) reused++; },
      }).then((x) => ({ x, reused }));
    };
    const reference = f32(io['output.latent']).data;
    const plain = await runWith();
    console.log(`${folder}/${c.name} (${p.steps - start} steps): uncached vs reference ${diff(plain.x, reference)}`);
    for (const t of thresholds) {
      const r = await runWith(t);
      console.log(`  cache ${t}: reused ${r.reused}/${p.steps - start}; vs uncached ${diff(r.x, plain.x)}; vs reference ${diff(r.x, reference)}`);
    }
  }
  await mmdit.dispose();
  file.close();
}
