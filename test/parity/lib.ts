/** Shared pieces of the parity runner: tolerance rule, comparisons, case loading. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SafetensorsFile, readAllSafetensors } from '../../src/core/safetensors.js';
import { type Tensor, toFloat32 } from '../../src/core/tensor.js';
import { SafetensorsStore, type WeightStore, withPrefix } from '../../src/core/weights.js';
import { type FloatType, checkFloatType } from '../../src/onnx/builder.js';

export interface Tolerance { readonly atol: number; readonly rtol: number }

export interface Check {
  /** e.g. "square_8x8:output.model_output" */
  readonly name: string;
  readonly ok: boolean;
  /** worst error divided by the budget (<= 1 passes); NaN when not numeric */
  readonly ratio: number;
  readonly detail: string;
  /**
   * A known divergence from the reference, said why: the check still runs (and fails when it does not hold),
   * but a pass is counted apart from the exact passes.
   */
  readonly known?: string;
}

/** Checks one component folder; `root` is the fixtures root (for sibling folders). */
export type Checker = (dir: string, root: string) => Promise<Check[]>;

export function readJson<T = any>(file: string): T {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
}

/** The strict pair of a fixture config's `tolerance` (or `loose` when SD3_TOLERANCE=loose). */
export function toleranceOf(config: { tolerance?: { atol?: number; rtol?: number; loose?: Tolerance } | null }, fallback: Tolerance = { atol: 1e-6, rtol: 1e-5 }): Tolerance {
  const t = config.tolerance;
  if (!t) return fallback;
  if (process.env.SD3_TOLERANCE === 'loose' && t.loose) return t.loose;
  return { atol: t.atol ?? fallback.atol, rtol: t.rtol ?? fallback.rtol };
}

/** What the runner loads the MMDiT and the VAE in: $SD3_DTYPE, 'float32' (default) or 'float16'. */
export function parityDtype(env: NodeJS.ProcessEnv = process.env): FloatType {
  return checkFloatType(env.SD3_DTYPE || undefined, 'SD3_DTYPE');
}

/**
 * The float16 pass rule of the mmdit, vae and sampler (and inpaint) fixtures, in the README's terms: largest
 * |actual - expected| <= atol + rtol * largest |expected|, against the float32 reference. Measured (BENCHMARKS.md
 * "float16"), as the largest error over the largest expected magnitude: on the CPU (float32 arithmetic with
 * float16's rounding in the weights and at the graph's casts: ORT has no CPU float16 kernels for these
 * operators) at most 8e-4 for all three; on WebGPU's float16 kernels (Mesa's software
 * Vulkan, attention on the CPU) MMDiT 2.2e-3, sampler latents 2.5e-3, VAE 1.3e-2 (its convolutions
 * accumulate over up to 4,608 terms; a sampler case's decoded image, 8.0e-3, is held to the VAE's rule). The
 * rule allows about 4x (MMDiT, sampler) and 2.4x (VAE) the WebGPU figures, for other GPUs' kernels; the VAE's uint8 images may be FLOAT16_CODES codes off (measured 1 on the CPU, 3 on WebGPU).
 */
export const FLOAT16_TOLERANCE = {
  mmdit: { atol: 1e-4, rtol: 1e-2 },
  sampler: { atol: 1e-4, rtol: 1e-2 },
  vae: { atol: 1e-4, rtol: 3e-2 },
} as const satisfies Record<string, Tolerance>;
export const FLOAT16_CODES = 8;

/** A model fixture's tolerance: its own (toleranceOf) in float32, FLOAT16_TOLERANCE[kind] in float16. */
export function modelTolerance(config: FixtureConfig, kind: keyof typeof FLOAT16_TOLERANCE, fallback?: Tolerance): Tolerance {
  return parityDtype() === 'float16' ? FLOAT16_TOLERANCE[kind] : toleranceOf(config, fallback);
}

/**
 * max|actual - expected| <= atol + rtol * max|expected| over the finite expected values; a non-finite value
 * (NaN, +-Infinity) on either side must be matched exactly by the other (so that an infinity in the expected
 * tensor cannot make the budget infinite).
 */
export function compare(name: string, actual: Tensor, expected: Tensor, tol: Tolerance): Check {
  const a = toFloat32(actual).data;
  const e = toFloat32(expected).data;
  if (actual.shape.join(',') !== expected.shape.join(',')) {
    return { name, ok: false, ratio: Infinity, detail: `shape [${actual.shape}] != expected [${expected.shape}]` };
  }
  let maxAbs = 0;
  let maxDiff = 0;
  for (let i = 0; i < e.length; i++) {
    const ev = e[i]!;
    const av = a[i]!;
    if (!Number.isFinite(av) || !Number.isFinite(ev)) {
      if (!(av === ev || (Number.isNaN(av) && Number.isNaN(ev)))) maxDiff = Infinity;
      continue;
    }
    maxAbs = Math.max(maxAbs, Math.abs(ev));
    const d = Math.abs(av - ev);
    if (!(d <= maxDiff)) maxDiff = Number.isNaN(d) ? maxDiff : d;
  }
  const budget = tol.atol + tol.rtol * maxAbs;
  const ratio = budget > 0 ? maxDiff / budget : maxDiff === 0 ? 0 : Infinity;
  return { name, ok: maxDiff <= budget, ratio, detail: `max diff ${maxDiff.toExponential(2)} / budget ${budget.toExponential(2)}` };
}

export function exact(name: string, ok: boolean, detail = ''): Check {
  return { name, ok, ratio: ok ? 0 : Infinity, detail: detail || (ok ? 'exact' : 'mismatch') };
}

export interface FixtureCase {
  readonly name: string;
  readonly file: string;
  readonly params?: Record<string, any>;
  readonly [k: string]: unknown;
}

/** What the checkers read of a fixture's config.json: cases, tolerance, and for models the weights and config. */
export interface FixtureConfig {
  readonly cases: readonly FixtureCase[];
  readonly component?: string;
  readonly weights_file?: string;
  readonly weights_prefix?: string;
  readonly config?: Record<string, unknown>;
  readonly tolerance?: { atol?: number; rtol?: number; loose?: Tolerance } | null;
}

/** Reads a case file: every tensor by name. */
export function loadCase(dir: string, c: FixtureCase): Record<string, Tensor> {
  return readAllSafetensors(path.join(dir, c.file)).tensors;
}

/** Compares every `output.*` (and optionally `debug.*`) tensor present in both maps. */
export function compareOutputs(caseName: string, actual: Record<string, Tensor | undefined>, expected: Record<string, Tensor>, tol: Tolerance, opts: { debug?: boolean } = {}): Check[] {
  const checks: Check[] = [];
  for (const [k, exp] of Object.entries(expected)) {
    const isOut = k.startsWith('output.');
    const isDebug = k.startsWith('debug.');
    if (!isOut && !(isDebug && opts.debug)) continue;
    const act = actual[k];
    if (!act) {
      if (isOut) checks.push({ name: `${caseName}:${k}`, ok: false, ratio: Infinity, detail: 'not produced' });
      continue;
    }
    checks.push(compare(`${caseName}:${k}`, act, exp, tol));
  }
  return checks;
}

/**
 * A model fixture folder's checks: loads a model on its weights (config.json's `weights_file` under
 * `weights_prefix`), runs `cases` on it, then releases the model and the file.
 */
export async function checkFixtureModel<M extends { dispose(): Promise<void> }>(
  dir: string,
  load: (store: WeightStore, config: FixtureConfig) => Promise<M>,
  cases: (dir: string, config: FixtureConfig, model: M) => Promise<Check[]>,
): Promise<Check[]> {
  const config = readJson<FixtureConfig>(path.join(dir, 'config.json'));
  const file = SafetensorsFile.open(path.join(dir, config.weights_file ?? 'weights.safetensors'));
  try {
    const model = await load(new SafetensorsStore([file], withPrefix(config.weights_prefix ?? '')), config);
    try {
      return await cases(dir, config, model);
    } finally {
      await model.dispose();
    }
  } finally {
    file.close();
  }
}
