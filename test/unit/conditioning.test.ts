import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Tensor, tensor } from '../../src/core/tensor.js';
import { NO_T5_ROWS, SD3_CONTEXT_WIDTH, batchConditioning, concatBatch, sd3Conditioning } from '../../src/models/conditioning.js';

/** float32 tensor whose value at each position is base + its flat index. */
function ramp(shape: number[], base: number): Tensor<'float32'> {
  const n = shape.reduce((a, b) => a * b, 1);
  return tensor('float32', shape, Float32Array.from({ length: n }, (_, i) => base + i));
}

// batch 2, 3 CLIP tokens, CLIP-L width 2, CLIP-G width 3, T5: 4 tokens of width 7
const clipL = { penultimate: ramp([2, 3, 2], 100), pooled: ramp([2, 2], 500) };
const clipG = { penultimate: ramp([2, 3, 3], 200), pooledProjected: ramp([2, 3], 600) };
const t5 = ramp([2, 4, 7], 1000);

test('context: CLIP-L ‖ CLIP-G ‖ zeros per CLIP row, then the T5 rows; y: pooled L ‖ pooled-projected G', () => {
  const { context, y } = sd3Conditioning({ clipL, clipG, t5 });
  assert.deepEqual(context.shape, [2, 7, 7]);
  const row = (b: number, s: number) => [...context.data.subarray((b * 7 + s) * 7, (b * 7 + s + 1) * 7)];
  assert.deepEqual(row(0, 0), [100, 101, 200, 201, 202, 0, 0]);
  assert.deepEqual(row(1, 2), [110, 111, 215, 216, 217, 0, 0]);
  assert.deepEqual(row(0, 3), [1000, 1001, 1002, 1003, 1004, 1005, 1006]);
  assert.deepEqual(row(1, 6), [1049, 1050, 1051, 1052, 1053, 1054, 1055]);
  assert.deepEqual(y.shape, [2, 5]);
  assert.deepEqual([...y.data], [500, 501, 600, 601, 602, 502, 503, 603, 604, 605]);
});

test('without T5: 77 zero rows at the 4096 width (or the width asked for)', () => {
  const { context } = sd3Conditioning({ clipL, clipG });
  assert.deepEqual(context.shape, [2, 3 + NO_T5_ROWS, SD3_CONTEXT_WIDTH]);
  assert.deepEqual([...context.data.subarray(SD3_CONTEXT_WIDTH, SD3_CONTEXT_WIDTH + 6)], [102, 103, 203, 204, 205, 0]);
  assert.ok(context.data.subarray(3 * SD3_CONTEXT_WIDTH, (3 + NO_T5_ROWS) * SD3_CONTEXT_WIDTH).every((v) => v === 0), 'T5 rows are zero');
  const narrow = sd3Conditioning({ clipL, clipG }, { contextWidth: 7 });
  assert.deepEqual(narrow.context.shape, [2, 80, 7]);
  assert.deepEqual([...narrow.context.data.subarray(80 * 7, 80 * 7 + 7)], [106, 107, 209, 210, 211, 0, 0]);
});

test('positive and negative conditionings batch in order; mismatches are named', () => {
  const pos = sd3Conditioning({ clipL, clipG, t5 });
  const neg = sd3Conditioning({ clipL: { penultimate: ramp([2, 3, 2], -100), pooled: ramp([2, 2], -500) }, clipG, t5 });
  const both = batchConditioning([pos, neg]);
  assert.deepEqual(both.context.shape, [4, 7, 7]);
  assert.deepEqual(both.context.data.subarray(0, 98), pos.context.data);
  assert.deepEqual(both.context.data.subarray(98), neg.context.data);
  assert.deepEqual(both.y.data.subarray(10), neg.y.data);
  const shortT5 = sd3Conditioning({ clipL, clipG, t5: ramp([2, 2, 7], 0) });
  assert.throws(() => batchConditioning([pos, shortT5]), /contexts of shapes \[2, 7, 7\], \[2, 5, 7\] cannot be batched/);
  const ids = concatBatch([tensor('int64', [1, 2], BigInt64Array.from([1n, 2n])), tensor('int64', [2, 2], BigInt64Array.from([3n, 4n, 5n, 6n]))]);
  assert.deepEqual(ids.shape, [3, 2]);
  assert.deepEqual([...ids.data], [1n, 2n, 3n, 4n, 5n, 6n]);
  assert.throws(() => concatBatch([ramp([1, 2], 0), ramp([1, 3], 0)]), /tensor 1 has shape \[1, 3\], expected \[batch, 2\]/);
});

test('bad inputs are named: batch, widths, dtypes, token counts', () => {
  assert.throws(() => sd3Conditioning({ clipL, clipG, t5: ramp([1, 4, 7], 0) }), /T5 sequence has batch 1, expected 2/);
  assert.throws(() => sd3Conditioning({ clipL, clipG: { ...clipG, pooledProjected: ramp([3, 3], 0) }, t5 }), /CLIP-G pooled has batch 3, expected 2/);
  assert.throws(() => sd3Conditioning({ clipL, clipG: { ...clipG, penultimate: ramp([2, 4, 3], 0) } }), /CLIP-G sequence has 4 tokens, CLIP-L 3/);
  assert.throws(() => sd3Conditioning({ clipL, clipG, t5: ramp([2, 4, 4], 0) }), /context width 4 cannot hold the CLIP features 2 \+ 3 = 5/);
  assert.throws(() => sd3Conditioning({ clipL, clipG, t5 }, { contextWidth: 4096 }), /contextWidth 4096 differs from the T5 width 7/);
  const half = tensor('float16', [2, 3, 2], new Uint16Array(12));
  assert.throws(() => sd3Conditioning({ clipL: { ...clipL, penultimate: half }, clipG }), /CLIP-L sequence must be float32, got float16/);
  assert.throws(() => sd3Conditioning({ clipL: { ...clipL, pooled: ramp([2, 3, 2], 0) }, clipG }), /CLIP-L pooled must have shape \[batch, features\], got \[2, 3, 2\]/);
});
