/**
 * Optional step caching (off by default): on a step where the MMDiT's output is predicted to have barely
 * changed since the last step it was run on, the loop reuses that step's output instead of running the model.
 * Pure numbers: Float32Arrays in, a decision out.
 *
 * The idea is EasyCache's (Zhou et al. 2025; stable-diffusion.cpp's `easycache` mode, ComfyUI's EasyCache
 * node), restated here for a flow-matching sampler:
 *
 * - Every time the model runs on input x_c giving output v_c, the ratio k = mean|v_c - v_p| / mean|x_c - x_p|
 *   against the previous run (x_p, v_p) says how strongly the output follows the input at this stage of the
 *   schedule (it folds in the timestep's effect too, since both changed together).
 * - Before each later step j, the input's change since the step before, mean|x_j - x_{j-1}|, times k and over
 *   mean|v_c|, estimates the relative change of the output; these estimates are summed over the steps since
 *   the model last ran. While the sum stays under `threshold` the step reuses v_c; once it reaches it the
 *   model runs (and the sum starts again from 0).
 *
 * What is reused is the model's output itself, the velocity v = noise - x_0, not EasyCache's output - input
 * difference: on a rectified-flow path whose clean-image prediction x_0 holds still, v is constant along the
 * Euler step (x moves by dt * v, and v = (x - x_0) / sigma stays the same), so reusing v turns the skipped
 * step into part of one longer Euler step; adding the input's change back (EasyCache's form, natural for
 * noise-predicting UNets) would shift it by dt * v instead. The unit test with a constant-velocity model
 * checks that a cached run is then exact.
 *
 * Why at the sampler and not inside the MMDiT (TeaCache or FirstBlockCache: run the first joint block,
 * compare its modulated input or output with the last step's, reuse the other blocks' residual): those need
 * the ONNX graph cut after block 0 (two sessions, both streams' hidden states passed between them, for every
 * variant: float32, int8, WebGPU, LoRA-merged), and TeaCache a polynomial fitted per model on real outputs,
 * which random and demo weights cannot give. The sampler-level rule needs no graph change, costs a few passes
 * over the latent per step, and saves the whole model call on a skipped step (FirstBlockCache still runs
 * block 0 and the final layer). It decides from the latent alone, so it is a cruder guess than looking
 * inside the model; the window and the never-skipped first and last steps bound the harm.
 *
 * Never reused: the first two steps of a run (k needs two model runs), the last step (it lands on sigma 0,
 * where the image is settled), steps outside [start, end) of the run, and a step that needs model rows the
 * cached step did not compute (skip-layer guidance's extra pass).
 */
import { SD3Error } from '../core/errors.js';

export interface StepCache {
  /** Largest summed estimate of the output's relative change (0.1 = 10%) at which a step still reuses. */
  readonly threshold: number;
  /** Window, as fractions of this run's steps: step k (from 0) may reuse only when start * S <= k < end * S. */
  readonly start: number;
  readonly end: number;
  /** At most this many reused steps in a row (absent: no limit besides the threshold). */
  readonly maxSkips?: number;
}

/** The window stable-diffusion.cpp's and ComfyUI's EasyCache default to (here as fractions of the steps). */
export const STEP_CACHE_DEFAULTS = { start: 0.15, end: 0.95 } as const;

/** Checks a step-cache option ({ threshold, start?, end?, maxSkips? }) and fills in the window's defaults. */
export function checkStepCache(v: unknown): StepCache {
  const bad = (msg: string): never => { throw new SD3Error(`stepCache: ${msg}`); };
  if (v === null || typeof v !== 'object' || Array.isArray(v)) bad(`expected { threshold, start?, end?, maxSkips? }, got ${JSON.stringify(v)}`);
  const o = v as Partial<Record<keyof StepCache, unknown>>;
  for (const k of Object.keys(o)) if (!['threshold', 'start', 'end', 'maxSkips'].includes(k)) bad(`unknown field ${JSON.stringify(k)} (expected threshold, start, end, maxSkips)`);
  const t = o.threshold;
  if (typeof t !== 'number' || !(t > 0 && t <= 1)) bad(`threshold must be a number in (0, 1] (a summed relative change: 0.05 to 0.3 are useful), got ${JSON.stringify(t)}`);
  const start = o.start ?? STEP_CACHE_DEFAULTS.start;
  const end = o.end ?? STEP_CACHE_DEFAULTS.end;
  for (const [k, x] of [['start', start], ['end', end]] as const) {
    if (typeof x !== 'number' || !(x >= 0 && x <= 1)) bad(`${k} must be a number in [0, 1], got ${JSON.stringify(x)}`);
  }
  if ((start as number) >= (end as number)) bad(`start must be before end, got start ${start}, end ${end}`);
  if (o.maxSkips !== undefined && !(Number.isInteger(o.maxSkips) && (o.maxSkips as number) >= 1)) bad(`maxSkips must be an integer >= 1, got ${JSON.stringify(o.maxSkips)}`);
  return { threshold: t as number, start: start as number, end: end as number, ...(o.maxSkips !== undefined ? { maxSkips: o.maxSkips as number } : {}) };
}

function meanAbsDiff(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i]! - b[i]!);
  return s / a.length;
}

function meanAbs(a: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i]!);
  return s / a.length;
}

/**
 * The cache of one run of `steps` steps (counted from the run's first step): what the model returned last
 * (all its rows, so a reused step recombines guidance as a computed one does), and the decision's state.
 */
export class StepCacheRun {
  /** Steps (0-based in the run) that reused the cached output. */
  readonly reused: number[] = [];
  private output: Float32Array | undefined;
  private rows = 0;
  private computedInput: Float32Array | undefined;
  private computedGuided: Float32Array | undefined;
  private outputNorm = 0;
  /** k: output change per unit of input change, between the last two model runs; undefined until known. */
  private rate: number | undefined;
  private previousInput: Float32Array | undefined;
  private sum = 0;
  private streak = 0;

  constructor(readonly config: StepCache, readonly steps: number) {}

  /**
   * The cached model output for step k (0-based in the run) with input x when the step may reuse it, else
   * undefined (the caller then runs the model and calls `computed`). `rows`: how many rows the step's model
   * call would have; the cached output may hold more (its rows in the same order, the extra ones last).
   */
  lookup(k: number, x: Float32Array, rows: number): Float32Array | undefined {
    const prev = this.previousInput;
    this.previousInput = Float32Array.from(x);
    const c = this.config;
    const inWindow = k >= c.start * this.steps && k < c.end * this.steps && k < this.steps - 1;
    // A cached call with more rows (skip-layer guidance's pass appended) also serves a step without that pass.
    if (!inWindow || this.rate === undefined || !this.output || rows > this.rows || !prev || !(this.outputNorm > 0)) return undefined;
    if (c.maxSkips !== undefined && this.streak >= c.maxSkips) return undefined;
    this.sum += (this.rate * meanAbsDiff(x, prev)) / this.outputNorm;
    if (!(this.sum < c.threshold)) return undefined;
    this.streak++;
    this.reused.push(k);
    return this.output;
  }

  /** Records a model run on input x: its raw output (all rows) and the guided velocity the step used. */
  computed(x: Float32Array, output: Float32Array, rows: number, guided: Float32Array): void {
    if (this.computedInput && this.computedGuided) {
      const dx = meanAbsDiff(x, this.computedInput);
      this.rate = dx > 0 ? meanAbsDiff(guided, this.computedGuided) / dx : undefined;
    }
    this.computedInput = Float32Array.from(x);
    this.computedGuided = Float32Array.from(guided);
    this.outputNorm = meanAbs(guided);
    this.output = Float32Array.from(output);
    this.rows = rows;
    this.sum = 0;
    this.streak = 0;
  }
}
