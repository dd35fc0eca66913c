import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SD3Error } from '../../src/core/errors.js';
import { tensor } from '../../src/core/tensor.js';
import { imageToUint8, toCode, uint8ToImage } from '../../src/image/pixels.js';

test('code values: clamp((x + 1) / 2, 0, 1) * 255, rounded half to even or truncated', () => {
  const cases: [number, number, number][] = [
    // x, round-half-even, truncate
    [-1, 0, 0], [1, 255, 255], [-3, 0, 0], [7, 255, 255],
    [0, 128, 127], // 127.5 exactly: the tie goes to the even 128; truncation gives 127
    [-0.5, 64, 63], // 63.75
    [0.9, 242, 242], // 242.25
    [Number.NaN, 0, 0],
  ];
  for (const [x, round, trunc] of cases) {
    assert.equal(toCode(x), round, `round ${x}`);
    assert.equal(toCode(x, 'truncate'), trunc, `truncate ${x}`);
  }
});

test('image [B, 3, H, W] becomes pixels [B, H, W, 3] (channels last)', () => {
  // B=1, 3 channels, H=1, W=2: red channel -1 then 1, green 1 then -1, blue 0 then 0
  const image = tensor('float32', [1, 3, 1, 2], Float32Array.from([-1, 1, 1, -1, 0, 0]));
  const px = imageToUint8(image);
  assert.deepEqual(px.shape, [1, 1, 2, 3]);
  assert.deepEqual([...px.data], [0, 255, 128, 255, 0, 128]);
  assert.deepEqual([...imageToUint8(image, 'truncate').data], [0, 255, 127, 255, 0, 127]);
});

test('pixels [B, H, W, 3] become an image in [-1, 1] (x / 255 * 2 - 1)', () => {
  const px = tensor('uint8', [1, 1, 2, 3], Uint8Array.from([0, 255, 51, 255, 0, 204]));
  const image = uint8ToImage(px);
  assert.deepEqual(image.shape, [1, 3, 1, 2]);
  assert.deepEqual([...image.data], [-1, 1, 1, -1, Math.fround(-0.6), Math.fround(0.6)]);
});

test('pixels -> image -> pixels: rounding gives every code back; truncation lowers codes 1..63 by one', () => {
  const all = tensor('uint8', [1, 1, 256, 3], Uint8Array.from({ length: 768 }, (_, i) => Math.floor(i / 3)));
  assert.deepEqual([...imageToUint8(uint8ToImage(all)).data], [...all.data]);
  // in float32, (v / 255 * 2 - 1 + 1) / 2 * 255 lands just below v for v = 1..63
  const trunc = imageToUint8(uint8ToImage(all), 'truncate').data;
  const lowered = Array.from({ length: 256 }, (_, v) => v).filter((v) => trunc[v * 3] !== v);
  assert.deepEqual(lowered, Array.from({ length: 63 }, (_, i) => i + 1));
  for (const v of lowered) assert.equal(trunc[v * 3], v - 1);
});

test('bad inputs name the value and what was expected', () => {
  const bad: [() => unknown, RegExp][] = [
    [() => imageToUint8(tensor('float32', [1, 4, 2, 2], new Float32Array(16))), /image must have shape \[B, 3, H, W\].*got \[1, 4, 2, 2\]/],
    [() => imageToUint8(tensor('float32', [3, 2, 2], new Float32Array(12))), /got \[3, 2, 2\]/],
    [() => imageToUint8(tensor('float64', [1, 3, 1, 1], new Float64Array(3))), /image must be float32, got float64/],
    [() => imageToUint8(tensor('float32', [1, 3, 1, 1], new Float32Array(3)), 'nearest' as never), /rounding must be .* got nearest/],
    [() => uint8ToImage(tensor('uint8', [1, 3, 2, 2], new Uint8Array(12))), /pixels must have shape \[B, H, W, 3\].*got \[1, 3, 2, 2\]/],
    [() => uint8ToImage(tensor('float32', [1, 2, 2, 3], new Float32Array(12))), /pixels must be uint8, got float32/],
  ];
  for (const [fn, message] of bad) assert.throws(fn, (e: unknown) => e instanceof SD3Error && message.test(e.message));
});
