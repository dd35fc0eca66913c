/**
 * The OpenAI Images API driven by the real `openai` npm client (6.x) against a server on 127.0.0.1 with the
 * tiny model: generations (n=2, two sizes), edits with and without a mask, models.list, 429 with Retry-After
 * on a full queue, streaming partial images, errors in OpenAI's shape.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI, { toFile } from 'openai';
import { PNG } from 'pngjs';
import { decodeImage, readPNGText } from '../../src/image/image.js';
import { ImageToImage } from '../../src/pipelines/image-to-image.js';
import { Inpaint } from '../../src/pipelines/inpaint.js';
import { TextToImage } from '../../src/pipelines/text-to-image.js';
import { assertSamePixels, maskImage } from '../helpers/tiny.js';
import { type TestServer, picture, postJSON, startTiny } from './helpers.js';

let srv: TestServer;
let client: OpenAI;

before(async () => {
  srv = await startTiny();
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120_000 });
});
after(async () => { await srv.stop(); });

/** Extensions the OpenAI types do not know; the client sends them as given. */
type Extra = { steps?: number; seed?: number; cfg_scale?: number; negative_prompt?: string; strength?: number };

function b64Image(b64: string | undefined) {
  assert.ok(b64, 'b64_json is missing');
  return decodeImage(Buffer.from(b64, 'base64'));
}

/** An RGBA PNG: transparent (alpha 0) where `edit(x, y)`, opaque black elsewhere (OpenAI's mask convention). */
function alphaMask(width: number, height: number, edit: (x: number, y: number) => boolean): Buffer {
  const png = new PNG({ width, height });
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
    const i = (y * width + x) * 4;
    png.data[i + 3] = edit(x, y) ? 0 : 255;
  }
  return PNG.sync.write(png);
}

describe('OpenAI Images API (openai npm client)', () => {
  it('models.list names the loaded model', async () => {
    const models = [];
    for await (const m of client.models.list()) models.push(m);
    assert.deepEqual(models.map((m) => [m.id, m.object, m.owned_by]), [['tiny-random', 'model', 'sd3-ts']]);
  });

  it('images.generate: n=2 at two sizes, each image equal to the library\'s, seeds seed and seed+1', async () => {
    for (const [w, h] of [[64, 64], [96, 48]] as const) {
      const res = await client.images.generate({ prompt: 'a blue boat', n: 2, size: `${w}x${h}` as '256x256', steps: 2, seed: 5, cfg_scale: 4 } as OpenAI.ImageGenerateParamsNonStreaming & Extra);
      assert.equal(res.data!.length, 2);
      assert.equal(typeof res.created, 'number');
      assert.equal((res as unknown as { size: string }).size, `${w}x${h}`);
      const expected = await new TextToImage(srv.model.backbone, srv.model.preprocessor, { width: w, height: h })
        .generate({ prompts: ['a blue boat', 'a blue boat'] }, { numSteps: 2, seed: 5, guidanceScale: 4 });
      res.data!.forEach((d, i) => assertSamePixels(b64Image(d.b64_json), expected[i]!, `${w}x${h} image ${i}`));
      const text = readPNGText(Buffer.from(res.data![1]!.b64_json!, 'base64'));
      assert.match(text.parameters!, new RegExp(`Seed: 6, Size: ${w}x${h}`));
    }
  });

  it('images.generate with response_format url and output_format jpeg', async () => {
    const res = await client.images.generate({ prompt: 'a lamp', response_format: 'url', steps: 1, seed: 1 } as OpenAI.ImageGenerateParamsNonStreaming & Extra);
    const url = res.data![0]!.url!;
    assert.match(url, new RegExp(`^${srv.url}/v1/images/files/[0-9a-f-]{36}/0\\.png$`));
    const png = await fetch(url);
    assert.equal(png.status, 200);
    assert.deepEqual([decodeImage(new Uint8Array(await png.arrayBuffer())).width], [64]);
    const jpeg = await client.images.generate({ prompt: 'a lamp', output_format: 'jpeg', steps: 1, seed: 1 } as OpenAI.ImageGenerateParamsNonStreaming & Extra);
    assert.deepEqual([...Buffer.from(jpeg.data![0]!.b64_json!, 'base64').subarray(0, 3)], [0xff, 0xd8, 0xff]);
    assert.equal(jpeg.output_format, 'jpeg');
  });

  it('images.edit without a mask is image-to-image; with an alpha mask, inpainting where alpha is 0', async () => {
    const input = picture(64, 64, 3);
    const file = () => toFile(input.toPNG(), 'in.png', { type: 'image/png' });
    const i2i = await client.images.edit({ image: await file(), prompt: 'watercolour', steps: 4, seed: 9, strength: 0.5 } as OpenAI.ImageEditParamsNonStreaming & Extra);
    const expectedI2I = await new ImageToImage(srv.model.backbone, srv.model.preprocessor, { width: 64, height: 64 })
      .generate({ images: input, prompts: 'watercolour' }, { numSteps: 4, seed: 9, strength: 0.5 });
    assertSamePixels(b64Image(i2i.data![0]!.b64_json), expectedI2I, 'edit without mask vs ImageToImage');

    const edit = (x: number) => x < 32;
    const masked = await client.images.edit({
      image: [await file()], mask: await toFile(alphaMask(64, 64, edit), 'mask.png', { type: 'image/png' }), prompt: 'a door', steps: 4, seed: 9,
    } as OpenAI.ImageEditParamsNonStreaming & Extra);
    const expectedInpaint = await new Inpaint(srv.model.backbone, srv.model.preprocessor, { width: 64, height: 64 })
      .generate({ images: input, masks: maskImage(64, 64, edit), prompts: 'a door' }, { numSteps: 4, seed: 9 });
    assertSamePixels(b64Image(masked.data![0]!.b64_json), expectedInpaint, 'edit with an alpha mask vs Inpaint (alpha 0 = repaint)');
    // The JSON form of edits: images [{image_url}] and mask {image_url} as data URLs.
    const viaJSON = await postJSON(`${srv.url}/v1/images/edits`, {
      prompt: 'a door', steps: 4, seed: 9,
      images: [{ image_url: `data:image/png;base64,${input.toPNG().toString('base64')}` }],
      mask: { image_url: `data:image/png;base64,${alphaMask(64, 64, edit).toString('base64')}` },
    });
    assert.equal(viaJSON.status, 200);
    const body = (await viaJSON.json()) as { data: { b64_json: string }[] };
    assertSamePixels(b64Image(body.data[0]!.b64_json), expectedInpaint, 'JSON edit vs Inpaint');
  });

  it('images.edit rejects a mask of another size, naming the mask', async () => {
    await assert.rejects(client.images.edit({
      image: await toFile(picture(64, 64).toPNG(), 'in.png', { type: 'image/png' }),
      mask: await toFile(alphaMask(32, 32, () => true), 'mask.png', { type: 'image/png' }),
      prompt: 'x',
    }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.equal(e.param, 'mask');
      assert.match(e.message, /mask is 32x32 but the image is 64x64/);
      return true;
    });
  });

  it('streams partial images (image_generation.partial_image) and then the completed image', async () => {
    const stream = await client.images.generate({ prompt: 'a kite', stream: true, partial_images: 2, steps: 6, seed: 2 } as OpenAI.ImageGenerateParamsStreaming & Extra);
    const events: OpenAI.ImageGenStreamEvent[] = [];
    for await (const e of stream) events.push(e);
    assert.deepEqual(events.map((e) => e.type), ['image_generation.partial_image', 'image_generation.partial_image', 'image_generation.completed']);
    const partials = events.filter((e): e is OpenAI.ImageGenPartialImageEvent => e.type === 'image_generation.partial_image');
    assert.deepEqual(partials.map((p) => p.partial_image_index), [0, 1]);
    for (const p of partials) assert.deepEqual([b64Image(p.b64_json).width, b64Image(p.b64_json).height], [64, 64]);
    const expected = await new TextToImage(srv.model.backbone, srv.model.preprocessor, { width: 64, height: 64 }).generate('a kite', { numSteps: 6, seed: 2 });
    assertSamePixels(b64Image(events.at(-1)!.b64_json), expected, 'streamed final image vs library');
  });

  it('answers 429 with Retry-After when the queue is full (maxRetries: 0)', async () => {
    const small = await startTiny({ model: srv.model, maxQueue: 1 });
    const c = new OpenAI({ baseURL: `${small.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120_000 });
    try {
      const running = c.images.generate({ prompt: 'a', steps: 150, seed: 1 } as OpenAI.ImageGenerateParamsNonStreaming & Extra);
      running.catch(() => undefined);
      while (!small.context.queue!.running) await sleep(5);
      const queued = c.images.generate({ prompt: 'b', steps: 1, seed: 1 } as OpenAI.ImageGenerateParamsNonStreaming & Extra);
      queued.catch(() => undefined);
      while (small.context.queue!.pendingCount < 1) await sleep(5);
      await assert.rejects(c.images.generate({ prompt: 'c', steps: 1 } as OpenAI.ImageGenerateParamsNonStreaming & Extra), (e: unknown) => {
        assert.ok(e instanceof OpenAI.RateLimitError, `got ${(e as Error).name}`);
        assert.equal(e.status, 429);
        assert.equal(e.code, 'queue_full');
        assert.equal(e.type, 'rate_limit_error');
        assert.match(e.headers.get('retry-after') ?? '', /^[1-9]\d*$/);
        return true;
      });
      small.context.queue!.cancel(small.context.queue!.running!);
      await assert.rejects(running, (e: unknown) => e instanceof OpenAI.APIError);
      assert.equal((await queued).data!.length, 1);
    } finally {
      await small.close();
    }
  });

  it('a client that retries (maxRetries: 2) waits the Retry-After and then gets its image', async () => {
    const small = await startTiny({ model: srv.model, maxQueue: 0 });
    const statuses: number[] = [];
    small.server.on('request', (req, res) => { if (req.url === '/v1/images/generations') res.on('finish', () => statuses.push(res.statusCode)); });
    const patient = new OpenAI({ baseURL: `${small.url}/v1`, apiKey: 'unused', maxRetries: 2, timeout: 120_000 });
    try {
      const first = await small.context.queue!.submit({ prompt: 'busy', negativePrompt: '', width: 64, height: 64, steps: 30, cfgScale: 7, seed: 1, batch: 1 });
      const res = await patient.images.generate({ prompt: 'later', steps: 1, seed: 1 } as OpenAI.ImageGenerateParamsNonStreaming & Extra);
      assert.equal(res.data!.length, 1);
      assert.equal(first.status, 'completed');
      assert.equal(statuses[0], 429);
      assert.equal(statuses.at(-1), 200);
    } finally {
      await small.close();
    }
  });

  it('answers bad requests with {error: {message, type, param, code}} naming the field, and keeps serving', async () => {
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ n: 1 }, 'prompt', /prompt is required/],
      [{ prompt: 7 }, 'prompt', /prompt must be a string, got number 7/],
      [{ prompt: 'x', size: '50x50' }, 'size', /multiples of 16/],
      [{ prompt: 'x', size: 'big' }, 'size', /WIDTHxHEIGHT/],
      [{ prompt: 'x', n: 0 }, 'n', /n must be an integer >= 1/],
      [{ prompt: 'x', n: 'two' }, 'n', /got "two"/],
      [{ prompt: 'x', steps: 1e9 }, 'steps', /<= 150/],
      [{ prompt: 'x', response_format: 'gif' }, 'response_format', /b64_json/],
      [{ prompt: 'x'.repeat(2001) }, 'prompt', /at most 2000 characters/],
      [{ prompt: 'x', seed: -5 }, 'seed', /seed must be an integer >= -1/],
    ];
    for (const [body, param, message] of cases) {
      const res = await postJSON(`${srv.url}/v1/images/generations`, body);
      assert.equal(res.status, 400, JSON.stringify(body));
      const { error } = (await res.json()) as { error: { message: string; type: string; param: string; code: string } };
      assert.deepEqual(Object.keys(error).sort(), ['code', 'message', 'param', 'type']);
      assert.equal(error.type, 'invalid_request_error');
      assert.equal(error.param, param, JSON.stringify(body));
      assert.match(error.message, message);
    }
    const ignored = await client.images.generate({ prompt: 'fine', quality: 'hd', style: 'vivid', model: 'dall-e-3', user: 'u', background: 'auto', steps: 1 } as OpenAI.ImageGenerateParamsNonStreaming & Extra);
    assert.equal(ignored.data!.length, 1);
  });
});
