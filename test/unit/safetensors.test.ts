import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { FileFormatError } from '../../src/core/errors.js';
import { SafetensorsFile, readAllSafetensors, writeSafetensors } from '../../src/core/safetensors.js';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, tensor } from '../../src/core/tensor.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sd3-st-'));
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));

/** Builds a file from a header object (or raw header text) and data bytes. */
function make(name: string, header: unknown, data: Uint8Array = new Uint8Array(0), opts: { lenOverride?: bigint; truncateTo?: number } = {}): string {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const h = Buffer.from(text, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(opts.lenOverride ?? BigInt(h.length));
  let bytes = Buffer.concat([len, h, Buffer.from(data)]);
  if (opts.truncateTo !== undefined) bytes = bytes.subarray(0, opts.truncateTo);
  const file = path.join(dir, name);
  fs.writeFileSync(file, bytes);
  return file;
}

const good = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F16', shape: [2], data_offsets: [8, 12] } };
const goodData = new Uint8Array(12);

// Each entry: file name, builder, and a fragment the error message must contain.
const corpus: [string, () => string, RegExp][] = [
  ['empty', () => { const f = path.join(dir, 'empty'); fs.writeFileSync(f, ''); return f; }, /shorter than the 8-byte header length/],
  ['short', () => { const f = path.join(dir, 'short'); fs.writeFileSync(f, Buffer.from([1, 2, 3])); return f; }, /shorter than the 8-byte/],
  ['header-too-long', () => make('header-too-long', good, goodData, { lenOverride: 1n << 40n }), /exceeds the .* limit/],
  ['header-past-eof', () => make('header-past-eof', good, goodData, { lenOverride: 5000n }), /runs past the end/],
  ['header-len-zero', () => make('header-len-zero', good, goodData, { lenOverride: 0n }), /too small/],
  ['truncated-data', () => make('truncated-data', good, goodData, { truncateTo: 8 + JSON.stringify(good).length + 5 }), /run past the .* data bytes/],
  ['bad-json', () => make('bad-json', '{"a": {"dtype": "F32",', goodData), /not valid JSON/],
  ['json-array', () => make('json-array', '[1,2,3]', goodData), /not a JSON object/],
  ['json-null', () => make('json-null', 'null', goodData), /not a JSON object/],
  ['bad-utf8', () => { const f = make('bad-utf8', '{"a":1}'); const b = fs.readFileSync(f); b[10] = 0xff; fs.writeFileSync(f, b); return f; }, /UTF-8|JSON/],
  ['unknown-dtype', () => make('unknown-dtype', { a: { dtype: 'F4', shape: [2], data_offsets: [0, 2] } }, new Uint8Array(2)), /unknown dtype "F4"/],
  ['dtype-not-string', () => make('dtype-not-string', { a: { dtype: 7, shape: [2], data_offsets: [0, 8] } }, goodData), /no dtype string/],
  ['entry-not-object', () => make('entry-not-object', { a: 5 }, goodData), /not an object/],
  ['shape-negative', () => make('shape-negative', { a: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, goodData), /invalid shape/],
  ['shape-float', () => make('shape-float', { a: { dtype: 'F32', shape: [1.5], data_offsets: [0, 8] } }, goodData), /invalid shape/],
  ['shape-missing', () => make('shape-missing', { a: { dtype: 'F32', data_offsets: [0, 8] } }, goodData), /invalid shape/],
  ['offsets-missing', () => make('offsets-missing', { a: { dtype: 'F32', shape: [2] } }, goodData), /invalid data_offsets/],
  ['offsets-reversed', () => make('offsets-reversed', { a: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, goodData), /end before begin/],
  ['length-mismatch', () => make('length-mismatch', { a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, goodData), /needs 12 bytes but data_offsets span 8/],
  ['out-of-file', () => make('out-of-file', { a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, goodData), /run past the 12 data bytes/],
  ['overlap', () => make('overlap', { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, goodData), /overlap/],
  ['huge-shape', () => make('huge-shape', { a: { dtype: 'F32', shape: [1e9, 1e9], data_offsets: [0, 8] } }, goodData), /needs .* bytes/],
  ['metadata-not-strings', () => make('metadata-not-strings', { __metadata__: { a: 1 }, ...good }, goodData), /__metadata__ value/],
  ['metadata-array', () => make('metadata-array', { __metadata__: [1], ...good }, goodData), /__metadata__ is not an object/],
];

for (const [name, build, msg] of corpus) {
  test(`corrupt safetensors: ${name} gives a clear error naming the file`, () => {
    const file = build();
    assert.throws(() => SafetensorsFile.open(file), (e: unknown) => {
      assert.ok(e instanceof FileFormatError, `expected FileFormatError, got ${e}`);
      assert.match((e as Error).message, msg);
      assert.ok((e as Error).message.includes(file), 'message names the file');
      return true;
    });
  });
}

test('the corpus has at least 20 corrupt files', () => assert.ok(corpus.length >= 20));

test('a well-formed file round-trips every dtype and metadata', () => {
  const file = path.join(dir, 'rt.safetensors');
  const ts = {
    f32: tensor('float32', [2, 2], Float32Array.from([1, -2, 3.5, 0])),
    i64: tensor('int64', [3], BigInt64Array.from([1n, -1n, 1n << 40n])),
    u8: tensor('uint8', [1], Uint8Array.from([255])),
    h: tensor('float16', [2], Uint16Array.from([f32ToF16(1.5), f32ToF16(-0.25)])),
    scalar: tensor('float32', [], Float32Array.from([7])),
  };
  writeSafetensors(file, ts, { format: 'pt' });
  const { tensors, metadata } = readAllSafetensors(file);
  assert.deepEqual(metadata, { format: 'pt' });
  for (const [k, t] of Object.entries(ts)) {
    assert.deepEqual(tensors[k]!.shape, t.shape);
    assert.deepEqual(Array.from(tensors[k]!.data as ArrayLike<unknown>), Array.from(t.data as ArrayLike<unknown>));
  }
  // header is padded to a multiple of 8
  const n = Number(fs.readFileSync(file).readBigUInt64LE(0));
  assert.equal(n % 8, 0);
});

test('a failed write leaves no file behind', () => {
  const file = path.join(dir, 'never.safetensors');
  const bad = { dtype: 'float32' as const, shape: [4], data: new Float32Array(4) };
  assert.throws(() => writeSafetensors(file, { a: bad, __metadata__: bad }));
  assert.equal(fs.existsSync(file), false);
  assert.deepEqual(fs.readdirSync(dir).filter((f) => f.includes('never')), []);
});

test('half-precision conversions are exact on representable values and round to nearest even', () => {
  for (const v of [0, -0, 1, -2, 65504, 6.103515625e-5, 5.960464477539063e-8, Infinity, -Infinity, 0.333251953125]) {
    assert.ok(Object.is(f16ToF32(f32ToF16(v)), v), `f16 ${v}`);
  }
  assert.ok(Number.isNaN(f16ToF32(f32ToF16(NaN))));
  assert.equal(f16ToF32(f32ToF16(70000)), Infinity);
  assert.equal(f16ToF32(f32ToF16(1 + 2 ** -11)), 1); // tie -> even
  assert.equal(f16ToF32(f32ToF16(1 + 3 * 2 ** -11)), 1 + 2 ** -9);
  for (const v of [0, 1, -2, 0.333984375, -1232, 3.3895313892515355e38]) assert.equal(bf16ToF32(f32ToBf16(v)), v);
  assert.ok(Number.isNaN(bf16ToF32(f32ToBf16(NaN))));
});
