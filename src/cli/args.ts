/** Small helpers for typed command-line values. */
import { SD3Error } from '../core/errors.js';
import type { BackboneOptions } from '../pipelines/backbone.js';
import { type DeviceChoice, parseDevice } from '../runtime/ort.js';

export class UsageError extends SD3Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export function intArg(name: string, v: string | undefined, min: number, fallback?: number, max?: number): number | undefined {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got "${v}"`);
  if (max !== undefined && n > max) throw new UsageError(`--${name} must be at most ${max}, got "${v}"`);
  return n;
}

export function numArg(name: string, v: string | undefined, check: (n: number) => boolean, expected: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || !check(n)) throw new UsageError(`--${name} must be ${expected}, got "${v}"`);
  return n;
}

export function deviceArg(v: string): DeviceChoice {
  try {
    return parseDevice(v, '--device');
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/**
 * `--vae-tile N[,OVERLAP]`: tile size in latent cells and overlap (default a quarter of the size). The library
 * takes any size >= 1 (its tests decode tiny latents in tiles of 4); the command asks for at least 8 cells
 * (64 pixels), below which a real image would be decoded in hundreds of tiles with seams everywhere.
 */
export function tileArg(v: string): { size: number; overlap: number } {
  const m = /^(\d+)(?:,(\d+))?$/.exec(v);
  const size = m ? Number(m[1]) : Number.NaN;
  const overlap = m?.[2] !== undefined ? Number(m[2]) : Math.floor(size / 4);
  if (!m || size < 8 || overlap >= size) throw new UsageError(`--vae-tile must be N or N,OVERLAP with N >= 8 latent cells and OVERLAP < N, got "${v}"`);
  return { size, overlap };
}

/** The flags generate and serve share: the model, the image size and where and how it runs. */
export const MODEL_FLAGS = {
  model: { type: 'string', short: 'm' },
  width: { type: 'string' },
  height: { type: 'string' },
  threads: { type: 'string' },
  device: { type: 'string' },
  int8: { type: 'boolean' },
} as const;

/** --threads, --device and --int8 as backbone options (shared by generate and serve). */
export function runtimeArgs(v: { threads?: string; device?: string; int8?: boolean }): Pick<BackboneOptions, 'threads' | 'device' | 'dtype'> {
  const threads = intArg('threads', v.threads, 1);
  const device = v.device !== undefined ? deviceArg(v.device) : undefined;
  if (device === 'webgpu' && v.int8) throw new UsageError('--int8 runs on the CPU only; drop it or use --device cpu');
  return {
    ...(threads !== undefined ? { threads } : {}),
    ...(device ? { device } : {}),
    ...(v.int8 ? { dtype: 'int8' as const } : {}),
  };
}
