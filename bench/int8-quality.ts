/**
 * How far the int8 mode is from float32: on the parity fixtures (MMDiT outputs, the sampler's final latents)
 * and, with --checkpoint, on a full-size model's latents after a few steps. Prints numbers, not pass/fail.
 *
 *   npm run bench:int8-quality [-- --checkpoint <path> --size 256 --steps 4]
 */
import { relativeErrors } from './relative-error.js';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { SafetensorsFile, readAllSafetensors } from '../src/core/safetensors.js';
import { type Tensor, tensor } from '../src/core/tensor.js';
import { SafetensorsStore, type WeightStore, withPrefix } from '../src/core/weights.js';
import { openCheckpoint } from '../src/loaders/checkpoint.js';
import { CLIPTextEncoder, clipConfigFromHF, inferCLIPTextConfig } from '../src/models/clip.js';
import { MMDiT } from '../src/models/mmdit.js';
import { sampleLatents } from '../src/pipelines/denoise.js';
import { clipLinearNames, mmditInt8LinearNames } from '../src/pipelines/backbone.js';
import { openInt8Cache } from '../src/quant/int8.js';
import { sigmaSchedule, startIndex } from '../src/sampler/flow-match.js';
import { gaussian } from '../src/sampler/noise.js';

const { values: v } = parseArgs({ options: { checkpoint: { type: 'string' }, size: { type: 'string', default: '256' }, steps: { type: 'string', default: '4' }, fixtures: { type: 'string' } } });
const fixtures = v.fixtures ?? new URL('../test/fixtures/', import.meta.url).pathname;

const fmt = (e: { maxRel: number; rmsRel: number }) => `max |diff| / max |ref| ${e.maxRel.toExponential(2)}, relative RMS ${e.rmsRel.toExponential(2)}`;

async function loadBoth(store: WeightStore): Promise<[MMDiT, MMDiT]> {
  const quant = openInt8Cache(store, mmditInt8LinearNames(store), 'mmdit');
  return [await MMDiT.load(store), await MMDiT.load(store, { quant })];
}

// Fixture weights are copied to a temporary folder: the int8 cache is written next to them.
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd3-int8q-'));
try {
  const mcfg = JSON.parse(fs.readFileSync(path.join(fixtures, 'mmdit/config.json'), 'utf8'));
  fs.copyFileSync(path.join(fixtures, 'mmdit', mcfg.weights_file), path.join(tmp, 'mmdit.safetensors'));
  const store = new SafetensorsStore([SafetensorsFile.open(path.join(tmp, 'mmdit.safetensors'))], withPrefix(mcfg.weights_prefix));
  const [fp32, int8] = await loadBoth(store);
  console.log('int8 vs float32 on the parity fixtures (tiny MMDiT, per-channel int8 weights, dynamic int8 activations):');
  for (const c of mcfg.cases) {
    const t = readAllSafetensors(path.join(fixtures, 'mmdit', c.file)).tensors;
    const args = [t['input.x']!, t['input.t']!, t['input.y']!, t['input.context']!] as const;
    const a = await int8.forward(...args);
    const e = t['output.model_output'] as Tensor<'float32'>;
    console.log(`  mmdit/${c.name} model_output: int8 vs golden ${fmt(relativeErrors(a.data, e.data))}; fp32 vs golden ${fmt(relativeErrors((await fp32.forward(...args)).data, e.data))}`);
  }
  const scfg = JSON.parse(fs.readFileSync(path.join(fixtures, 'sampler/config.json'), 'utf8'));
  for (const c of scfg.cases) {
    const t = readAllSafetensors(path.join(fixtures, 'sampler', c.file)).tensors;
    const noise = t['input.noise'] as Tensor<'float32'>;
    const f = (x: string) => t[x] as Tensor<'float32'>;
    const latent = await sampleLatents({
      model: int8, shape: noise.shape as [number, number, number, number], noise: noise.data,
      ...(t['input.init_latent'] ? { init: f('input.init_latent').data } : {}),
      sigmas: sigmaSchedule(c.params.steps, c.params.shift), start: startIndex(c.params.steps, c.params.denoise),
      cond: { positive: { context: f('input.cond_context'), y: f('input.cond_y') }, negative: { context: f('input.uncond_context'), y: f('input.uncond_y') } },
      guidanceScale: c.params.cfg_scale,
    });
    console.log(`  sampler/${c.name} final latent: ${fmt(relativeErrors(latent, f('output.latent').data))}`);
  }
  await fp32.dispose();
  await int8.dispose();
  store.close();
  for (const comp of ['clip_l', 'clip_g']) {
    const ccfg = JSON.parse(fs.readFileSync(path.join(fixtures, comp, 'config.json'), 'utf8'));
    const copy = path.join(tmp, `${comp}.safetensors`);
    fs.copyFileSync(path.join(fixtures, comp, ccfg.weights_file), copy);
    const cstore = new SafetensorsStore([SafetensorsFile.open(copy)], withPrefix(ccfg.weights_prefix));
    const config = inferCLIPTextConfig(cstore, clipConfigFromHF(ccfg.config));
    const a = await CLIPTextEncoder.load(cstore, config);
    const b = await CLIPTextEncoder.load(cstore, config, { quant: openInt8Cache(cstore, clipLinearNames(cstore, config), comp) });
    for (const c of ccfg.cases) {
      const ids = readAllSafetensors(path.join(fixtures, comp, c.file)).tensors['input.input_ids']!;
      const x = await a.encode(ids);
      const y = await b.encode(ids);
      console.log(`  ${comp}/${c.name}: penultimate ${fmt(relativeErrors(y.penultimate.data, x.penultimate.data))}; pooled_projected ${fmt(relativeErrors(y.pooledProjected.data, x.pooledProjected.data))}`);
    }
    await a.dispose();
    await b.dispose();
    cstore.close();
  }
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}

if (v.checkpoint) {
  const { weights } = openCheckpoint(v.checkpoint);
  const size = Number(v.size);
  const steps = Number(v.steps);
  const h = size / 8;
  const noise = gaussian(16 * h * h, 11);
  const ctx = tensor('float32', [1, 154, 4096], gaussian(154 * 4096, 12));
  const y = tensor('float32', [1, 2048], gaussian(2048, 13));
  const run = async (quantized: boolean) => {
    const m = await MMDiT.load(weights.mmdit, quantized ? { quant: weights.quantize!('mmdit', mmditInt8LinearNames(weights.mmdit)) } : {});
    const out = await sampleLatents({ model: m, shape: [1, 16, h, h], noise, sigmas: sigmaSchedule(steps, 3), start: 0, cond: { positive: { context: ctx, y } }, guidanceScale: 1 });
    await m.dispose();
    return out;
  };
  const a = await run(false);
  const b = await run(true);
  console.log(`full-size random MMDiT, ${size}x${size}, ${steps} steps, final latent int8 vs float32: ${fmt(relativeErrors(b, a))}`);
  weights.close?.();
}
