/**
 * What keeps the server safe and standing: bad input through every route gets the family's error shape naming
 * the field (never a 500), 413 for a 50 MB body, 415 for a cross-site text/plain POST, Host and Origin checks,
 * the API key, CORS only when asked, 503 while loading, the per-job deadline, a disconnecting client cancelling
 * its job, and shutdown aborting the running work.
 */
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startServer } from '../../src/server/index.js';
import type { LoadedModel } from '../../src/server/engine.js';
import { type TestServer, json, maskB64, pictureB64, postJSON, startTiny, tinyModel } from './helpers.js';

let model: LoadedModel;
let srv: TestServer;

before(async () => {
  model = await tinyModel();
  srv = await startTiny({ model });
});
after(async () => {
  await srv.stop();
  await model.backbone.dispose();
});

/** A raw request (fetch cannot set Host), resolving to status, headers and body text. */
function raw(url: string, opts: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers ?? {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

type Shape = 'openai' | 'sdapi' | 'native';

/** Asserts the family's error shape, the status, and that the message (and field, when given) name the problem. */
async function expectError(res: Response, status: number, shape: Shape, message: RegExp, field?: string): Promise<void> {
  assert.equal(res.status, status, `${res.url}: expected ${status}`);
  const b = (await res.json()) as Record<string, unknown>;
  if (shape === 'openai') {
    const e = b.error as { message: string; type: string; param: string | null; code: string | null };
    assert.deepEqual(Object.keys(e).sort(), ['code', 'message', 'param', 'type']);
    assert.match(e.message, message);
    if (field) assert.equal(e.param, field);
  } else if (shape === 'sdapi') {
    if (Array.isArray(b.detail)) {
      const d = b.detail[0] as { loc: string[]; msg: string };
      assert.match(d.msg, message);
      if (field) assert.deepEqual(d.loc, ['body', ...field.split('.')]);
    } else {
      assert.deepEqual(Object.keys(b).sort(), ['body', 'detail', 'error', 'errors']);
      assert.match(String(b.detail), message);
    }
  } else {
    const e = b.error as { code: string; message: string; field: string | null };
    assert.equal(typeof e.code, 'string');
    assert.match(e.message, message);
    if (field) assert.equal(e.field, field);
  }
}

function multipart(fields: Record<string, string | Blob>): FormData {
  const f = new FormData();
  for (const [k, v] of Object.entries(fields)) f.append(k, v);
  return f;
}

const png = (b64: string) => new Blob([Buffer.from(b64, 'base64')], { type: 'image/png' });

describe('bad input through every route', () => {
  it('jobs API: wrong types, missing prompt, size 50, strength 2, corrupt image, mask of another size', async () => {
    const jobs = `${srv.url}/api/jobs`;
    const img = pictureB64(64, 64);
    await expectError(await postJSON(jobs, {}), 400, 'native', /prompt is required/, 'prompt');
    await expectError(await postJSON(jobs, { prompt: ['a'] }), 400, 'native', /prompt must be a string, got array/, 'prompt');
    await expectError(await postJSON(jobs, { prompt: 'a', steps: true }), 400, 'native', /steps must be an integer/, 'steps');
    await expectError(await postJSON(jobs, { prompt: 'a', width: 50 }), 400, 'native', /width must be a multiple of 16 from 16 to 1024, got 50/, 'width');
    await expectError(await postJSON(jobs, { prompt: 'a', height: 2048 }), 400, 'native', /height must be a multiple of 16/, 'height');
    await expectError(await postJSON(jobs, { prompt: 'a', image: img, strength: 2 }), 400, 'native', /strength must be a number >= 0 and <= 1, got number 2/, 'strength');
    await expectError(await postJSON(jobs, { prompt: 'a', image: 'bm9wZQ==' }), 400, 'native', /image is not a PNG or JPEG/, 'image');
    await expectError(await postJSON(jobs, { prompt: 'a', image: `data:image/png;base64,${img.slice(0, 200)}` }), 400, 'native', /image cannot be decoded/, 'image');
    await expectError(await postJSON(jobs, { prompt: 'a', image: img, mask: maskB64(32, 64, () => true) }), 400, 'native', /mask is 32x64 but the image is 64x64/, 'mask');
    await expectError(await postJSON(jobs, { prompt: 'a', mask: maskB64(64, 64, () => true) }), 400, 'native', /mask needs an image/, 'mask');
    await expectError(await postJSON(jobs, { prompt: 'a', batch_size: 9 }), 400, 'native', /batch_size must be an integer >= 1 and <= 4/, 'batch_size');
    await expectError(await postJSON(jobs, { prompt: 'a', seed: 1.5 }), 400, 'native', /seed must be an integer/, 'seed');
    await expectError(await postJSON(jobs, { prompt: 'a', cfg_scale: 'x' }), 400, 'native', /cfg_scale must be a number/, 'cfg_scale');
    await expectError(await postJSON(jobs, '[1]'), 400, 'native', /must be a JSON object, got array/);
    await expectError(await postJSON(jobs, '{"prompt": '), 400, 'native', /not valid JSON/);
    await expectError(await postJSON(`${srv.url}/api/generate`, { prompt: 'a', steps: 0 }), 400, 'native', /steps must be an integer >= 1/, 'steps');
    await expectError(await fetch(`${srv.url}/api/jobs/not-a-job`), 404, 'native', /no route/);
    await expectError(await fetch(jobs), 405, 'native', /GET is not allowed on \/api\/jobs/);
  });

  it('OpenAI edits: missing image, corrupt image, bad mask; unknown routes in each family\'s shape', async () => {
    const edits = `${srv.url}/v1/images/edits`;
    await expectError(await fetch(edits, { method: 'POST', body: multipart({ prompt: 'x' }) }), 400, 'openai', /image is required/, 'image');
    await expectError(await fetch(edits, { method: 'POST', body: multipart({ prompt: 'x', image: new Blob(['GIF89a']) }) }), 400, 'openai', /image is not a PNG or JPEG/, 'image');
    await expectError(await fetch(edits, { method: 'POST', body: multipart({ image: png(pictureB64(64, 64)) }) }), 400, 'openai', /prompt is required/, 'prompt');
    await expectError(await fetch(edits, { method: 'POST', body: multipart({ prompt: 'x', image: png(pictureB64(64, 64)), mask: png(maskB64(64, 32, () => true)) }) }), 400, 'openai', /same size/, 'mask');
    await expectError(await fetch(edits, { method: 'POST', body: multipart({ prompt: 'x', n: 'lots', image: png(pictureB64(64, 64)) }) }), 400, 'openai', /n must be an integer/, 'n');
    await expectError(await fetch(edits, { method: 'POST', body: multipart({ prompt: 'x', strength: '2', image: png(pictureB64(64, 64)) }) }), 400, 'openai', /strength must be/, 'strength');
    await expectError(await fetch(edits, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' }), 415, 'openai', /application\/json or multipart\/form-data/);
    await expectError(await postJSON(edits, { prompt: 'x' }), 400, 'openai', /image is required/, 'image');
    await expectError(await postJSON(edits, { prompt: 'x', images: [{ file_id: 'file-1' }] }), 400, 'openai', /file_id is not supported/, 'images.0');
    await expectError(await postJSON(edits, { prompt: 'x', images: [{ image_url: 'https://example.com/a.png' }] }), 400, 'openai', /URLs are not fetched/, 'images.0');
    await expectError(await fetch(`${srv.url}/v1/nothing`), 404, 'openai', /no route GET \/v1\/nothing/);
    await expectError(await fetch(`${srv.url}/v1/models/other`), 404, 'openai', /does not exist/, 'model');
    await expectError(await fetch(`${srv.url}/sdapi/v1/nothing`), 404, 'sdapi', /no route/);
    await expectError(await fetch(`${srv.url}/api/nothing`), 404, 'native', /no route/);
    await expectError(await fetch(`${srv.url}/%E0%A4%A`), 404, 'native', /no route/);
    await expectError(await fetch(`${srv.url}/v1/models/%E0%A4%A`), 404, 'openai', /does not exist/, 'model');
    await expectError(await fetch(`${srv.url}/../../etc/passwd`), 404, 'native', /no route/);
    assert.equal((await raw(`${srv.url}/%2e%2e/%2e%2e/package.json`)).status, 404);
  });

  it('a 50 MB body gets 413 in every family, and the server keeps serving', async () => {
    const big = Buffer.alloc(50 * 1024 * 1024, 0x61);
    const routes: [string, Shape, string][] = [
      ['/api/jobs', 'native', 'application/json'],
      ['/v1/images/generations', 'openai', 'application/json'],
      ['/sdapi/v1/img2img', 'sdapi', 'application/json'],
      ['/v1/images/edits', 'openai', 'multipart/form-data; boundary=x'],
    ];
    for (const [route, shape, type] of routes) {
      const res = await fetch(`${srv.url}${route}`, { method: 'POST', headers: { 'content-type': type }, body: big });
      await expectError(res, 413, shape, /larger than this route takes/);
    }
    // Chunked (no Content-Length): cut off at the limit.
    const chunked = await raw(`${srv.url}/v1/images/generations`, { method: 'POST', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' }, body: Buffer.alloc(2 * 1024 * 1024, 0x20) });
    assert.equal(chunked.status, 413);
    assert.equal((await postJSON(`${srv.url}/api/generate`, { prompt: 'after', steps: 1 })).status, 200);
  });

  it('a cross-site text/plain POST gets 415 (no preflight-free job submission)', async () => {
    for (const [route, shape] of [['/api/jobs', 'native'], ['/v1/images/generations', 'openai'], ['/sdapi/v1/txt2img', 'sdapi']] as const) {
      const res = await fetch(`${srv.url}${route}`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{"prompt":"x","steps":1}' });
      await expectError(res, 415, shape, /must be application\/json, got "text\/plain"/);
    }
  });
});

describe('who may call', () => {
  it('refuses a foreign Host (DNS rebinding) and a foreign Origin; accepts loopback names and its own origin', async () => {
    const port = new URL(srv.url).port;
    const evil = await raw(`${srv.url}/api/health`, { headers: { host: `evil.example:${port}` } });
    assert.equal(evil.status, 403);
    assert.match(JSON.parse(evil.body).error.message, /DNS rebinding/);
    assert.equal((await raw(`${srv.url}/api/health`, { headers: { host: `localhost:${port}` } })).status, 200);
    const cross = await raw(`${srv.url}/api/jobs`, { method: 'POST', headers: { origin: 'https://evil.example', 'content-type': 'application/json' }, body: '{"prompt":"x"}' });
    assert.equal(cross.status, 403);
    assert.equal(cross.headers['access-control-allow-origin'], undefined);
    const own = await raw(`${srv.url}/api/config`, { headers: { origin: `http://127.0.0.1:${port}` } });
    assert.equal(own.status, 200);
    const preflight = await raw(`${srv.url}/v1/images/generations`, { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } });
    assert.equal(preflight.status, 403);
  });

  it('--api-key: the API needs the bearer token (or ?api_key= on GET); the page, health and config do not', async () => {
    const keyed = await startTiny({ model, apiKey: 'secret-key-123' });
    try {
      await expectError(await postJSON(`${keyed.url}/v1/images/generations`, { prompt: 'x', steps: 1 }), 401, 'openai', /API key/);
      await expectError(await postJSON(`${keyed.url}/api/jobs`, { prompt: 'x' }, { headers: { authorization: 'Bearer wrong' } }), 401, 'native', /API key/);
      await expectError(await fetch(`${keyed.url}/sdapi/v1/options`), 401, 'sdapi', /API key/);
      const ok = await postJSON(`${keyed.url}/v1/images/generations`, { prompt: 'x', steps: 1 }, { headers: { authorization: 'Bearer secret-key-123' } });
      assert.equal(ok.status, 200);
      assert.equal((await fetch(`${keyed.url}/sdapi/v1/options?api_key=secret-key-123`)).status, 200);
      assert.equal((await fetch(`${keyed.url}/api/health`)).status, 200);
      assert.equal((await json(await fetch(`${keyed.url}/api/config`))).auth, true);
      assert.equal((await fetch(`${keyed.url}/`)).status, 200);
    } finally {
      await keyed.close();
    }
  });

  it('--cors ORIGIN: that origin gets CORS headers and preflights; others are refused', async () => {
    const open = await startTiny({ model, cors: 'https://app.example' });
    try {
      const pre = await raw(`${open.url}/v1/images/generations`, {
        method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type, x-stainless-os' },
      });
      assert.equal(pre.status, 204);
      assert.equal(pre.headers['access-control-allow-origin'], 'https://app.example');
      assert.equal(pre.headers['access-control-allow-headers'], 'authorization, content-type, x-stainless-os');
      const get = await raw(`${open.url}/v1/models`, { headers: { origin: 'https://app.example' } });
      assert.equal(get.status, 200);
      assert.equal(get.headers['access-control-allow-origin'], 'https://app.example');
      assert.equal((await raw(`${open.url}/v1/models`, { headers: { origin: 'https://other.example' } })).status, 403);
    } finally {
      await open.close();
    }
  });

  it('listens on 127.0.0.1 by default', () => {
    assert.match(srv.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal((srv.server.address() as { address: string }).address, '127.0.0.1');
  });
});

describe('lifecycle', () => {
  it('answers 503 with Retry-After while the model loads, then serves', async () => {
    let resolve!: (m: LoadedModel) => void;
    const loading = new Promise<LoadedModel>((r) => { resolve = r; });
    const h = await startServer({ model: loading, modelName: 'tiny-random', port: 0 });
    try {
      const res = await postJSON(`${h.url}/v1/images/generations`, { prompt: 'x', steps: 1 });
      assert.match(res.headers.get('retry-after') ?? '', /^[1-9]\d*$/);
      await expectError(res, 503, 'openai', /still loading/);
      assert.equal((await json(await fetch(`${h.url}/api/health`))).status, 'loading');
      resolve(model);
      await h.ready;
      assert.equal((await postJSON(`${h.url}/v1/images/generations`, { prompt: 'x', steps: 1 })).status, 200);
    } finally {
      await h.close();
    }
  });

  it('stops a job that runs past its deadline', async () => {
    // A 1000-step job runs for seconds; a 1-step one takes well under the 0.5 s deadline even on a loaded machine
    // (with 0.05 s, the follow-up job itself ran past the deadline on a busy 2-core machine).
    const h = await startTiny({ model, jobTimeout: 0.5, maxSteps: 1000 });
    try {
      await postJSON(`${h.url}/api/generate`, { prompt: 'warm-up', steps: 1 });
      const res = await postJSON(`${h.url}/api/generate`, { prompt: 'slow', steps: 1000 });
      await expectError(res, 500, 'native', /ran past its deadline/);
      assert.equal((await postJSON(`${h.url}/api/generate`, { prompt: 'x', steps: 1 })).status, 200, 'the deadline does not outlive its job');
    } finally {
      await h.close();
    }
  });

  it('a client that disconnects from a synchronous request cancels its job', async () => {
    const finished: string[] = [];
    srv.context.queue!.onFinish = (job) => finished.push(job.status);
    const client = new AbortController();
    const req = postJSON(`${srv.url}/v1/images/generations`, { prompt: 'long', steps: 150 }, { signal: client.signal });
    req.catch(() => undefined);
    while (!srv.context.queue!.running) await sleep(2);
    const job = srv.context.queue!.running;
    while (job.step < 1) await sleep(2);
    client.abort();
    await job.done;
    assert.equal(job.status, 'cancelled');
    assert.ok(job.step < 150);
    srv.context.queue!.onFinish = undefined;
    assert.equal((await postJSON(`${srv.url}/v1/images/generations`, { prompt: 'next', steps: 1 })).status, 200);
  });

  it('shutting down aborts the running job and the queued ones, and answers 503 meanwhile', async () => {
    const h = await startTiny({ model });
    const running = postJSON(`${h.url}/v1/images/generations`, { prompt: 'long', steps: 150 });
    const queued = postJSON(`${h.url}/sdapi/v1/txt2img`, { prompt: 'queued', steps: 150 });
    while (!h.context.queue!.running || h.context.queue!.pendingCount < 1 || h.context.queue!.running.step < 1) await sleep(2);
    const job = h.context.queue!.running;
    const t0 = Date.now();
    const closed = h.close();
    const [a, b] = await Promise.all([running, queued]);
    await closed;
    assert.equal(job.status, 'cancelled');
    assert.ok(job.step < 150, 'the running job was stopped');
    await expectError(a, 503, 'openai', /shut down/);
    await expectError(b, 503, 'sdapi', /shut down/);
    assert.ok(Date.now() - t0 < 10_000);
  });
});
