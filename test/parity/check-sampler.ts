/**
 * Parity for the `sampler` and `inpaint_kerashub` fixtures: the sampling loop (Euler or DPM++ 2M, CFG, optional
 * skip-layer guidance, from each case's params) on the tiny MMDiT (and VAE).
 */
import * as path from 'node:path';
import { SafetensorsFile } from '../../src/core/safetensors.js';
import { type Tensor, tensor } from '../../src/core/tensor.js';
import { SafetensorsStore, withPrefix } from '../../src/core/weights.js';
import { MMDiT } from '../../src/models/mmdit.js';
import { VAE, fromModelSpace } from '../../src/models/vae.js';
import { sampleLatents } from '../../src/pipelines/denoise.js';
import { sigmaSchedule, startIndex } from '../../src/sampler/flow-match.js';
import { checkSkipLayerGuidance, skipLayerGuidanceActive } from '../../src/sampler/skip-layer-guidance.js';
import { checkSampler as samplerName } from '../../src/sampler/steppers.js';
import { type Check, type FixtureConfig, compare, compareOutputs, exact, loadCase, FLOAT16_TOLERANCE, modelTolerance, parityDtype, readJson } from './lib.js';

function storeFor(dir: string, ref: { weights_file: string; config_file: string }): SafetensorsStore {
  const cfg = readJson(path.join(dir, ref.config_file));
  const file = SafetensorsFile.open(path.join(dir, ref.weights_file));
  try {
    return new SafetensorsStore([file], withPrefix(cfg.weights_prefix ?? ''));
  } catch (e) {
    file.close();
    throw e;
  }
}

const f32 = (t: Tensor) => t as Tensor<'float32'>;

export interface LoopModels {
  readonly mmdit: MMDiT;
  /** Decodes `output.image` where a case has one. */
  readonly vae?: VAE | undefined;
}

export interface LoopOptions {
  /** The flow-matching shift of a case (default: its `params.shift`). */
  readonly shiftOf?: (params: Record<string, any>) => number;
  /** Receives each case's computed tensors (output.latent, output.latent_vae, ...), e.g. to measure them. */
  readonly onCase?: (name: string, actual: Readonly<Record<string, Tensor>>) => void;
}

/** The cases of a sampler / inpaint_kerashub fixture (`dir`, its parsed `config`) on loaded models. */
export async function checkLoopCases(kind: 'sampler' | 'inpaint', dir: string, config: FixtureConfig, models: LoopModels, opts: LoopOptions = {}): Promise<Check[]> {
  const tol = modelTolerance(config, 'sampler', { atol: 1e-5, rtol: 2e-5 });
  const checks: Check[] = [];
  for (const c of config.cases) {
    const io = loadCase(dir, c);
    const p = c.params!;
    const noise = f32(io['input.noise']!);
    const shape = noise.shape as [number, number, number, number];
    const strength = kind === 'sampler' ? p.denoise : p.strength;
    const start = startIndex(p.steps, strength);
    if (p.start_index !== undefined && p.start_index !== start) {
      checks.push({ name: `${c.name}:start_index`, ok: false, ratio: Infinity, detail: `computed ${start}, fixture says ${p.start_index}` });
    }
    const sigmas = sigmaSchedule(p.steps, opts.shiftOf ? opts.shiftOf(p) : p.shift);
    // params.sampler (absent: Euler, the first fixtures') and params.skip_layer_guidance (null: off).
    const sampler = samplerName(p.sampler ?? 'euler', `${c.name}: params.sampler`);
    const slgParams = p.skip_layer_guidance;
    const slg = slgParams ? checkSkipLayerGuidance({ layers: slgParams.layers, scale: slgParams.scale, start: slgParams.start, end: slgParams.end }) : undefined;
    if (slg && Array.isArray(p.slg_active_calls)) {
      const calls = sigmas.length - 1 - start;
      const ours = Array.from({ length: calls }, (_, k) => k).filter((k) => skipLayerGuidanceActive(slg, k, p.steps));
      checks.push(exact(`${c.name}:slg_active_calls`, ours.join() === (p.slg_active_calls as number[]).join(), `ours [${ours}], fixture [${p.slg_active_calls}]`));
    }
    const xs: Float32Array[] = [];
    const ds: Float32Array[] = [];
    const init = io['input.init_latent'];
    const mask = io['input.mask_latent'];
    const latent = await sampleLatents({
      model: models.mmdit,
      shape,
      noise: noise.data,
      ...(init ? { init: f32(init).data } : {}),
      ...(mask ? { mask: f32(mask).data } : {}),
      sigmas,
      start,
      cond: {
        positive: { context: f32(io['input.cond_context']!), y: f32(io['input.cond_y']!) },
        negative: { context: f32(io['input.uncond_context']!), y: f32(io['input.uncond_y']!) },
      },
      guidanceScale: p.cfg_scale,
      // The sampler fixtures come from Stability's reference, which always combines both passes; the inpaint
      // fixtures follow KerasHub, which skips guidance at <= 1 (fixtures README, "Reference vs KerasHub" 5).
      alwaysGuide: kind === 'sampler',
      sampler,
      ...(slg ? { skipLayerGuidance: slg } : {}),
      trace: (x) => xs.push(Float32Array.from(x)),
      denoisedTrace: (d) => ds.push(d),
    });
    const walked = kind === 'sampler' ? sigmas.subarray(start) : sigmas;
    const actual: Record<string, Tensor> = {
      'output.sigmas': tensor('float32', [walked.length], Float32Array.from(walked)),
      'output.latent': tensor('float32', shape, latent),
      'output.latent_vae': fromModelSpace(tensor('float32', shape, latent)),
    };
    const steps = io['debug.x_steps'];
    if (steps) {
      const all = new Float32Array(xs.length * latent.length);
      xs.forEach((x, i) => all.set(x, i * latent.length));
      actual['debug.x_steps'] = tensor('float32', [xs.length, ...shape], all);
    }
    const guided = io['debug.denoised_steps'];
    if (guided) {
      const all = new Float32Array(ds.length * latent.length);
      ds.forEach((d, i) => all.set(d, i * latent.length));
      actual['debug.denoised_steps'] = tensor('float32', [ds.length, ...shape], all);
    }
    if (io['output.image'] && models.vae) actual['output.image'] = await models.vae.decode(actual['output.latent_vae']!);
    opts.onCase?.(c.name, actual);
    const sigmaTol = { atol: 1e-6, rtol: 0 };
    for (const k of Object.keys(io)) if (k === 'output.sigmas') checks.push(compare(`${c.name}:${k}`, actual[k]!, io[k]!, sigmaTol));
    // In float16 the decoded image carries the VAE's error too, and is held to the VAE's float16 rule.
    const imageTol = parityDtype() === 'float16' ? FLOAT16_TOLERANCE.vae : tol;
    const rest = Object.fromEntries(Object.entries(io).filter(([k]) => k !== 'output.sigmas' && k !== 'output.image'));
    checks.push(...compareOutputs(c.name, actual, rest, tol, { debug: true }));
    if (io['output.image']) checks.push(...compareOutputs(c.name, actual, { 'output.image': io['output.image'] }, imageTol));
  }
  return checks;
}

export function makeLoopChecker(kind: 'sampler' | 'inpaint'): (dir: string) => Promise<Check[]> {
  return async (dir) => {
    const config = readJson(path.join(dir, 'config.json'));
    const stores: SafetensorsStore[] = [];
    const open = (ref: { weights_file: string; config_file: string }) => { const s = storeFor(dir, ref); stores.push(s); return s; };
    let mmdit: MMDiT | undefined;
    let vae: VAE | undefined;
    try {
      mmdit = await MMDiT.load(open(config.mmdit), { threads: 1, dtype: parityDtype() });
      vae = config.vae ? await VAE.load(open(config.vae), { threads: 1, dtype: parityDtype() }) : undefined;
      return await checkLoopCases(kind, dir, config, { mmdit, vae });
    } finally {
      await mmdit?.dispose();
      await vae?.dispose();
      for (const s of stores) s.close();
    }
  };
}

export const checkSampler = makeLoopChecker('sampler');
export const checkInpaint = makeLoopChecker('inpaint');
