/**
 * A worker of the cluster (`sd3 worker`): takes jobs for its one loaded model from that model's BullMQ queue
 * and runs each on the server's own engine and in-process queue (one JobQueue per concurrency slot, so
 * deadlines, cancel and interrupt behave exactly as on a single machine). It reports every step, preview and
 * partial decode through BullMQ job progress, stores the images in Redis with a TTL and returns the outcome.
 *
 * Cancel and interrupt arrive on a Redis channel (and as a key checked when a job starts, for a request that
 * raced the pick-up) and stop the job within one step. A worker that dies mid-job loses its BullMQ lock; the
 * stalled-job check of another worker puts the job back (at most `maxAttempts` runs in all, then it fails).
 * close() drains: BullMQ takes no new job and the running ones finish. Heartbeats go to a Redis hash that the
 * front end's /api/health reads.
 */
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { type Job as BullJob, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import {
  CONTROL_CHANNEL, type ControlMessage, type JobData, type JobOutcome, type Progress, WORKERS_KEY, type WorkerInfo,
  queueName, redisOptions, specFromWire, stopKey,
} from '../cluster/protocol.js';
import { storeResults, sweepResults } from '../cluster/results.js';
import { Engine, type LoadedModel } from '../server/engine.js';
import { type Job, JobQueue } from '../server/queue.js';

export interface WorkerOptions {
  readonly url: string;
  readonly model: LoadedModel;
  /** Shown in /api/health (e.g. "cpu"). */
  readonly device: string;
  /** Jobs run at once (default 1: a generation already uses every core). */
  readonly concurrency?: number;
  /** How long a job's lock lasts without renewal (default 30000 ms); a dead worker's job is retaken after about this long. */
  readonly lockMs?: number;
  /** How often workers look for stalled jobs (default 30000 ms). */
  readonly stalledIntervalMs?: number;
  /** Runs of one job at most, counting reruns after a worker died (default 2). */
  readonly maxAttempts?: number;
  /** Result images are kept this many seconds (default 3600). */
  readonly resultTtl?: number;
  /** Store result images as files in this folder (a disk the front ends share) instead of in Redis. */
  readonly resultsDir?: string;
  /** A running job is stopped after this many seconds (default 3600). */
  readonly jobTimeout?: number;
  readonly previewDecodeEvery?: number;
  /** The folder the LoRA names of jobs are resolved in (jobs naming LoRAs fail with a 400 without one). */
  readonly loraDir?: string;
  readonly heartbeatMs?: number;
  /** Log lines (default: none). */
  readonly log?: (line: string) => void;
}

export interface WorkerHandle {
  readonly id: string;
  /** Resolves once connected to Redis and listening for jobs. */
  readonly ready: Promise<void>;
  /** Takes no new job, lets the running ones finish (drain), then disconnects. */
  close(): Promise<void>;
}

interface Slot {
  readonly queue: JobQueue;
  busy: string | undefined;
}

export async function startWorker(opts: WorkerOptions): Promise<WorkerHandle> {
  const id = `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
  const connection = redisOptions(opts.url);
  const concurrency = opts.concurrency ?? 1;
  const heartbeatMs = opts.heartbeatMs ?? 2000;
  const ttl = opts.resultTtl ?? 3600;
  const log = opts.log ?? (() => undefined);
  const engine = new Engine(opts.model, { ...(opts.previewDecodeEvery !== undefined ? { previewDecodeEvery: opts.previewDecodeEvery } : {}), ...(opts.loraDir !== undefined ? { loraDir: opts.loraDir } : {}) });
  const slots: Slot[] = Array.from({ length: concurrency }, () => ({ queue: new JobQueue(engine, { maxQueue: 1, jobTimeout: opts.jobTimeout ?? 3600, keepJobs: 1 }), busy: undefined }));
  /** BullMQ job id -> the local job running it and its slot. */
  const running = new Map<string, { job: Job; slot: Slot }>();
  let state: WorkerInfo['state'] = 'starting';
  let jobsDone = 0;

  const redis = new Redis({ ...connection, maxRetriesPerRequest: null });
  // One line when Redis goes away and one when it is back, not one per reconnect attempt.
  let down: string | undefined;
  redis.on('error', (e) => {
    if (down !== e.message) log(`redis: ${e.message} (reconnecting)`);
    down = e.message;
  });
  redis.on('ready', () => {
    if (down !== undefined) log('redis: connected again');
    down = undefined;
  });
  const sub = new Redis({ ...connection, maxRetriesPerRequest: null });
  sub.on('error', () => undefined);
  sub.on('message', (_channel, text) => {
    let msg: ControlMessage;
    try {
      msg = JSON.parse(text) as ControlMessage;
    } catch {
      return;
    }
    const r = running.get(msg.id);
    if (r) stopLocal(r, msg.reason);
  });
  await sub.subscribe(CONTROL_CHANNEL);

  function stopLocal(r: { job: Job; slot: Slot }, reason: string): void {
    if (reason === 'interrupt') r.slot.queue.interrupt();
    else r.slot.queue.cancel(r.job, reason === 'shutdown' ? 'shutdown' : 'cancel');
  }

  const heartbeat = async () => {
    const info: WorkerInfo = {
      id, model: opts.model.name, device: opts.device, host: hostname(), pid: process.pid, concurrency,
      jobs: [...running.keys()], busy: running.size > 0, state, jobsDone, lastHeartbeat: Date.now(), heartbeatMs,
    };
    await redis.hset(WORKERS_KEY, id, JSON.stringify(info));
  };
  let beats = 0;
  const beat = setInterval(() => {
    heartbeat().catch(() => undefined);
    // About once a minute: result files past their time go.
    if (opts.resultsDir !== undefined && beats++ % Math.max(1, Math.round(60_000 / heartbeatMs)) === 0) void sweepResults(opts.resultsDir, ttl);
  }, heartbeatMs);
  beat.unref();

  async function processJob(bj: BullJob): Promise<JobOutcome> {
    const data = bj.data as JobData;
    const slot = slots.find((s) => s.busy === undefined)!;
    slot.busy = bj.id!;
    const t0 = performance.now();
    const local = slot.queue.submit(specFromWire(data.spec), { decodeAt: data.decodeAt });
    local.wantsPreviews = data.previews;
    const entry = { job: local, slot };
    running.set(bj.id!, entry);
    void heartbeat().catch(() => undefined);
    const report = (p: Progress) => { bj.updateProgress(p).catch(() => undefined); };
    let loopSeconds = 0;
    const off = local.subscribe((e) => {
      if (e.event === 'progress') {
        const d = e.data as { step: number; total: number };
        loopSeconds = (local.secondsPerStep ?? 0) * d.step;
        report({ kind: 'step', step: d.step, total: d.total, elapsed: loopSeconds, worker: id });
      } else if (e.event === 'preview') {
        const d = e.data as { step: number; png: string; source: 'latent' | 'vae' };
        report({ kind: 'preview', step: d.step, png: d.png, source: d.source });
      } else if (e.event === 'decoded') {
        const d = e.data as { step: number; pngs: Buffer[] };
        report({ kind: 'decoded', step: d.step, pngs: d.pngs.map((p) => p.toString('base64')) });
      }
    });
    try {
      // A cancel sent before this worker had the job (or while it moved between workers).
      const asked = await redis.get(stopKey(bj.id!));
      if (asked) stopLocal(entry, asked);
      log(`job ${bj.id} started (attempt ${bj.attemptsStarted ?? 1})`);
      await local.done;
      const images = local.status === 'completed' ? local.images : [];
      await storeResults(redis, opts.resultsDir, bj.id!, images.map((img) => img.png), ttl);
      jobsDone++;
      log(`job ${bj.id} ${local.status} at step ${local.step}/${local.total}`);
      return {
        status: local.status as JobOutcome['status'],
        ...(local.error ? { error: local.error } : {}),
        images: images.map(({ seed, infotext, parameters }) => ({ seed, infotext, parameters })),
        store: opts.resultsDir !== undefined ? 'dir' : 'redis',
        interrupted: local.interrupted,
        step: local.step,
        ...(local.stopRequestedAt !== undefined ? { stopRequestedAt: local.stopRequestedAt } : {}),
        loopSeconds,
        seconds: (performance.now() - t0) / 1000,
        worker: id,
      };
    } finally {
      off();
      running.delete(bj.id!);
      slot.busy = undefined;
      void heartbeat().catch(() => undefined);
    }
  }

  const worker = new Worker(queueName(opts.model.name), processJob, {
    connection: { ...connection, maxRetriesPerRequest: null },
    concurrency,
    lockDuration: opts.lockMs ?? 30_000,
    stalledInterval: opts.stalledIntervalMs ?? 30_000,
    // BullMQ counts reruns after a stall: maxAttempts runs in all.
    maxStalledCount: Math.max(0, (opts.maxAttempts ?? 2) - 1),
    autorun: false,
  });
  // Connection errors are reported once by the command connection above.
  worker.on('error', (e) => { if (down === undefined && !/ECONNREFUSED|ECONNRESET|Connection is closed/.test(e.message)) log(`worker: ${e.message}`); });
  void worker.run().catch((e: Error) => log(`worker stopped: ${e.message}`));
  const ready = worker.waitUntilReady().then(async () => {
    state = 'running';
    await heartbeat();
    log(`worker ${id} takes ${opts.model.name} jobs from ${queueName(opts.model.name)} on ${opts.url}`);
  });

  let closing: Promise<void> | undefined;
  return {
    id,
    ready: ready.then(() => undefined),
    close() {
      closing ??= (async () => {
        state = 'draining';
        await heartbeat().catch(() => undefined);
        // BullMQ's close without force: no new job is taken, the running ones finish.
        await worker.close();
        clearInterval(beat);
        state = 'stopped';
        await heartbeat().catch(() => undefined);
        await Promise.all(slots.map((s) => s.queue.close()));
        sub.disconnect();
        redis.disconnect();
      })();
      return closing;
    },
  };
}
