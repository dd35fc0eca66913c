/**
 * Writes test/corrupt/: small broken (and unusual but valid) files for test/unit/corrupt.test.ts, which asserts
 * the exact error of each, or the right pixels where the format is valid. Deterministic; rerun after changing it:
 *
 *   npm run make-corrupt-corpus
 *
 * The two JPEGs that jpeg-js cannot write (CMYK, progressive) are made by Pillow through Debian's python3
 * (a development tool only; the files are committed).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as zlib from 'node:zlib';
import { writeSafetensors } from '../src/core/safetensors.js';
import { float32ToHalf, tensor } from '../src/core/tensor.js';
import { clipLayout } from '../src/presets/layout.js';
import { gaussian } from '../src/sampler/noise.js';

const OUT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'test', 'corrupt');
fs.mkdirSync(OUT, { recursive: true });
for (const f of fs.readdirSync(OUT)) if (f !== 'README.md') fs.rmSync(path.join(OUT, f));
const put = (name: string, bytes: Uint8Array | string) => fs.writeFileSync(path.join(OUT, name), bytes);

// ---- safetensors ----

function st(header: unknown, data: Uint8Array, lengthField?: bigint): Buffer {
  let json = typeof header === 'string' ? header : JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthField ?? BigInt(Buffer.byteLength(json)));
  return Buffer.concat([len, Buffer.from(json), data]);
}
const data16 = Uint8Array.from({ length: 20 }, (_, i) => i * 3);
const header = { __metadata__: { format: 'pt' }, a: { dtype: 'F16', shape: [2, 3], data_offsets: [0, 12] }, b: { dtype: 'F32', shape: [2], data_offsets: [12, 20] } };
const base = st(header, data16);
put('base.safetensors', base);
const headerEnd = 8 + Number(base.readBigUInt64LE(0));
put('trunc-in-length.safetensors', base.subarray(0, 5));
put('trunc-in-header.safetensors', base.subarray(0, 8 + 20));
put('trunc-no-data.safetensors', base.subarray(0, headerEnd));
put('trunc-in-data.safetensors', base.subarray(0, headerEnd + 14));
put('header-2gb.safetensors', st(header, data16, 2n ** 31n));
const flipped = Buffer.from(base);
flipped[8] = '['.charCodeAt(0); // the header's opening brace
put('header-flipped-brace.safetensors', flipped);
const badUtf8 = Buffer.from(base);
badUtf8[base.indexOf('"a"') + 1] = 0xff; // inside the key "a"
put('header-bad-utf8.safetensors', badUtf8);
put('overlap.safetensors', st({ a: { dtype: 'F16', shape: [2, 3], data_offsets: [0, 12] }, b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }, data16));
put('past-end.safetensors', st({ a: { dtype: 'F16', shape: [2, 3], data_offsets: [0, 12] }, b: { dtype: 'F32', shape: [4], data_offsets: [12, 28] } }, data16));
put('duplicate-key.safetensors', st('{"a":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]},"a":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}', data16));
put('unknown-dtype.safetensors', st({ a: { dtype: 'F17', shape: [2, 3], data_offsets: [0, 12] } }, data16));
put('size-mismatch.safetensors', st({ a: { dtype: 'F16', shape: [2, 3], data_offsets: [0, 10] } }, data16));
// A Linear weight holding NaN and an infinity (rows 1 and 2).
const w = Float32Array.from(gaussian(4 * 8, 1));
w[9] = Number.NaN;
w[20] = Number.POSITIVE_INFINITY;
writeSafetensors(path.join(OUT, 'nan-inf.safetensors'), { 'fc.weight': float32ToHalf(tensor('float32', [4, 8], w), 'float16') });
// A tiny CLIP text encoder (width 32, one layer, 64 tokens) with one known key of the wrong shape or dtype.
function tinyClip(change?: { name: string; shape?: number[]; dtype?: 'int32' }): Record<string, ReturnType<typeof tensor>> {
  const out: Record<string, ReturnType<typeof tensor>> = {};
  for (const e of clipLayout('', 32, 1, false, 64)) {
    const shape = change?.name === e.name && change.shape ? change.shape : [...e.shape];
    const n = shape.reduce((a, b) => a * b, 1);
    if (change?.name === e.name && change.dtype) { out[e.name] = tensor('int32', shape, new Int32Array(n)); continue; }
    const g = Float32Array.from(gaussian(n, n), (v) => (e.init.mean ?? 0) + e.init.std * v);
    out[e.name] = float32ToHalf(tensor('float32', shape, g), 'float16');
  }
  return out;
}
writeSafetensors(path.join(OUT, 'clip-valid.safetensors'), tinyClip());
writeSafetensors(path.join(OUT, 'clip-wrong-shape.safetensors'), tinyClip({ name: 'text_model.encoder.layers.0.mlp.fc2.weight', shape: [32, 100] }));
writeSafetensors(path.join(OUT, 'clip-wrong-dtype.safetensors'), tinyClip({ name: 'text_model.encoder.layers.0.self_attn.q_proj.weight', dtype: 'int32' }));

// ---- PNG, written chunk by chunk ----

function chunk(type: string, body: Uint8Array): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  const tb = Buffer.concat([Buffer.from(type, 'latin1'), body]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(tb) >>> 0);
  return Buffer.concat([len, tb, crc]);
}
function png(width: number, height: number, bitDepth: number, colorType: number, rows: Uint8Array[], extra: Buffer[] = []): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = bitDepth; ihdr[9] = colorType; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
  const raw = Buffer.concat(rows.map((r) => Buffer.concat([Buffer.from([0]), r])));
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), ...extra, chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', new Uint8Array(0))]);
}
/** The test pattern: 6x4 pixels; the test computes the same values. */
const W = 6, H = 4;
const px = (x: number, y: number) => [(x * 40) % 256, (y * 60 + 10) % 256, (x * y * 7 + 11) % 256] as const;
const rows16 = Array.from({ length: H }, (_, y) => {
  const r = Buffer.alloc(W * 6);
  for (let x = 0; x < W; x++) px(x, y).forEach((v, c) => r.writeUInt16BE(v * 257, (x * 3 + c) * 2));
  return r;
});
put('rgb16.png', png(W, H, 16, 2, rows16));
put('gray16.png', png(W, H, 16, 0, Array.from({ length: H }, (_, y) => {
  const r = Buffer.alloc(W * 2);
  for (let x = 0; x < W; x++) r.writeUInt16BE(px(x, y)[0] * 257, x * 2);
  return r;
})));
put('gray-alpha.png', png(W, H, 8, 4, Array.from({ length: H }, (_, y) => Uint8Array.from({ length: W * 2 }, (_, i) => (i % 2 ? 255 - y * 60 : px(i >> 1, y)[1])))));
// Palette of 4 colours, with alpha for each (tRNS): pixel (x, y) uses entry (x + y) % 4.
const palette = [[255, 0, 0], [0, 128, 255], [20, 200, 40], [250, 250, 250]];
put('palette-alpha.png', png(W, H, 8, 3, Array.from({ length: H }, (_, y) => Uint8Array.from({ length: W }, (_, x) => (x + y) % 4)),
  [chunk('PLTE', Uint8Array.from(palette.flat())), chunk('tRNS', Uint8Array.from([0, 128, 255, 64]))]));
// A mask whose left half is white, as a 16-bit greyscale PNG.
put('mask-gray16.png', png(16, 16, 16, 0, Array.from({ length: 16 }, () => {
  const r = Buffer.alloc(32);
  for (let x = 0; x < 8; x++) r.writeUInt16BE(65535, x * 2);
  return r;
})));
const good = png(W, H, 8, 2, Array.from({ length: H }, (_, y) => Uint8Array.from({ length: W * 3 }, (_, i) => px(Math.floor(i / 3), y)[i % 3])));
put('rgb8.png', good);
put('truncated.png', good.subarray(0, good.indexOf('IDAT') + 10));
const badCrc = Buffer.from(good);
badCrc[29] ^= 0xff; // IHDR's CRC
put('bad-crc.png', badCrc);
const flippedIhdr = Buffer.from(good);
flippedIhdr[16 + 3] ^= 0x01; // the width's low byte (6 -> 7), under IHDR's CRC
put('flipped-ihdr.png', flippedIhdr);
put('huge-60000.png', png(60000, 60000, 8, 2, [new Uint8Array(3)]));
put('zero-width.png', png(0, 4, 8, 2, []));
put('text.png', 'this is a text file with a .png name\n');

// ---- JPEG ----

const jpegPath = (n: string) => path.join(OUT, n);
const pillow = `
from PIL import Image
import sys
out = sys.argv[1]
cmyk = Image.new('CMYK', (16, 16))
for y in range(16):
    for x in range(16):
        cmyk.putpixel((x, y), (255, 0, 0, 0) if x < 8 else ((0, 0, 0, 255) if y < 8 else (0, 0, 0, 0)))
cmyk.save(out + '/cmyk.jpg', quality=95)
rgb = Image.new('RGB', (16, 16))
for y in range(16):
    for x in range(16):
        rgb.putpixel((x, y), (200, 30, 30) if x < 8 else (30, 30, 200))
rgb.save(out + '/progressive.jpg', quality=95, progressive=True)
`;
execFileSync('/usr/bin/python3', ['-c', pillow, OUT]);
const cmyk = fs.readFileSync(jpegPath('cmyk.jpg'));
put('truncated.jpg', cmyk.subarray(0, Math.floor(cmyk.length / 2)));
// The frame header of a baseline JPEG claiming 60000x60000 pixels (then nothing).
const sof = Buffer.from([0xff, 0xd8, 0xff, 0xc0, 0x00, 0x11, 0x08, 0xea, 0x60, 0xea, 0x60, 0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01, 0xff, 0xd9]);
put('huge-60000.jpg', sof);
console.log(`wrote ${fs.readdirSync(OUT).length} files to ${OUT}`);
