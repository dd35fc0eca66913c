/**
 * The native jobs API on the tiny model: the 202 and job shapes, SSE events in order with one progress per
 * step, images equal to the library's, cancelling a running job (the worker is free within a step and the next
 * job starts), one generation at a time, 20 concurrent clients against --max-queue 4, expiry (410).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeImage, readPNGText } from '../../src/image/image.js';
import { ImageToImage } from '../../src/pipelines/image-to-image.js';
import { Inpaint } from '../../src/pipelines/inpaint.js';
import { TextToImage } from '../../src/pipelines/text-to-image.js';
import { startIndex } from '../../src/sampler/flow-match.js';
import { assertSamePixels, maskImage } from '../helpers/tiny.js';
import { type SSEEvent, type TestServer, json, maskB64, picture, postJSON, readSSE, startTiny, tinyModel } from './helpers.js';

let srv: TestServer;

before(async () => { srv = await startTiny(); });
after(async () => { await srv.stop(); });

async function submit(body: unknown): Promise<Record<string, unknown>> {
  const res = await postJSON(`${srv.url}/api/jobs`, body);
  assert.equal(res.status, 202, await res.clone().text());
  return json(res);
}

async function waitFor<T>(what: string, get: () => T | undefined | Promise<T | undefined>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

describe('jobs API', () => {
  it('GET /api/config and /api/health describe the model, the caps and the queue', async () => {
    const config = await json(await fetch(`${srv.url}/api/config`));
    assert.equal(config.model, 'tiny-random');
    assert.deepEqual([config.width, config.height], [64, 64]);
    assert.deepEqual(config.limits, { max_steps: 150, max_batch: 4, max_width: 1024, max_height: 1024, max_prompt_chars: 2000, max_queue: 8 });
    assert.deepEqual(config.defaults, { steps: 28, cfg_scale: 7, strength: 0.8 });
    const health = await json(await fetch(`${srv.url}/api/health`));
    assert.deepEqual(health.queue, { running: 0, pending: 0, max: 8 });
    assert.equal(health.status, 'ready');
  });

  it('POST /api/jobs -> 202; SSE sends queued, started, one progress per step, previews, completed; images match the library', async () => {
    const job = await submit({ prompt: 'a red barn', negative_prompt: 'fog', steps: 4, cfg_scale: 3, seed: 11, width: 96, height: 64, batch_size: 2 });
    assert.equal(typeof job.id, 'string');
    assert.match(String(job.status), /^(queued|running)$/);
    assert.equal(job.queue_position, 0);
    assert.equal(job.events_url, `/api/jobs/${job.id}/events`);
    const events = await readSSE(await fetch(`${srv.url}${job.events_url}`));
    const names = events.map((e) => e.event).filter((e) => e !== 'preview');
    assert.deepEqual(names, ['queued', 'started', 'progress', 'progress', 'progress', 'progress', 'completed']);
    const progress = events.filter((e) => e.event === 'progress').map((e) => e.data as { step: number; total: number; eta: number });
    assert.deepEqual(progress.map((p) => [p.step, p.total]), [[1, 4], [2, 4], [3, 4], [4, 4]]);
    assert.ok(progress.every((p) => typeof p.eta === 'number' && p.eta >= 0));
    const previews = events.filter((e) => e.event === 'preview').map((e) => e.data as { step: number; png: string });
    assert.ok(previews.length >= 1, 'at least one preview');
    for (const p of previews) {
      const img = decodeImage(Buffer.from(p.png, 'base64'));
      assert.deepEqual([img.width, img.height], [12, 8], 'a preview has one pixel per latent cell');
    }
    const done = events.at(-1)!.data as { status: string; images: { url: string; seed: number; parameters: Record<string, unknown> }[] };
    assert.equal(done.status, 'completed');
    assert.deepEqual(done.images.map((i) => i.seed), [11, 12]);
    assert.deepEqual(done.images.map((i) => i.url), [`/api/jobs/${job.id}/images/0.png`, `/api/jobs/${job.id}/images/1.png`]);

    const got = await json(await fetch(`${srv.url}/api/jobs/${job.id}`));
    assert.equal(got.status, 'completed');
    assert.deepEqual(got.progress, { step: 4, total: 4, eta: 0 });
    const task = new TextToImage(srv.model.backbone, srv.model.preprocessor, { width: 96, height: 64 });
    const expected = await task.generate({ prompts: ['a red barn', 'a red barn'], negativePrompts: 'fog' }, { numSteps: 4, guidanceScale: 3, seed: 11 });
    for (const n of [0, 1]) {
      const res = await fetch(`${srv.url}/api/jobs/${job.id}/images/${n}.png`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'image/png');
      const bytes = new Uint8Array(await res.arrayBuffer());
      assertSamePixels(decodeImage(bytes), expected[n]!, `image ${n} vs the library`);
      assert.match(readPNGText(bytes).parameters!, new RegExp(`^a red barn\\nNegative prompt: fog\\nSteps: 4, Sampler: Euler, .*CFG scale: 3, Seed: ${11 + n}, Size: 96x64`));
    }
    assert.equal((await fetch(`${srv.url}/api/jobs/${job.id}/images/2.png`)).status, 404);
  });

  it('image (img2img) and image + mask (inpaint, white = repaint) give the library\'s images; the image size is the default size', async () => {
    const input = picture(80, 48, 5);
    const b64 = `data:image/png;base64,${input.toPNG().toString('base64')}`;
    const run = async (body: Record<string, unknown>) => {
      const job = await submit({ prompt: 'a wall', steps: 4, seed: 3, ...body });
      const events = await readSSE(await fetch(`${srv.url}${job.events_url}`));
      const done = events.at(-1)!.data as { status: string; kind: string; width: number; height: number; images: { url: string }[] };
      assert.equal(done.status, 'completed');
      const png = new Uint8Array(await (await fetch(`${srv.url}${done.images[0]!.url}`)).arrayBuffer());
      return { done, image: decodeImage(png), steps: events.filter((e) => e.event === 'progress').length };
    };
    const i2i = await run({ image: b64, strength: 0.5 });
    assert.deepEqual([i2i.done.kind, i2i.done.width, i2i.done.height, i2i.steps], ['image-to-image', 80, 48, 2]);
    assertSamePixels(i2i.image, await new ImageToImage(srv.model.backbone, srv.model.preprocessor, { width: 80, height: 48 })
      .generate({ images: input, prompts: 'a wall' }, { numSteps: 4, seed: 3, strength: 0.5 }), 'jobs img2img vs library');
    const inpaint = await run({ image: b64, mask: maskB64(80, 48, (x) => x >= 40), width: 64, height: 64 });
    assert.deepEqual([inpaint.done.kind, inpaint.done.width, inpaint.steps], ['inpaint', 64, 4 - startIndex(4, 0.6)]);
    assertSamePixels(inpaint.image, await new Inpaint(srv.model.backbone, srv.model.preprocessor, { width: 64, height: 64 })
      .generate({ images: input, masks: maskImage(80, 48, (x) => x >= 40), prompts: 'a wall' }, { numSteps: 4, seed: 3 }), 'jobs inpaint vs library');
  });

  it('runs one generation at a time, in order, whatever the client count', async (t) => {
    let active = 0;
    let most = 0;
    const denoise = srv.model.backbone.denoise.bind(srv.model.backbone);
    t.mock.method(srv.model.backbone, 'denoise', async (o: Parameters<typeof denoise>[0]) => {
      active++;
      most = Math.max(most, active);
      try {
        await sleep(20); // widen the window in which an overlap would show
        return await denoise(o);
      } finally {
        active--;
      }
    });
    const jobs = await Promise.all([1, 2, 3, 4].map((seed) => submit({ prompt: 'q', steps: 2, seed })));
    const finished = await Promise.all(jobs.map(async (j) => {
      await readSSE(await fetch(`${srv.url}${j.events_url}`));
      return json(await fetch(`${srv.url}/api/jobs/${j.id}`));
    }));
    assert.equal(most, 1, 'generations overlapped');
    assert.ok(finished.every((j) => j.status === 'completed'));
    const order = finished.map((j) => [j.started as number, j.finished as number]);
    for (let i = 1; i < order.length; i++) assert.ok(order[i]![0]! >= order[i - 1]![1]!, `job ${i} started before job ${i - 1} finished`);
  });

  it('cancels a running job within one step; the worker takes the next job', async () => {
    const long = await submit({ prompt: 'long', steps: 150, seed: 1 });
    const next = await submit({ prompt: 'next', steps: 2, seed: 2 });
    const longEvents: SSEEvent[] = [];
    const stream = readSSE(await fetch(`${srv.url}${long.events_url}`), (e) => longEvents.push(e));
    await waitFor('the first step', () => longEvents.some((e) => e.event === 'progress') || undefined);
    const res = await postJSON(`${srv.url}/api/jobs/${long.id}/cancel`, '');
    assert.equal(res.status, 200);
    const cancelled = await json(res);
    assert.equal(cancelled.status, 'cancelled');
    await stream;
    assert.equal(longEvents.at(-1)!.event, 'cancelled');
    const steps = longEvents.filter((e) => e.event === 'progress').length;
    const atCancel = cancelled.stop_requested_at_step as number;
    assert.ok(steps <= atCancel + 1, `ran ${steps} steps, ${atCancel} when cancelled: more than one step after`);
    assert.ok(steps < 150);
    await readSSE(await fetch(`${srv.url}${next.events_url}`));
    const n = await json(await fetch(`${srv.url}/api/jobs/${next.id}`));
    assert.equal(n.status, 'completed');
    assert.ok((n.started as number) >= (cancelled.finished as number), 'the next job started after the cancelled one stopped');
    // Cancelling a queued job removes it; cancelling a finished one is a conflict.
    assert.equal((await postJSON(`${srv.url}/api/jobs/${next.id}/cancel`, '')).status, 409);
    assert.equal((await fetch(`${srv.url}/api/jobs/${next.id}`, { method: 'DELETE' })).status, 409);
  });

  it('cancels a queued job at once (DELETE too)', async () => {
    const a = await submit({ prompt: 'a', steps: 60, seed: 1 });
    const b = await submit({ prompt: 'b', steps: 2, seed: 1 });
    const res = await fetch(`${srv.url}/api/jobs/${b.id}`, { method: 'DELETE' });
    assert.equal(res.status, 200);
    assert.equal((await json(res)).status, 'cancelled');
    const events = await readSSE(await fetch(`${srv.url}${b.events_url}`));
    assert.deepEqual(events.map((e) => e.event), ['queued', 'cancelled']);
    await postJSON(`${srv.url}/api/jobs/${a.id}/cancel`, '');
  });

  it('--preview-vae N adds a true VAE decode as the preview every N steps', async () => {
    const vae = await startTiny({ model: srv.model, previewDecodeEvery: 2 });
    try {
      const job = await json(await postJSON(`${vae.url}/api/jobs`, { prompt: 'v', steps: 5, seed: 1 }));
      const events = await readSSE(await fetch(`${vae.url}${job.events_url}`));
      const decoded = events.filter((e) => e.event === 'preview' && (e.data as { source: string }).source === 'vae').map((e) => e.data as { step: number; png: string });
      assert.deepEqual(decoded.map((d) => d.step), [2, 4]);
      for (const d of decoded) assert.deepEqual([decodeImage(Buffer.from(d.png, 'base64')).width], [64]);
    } finally {
      await vae.close();
    }
  });

  it('answers 404 for an unknown job, and 410 once a finished job has expired', async () => {
    const small = await startTiny({ model: srv.model, keepJobs: 1 });
    try {
      const first = await json(await postJSON(`${small.url}/api/jobs`, { prompt: 'one', steps: 1, seed: 1 }));
      await readSSE(await fetch(`${small.url}${first.events_url}`));
      const second = await json(await postJSON(`${small.url}/api/jobs`, { prompt: 'two', steps: 1, seed: 1 }));
      await readSSE(await fetch(`${small.url}${second.events_url}`));
      const gone = await fetch(`${small.url}/api/jobs/${first.id}`);
      assert.equal(gone.status, 410);
      assert.equal(((await json(gone)).error as { code: string }).code, 'expired');
      assert.equal((await fetch(`${small.url}/api/jobs/${first.id}/images/0.png`)).status, 410);
      assert.equal((await fetch(`${small.url}/api/jobs/${second.id}`)).status, 200);
      const unknown = await fetch(`${small.url}/api/jobs/00000000-0000-4000-8000-000000000000`);
      assert.equal(unknown.status, 404);
    } finally {
      await small.close();
    }
  });

  it('20 concurrent clients against --max-queue 4: each gets its image or a 429 with Retry-After; none hangs or is lost', async () => {
    const model = await tinyModel();
    const busy = await startTiny({ model, maxQueue: 4 });
    try {
      const rss0 = process.memoryUsage().rss;
      const results = await Promise.all(Array.from({ length: 20 }, async (_, i) => {
        const res = await postJSON(`${busy.url}/api/generate`, { prompt: `client ${i}`, steps: 3, seed: i }, { signal: AbortSignal.timeout(120_000) });
        const body = new Uint8Array(await res.arrayBuffer());
        return { status: res.status, retryAfter: res.headers.get('retry-after'), body };
      }));
      const ok = results.filter((r) => r.status === 200);
      const full = results.filter((r) => r.status === 429);
      assert.equal(ok.length + full.length, 20, `other statuses: ${results.map((r) => r.status)}`);
      assert.ok(ok.length >= 5, `only ${ok.length} served (1 running + 4 queued at least)`);
      for (const r of ok) assert.deepEqual([decodeImage(r.body).width, decodeImage(r.body).height], [64, 64]);
      for (const r of full) {
        assert.match(r.retryAfter ?? '', /^[1-9]\d*$/);
        const e = JSON.parse(Buffer.from(r.body).toString()) as { error: { code: string; message: string } };
        assert.equal(e.error.code, 'queue_full');
      }
      const health = await json(await fetch(`${busy.url}/api/health`));
      assert.deepEqual(health.queue, { running: 0, pending: 0, max: 4 });
      const grown = (process.memoryUsage().rss - rss0) / 2 ** 20;
      assert.ok(grown < 400, `RSS grew by ${grown.toFixed(0)} MiB`);
      // Still serving.
      assert.equal((await postJSON(`${busy.url}/api/generate`, { prompt: 'after', steps: 1, seed: 1 })).status, 200);
    } finally {
      await busy.stop();
      await model.backbone.dispose();
    }
  });
});
