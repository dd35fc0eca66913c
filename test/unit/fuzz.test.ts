/**
 * The seeded subset of the fuzz targets (test/fuzz/targets.ts), run by `npm test`: each parser of outside data
 * on a fixed-seed sample of inputs, failing (with fast-check's shrunk counterexample) on an error that is not an
 * SD3Error, a broken property, or an input slower than SLOW_MS. `npm run fuzz` runs the same targets at length.
 */
import assert from 'node:assert/strict';
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

describe('findings of the long fuzz runs, kept as regression cases', () => {
  it('a tokenizer.json that is JSON null is an SD3Error, not a TypeError', () => {
    const t = TARGETS.find((x) => x.name === 'tokenizer-files')!;
    assert.equal(runOne(t, { kind: 'json', bytes: new TextEncoder().encode('null') } as never), undefined);
  });
  it('a spiece.model whose trainer spec holds an illegal protobuf tag is a FileFormatError', () => {
    const t = TARGETS.find((x) => x.name === 'tokenizer-files')!;
    // field 2 (TrainerSpec), 1 byte long: tag 0x2f = field 5, wire type 7 (no such wire type)
    assert.equal(runOne(t, { kind: 'spiece', bytes: Uint8Array.from([0x12, 0x01, 0x2f]) } as never), undefined);
  });
  it('a CLIP config.json whose layer_norm_eps is an object with a "toString" key is an SD3Error', () => {
    const t = TARGETS.find((x) => x.name === 'diffusers-json')!;
    assert.equal(runOne(t, JSON.stringify({ hidden_size: 32, num_attention_heads: 2, hidden_act: 'gelu', layer_norm_eps: { toString: 1 } }) as never), undefined);
  });
});
