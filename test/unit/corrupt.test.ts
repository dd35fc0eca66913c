/**
 * The corpus of broken and unusual files in test/corrupt/ (scripts/make-corrupt-corpus.ts): each file's exact
 * error, or its pixels where the format is valid.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { FileFormatError, SD3Error } from '../../src/core/errors.js';
import { SafetensorsFile, readAllSafetensors } from '../../src/core/safetensors.js';
import { tensor } from '../../src/core/tensor.js';
import { SafetensorsStore, withPrefix } from '../../src/core/weights.js';
import { decodeImage, readImage } from '../../src/image/image.js';
import { CLIPTextEncoder } from '../../src/models/clip.js';
import { maskToLatent } from '../../src/pipelines/inputs.js';
import { TextToImage } from '../../src/presets/tasks.js';
import { openInt8Cache } from '../../src/quant/int8.js';
import { REPO } from '../helpers/cli.js';
import { TINY_OPTIONS } from '../helpers/tiny.js';

const DIR = path.join(REPO, 'test', 'corrupt');
const file = (name: string) => path.join(DIR, name);

/** The thrown error is exactly of `kind` (not a subclass standing in) and its message matches. */
function throwsKind(run: () => unknown, kind: typeof SD3Error | typeof FileFormatError, message: RegExp): void {
  assert.throws(run, (e: unknown) => {
    assert.ok(e instanceof Error && e.constructor === kind, `expected ${kind.name}, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
    assert.match(e.message, message);
    return true;
  });
}

describe('corrupt safetensors files', () => {
  const cases: [string, RegExp][] = [
    ['trunc-in-length.safetensors', /file is 5 bytes, shorter than the 8-byte header length/],
    ['trunc-in-header.safetensors', /header length \d+ runs past the end of the 28-byte file \(truncated\?\)/],
    ['trunc-no-data.safetensors', /tensor "a" data_offsets \[0, 12\] run past the 0 data bytes/],
    ['trunc-in-data.safetensors', /tensor "b" data_offsets \[12, 20\] run past the 14 data bytes/],
    ['header-2gb.safetensors', /header length 2147483648 exceeds the 100000000-byte limit/],
    ['header-flipped-brace.safetensors', /header is not valid JSON/],
    ['header-bad-utf8.safetensors', /header is not valid UTF-8/],
    ['overlap.safetensors', /tensors "a" and "b" overlap/],
    ['past-end.safetensors', /tensor "b" data_offsets \[12, 28\] run past the 20 data bytes/],
    ['duplicate-key.safetensors', /tensor "a" is listed twice in the header/],
    ['unknown-dtype.safetensors', /tensor "a" has unknown dtype "F17"/],
    ['size-mismatch.safetensors', /tensor "a" of F16 shape \[2, 3\] needs 12 bytes but data_offsets span 10/],
  ];
  for (const [name, message] of cases) {
    it(`${name}: FileFormatError naming the problem`, () => throwsKind(() => SafetensorsFile.open(file(name)), FileFormatError, message));
  }

  it('base.safetensors (what the truncations were cut from) reads', () => {
    const { tensors, metadata } = readAllSafetensors(file('base.safetensors'));
    assert.deepEqual(Object.keys(tensors), ['a', 'b']);
    assert.deepEqual(metadata, { format: 'pt' });
    assert.deepEqual(tensors.a!.shape, [2, 3]);
  });

  it('nan-inf.safetensors: the int8 quantizer names the tensor and channel; a float32 load takes it as it is (see README)', () => {
    const f = SafetensorsFile.open(file('nan-inf.safetensors'));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sd3-corrupt-'));
    try {
      throwsKind(() => openInt8Cache(new SafetensorsStore([f], withPrefix('')), ['fc.weight'], 'test', { file: path.join(dir, 'c.safetensors') }), SD3Error,
        /"fc\.weight" holds NaN values \(output channel 1\)/);
      assert.deepEqual(fs.readdirSync(dir), [], 'a cache or temporary file was left');
    } finally {
      f.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  const clip = async (name: string) => {
    const f = SafetensorsFile.open(file(name));
    try {
      const enc = await CLIPTextEncoder.load(new SafetensorsStore([f], withPrefix('')), { numAttentionHeads: 2, hiddenAct: 'gelu' }, { threads: 1 });
      try {
        return await enc.encode(tensor('int64', [1, 77], new BigInt64Array(77).fill(1n)));
      } finally {
        await enc.dispose();
      }
    } finally {
      f.close();
    }
  };
  it('clip-valid.safetensors: a tiny CLIP text encoder that runs', async () => {
    assert.deepEqual((await clip('clip-valid.safetensors')).last.shape, [1, 77, 32]);
  });
  it('clip-wrong-shape.safetensors: SD3Error naming the key and both shapes', async () => {
    await assert.rejects(clip('clip-wrong-shape.safetensors'), (e: unknown) => e instanceof SD3Error && e.constructor === SD3Error &&
      /weight "text_model\.encoder\.layers\.0\.mlp\.fc2\.weight" has shape \[32, 100\], expected \[32, 128\]/.test(e.message));
  });
  it('clip-wrong-dtype.safetensors: SD3Error naming the key and its dtype', async () => {
    await assert.rejects(clip('clip-wrong-dtype.safetensors'), (e: unknown) => e instanceof SD3Error && e.constructor === SD3Error &&
      /weight "text_model\.encoder\.layers\.0\.self_attn\.q_proj\.weight" is int32; expected a floating-point tensor/.test(e.message));
  });
});

describe('corrupt and unusual images', () => {
  const read = (name: string) => decodeImage(fs.readFileSync(file(name)), name);
  const errors: [string, RegExp][] = [
    ['text.png', /cannot read text\.png: not a PNG or JPEG file/],
    ['truncated.png', /cannot read truncated\.png: a damaged or truncated PNG file/],
    ['bad-crc.png', /cannot read bad-crc\.png: a damaged or truncated PNG file/],
    ['flipped-ihdr.png', /cannot read flipped-ihdr\.png: a damaged or truncated PNG file/],
    ['truncated.jpg', /cannot read truncated\.jpg: a damaged or truncated JPEG file/],
    ['huge-60000.png', /its header says 60000x60000 pixels; each side must be 1 to 8192 \(MAX_IMAGE_SIDE\)/],
    ['huge-60000.jpg', /its header says 60000x60000 pixels; each side must be 1 to 8192 \(MAX_IMAGE_SIDE\)/],
    ['zero-width.png', /its header says 0x4 pixels/],
  ];
  for (const [name, message] of errors) it(`${name}: SD3Error`, () => throwsKind(() => read(name), SD3Error, message));

  it('refuses a 60000x60000 header without allocating the image', () => {
    const before = process.memoryUsage().arrayBuffers;
    throwsKind(() => read('huge-60000.png'), SD3Error, /MAX_IMAGE_SIDE/);
    assert.ok(process.memoryUsage().arrayBuffers - before < 64 * 1024 * 1024, 'the decoder allocated for the claimed size');
  });

  /** The pattern the script draws: 6x4 pixels. */
  const px = (x: number, y: number) => [(x * 40) % 256, (y * 60 + 10) % 256, (x * y * 7 + 11) % 256];
  const pattern = (f: (x: number, y: number) => number[]) => Array.from({ length: 24 }, (_, i) => f(i % 6, Math.floor(i / 6))).flat();

  it('rgb8.png and the 16-bit rgb16.png give the same pixels', () => {
    assert.deepEqual([...read('rgb8.png').data], pattern(px));
    assert.deepEqual([...read('rgb16.png').data], pattern(px));
  });
  it('gray16.png: 16-bit greyscale scaled to 8 bits and expanded to RGB', () => {
    assert.deepEqual([...read('gray16.png').data], pattern((x, y) => [px(x, y)[0]!, px(x, y)[0]!, px(x, y)[0]!]));
  });
  it('gray-alpha.png: greyscale with alpha, the alpha dropped', () => {
    assert.deepEqual([...read('gray-alpha.png').data], pattern((x, y) => [px(x, y)[1]!, px(x, y)[1]!, px(x, y)[1]!]));
  });
  it('palette-alpha.png: palette colours, their alpha dropped (not composited)', () => {
    const palette = [[255, 0, 0], [0, 128, 255], [20, 200, 40], [250, 250, 250]];
    assert.deepEqual([...read('palette-alpha.png').data], pattern((x, y) => palette[(x + y) % 4]!));
  });
  it('cmyk.jpg: CMYK converted to RGB (cyan left, black top right, white bottom right)', () => {
    const img = read('cmyk.jpg');
    const at = (x: number, y: number) => [...img.data.subarray((y * 16 + x) * 3, (y * 16 + x) * 3 + 3)];
    const near = (got: number[], want: number[], where: string) => assert.ok(got.every((v, i) => Math.abs(v - want[i]!) <= 8), `${where}: ${got} vs ${want}`);
    near(at(3, 3), [0, 255, 255], 'cyan');
    near(at(12, 3), [0, 0, 0], 'black');
    near(at(12, 12), [255, 255, 255], 'white');
  });
  it('progressive.jpg: a progressive JPEG decodes', () => {
    const img = read('progressive.jpg');
    const at = (x: number) => [...img.data.subarray((8 * 16 + x) * 3, (8 * 16 + x) * 3 + 3)];
    assert.ok(at(3).every((v, i) => Math.abs(v - [200, 30, 30][i]!) <= 8) && at(12).every((v, i) => Math.abs(v - [30, 30, 200][i]!) <= 8), `${at(3)} / ${at(12)}`);
  });
  it('mask-gray16.png read as a mask: the left half repaints', async () => {
    const m = maskToLatent(await readImage(file('mask-gray16.png')), 0, 16, 16, 2, 2);
    assert.deepEqual([...m], [1, 0, 1, 0]);
  });
});

describe('NaN weights at generation', () => {
  it('an image decoded from NaN is refused, naming the weights, not saved as black', async () => {
    const t2i = await TextToImage.fromPreset('tiny-random', TINY_OPTIONS);
    try {
      const bias = t2i.backbone.weights.vae.get('decoder.conv_out.bias');
      new Float32Array(bias.data!.buffer, bias.data!.byteOffset, 3).fill(Number.NaN);
      await assert.rejects(t2i.generate('a', { numSteps: 1, seed: 1 }), (e: unknown) => e instanceof SD3Error && /decoded image holds NaN values.*tiny-random preset/.test(e.message));
    } finally {
      await t2i.dispose();
    }
  });
});

it('every file in test/corrupt has a test here', () => {
  const source = fs.readFileSync(new URL(import.meta.url), 'utf8');
  const untested = fs.readdirSync(DIR).filter((f) => f !== 'README.md' && !source.includes(`'${f}'`));
  assert.deepEqual(untested, []);
});
