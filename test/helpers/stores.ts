/** Weight stores for unit tests. */
import { SD3Error } from '../../src/core/errors.js';
import type { WeightRef, WeightStore } from '../../src/core/weights.js';

/** A store that knows shapes only (enough for config inference at the real sizes). */
export function shapeStore(shapes: Map<string, number[]>): WeightStore {
  return {
    label: 'shapes',
    has: (n) => shapes.has(n),
    get: (n): WeightRef => {
      const shape = shapes.get(n);
      if (!shape) throw new SD3Error(`shapes: missing weight "${n}"`);
      return { name: n, dtype: 'float16', shape, chunks: [] };
    },
  };
}

/** Seeded uniform(-1, 1) numbers. */
export function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s / 2 ** 31 - 1; };
}
