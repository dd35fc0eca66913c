/**
 * The seeded subset of the fuzz targets (test/fuzz/targets.ts), run by `npm test`: each parser of outside data
 * on a fixed-seed sample of inputs, failing (with fast-check's shrunk counterexample) on an error that is not an
 * SD3Error, a broken property, or an input slower than SLOW_MS. `npm run fuzz` runs the same targets at length.
 */
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { TARGETS, runOne } from '../fuzz/targets.js';

describe('fuzz targets (seeded subset)', () => {
  for (const t of TARGETS) {
    it(`${t.name}: only SD3Errors, properties hold`, { timeout: 120_000 }, () => {
      fc.assert(fc.property(t.arbitrary, (input) => {
        const f = runOne(t, input);
        if (f) throw new Error(`[${f.kind}] ${f.message}`);
      }), { seed: 20_261_202, numRuns: Math.max(20, Math.round(2000 * t.weight)) });
    });
  }
});
