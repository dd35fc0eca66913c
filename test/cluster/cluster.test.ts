/**
 * The cluster against a real redis-server (a free loopback port, a temp dir, no persistence): `sd3 worker`
 * processes with the tiny model and a thin front end (`sd3 serve --redis --no-local-worker`) that loads no
 * model. Concurrent OpenAI-client requests spread over both workers with the single-process images; a worker
 * SIGKILLed mid-job loses no job (another takes it over) and duplicates none; cancel reaches the remote worker
 * within one step (A1111's interrupt too); images go to workers and back exactly; SIGTERM drains a worker; Redis stopped gives 503 in words and service resumes on its return.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Queue } from 'bullmq';
import OpenAI, { toFile } from 'openai';
import { PNG } from 'pngjs';
import { queueName } from '../../src/cluster/protocol.js';
import { decodeImage } from '../../src/image/image.js';
import { Inpaint } from '../../src/pipelines/inpaint.js';
import { TextToImage } from '../../src/pipelines/text-to-image.js';
import type { LoadedModel } from '../../src/server/engine.js';
import { assertSamePixels, maskImage } from '../helpers/tiny.js';
import { picture, tinyModel } from '../server/helpers.js';
import {
  type FrontEnd, type RedisServer, type WorkerProc, getJSON, startFrontEnd, startRedis, startWorkerProc, stopAll, until,
} from './helpers.js';

interface HealthWorker { id: string; pid: number; busy: boolean; jobs: string[]; jobs_done: number; state: string; alive: boolean; model: string; device: string; last_heartbeat: string }
interface JobView { id: string; status: string; worker?: string; progress: { step: number; total: number }; stop_requested_at_step?: number; images?: { url: string; seed: number }[]; error?: { message: string } }

let redis: RedisServer;
let front: FrontEnd;
let workers: WorkerProc[] = [];
let model: LoadedModel;
let bull: Queue;

async function health(): Promise<{ workers: HealthWorker[]; redis: string; queue: { pending: number; running: number } }> {
  return await getJSON(`${front.url}/api/health`) as never;
}

async function submit(body: Record<string, unknown>): Promise<string> {
  const res = await fetch(`${front.url}/api/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  assert.equal(res.status, 202, await res.clone().text());
  return ((await res.json()) as { id: string }).id;
}

async function job(id: string): Promise<JobView> {
  return await getJSON(`${front.url}/api/jobs/${id}`) as never;
}

async function finished(id: string, ms = 60_000): Promise<JobView> {
  return until(`job ${id} to finish`, async () => {
    const j = await job(id);
    return ['completed', 'failed', 'cancelled'].includes(j.status) ? j : undefined;
  }, ms);
}

async function expected(prompt: string, seed: number, size: number, steps: number) {
  const [img] = await new TextToImage(model.backbone, model.preprocessor, { width: size, height: size }).generate({ prompts: [prompt] }, { numSteps: steps, seed, guidanceScale: 7 });
  return img!;
}

async function imageOf(j: JobView) {
  const res = await fetch(`${front.url}${j.images![0]!.url}`);
  assert.equal(res.status, 200);
  return decodeImage(new Uint8Array(await res.arrayBuffer()));
}

before(async () => {
  redis = await startRedis();
  // Workers first (they load the model), the front end loads none.
  [workers[0], workers[1], front] = await Promise.all([startWorkerProc(redis.url), startWorkerProc(redis.url), startFrontEnd(redis.url, ['--max-queue', '16'])]) as [WorkerProc, WorkerProc, FrontEnd];
  model = await tinyModel();
  bull = new Queue(queueName('tiny-random'), { connection: { host: '127.0.0.1', port: redis.port } });
  bull.on('error', () => undefined);
});

after(async () => {
  await bull?.close().catch(() => undefined);
  await stopAll();
  await model?.backbone.dispose();
});

describe('cluster: front end without a model, workers on Redis (BullMQ)', () => {
  it('health lists both workers (model, device, not busy, a recent heartbeat) and the Redis queue', async () => {
    const h = await until('both workers in /api/health', async () => {
      const x = await health();
      return x.workers.filter((w) => w.alive).length === 2 ? x : undefined;
    });
    assert.equal(h.redis, 'up');
    assert.deepEqual(h.workers.map((w) => w.id).sort(), workers.map((w) => w.id).sort());
    for (const w of h.workers) {
      assert.equal(w.model, 'tiny-random');
      assert.equal(w.device, 'cpu');
      assert.equal(w.busy, false);
      assert.ok(Date.now() - Date.parse(w.last_heartbeat) < 10_000, `heartbeat ${w.last_heartbeat}`);
    }
  });

  it('8 concurrent OpenAI-client requests all complete, on both workers, with the single-process images', async () => {
    const client = new OpenAI({ baseURL: `${front.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120_000 });
    const before = new Map((await health()).workers.map((w) => [w.id, w.jobs_done]));
    const seeds = Array.from({ length: 8 }, (_, i) => 100 + i);
    const results = await Promise.all(seeds.map((seed) => client.images.generate({ prompt: 'a red kite', size: '128x128' as '256x256', steps: 6, seed } as OpenAI.ImageGenerateParamsNonStreaming)));
    for (const [i, r] of results.entries()) {
      assert.equal(r.data!.length, 1);
      assertSamePixels(decodeImage(Buffer.from(r.data![0]!.b64_json!, 'base64')), await expected('a red kite', seeds[i]!, 128, 6), `seed ${seeds[i]}`);
    }
    const h = await until('heartbeats after the jobs', async () => {
      const x = await health();
      const done = x.workers.reduce((s, w) => s + w.jobs_done - (before.get(w.id) ?? 0), 0);
      return done === 8 ? x : undefined;
    });
    for (const w of h.workers) assert.ok(w.jobs_done - (before.get(w.id) ?? 0) >= 1, `worker ${w.id} did ${w.jobs_done - (before.get(w.id) ?? 0)} of the 8`);
  });

  it('progress crosses machines: job SSE (one progress per step, previews), A1111 progress, OpenAI partial images', async () => {
    const id = await submit({ prompt: 'a windmill', width: 128, height: 128, steps: 8, seed: 41 });
    const sse = await fetch(`${front.url}/api/jobs/${id}/events`);
    const text = await sse.text();
    const events = [...text.matchAll(/^event: (\w+)\ndata: (.*)$/gm)].map((m) => ({ event: m[1]!, data: JSON.parse(m[2]!) as Record<string, unknown> }));
    assert.deepEqual(events.filter((e) => e.event === 'progress').map((e) => e.data.step), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.ok(events.some((e) => e.event === 'preview' && typeof e.data.png === 'string'), 'a preview event');
    assert.equal(events.at(-1)!.event, 'completed');

    const txt2img = fetch(`${front.url}/sdapi/v1/txt2img`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'a tower', width: 384, height: 384, steps: 40, seed: 3 }) });
    const seen: number[] = [];
    let preview = false;
    await until('A1111 progress at two different steps', async () => {
      const p = await getJSON(`${front.url}/sdapi/v1/progress`) as { state: { sampling_step: number }; current_image: string | null };
      if (p.state.sampling_step > 0 && !seen.includes(p.state.sampling_step)) seen.push(p.state.sampling_step);
      preview ||= typeof p.current_image === 'string' && p.current_image.length > 0;
      return seen.length >= 2 && preview;
    }, 30_000, 20);
    assert.ok(seen[1]! > seen[0]!, `steps ${seen}`);
    assert.equal((await txt2img).status, 200);

    const client = new OpenAI({ baseURL: `${front.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120_000 });
    const stream = await client.images.generate({ prompt: 'a kite', stream: true, partial_images: 2, steps: 6, seed: 2 } as OpenAI.ImageGenerateParamsStreaming);
    const types: string[] = [];
    let last: string | undefined;
    for await (const e of stream) {
      types.push(e.type);
      last = e.b64_json;
    }
    assert.deepEqual(types, ['image_generation.partial_image', 'image_generation.partial_image', 'image_generation.completed']);
    assertSamePixels(decodeImage(Buffer.from(last!, 'base64')), await expected('a kite', 2, 64, 6), 'streamed final image');
  });

  it('image inputs cross machines: OpenAI edits with an alpha mask is the library\'s inpainting', async () => {
    const client = new OpenAI({ baseURL: `${front.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120_000 });
    const input = picture(64, 64, 3);
    const edit = (x: number) => x < 32;
    const alpha = new PNG({ width: 64, height: 64 });
    for (let i = 0; i < 64 * 64; i++) alpha.data[i * 4 + 3] = edit(i % 64) ? 0 : 255;
    const res = await client.images.edit({
      image: await toFile(input.toPNG(), 'in.png', { type: 'image/png' }), mask: await toFile(PNG.sync.write(alpha), 'mask.png', { type: 'image/png' }),
      prompt: 'a door', steps: 4, seed: 9,
    } as OpenAI.ImageEditParamsNonStreaming);
    const want = await new Inpaint(model.backbone, model.preprocessor, { width: 64, height: 64 })
      .generate({ images: input, masks: maskImage(64, 64, edit), prompts: 'a door' }, { numSteps: 4, seed: 9 });
    assertSamePixels(decodeImage(Buffer.from(res.data![0]!.b64_json!, 'base64')), want, 'remote inpainting vs Inpaint');
  });

  it('A1111 interrupt reaches the remote worker: it stops within one step and returns what its latent shows', async () => {
    const running = fetch(`${front.url}/sdapi/v1/txt2img`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'a bridge', width: 384, height: 384, steps: 150, seed: 4 }) });
    const id = await until('the txt2img job past step 2', async () => {
      const p = await getJSON(`${front.url}/sdapi/v1/progress`) as { state: { sampling_step: number }; current_task: string | null };
      return p.state.sampling_step >= 2 ? p.current_task : undefined;
    }, 30_000, 20);
    assert.equal((await fetch(`${front.url}/sdapi/v1/interrupt`, { method: 'POST' })).status, 200);
    const r = (await (await running).json()) as { images: string[]; info: string };
    assert.equal(r.images.length, 1);
    assert.equal((JSON.parse(r.info) as { interrupted: boolean }).interrupted, true);
    const j = await job(id!);
    assert.ok(j.progress.step <= j.stop_requested_at_step! + 1 && j.progress.step < 150, `ran ${j.progress.step}, asked at ${j.stop_requested_at_step}`);
  });

  it('the queue bound holds across front ends: a second front end answers 429 + Retry-After from the Redis queue length', async () => {
    const strict = await startFrontEnd(redis.url, ['--max-queue', '1']);
    const ids = await Promise.all([1, 2, 3].map((i) => submit({ prompt: 'busy', width: 384, height: 384, steps: 150, seed: i })));
    try {
      await until('two running, one pending in Redis', async () => (await bull.getWaitingCount()) >= 1 && (await bull.getActiveCount()) === 2);
      const res = await fetch(`${strict.url}/v1/images/generations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'one more', steps: 1 }) });
      assert.equal(res.status, 429);
      assert.ok(Number(res.headers.get('retry-after')) >= 1);
      assert.match(((await res.json()) as { error: { message: string } }).error.message, /pending across the cluster, at most 1/);
    } finally {
      await Promise.all(ids.map((id) => fetch(`${front.url}/api/jobs/${id}/cancel`, { method: 'POST' })));
      strict.child.kill('SIGTERM');
      assert.equal(await strict.exited, 0);
    }
    for (const id of ids) assert.equal((await finished(id)).status, 'cancelled');
  });

  it('SIGKILL of a worker mid-job: the job completes on the other, none lost or duplicated, the front end keeps answering', async () => {
    const ids = await Promise.all([1, 2, 3].map((i) => submit({ prompt: 'a lighthouse', width: 384, height: 384, steps: 30, seed: 300 + i })));
    const victim = await until('a job past step 3 on a worker', async () => {
      for (const id of ids) {
        const j = await job(id);
        if (j.status === 'running' && j.worker && j.progress.step >= 3) return j;
      }
      return undefined;
    });
    const w = workers.find((x) => x.id === victim.worker)!;
    w.child.kill('SIGKILL');
    assert.equal(await w.exited, 'SIGKILL');
    // While the job waits for its takeover the front end keeps answering.
    const models = await fetch(`${front.url}/v1/models`);
    assert.equal(models.status, 200);
    assert.equal((await health()).redis, 'up');
    const done = await Promise.all(ids.map((id) => finished(id, 90_000)));
    const survivor = workers.find((x) => x !== w)!;
    for (const [i, j] of done.entries()) assert.equal(j.status, 'completed', `job ${i}: ${JSON.stringify(j.error)}`);
    const again = done.find((j) => j.id === victim.id)!;
    assert.equal(again.worker, survivor.id, 'the killed worker\'s job finished on the other worker');
    assertSamePixels(await imageOf(again), await expected('a lighthouse', 300 + ids.indexOf(victim.id) + 1, 384, 30), 'the taken-over job');
    // BullMQ's record: each job completed once, the killed one after a second start, nothing failed.
    for (const id of ids) {
      const bj = await bull.getJob(id);
      assert.equal(await bj!.getState(), 'completed');
      assert.equal(bj!.attemptsStarted, id === victim.id ? 2 : 1, `job ${id} starts`);
    }
    assert.equal(await bull.getFailedCount(), 0);
    // A replacement for the tests below.
    workers = [survivor, await startWorkerProc(redis.url)];
  });

  it('cancel of a running job on a remote worker stops it within one step, and the worker takes the next job', async () => {
    const id = await submit({ prompt: 'a long road', width: 512, height: 512, steps: 150, seed: 9 });
    await until('the job past step 2', async () => (await job(id)).progress.step >= 2);
    const res = await fetch(`${front.url}/api/jobs/${id}/cancel`, { method: 'POST' });
    assert.equal(res.status, 200);
    const j = await finished(id);
    assert.equal(j.status, 'cancelled');
    assert.ok(j.stop_requested_at_step !== undefined && j.progress.step - j.stop_requested_at_step <= 1, `stopped at step ${j.progress.step}, asked at ${j.stop_requested_at_step}`);
    assert.ok(j.progress.step < 150);
    const next = await finished(await submit({ prompt: 'next', steps: 2, seed: 1 }));
    assert.equal(next.status, 'completed');
  });

  it('SIGTERM drains a worker: its running job finishes there, the next goes to the other, then it exits 0', async () => {
    const a = await submit({ prompt: 'a slow tide', width: 512, height: 512, steps: 40, seed: 21 });
    const running = await until('job A past step 2', async () => {
      const j = await job(a);
      return j.status === 'running' && j.worker && j.progress.step >= 2 ? j : undefined;
    });
    const w = workers.find((x) => x.id === running.worker)!;
    const other = workers.find((x) => x !== w)!;
    w.child.kill('SIGTERM');
    await until('the worker draining', async () => (await health()).workers.find((x) => x.id === w.id)?.state === 'draining');
    const b = await submit({ prompt: 'after the drain', steps: 3, seed: 22 });
    const [ja, jb] = await Promise.all([finished(a), finished(b)]);
    assert.equal(ja.status, 'completed');
    assert.equal(ja.worker, w.id, 'the draining worker finished its job');
    assert.equal(jb.status, 'completed');
    assert.equal(jb.worker, other.id, 'the draining worker took no new job');
    assert.equal(await w.exited, 0);
    assert.match(w.output(), /stopped/);
    assert.equal(await bull.getJob(a).then((x) => x!.attemptsStarted), 1);
    workers = [other];
  });

  it('a job that kills every worker it runs on fails after --max-attempts (2) runs, with a clear error', async () => {
    const id = await submit({ prompt: 'a poison pill', width: 384, height: 384, steps: 30, seed: 77 });
    const killWhereRunning = async (w: WorkerProc, attempt: number) => {
      await until(`attempt ${attempt} running on ${w.id}`, async () => {
        const j = await job(id);
        return j.status === 'running' && j.worker === w.id && j.progress.step >= 2;
      }, 60_000);
      w.child.kill('SIGKILL');
      await w.exited;
    };
    await killWhereRunning(workers[0]!, 1);
    const second = await startWorkerProc(redis.url);
    await killWhereRunning(second, 2);
    // The next worker's stalled-job check finds it stalled a second time and gives up on it.
    workers = [await startWorkerProc(redis.url)];
    const j = await finished(id, 60_000);
    assert.equal(j.status, 'failed');
    assert.match(j.error!.message, /workers running it stopped in the middle \(killed or out of memory\) more times than allowed/);
    assert.equal(await bull.getJob(id).then((x) => x!.getState()), 'failed');
  });

  it('Redis stopped: 503 with a clear message (each API family); started again: service resumes', async () => {
    await redis.stop();
    const client = new OpenAI({ baseURL: `${front.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    await assert.rejects(client.images.generate({ prompt: 'x', steps: 1 } as OpenAI.ImageGenerateParamsNonStreaming), (e: InstanceType<typeof OpenAI.APIError>) => {
      assert.equal(e.status, 503);
      assert.match(e.message, /Redis at redis:\/\/127\.0\.0\.1:\d+ does not answer/);
      return true;
    });
    const a1111 = await fetch(`${front.url}/sdapi/v1/txt2img`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'x', steps: 1 }) });
    assert.equal(a1111.status, 503);
    assert.ok(Number(a1111.headers.get('retry-after')) >= 1);
    assert.match(JSON.stringify(await a1111.json()), /job queue is unreachable/);
    const h = await health();
    assert.equal(h.redis, 'down');
    await redis.start();
    const res = await until('a generation after Redis returned', async () => {
      const r = await fetch(`${front.url}/api/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'back again', steps: 2, seed: 5 }) });
      return r.status === 200 ? r : undefined;
    }, 30_000, 250);
    assertSamePixels(decodeImage(new Uint8Array(await res.arrayBuffer())), await expected('back again', 5, 64, 2), 'after the restart');
  });

  it('no worker alive: 503 naming the command to start one; sd3 serve --redis without --no-local-worker is one (--results-dir)', async () => {
    for (const w of workers) w.child.kill('SIGTERM');
    await Promise.all(workers.map((w) => w.exited));
    workers = [];
    await until('no live worker in /api/health', async () => (await health()).workers.every((w) => !w.alive));
    const none = await fetch(`${front.url}/v1/images/generations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'anyone?', steps: 1 }) });
    assert.equal(none.status, 503);
    assert.match(((await none.json()) as { error: { message: string } }).error.message, /no sd3 worker for the model "tiny-random" is running; start one with: sd3 worker -m tiny-random --redis redis:/);
    const resultsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sd3-results-'));
    const both = await startFrontEnd(redis.url, ['--results-dir', resultsDir], true);
    const h = await until('the serve process as a worker', async () => {
      const x = await getJSON(`${both.url}/api/health`) as { workers: HealthWorker[] };
      return x.workers.find((w) => w.alive && w.pid === both.child.pid) ? x : undefined;
    });
    assert.equal(h.workers.filter((w) => w.alive).length, 1);
    const res = await fetch(`${both.url}/api/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'at home', steps: 2, seed: 8 }) });
    assert.equal(res.status, 200);
    const png = new Uint8Array(await res.arrayBuffer());
    assertSamePixels(decodeImage(png), await expected('at home', 8, 64, 2), 'the local worker');
    // --results-dir: the image is a file in the job's folder, nothing half-written is left.
    const id = res.headers.get('x-sd3-job')!;
    assert.deepEqual(fs.readdirSync(resultsDir), [id]);
    assert.deepEqual([...fs.readFileSync(path.join(resultsDir, id, '0.png'))], [...png]);
    // The thin front end's jobs run there too, but it was not given the folder: a clear error, not a wrong image.
    const thin = await fetch(`${front.url}/api/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'at home', steps: 2, seed: 8 }) });
    assert.equal(thin.status, 500);
    assert.match(((await thin.json()) as { error: { message: string } }).error.message, /wrote the images to its --results-dir, but this front end has none: start it with --results-dir/);
    both.child.kill('SIGTERM');
    assert.equal(await both.exited, 0);
    fs.rmSync(resultsDir, { recursive: true, force: true });
  });
});
