/**
 * The denoising loop shared by the three tasks (and checked by the sampler and inpaint parity fixtures):
 * flow-matching Euler or DPM++ 2M steps (src/sampler/steppers.ts) with classifier-free guidance and optional
 * skip-layer guidance, optionally blending a masked image back in after every step (KerasHub's inpainting),
 * and optionally reusing the last model output on steps where it is predicted to have barely changed
 * (src/sampler/step-cache.ts).
 */
import { AbortError, SD3Error } from '../core/errors.js';
import { type Tensor, tensor } from '../core/tensor.js';
import type { RGBImage } from '../image/image.js';
import { addNoise, guide, timestepOf } from '../sampler/flow-match.js';
import { type SamplerName, checkSampler, makeStepper } from '../sampler/steppers.js';
import { type SkipLayerGuidance, checkSkipLayerGuidance, skipLayerGuidanceActive } from '../sampler/skip-layer-guidance.js';
import { type StepCache, StepCacheRun, checkStepCache } from '../sampler/step-cache.js';

/**
 * The MMDiT as the loop sees it: velocity for latents x [N,C,H,W] at timesteps t [N]; `skip` bypasses joint
 * blocks for the rows from `fromRow` on (skip-layer guidance).
 */
export interface VelocityModel {
  forward(x: Tensor, t: Tensor, y: Tensor, context: Tensor, skip?: { readonly layers?: readonly number[]; readonly fromRow?: number }): Promise<Tensor<'float32'>>;
}

/** Text conditioning of a batch of B prompts: context [B, L, C] and pooled y [B, D]. */
export interface PromptEmbedding {
  readonly context: Tensor<'float32'>;
  readonly y: Tensor<'float32'>;
}

export interface Conditioning {
  readonly positive: PromptEmbedding;
  /** Needed when guidance > 1. */
  readonly negative?: PromptEmbedding;
}

export interface StepInfo {
  /** 1-based step number within this run. */
  readonly step: number;
  readonly total: number;
  /** Seconds since the loop started. */
  readonly elapsed: number;
  /** The latent after this step (model space, NCHW; the callback's own copy). */
  readonly latent: Tensor<'float32'>;
  /** True when this step reused the previous model output instead of running the model (step cache). */
  readonly cached?: boolean;
  /**
   * A cheap preview of `latent`: one small RGB image per batch item, a latent cell per pixel (see preview.ts).
   * Set when the loop runs through SD3Backbone.denoise.
   */
  readonly preview?: () => Promise<RGBImage[]>;
}

export interface SampleOptions {
  readonly model: VelocityModel;
  /** Latent shape [B, C, H, W]. */
  readonly shape: readonly [number, number, number, number];
  readonly noise: Float32Array;
  /** Model-space image latent for img2img / inpaint (absent: text-to-image). */
  readonly init?: Float32Array;
  /** The full schedule for the requested number of steps (ending with 0). */
  readonly sigmas: Float32Array;
  /** First step to run (img2img strength). */
  readonly start: number;
  readonly cond: Conditioning;
  readonly guidanceScale: number;
  /**
   * Run the negative pass and combine even when guidanceScale <= 1, as Stability's reference sampler does
   * (neg + (pos - neg) * scale: 0 gives the negative prediction). Default false: KerasHub and diffusers treat a
   * scale <= 1 as "no guidance" and run the positive pass alone.
   */
  readonly alwaysGuide?: boolean;
  /** 'euler' (default) or 'dpmpp_2m' (DPM-Solver++(2M), Stability's default for SD3.5 Medium and Large). */
  readonly sampler?: SamplerName;
  /**
   * Skip-layer guidance (off by default): on the steps inside its window, a third, positive-only pass with the
   * joint blocks `layers` bypassed, added as scale * (pos - skipped). See sampler/skip-layer-guidance.ts.
   */
  readonly skipLayerGuidance?: SkipLayerGuidance;
  /**
   * Step caching (off by default): { threshold, start?, end?, maxSkips? }. A step inside the window reuses the
   * last model output while the summed estimate of its relative change stays under threshold; the first two
   * and the last step always run the model. See sampler/step-cache.ts.
   */
  readonly stepCache?: Partial<StepCache> & { readonly threshold: number };
  /** Inpainting: per-latent-pixel mask [B, 1, H, W] flattened, 1 = repaint, 0 = keep `init`. */
  readonly mask?: Float32Array;
  readonly onStep?: (info: StepInfo) => void;
  readonly signal?: AbortSignal;
  /** Called with x at the start and after every step (tests, debugging). */
  readonly trace?: (x: Float32Array) => void;
  /** Called each step with the guided prediction of the clean latent, x - sigma * v (tests, debugging). */
  readonly denoisedTrace?: (denoised: Float32Array) => void;
}

function concatRows(...parts: Tensor<'float32'>[]): Tensor<'float32'> {
  const [a, ...rest] = parts as [Tensor<'float32'>, ...Tensor<'float32'>[]];
  for (const b of rest) {
    if (a.shape.slice(1).join() !== b.shape.slice(1).join()) {
      throw new SD3Error(`positive and negative conditioning differ in shape: [${a.shape}] vs [${b.shape}]`);
    }
  }
  const out = new Float32Array(parts.reduce((n, p) => n + p.data.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p.data, at); at += p.data.length; }
  return tensor('float32', [parts.reduce((n, p) => n + p.shape[0]!, 0), ...a.shape.slice(1)], out);
}

/** One model call: x repeated for each group of B rows of the batch (positive, negative, skip-layer pass). */
async function runModel(model: VelocityModel, x: Float32Array, N: number, [B, C, H, W]: readonly [number, number, number, number], timestep: number,
  batch: { readonly context: Tensor<'float32'>; readonly y: Tensor<'float32'> }, skip: { layers: readonly number[]; fromRow: number } | undefined): Promise<Float32Array> {
  const n = x.length;
  const xin = new Float32Array(N * C * H * W);
  for (let r = 0; r < N / B; r++) xin.set(x, r * n);
  const t = tensor('float32', [N], new Float32Array(N).fill(timestep));
  return (await model.forward(tensor('float32', [N, C, H, W], xin), t, batch.y, batch.context, skip)).data;
}

/** Runs the sampling loop and returns the final latent (model space). */
export async function sampleLatents(o: SampleOptions): Promise<Float32Array> {
  const [B, C, H, W] = o.shape;
  const per = C * H * W;
  const n = B * per;
  if (o.noise.length !== n) throw new SD3Error(`noise has ${o.noise.length} values, the latent needs ${n}`);
  if (o.init && o.init.length !== n) throw new SD3Error(`image latent has ${o.init.length} values, expected ${n}`);
  if (o.mask && o.mask.length !== B * H * W) throw new SD3Error(`mask has ${o.mask.length} values, expected ${B * H * W}`);
  if (o.mask && !o.init) throw new SD3Error('inpainting needs an image latent');
  const steps = o.sigmas.length - 1;
  const cfg = o.guidanceScale > 1 || (o.alwaysGuide ?? false);
  if (cfg && !o.cond.negative) throw new SD3Error(`guidance ${o.guidanceScale} needs negative conditioning`);
  const rows = o.cond.positive.context.shape[0];
  if (rows !== B) throw new SD3Error(`conditioning has ${rows} prompts for ${B} latents`);
  const stepper = makeStepper(checkSampler(o.sampler ?? 'euler'), o.sigmas);
  const slg = o.skipLayerGuidance ? checkSkipLayerGuidance(o.skipLayerGuidance) : undefined;
  const cache = o.stepCache ? new StepCacheRun(checkStepCache(o.stepCache), steps - o.start) : undefined;
  const pos = o.cond.positive;
  const neg = o.cond.negative;
  // Rows of one model call: [positive; negative] with guidance, then the positive prompt again for the
  // skip-layer pass on the steps that have one (its rows bypass the skipped blocks).
  const batchOf = (skip: boolean) => {
    const parts = cfg ? [pos, neg!] : [pos];
    if (skip) parts.push(pos);
    return { context: concatRows(...parts.map((p) => p.context)), y: concatRows(...parts.map((p) => p.y)), rows: parts.length * B };
  };
  const plain = batchOf(false);
  let withSkip: ReturnType<typeof batchOf> | undefined;

  const s0 = o.sigmas[o.start]!;
  let x = o.init ? addNoise(o.init, o.noise, s0) : Float32Array.from(o.noise, (v) => s0 * v);
  o.trace?.(x);
  const t0 = performance.now();
  for (let i = o.start; i < steps; i++) {
    if (o.signal?.aborted) throw new AbortError();
    const sigma = o.sigmas[i]!;
    const next = o.sigmas[i + 1]!;
    // Skip-layer guidance counts the model calls of this run (one per step), from 0, against the full step count.
    const skip = slg !== undefined && skipLayerGuidanceActive(slg, i - o.start, steps);
    const batch = skip ? (withSkip ??= batchOf(true)) : plain;
    const N = batch.rows;
    const reused = cache?.lookup(i - o.start, x, N);
    const v = reused ?? await runModel(o.model, x, N, [B, C, H, W], timestepOf(sigma), batch, skip ? { layers: slg!.layers, fromRow: N - B } : undefined);
    const vPos = v.subarray(0, n);
    const vg = cfg ? guide(vPos, v.subarray(n, 2 * n), o.guidanceScale) : Float32Array.from(vPos);
    if (skip) {
      // v += scale * (v_pos - v_skip): the reference's scale * (D_pos - D_skip) in velocity form.
      const vSkip = v.subarray((N - B) * per, N * per);
      for (let k = 0; k < n; k++) vg[k] = vg[k]! + slg!.scale * (vPos[k]! - vSkip[k]!);
    }
    if (cache && !reused) cache.computed(x, v, N, vg);
    o.denoisedTrace?.(Float32Array.from(x, (xv, k) => xv - Math.fround(vg[k]! * sigma)));
    x = stepper.step(x, vg, i);
    if (o.mask) {
      const keep = i < steps - 1 ? addNoise(o.init!, o.noise, next) : o.init!;
      for (let b = 0; b < B; b++) for (let c = 0; c < C; c++) for (let p = 0; p < H * W; p++) {
        const m = o.mask[b * H * W + p]!;
        const k = b * per + c * H * W + p;
        x[k] = (1 - m) * keep[k]! + m * x[k]!;
      }
    }
    o.trace?.(x);
    // A copy: x is updated in place by the next step, and callers may keep the latents they are given.
    o.onStep?.({ step: i - o.start + 1, total: steps - o.start, elapsed: (performance.now() - t0) / 1000, latent: tensor('float32', [B, C, H, W], x.slice()), ...(reused ? { cached: true } : {}) });
  }
  return x;
}
