/** Shared by the text encoders: token-id and weight checks, and reading Hugging Face config keys. */
import { SD3Error, describe } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';
import type { WeightStore } from '../core/weights.js';

/** Validates a [B, L] int64 id tensor (L fixed when `length` is given) with every id in [0, vocab). */
export function checkIds(what: string, ids: Tensor, opts: { vocab: number; length?: number }): asserts ids is Tensor<'int64'> {
  if (!ids || typeof ids !== 'object' || !('dtype' in ids)) throw new SD3Error(`${what}: token ids must be a Tensor, got ${describe(ids)}`);
  if (ids.dtype !== 'int64') throw new SD3Error(`${what}: token ids must be int64, got ${ids.dtype}`);
  if (ids.shape.length !== 2) throw new SD3Error(`${what}: token ids must have shape [batch, length], got [${ids.shape.join(', ')}]`);
  const [b, l] = ids.shape as [number, number];
  if (b < 1) throw new SD3Error(`${what}: token ids have batch size 0`);
  if (opts.length !== undefined && l !== opts.length) {
    throw new SD3Error(`${what}: token ids must be ${opts.length} long (one padded chunk), got length ${l}`);
  }
  if (l < 1) throw new SD3Error(`${what}: token ids have length 0`);
  const data = ids.data as BigInt64Array;
  const vocab = BigInt(opts.vocab);
  for (let i = 0; i < data.length; i++) {
    const id = data[i]!;
    if (id < 0n || id >= vocab) {
      throw new SD3Error(`${what}: token id ${id} at [${Math.floor(i / l)}, ${i % l}] is outside the vocabulary [0, ${opts.vocab})`);
    }
  }
}

/** Throws, naming the first offender, unless every weight exists with its expected shape. */
export function checkWeightShapes(what: string, store: WeightStore, expected: ReadonlyMap<string, readonly number[]>, hint: string): void {
  for (const [name, shape] of expected) {
    if (!store.has(name)) throw new SD3Error(`${what}: ${store.label}: missing weight "${name}"`);
    const got = store.get(name).shape;
    if (got.join(',') !== shape.join(',')) {
      throw new SD3Error(`${what}: weight "${name}" has shape [${got.join(', ')}], expected [${shape.join(', ')}] for ${hint}`);
    }
  }
}

/** Number of consecutive layers present: the first N for which `has(name(N))` fails. */
export function countLayers(store: WeightStore, name: (i: number) => string): number {
  let n = 0;
  while (store.has(name(n))) n++;
  return n;
}

/** A positive integer config value, or an error naming the key and the value received. */
export function positiveInt(what: string, key: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new SD3Error(`${what}: config ${key} must be a positive integer, got ${describe(v)}`);
  return v;
}

/** The Hugging Face config.json keys that are set, under our names (`keys`: [ours, theirs] pairs). */
export function pickRenamed<C>(hf: Readonly<Record<string, unknown>>, keys: readonly (readonly [keyof C, string])[]): Partial<C> {
  const out: Partial<C> = {};
  for (const [ours, theirs] of keys) if (hf[theirs] !== undefined) out[ours] = hf[theirs] as C[keyof C];
  return out;
}
