/**
 * The job queue alone, with a fake runner (no model): FIFO with one run at a time, the bound, queue positions,
 * Retry-After from measured step times, cancel and interrupt, and a job submitted the moment the loop ends.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { AbortError } from '../../src/core/errors.js';
import { tensor } from '../../src/core/tensor.js';
import type { StepInfo } from '../../src/pipelines/denoise.js';
import { RequestError } from '../../src/server/errors.js';
import { type Job, JobQueue, type JobRunner, type JobSpec } from '../../src/server/queue.js';

const spec = (steps: number, extra: Partial<JobSpec> = {}): JobSpec => ({
  prompt: 'p', negativePrompt: '', width: 1000, height: 1000, steps, cfgScale: 7, seed: 1, batch: 1, ...extra,
});

/** Runs `steps` steps of `ms` each, checking the signal between steps, like the denoising loop. */
function fakeRunner(ms: number, log: string[] = []): JobRunner & { active: number; most: number } {
  const r = {
    active: 0,
    most: 0,
    stepsRun: (s: JobSpec) => s.steps,
    async run(job: Job, signal: AbortSignal, onStep: (i: StepInfo) => void) {
      r.active++;
      r.most = Math.max(r.most, r.active);
      log.push(`start ${job.spec.prompt}`);
      try {
        const t0 = performance.now();
        for (let step = 1; step <= job.spec.steps; step++) {
          if (signal.aborted) {
            if (job.stopReason === 'interrupt') return [];
            throw new AbortError();
          }
          if (ms > 0) await sleep(ms); else await Promise.resolve();
          onStep({ step, total: job.spec.steps, elapsed: (performance.now() - t0) / 1000, latent: tensor('float32', [1], new Float32Array(1)) });
        }
        return [];
      } finally {
        r.active--;
        log.push(`end ${job.spec.prompt}`);
      }
    },
  };
  return r;
}

describe('JobQueue', () => {
  it('runs jobs one at a time in arrival order and refuses past --max-queue with 429 and Retry-After', async () => {
    const log: string[] = [];
    const runner = fakeRunner(5, log);
    const q = new JobQueue(runner, { maxQueue: 2 });
    const a = q.submit(spec(3, { prompt: 'a' }));
    const b = q.submit(spec(3, { prompt: 'b' }));
    const c = q.submit(spec(3, { prompt: 'c' }));
    assert.deepEqual([q.position(a), q.position(b), q.position(c)], [0, 1, 2]);
    assert.throws(() => q.submit(spec(1)), (e: unknown) => e instanceof RequestError && e.status === 429 && e.code === 'queue_full' && e.retryAfter! >= 1);
    await Promise.all([a.done, b.done, c.done]);
    assert.equal(runner.most, 1);
    assert.deepEqual(log, ['start a', 'end a', 'start b', 'end b', 'start c', 'end c']);
    assert.deepEqual([a.status, b.status, c.status], ['completed', 'completed', 'completed']);
    await q.close();
  });

  it('never strands a job submitted just as the worker loop ends', async () => {
    const q = new JobQueue(fakeRunner(0), { maxQueue: 1 });
    let job = q.submit(spec(1));
    for (let i = 0; i < 50; i++) {
      await job.done;
      job = q.submit(spec(1)); // in the same microtask turn as the finish
    }
    await Promise.race([job.done, sleep(2000).then(() => assert.fail('the last job was never run'))]);
    await q.close();
  });

  it('estimates Retry-After from the measured step time', async () => {
    const q = new JobQueue(fakeRunner(30), { maxQueue: 0 });
    const warm = q.submit(spec(2));
    await warm.done; // measures about 0.03 s per step per megapixel
    const long = q.submit(spec(100));
    while (long.step < 1) await sleep(5);
    const r = q.retryAfter();
    assert.ok(r >= 2 && r <= 10, `Retry-After ${r} s for ~99 steps of 30 ms`);
    q.cancel(long);
    await long.done;
    await q.close();
  });

  it('cancels queued jobs at once and running ones at the next step; interrupt completes the running one', async () => {
    const q = new JobQueue(fakeRunner(5), { maxQueue: 4 });
    const a = q.submit(spec(1000, { prompt: 'a' }));
    const b = q.submit(spec(5, { prompt: 'b' }));
    assert.equal(q.cancel(b), true);
    assert.equal(b.status, 'cancelled');
    while (a.step < 2) await sleep(2);
    q.cancel(a);
    await a.done;
    assert.equal(a.status, 'cancelled');
    assert.ok(a.step <= a.stopRequestedAt! + 1);
    const c = q.submit(spec(1000, { prompt: 'c' }));
    while (c.step < 1) await sleep(2);
    assert.equal(q.interrupt(), true);
    await c.done;
    assert.equal(c.status, 'completed');
    assert.equal(c.interrupted, true);
    assert.equal(q.cancel(c), false, 'a finished job cannot be cancelled');
    await q.close();
  });

  it('close() cancels everything and refuses new jobs with 503', async () => {
    const q = new JobQueue(fakeRunner(5), { maxQueue: 4 });
    const a = q.submit(spec(1000));
    const b = q.submit(spec(10));
    while (a.step < 1) await sleep(2);
    await q.close();
    assert.deepEqual([a.status, b.status], ['cancelled', 'cancelled']);
    assert.match(a.error!.message, /shut down/);
    assert.throws(() => q.submit(spec(1)), (e: unknown) => e instanceof RequestError && e.status === 503);
  });
});
