/** The parity comparison itself (test/parity/lib.ts): non-finite values must match element-wise. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { tensor } from '../../src/core/tensor.js';
import { compare } from '../parity/lib.js';

const t = (v: number[]) => tensor('float32', [v.length], Float32Array.from(v));
const tol = { atol: 1e-6, rtol: 1e-5 };

test('an infinity in the expected tensor does not widen the budget for the other values', () => {
  assert.equal(compare('x', t([1, 5, Infinity]), t([1, 2, Infinity]), tol).ok, false);
  assert.equal(compare('x', t([1, 2, Infinity]), t([1, 2, Infinity]), tol).ok, true);
});

test('non-finite values must be matched exactly', () => {
  assert.equal(compare('x', t([1, -Infinity]), t([1, Infinity]), tol).ok, false);
  assert.equal(compare('x', t([1, 3]), t([1, Infinity]), tol).ok, false);
  assert.equal(compare('x', t([1, NaN]), t([1, 2]), tol).ok, false);
  assert.equal(compare('x', t([1, NaN]), t([1, NaN]), tol).ok, true);
});

test('finite values: max|a - e| <= atol + rtol * max|e|', () => {
  assert.equal(compare('x', t([100.0005, 0]), t([100, 0]), tol).ok, true);
  assert.equal(compare('x', t([100.002, 0]), t([100, 0]), tol).ok, false);
});
