import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import jpeg from 'jpeg-js';
import { RGBImage, decodeImage, readImage, readPNGText, resizeNearest } from '../../src/image/image.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sd3-img-'));
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));

function gradient(w: number, h: number): RGBImage {
  const d = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) { d[i * 3] = i % 256; d[i * 3 + 1] = (i * 7) % 256; d[i * 3 + 2] = 255 - (i % 256); }
  return new RGBImage(w, h, d);
}

test('PNG round trip keeps pixels and text metadata', async () => {
  const img = gradient(5, 3).withMetadata({ parameters: 'prompt: a cat; seed: 42', Software: 'sd3-ts' });
  const file = path.join(dir, 'a.png');
  await img.save(file);
  const back = await readImage(file);
  assert.deepEqual(back.data, img.data);
  assert.deepEqual(readPNGText(fs.readFileSync(file)), { parameters: 'prompt: a cat; seed: 42', Software: 'sd3-ts' });
});

test('JPEG input decodes to RGB of the right size', () => {
  const rgba = Buffer.alloc(8 * 4 * 4, 200);
  const enc = jpeg.encode({ width: 8, height: 4, data: rgba }, 95);
  const img = decodeImage(enc.data);
  assert.equal(img.width, 8);
  assert.equal(img.height, 4);
  assert.ok(Math.abs(img.data[0]! - 200) <= 2);
});

test('unreadable images and bad sizes give clear errors; a failed save leaves nothing', async () => {
  assert.throws(() => decodeImage(Buffer.from('hello')), /not a PNG or JPEG/);
  await assert.rejects(readImage(path.join(dir, 'missing.png')), /cannot read image/);
  assert.throws(() => new RGBImage(2, 2, new Uint8Array(5)), /needs 12 bytes, got 5/);
  await assert.rejects(gradient(2, 2).save(path.join(dir, 'no-such-dir', 'x.png')), /could not write/);
  assert.deepEqual(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp')), []);
});

test('nearest resize takes the half-pixel centre (8x reduction picks pixel 8i+4)', () => {
  const img = gradient(16, 8);
  const small = resizeNearest(img, 2, 1);
  assert.deepEqual([...small.data.subarray(0, 3)], [...img.data.subarray((4 * 16 + 4) * 3, (4 * 16 + 4) * 3 + 3)]);
  assert.deepEqual([...small.data.subarray(3, 6)], [...img.data.subarray((4 * 16 + 12) * 3, (4 * 16 + 12) * 3 + 3)]);
});
