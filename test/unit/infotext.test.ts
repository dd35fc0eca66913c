/**
 * PNG generation metadata: A1111's infotext written and read back (quoting, multi-line prompts, A1111's own
 * output), text chunks in tEXt / iTXt / zTXt, and our JSON record.
 */
import assert from 'node:assert/strict';
import * as zlib from 'node:zlib';
import { describe, it } from 'node:test';
import { RGBImage, readPNGText } from '../../src/image/image.js';
import { generationParameters, modelName, parseInfotext, pngMetadata, toInfotext } from '../../src/pipelines/infotext.js';

const record = {
  task: 'image-to-image', prompt: 'a cat, sitting', negativePrompt: 'dogs', seed: 42, numSteps: 28, strength: 0.8,
  guidanceScale: 7, shift: 3, width: 512, height: 512, sampler: 'euler', model: 'sd3_medium',
};

function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(Buffer.concat([Buffer.from(type), data])) >>> 0);
  return Buffer.concat([len, Buffer.from(type), data, crc]);
}

describe('infotext', () => {
  it('writes A1111\'s layout: prompt, negative prompt, then Key: value pairs in A1111\'s order', () => {
    assert.equal(toInfotext(record, 'sd3-ts 0.1.0'), 'a cat, sitting\nNegative prompt: dogs\n'
      + 'Steps: 28, Sampler: Euler, Schedule type: Flow shift 3, CFG scale: 7, Seed: 42, Size: 512x512, Model: sd3_medium, Denoising strength: 0.8, Version: sd3-ts 0.1.0');
    const plain = toInfotext({ ...record, task: 'text-to-image', negativePrompt: '', model: 'my, model: v2' });
    assert.equal(plain, 'a cat, sitting\nSteps: 28, Sampler: Euler, Schedule type: Flow shift 3, CFG scale: 7, Seed: 42, Size: 512x512, Model: "my, model: v2"');
  });

  it('reads back what it writes, and what A1111 writes', () => {
    const text = toInfotext({ ...record, prompt: 'line one\nline two', negativePrompt: 'bad\nworse', model: 'a, b' }, 'sd3-ts 0.1.0');
    const p = parseInfotext(text);
    assert.equal(p.prompt, 'line one\nline two');
    assert.equal(p.negativePrompt, 'bad\nworse');
    assert.deepEqual(p.params, {
      Steps: '28', Sampler: 'Euler', 'Schedule type': 'Flow shift 3', 'CFG scale': '7', Seed: '42', Size: '512x512',
      Model: 'a, b', 'Denoising strength': '0.8', Version: 'sd3-ts 0.1.0',
    });
    const a1111 = 'masterpiece, (castle:1.2)\nNegative prompt: blurry\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.0, Seed: 1234, '
      + 'Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: "add_detail: 7c6bad76eb54, x: 1", Version: v1.10.1';
    const q = parseInfotext(a1111);
    assert.equal(q.prompt, 'masterpiece, (castle:1.2)');
    assert.equal(q.params['Lora hashes'], 'add_detail: 7c6bad76eb54, x: 1');
    assert.equal(q.params.Size, '512x768');
    assert.equal(q.params.Version, 'v1.10.1');
    assert.deepEqual(parseInfotext('just a prompt'), { prompt: 'just a prompt', negativePrompt: '', params: {} });
  });

  it('names models by their file or folder', () => {
    assert.equal(modelName('/models/sd3_medium_incl_clips.safetensors'), 'sd3_medium_incl_clips');
    assert.equal(modelName('/hub/stable-diffusion-3-medium-diffusers/'), 'stable-diffusion-3-medium-diffusers');
    assert.equal(modelName('tiny-random preset'), 'tiny-random');
    assert.equal(modelName('/root/.cache/huggingface/hub/models--stabilityai--stable-diffusion-3-medium-diffusers/snapshots/ea42f8cef0f178587cf766dc8129abd379c90671'), 'stable-diffusion-3-medium-diffusers');
  });
});

describe('PNG text chunks', () => {
  it('stores Latin-1 text as tEXt and other text as UTF-8 iTXt; both read back', () => {
    const img = new RGBImage(2, 1, new Uint8Array(6)).withMetadata(pngMetadata({ ...record, prompt: 'café ☕ 東京' }, '0.1.0'));
    const png = img.toPNG();
    assert.ok(png.includes(Buffer.from('iTXtparameters\0')));
    assert.ok(png.includes(Buffer.from('tEXtSoftware\0')));
    const text = readPNGText(png);
    assert.equal(text.parameters!.split('\n')[0], 'café ☕ 東京');
    assert.equal(JSON.parse(text['sd3-ts']!).prompt, 'café ☕ 東京');
    assert.equal(generationParameters(png)!.seed, 42);
    assert.equal(generationParameters(img)!.seed, 42);
  });

  it('reads compressed iTXt and zTXt written by other tools; a damaged chunk is skipped', () => {
    const base = new RGBImage(1, 1, new Uint8Array(3)).toPNG();
    const itxt = chunk('iTXt', Buffer.concat([Buffer.from('parameters\0\x01\0en\0\0', 'latin1'), zlib.deflateSync(Buffer.from('über\nSteps: 2, Seed: 1'))]));
    const ztxt = chunk('zTXt', Buffer.concat([Buffer.from('Comment\0\0', 'latin1'), zlib.deflateSync(Buffer.from('hello'))]));
    const broken = chunk('zTXt', Buffer.from('Broken\0\0not deflate', 'latin1'));
    const png = Buffer.concat([base.subarray(0, 33), itxt, ztxt, broken, base.subarray(33)]);
    assert.deepEqual(readPNGText(png), { parameters: 'über\nSteps: 2, Seed: 1', Comment: 'hello' });
  });

  it('reads the JSON that older sd3-ts images kept under `parameters`', () => {
    const old = new RGBImage(1, 1, new Uint8Array(3), { parameters: JSON.stringify({ seed: 7 }) });
    assert.deepEqual(generationParameters(old), { seed: 7 });
    assert.equal(generationParameters(new RGBImage(1, 1, new Uint8Array(3))), undefined);
  });
});
