/** Small helpers for typed command-line values. */
import { SD3Error } from '../core/errors.js';
import { type Device, parseDevice } from '../runtime/ort.js';

export class UsageError extends SD3Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export function intArg(name: string, v: string | undefined, min: number, fallback?: number): number | undefined {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got "${v}"`);
  return n;
}

export function numArg(name: string, v: string | undefined, check: (n: number) => boolean, expected: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || !check(n)) throw new UsageError(`--${name} must be ${expected}, got "${v}"`);
  return n;
}

export function deviceArg(v: string): Device {
  try {
    return parseDevice(v, '--device');
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}
