/**
 * `sd3 serve`'s HTTP server (startServer) on 127.0.0.1, port 0, with a tiny-random TextToImage at 64x64: the
 * page, health, PNG generation equal to the library's, 400s that name the bad value, and cancellation when the
 * client goes away.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { AbortError } from '../../src/core/errors.js';
import { decodeImage, readPNGText } from '../../src/image/image.js';
import { TextToImage } from '../../src/presets/tasks.js';
import { type ServerHandle, startServer } from '../../src/cli/serve.js';
import { TINY_OPTIONS, assertSamePixels } from '../helpers/tiny.js';

let task: TextToImage;
let server: ServerHandle;

before(async () => {
  task = await TextToImage.fromPreset('tiny-random', TINY_OPTIONS);
  server = await startServer(task, { port: 0, model: 'tiny-random' });
});

after(async () => {
  const closed = server.close();
  // fetch may hold a connection it opened ahead without a request on it, which close() waits out (~3 s).
  server.server.closeAllConnections();
  await closed;
  await task.dispose();
});

function post(body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(`${server.url}/api/generate`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body), ...init,
  });
}

async function expectError(res: Response, status: number, pattern: RegExp): Promise<void> {
  assert.equal(res.status, status);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  const { error } = (await res.json()) as { error: string };
  assert.match(error, pattern);
}

/** A 200 with a 64x64 PNG (reading the body, so that no connection is left busy). */
async function expectPNG(res: Response): Promise<void> {
  assert.equal(res.status, 200);
  const img = decodeImage(new Uint8Array(await res.arrayBuffer()));
  assert.deepEqual([img.width, img.height], [64, 64]);
}

describe('sd3 serve', () => {
  it('listens on 127.0.0.1 only', () => {
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal((server.server.address() as { address: string }).address, '127.0.0.1');
  });

  it('GET / returns the page', async () => {
    const res = await fetch(`${server.url}/`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type')!, /^text\/html/);
    const html = await res.text();
    assert.match(html, /^<!doctype html>/);
    assert.match(html, /<form id="f">/);
    assert.match(html, /fetch\('\/api\/generate'/);
  });

  it('GET /api/health describes the model', async () => {
    const res = await fetch(`${server.url}/api/health`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { model: 'tiny-random', width: 64, height: 64, busy: false, queued: 0 });
  });

  it('POST /api/generate returns a 64x64 PNG, the library\'s image for the same parameters', async () => {
    const res = await post({ prompt: 'a windmill', negativePrompt: 'rain', steps: 2, cfgScale: 3, seed: 7 });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'image/png');
    const bytes = new Uint8Array(await res.arrayBuffer());
    const img = decodeImage(bytes);
    assert.deepEqual([img.width, img.height], [64, 64]);
    const header = JSON.parse(res.headers.get('x-sd3-parameters')!) as Record<string, unknown>;
    assert.deepEqual([header.prompt, header.negativePrompt, header.numSteps, header.guidanceScale, header.seed], ['a windmill', 'rain', 2, 3, 7]);
    assert.deepEqual(JSON.parse(readPNGText(bytes).parameters!), header);
    const expected = await task.generate({ prompts: 'a windmill', negativePrompts: 'rain' }, { numSteps: 2, guidanceScale: 3, seed: 7 });
    assertSamePixels(img, expected, 'server vs library');
    // The page sends its fields as strings; an empty field means the default.
    const fromPage = await post({ prompt: 'a windmill', negativePrompt: 'rain', steps: '2', cfgScale: '3', seed: '7' });
    assert.equal(fromPage.status, 200);
    assertSamePixels(decodeImage(new Uint8Array(await fromPage.arrayBuffer())), expected, 'string fields vs library');
    const defaults = await post({ prompt: 'a windmill', steps: '1', cfgScale: '', seed: '' });
    const p = JSON.parse(defaults.headers.get('x-sd3-parameters')!) as Record<string, unknown>;
    await expectPNG(defaults);
    assert.equal(p.guidanceScale, 7);
    assert.equal(typeof p.seed, 'number');
  });

  it('carries a prompt outside Latin-1 in the parameters header and the PNG', async () => {
    const prompt = '夕焼けの富士山 🗻';
    const res = await post({ prompt, steps: 1, seed: 1 });
    assert.equal(res.status, 200);
    assert.equal((JSON.parse(res.headers.get('x-sd3-parameters')!) as { prompt: string }).prompt, prompt);
    const bytes = new Uint8Array(await res.arrayBuffer());
    assert.equal((JSON.parse(readPNGText(bytes).parameters!) as { prompt: string }).prompt, prompt);
  });

  it('serves concurrent requests one at a time, each as if alone', async () => {
    const [a, b] = await Promise.all([post({ prompt: 'one', steps: 2, seed: 1 }), post({ prompt: 'two', steps: 2, seed: 2 })]);
    assert.equal(a.status, 200);
    assert.equal(b.status, 200);
    assertSamePixels(decodeImage(new Uint8Array(await a.arrayBuffer())), await task.generate('one', { numSteps: 2, seed: 1 }), 'first of two concurrent requests');
    assertSamePixels(decodeImage(new Uint8Array(await b.arrayBuffer())), await task.generate('two', { numSteps: 2, seed: 2 }), 'second of two concurrent requests');
    assert.deepEqual(await (await fetch(`${server.url}/api/health`)).json(), { model: 'tiny-random', width: 64, height: 64, busy: false, queued: 0 });
  });

  it('answers bad requests with 400 and a message naming the value', async () => {
    await expectError(await post('{"prompt": "a cat", '), 400, /body must be JSON/);
    await expectError(await post('null'), 400, /body must be a JSON object, got null/);
    await expectError(await post('[1, 2]'), 400, /body must be a JSON object, got array of length 2/);
    await expectError(await post({ steps: 2 }), 400, /prompt must be a string, got undefined/);
    await expectError(await post({ prompt: 5 }), 400, /prompt must be a string, got number 5/);
    await expectError(await post({ prompt: 'a', negativePrompt: ['x'] }), 400, /negativePrompt must be a string, got array of length 1/);
    await expectError(await post({ prompt: 'a cat', steps: 0 }), 400, /numSteps must be an integer >= 1, got number 0/);
    await expectError(await post({ prompt: 'a cat', steps: 'many' }), 400, /numSteps must be an integer >= 1, got "many"/);
    await expectError(await post({ prompt: 'a cat', steps: 1, seed: -1 }), 400, /seed must be an integer in \[0, 4294967295\], got -1/);
    await expectError(await post({ prompt: 'a cat', steps: 1, cfgScale: 'high' }), 400, /guidanceScale must be a finite number, got "high"/);
    await expectError(await fetch(`${server.url}/api/nothing`), 404, /no route GET \/api\/nothing/);
    // The server still works after all that.
    await expectPNG(await post({ prompt: 'a cat', steps: 1, seed: 1 }));
  });

  it('stops the generation when the client goes away', { timeout: 120_000 }, async (t) => {
    const generate = t.mock.method(task, 'generate');
    const client = new AbortController();
    let settled = false;
    const request = post({ prompt: 'a long one', steps: 100000, seed: 1 }, { signal: client.signal });
    request.then(() => { settled = true; }, () => { settled = true; });
    while (generate.mock.calls.length === 0 && !settled) await sleep(5);
    assert.equal(generate.mock.calls.length, 1, 'the request ended before generating');
    client.abort();
    await assert.rejects(request, { name: 'AbortError' });
    await assert.rejects(generate.mock.calls[0]!.result as Promise<unknown>, AbortError);
    await expectPNG(await post({ prompt: 'next', steps: 1, seed: 1 }));
  });
});
