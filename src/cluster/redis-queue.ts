/**
 * The front end's job queue on Redis with BullMQ: the routes see the same {@link Job} objects as with the
 * in-process queue, but jobs run on `sd3 worker` processes (src/worker) that listen on their model's BullMQ
 * queue. Each job submitted here has a local Job that mirrors the remote one from BullMQ's queue events
 * (active, progress with step/preview/decoded messages, completed, failed), so SSE, A1111 progress and OpenAI
 * streaming work unchanged. The queue bound is checked against the queue's length in Redis (so it holds
 * across front ends and workers), a Redis that cannot be reached makes submissions fail with 503, and a
 * reconciliation poll catches up on any event missed while Redis was away (or lost with its data).
 */
import { Job as BullJob, Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { stepsRun } from '../server/engine.js';
import { RequestError } from '../server/errors.js';
import { Job, type JobBackend, sweepFinished, type JobResultImage, type JobSpec, type SubmitOptions } from '../server/queue.js';
import {
  CONTROL_CHANNEL, type ControlMessage, type JobData, type JobOutcome, type Progress, type StopReason, type WorkerInfo,
  WORKERS_KEY, queueName, redisOptions, specToWire, stopKey, withTimeout,
} from './protocol.js';
import { readResults } from './results.js';

export interface RedisQueueOptions {
  /** redis://host:port */
  readonly url: string;
  /** The model the front end serves: jobs go to this model's queue. */
  readonly model: string;
  /** Pending jobs at most across the cluster (default 8). */
  readonly maxQueue?: number;
  /** Finished jobs (and their images) are kept this many seconds (default 3600). */
  readonly keepSeconds?: number;
  /** Finished jobs kept at most on this front end (default 64). */
  readonly keepJobs?: number;
  /** Per-step latent previews (default true). */
  readonly previews?: boolean;
  /** How long one Redis call may take before the request gets a 503 (default 3000 ms). */
  readonly redisTimeoutMs?: number;
  /** The shared folder workers started with --results-dir write images to (the same disk, mounted here). */
  readonly resultsDir?: string;
}

/** Workers not heard from for this long are dropped from /api/health. */
const FORGET_WORKER_MS = 10 * 60_000;
/** BullMQ's failedReason when a job stalled (its worker died) more often than the workers allow. */
const STALLED = /stalled more than allowable limit/i;

export class RedisJobQueue implements JobBackend {
  readonly maxQueue: number;
  onFinish: ((job: Job) => void) | undefined;
  private readonly queue: Queue;
  private readonly events: QueueEvents;
  private readonly redis: Redis;
  private readonly jobs = new Map<string, Job>();
  private readonly expired = new Set<string>();
  private readonly keepMs: number;
  private readonly keepJobs: number;
  private readonly previews: boolean;
  private readonly timeoutMs: number;
  private closing = false;
  private readonly timer: NodeJS.Timeout;
  /** Seconds per step per megapixel-image and per-job overhead, measured from the workers' outcomes. */
  private perStepMpx: number | undefined;
  private overhead = 0;
  /** Seconds per job (its whole run), measured the same way; 10 s before any job finished. */
  private jobSeconds: number | undefined;
  /** Workers alive at the last look (for estimates). */
  private workersAlive = 1;

  constructor(private readonly opts: RedisQueueOptions) {
    this.maxQueue = opts.maxQueue ?? 8;
    this.keepMs = (opts.keepSeconds ?? 3600) * 1000;
    this.keepJobs = opts.keepJobs ?? 64;
    this.previews = opts.previews ?? true;
    this.timeoutMs = opts.redisTimeoutMs ?? 3000;
    const connection = redisOptions(opts.url);
    // Fail fast while Redis is away (a request gets 503 at once) and keep reconnecting in the background.
    const retryStrategy = (times: number) => Math.min(200 * times, 2000);
    this.redis = new Redis({ ...connection, enableOfflineQueue: false, maxRetriesPerRequest: 1, retryStrategy, lazyConnect: false });
    // Connection errors surface as 503s on the requests that need Redis; the clients reconnect by themselves.
    const ignore = () => undefined;
    this.redis.on('error', ignore);
    this.queue = new Queue(queueName(opts.model), { connection: { ...connection, enableOfflineQueue: false, maxRetriesPerRequest: 1, retryStrategy } });
    this.queue.on('error', ignore);
    this.events = new QueueEvents(queueName(opts.model), { connection: { ...connection, retryStrategy } });
    this.events.on('error', ignore);
    this.events.on('active', ({ jobId }) => this.onActive(jobId));
    this.events.on('progress', ({ jobId, data }) => this.onProgress(jobId, data as Progress));
    this.events.on('completed', ({ jobId, returnvalue }) => { void this.onOutcome(jobId, parseOutcome(returnvalue)); });
    this.events.on('failed', ({ jobId, failedReason }) => this.onFailed(jobId, failedReason));
    this.timer = setInterval(() => { void this.reconcile(); }, 1000);
    this.timer.unref();
  }

  get running(): Job | undefined {
    for (const j of this.jobs.values()) if (j.status === 'running') return j;
    return undefined;
  }

  get pendingCount(): number {
    let n = 0;
    for (const j of this.jobs.values()) if (j.status === 'queued') n++;
    return n;
  }

  /** Jobs of this front end ahead of this one (others' are not known here). */
  position(job: Job): number {
    if (job.status !== 'queued') return 0;
    let n = 0;
    for (const j of this.jobs.values()) if (j.status === 'queued' && j.created < job.created) n++;
    return n;
  }

  secondsPerStep(spec: JobSpec): number {
    return (this.perStepMpx ?? 1) * spec.batch * ((spec.width * spec.height) / 1e6);
  }

  estimate(job: Job): number {
    const own = job.eta(this.secondsPerStep(job.spec)) + (job.status === 'queued' ? this.overhead : 0);
    if (job.status !== 'queued') return own;
    let ahead = 0;
    for (const j of this.jobs.values()) {
      if (j === job || j.terminal || (j.status === 'queued' && j.created >= job.created)) continue;
      ahead += j.eta(this.secondsPerStep(j.spec)) + this.overhead;
    }
    return own + ahead / Math.max(1, this.workersAlive);
  }

  /** Seconds until a pending slot frees: the jobs over the bound, at the measured time per job, spread over the live workers. */
  private retryAfter(pending: number): number {
    const perJob = this.jobSeconds ?? 10;
    return Math.max(1, Math.ceil((perJob * Math.max(1, pending - this.maxQueue + 1)) / Math.max(1, this.workersAlive)));
  }

  private unreachable(e: unknown): RequestError {
    return new RequestError(503, `the job queue is unreachable: Redis at ${this.opts.url} does not answer (${(e as Error).message}); retry shortly`, 'not_ready', null, 5);
  }

  async submit(spec: JobSpec, o: SubmitOptions = {}): Promise<Job> {
    if (this.closing) throw new RequestError(503, 'the server is shutting down', 'not_ready', null, 5);
    let pending: number;
    try {
      // waiting + delayed + prioritized + paused: every job no worker has taken yet, whoever queued it.
      pending = await withTimeout(this.queue.count(), this.timeoutMs, 'reading the queue length');
    } catch (e) {
      throw this.unreachable(e);
    }
    // No worker for this model: the job would wait for one that may never come; say so, as while a model loads.
    if (this.workersAlive === 0) await this.health();
    if (this.workersAlive === 0) {
      throw new RequestError(503, `no sd3 worker for the model "${this.opts.model}" is running; start one with: sd3 worker -m ${this.opts.model} --redis ${this.opts.url}`, 'not_ready', null, 5);
    }
    if (pending > 0 && pending >= this.maxQueue) {
      throw new RequestError(429, `the queue is full (${pending} pending across the cluster, at most ${this.maxQueue}); retry later`, 'queue_full', null, this.retryAfter(pending));
    }
    const job = new Job(spec, stepsRun(spec));
    job.wantsPreviews = this.previews;
    for (const s of o.decodeAt ?? []) job.decodeAt.add(s);
    const data: JobData = { model: this.opts.model, spec: specToWire(spec), previews: job.wantsPreviews, decodeAt: [...job.decodeAt] };
    // Registered before the add: a fast worker's events may arrive before add() resolves.
    this.jobs.set(job.id, job);
    try {
      const keep = Math.ceil(this.keepMs / 1000);
      await withTimeout(this.queue.add('generate', data, {
        jobId: job.id, attempts: 1, removeOnComplete: { age: keep }, removeOnFail: { age: keep },
      }), this.timeoutMs, 'queueing the job');
    } catch (e) {
      this.jobs.delete(job.id);
      throw this.unreachable(e);
    }
    job.emit('queued', { queue_position: this.position(job) });
    return job;
  }

  get(id: string): Job | 'expired' | undefined {
    return this.jobs.get(id) ?? (this.expired.has(id) ? 'expired' : undefined);
  }

  cancel(job: Job, reason: 'cancel' | 'shutdown' = 'cancel'): boolean {
    if (job.terminal) return false;
    job.stopReason ??= reason;
    job.stopRequestedAt ??= job.step;
    void this.stop(job, reason);
    return true;
  }

  /** A1111's interrupt: every running job of this front end stops within one step and keeps what it has. */
  interrupt(): boolean {
    let any = false;
    for (const job of this.jobs.values()) {
      if (job.status !== 'running') continue;
      job.stopReason ??= 'interrupt';
      job.stopRequestedAt ??= job.step;
      void this.stop(job, 'interrupt');
      any = true;
    }
    return any;
  }

  /**
   * A job no worker holds is removed from Redis (BullMQ refuses, answering 0, while a worker's lock is on it);
   * a running one is told to stop: on the control channel now, and by a key the worker reads when it picks a
   * job up (a cancel that raced the pick-up, or a job that moves to another worker).
   */
  private async stop(job: Job, reason: StopReason): Promise<void> {
    try {
      if (reason !== 'interrupt') {
        const removed = await withTimeout(this.queue.remove(job.id), this.timeoutMs, 'removing the job');
        if (removed === 1) {
          this.finishJob(job, 'cancelled', { message: reason === 'shutdown' ? 'the server shut down' : 'cancelled', code: 'cancelled' });
          return;
        }
      }
      const msg: ControlMessage = { id: job.id, reason };
      await withTimeout(this.redis.multi().set(stopKey(job.id), reason, 'EX', 3600).publish(CONTROL_CHANNEL, JSON.stringify(msg)).exec(), this.timeoutMs, 'sending the stop');
    } catch (e) {
      // Redis cannot be reached: the client is answered now; whatever the worker still does is ignored.
      if (reason !== 'interrupt') this.finishJob(job, 'cancelled', { message: `cancelled (the worker could not be told: ${(e as Error).message})`, code: 'cancelled' });
    }
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const open = [...this.jobs.values()].filter((j) => !j.terminal);
    for (const job of open) this.cancel(job, 'shutdown');
    // Running jobs stop within one step; wait a little for their answers, then give up on them.
    await Promise.race([Promise.all(open.map((j) => j.done)), new Promise((r) => setTimeout(r, 3000).unref())]);
    for (const job of open) if (!job.terminal) this.finishJob(job, 'cancelled', { message: 'the server shut down', code: 'cancelled' });
    clearInterval(this.timer);
    await Promise.allSettled([this.events.close(), this.queue.close()]);
    this.redis.disconnect();
  }

  async health(): Promise<Record<string, unknown>> {
    try {
      const [counts, raw] = await withTimeout(Promise.all([
        this.queue.getJobCounts('waiting', 'prioritized', 'delayed', 'active'),
        this.redis.hgetall(WORKERS_KEY),
      ]), this.timeoutMs, 'reading the cluster state');
      const now = Date.now();
      const workers = Object.values(raw).map((v) => JSON.parse(v) as WorkerInfo)
        .filter((w) => now - w.lastHeartbeat < FORGET_WORKER_MS && w.model === this.opts.model)
        .sort((a, b) => a.id.localeCompare(b.id))
        .map((w) => ({
          id: w.id, model: w.model, device: w.device, host: w.host, pid: w.pid, busy: w.busy, jobs: w.jobs, state: w.state,
          jobs_done: w.jobsDone, concurrency: w.concurrency,
          last_heartbeat: new Date(w.lastHeartbeat).toISOString(), alive: w.state !== 'stopped' && now - w.lastHeartbeat < 3 * w.heartbeatMs,
        }));
      this.workersAlive = workers.filter((w) => w.alive && w.state !== 'draining').length;
      const pending = (counts.waiting ?? 0) + (counts.prioritized ?? 0) + (counts.delayed ?? 0);
      return {
        backend: 'redis', redis: 'up', queue_name: queueName(this.opts.model),
        queue: { running: counts.active ?? 0, pending, max: this.maxQueue },
        workers,
      };
    } catch (e) {
      return { backend: 'redis', redis: 'down', redis_error: `Redis at ${this.opts.url} does not answer (${(e as Error).message})`, workers: [] };
    }
  }

  private onActive(id: string): void {
    const job = this.jobs.get(id);
    if (!job || job.terminal) return;
    if (job.status === 'queued') {
      job.markStarted();
      job.emit('started', { queue_position: 0 });
      for (const p of this.jobs.values()) if (p.status === 'queued') p.emit('queued', { queue_position: this.position(p) });
    }
  }

  private onProgress(id: string, p: Progress): void {
    const job = this.jobs.get(id);
    if (!job || job.terminal || typeof p !== 'object' || p === null) return;
    if (job.status === 'queued') this.onActive(id);
    if (p.kind === 'step') {
      job.step = p.step;
      job.worker = p.worker;
      job.secondsPerStep = p.elapsed / Math.max(1, p.step);
      job.emit('progress', { step: p.step, total: p.total, eta: Math.round(job.eta(this.secondsPerStep(job.spec)) * 100) / 100 });
    } else if (p.kind === 'preview') {
      job.setPreview(p.step, Buffer.from(p.png, 'base64'), p.source);
    } else if (p.kind === 'decoded') {
      job.setDecoded(p.step, p.pngs.map((s) => Buffer.from(s, 'base64')));
    }
  }

  private onFailed(id: string, reason: string): void {
    const job = this.jobs.get(id);
    if (!job || job.terminal) return;
    const message = STALLED.test(reason)
      ? 'the job was given up: the workers running it stopped in the middle (killed or out of memory) more times than allowed, so it is not retried again'
      : `the worker failed: ${reason}`;
    this.finishJob(job, 'failed', { message, code: 'generation_failed' });
  }

  private async onOutcome(id: string, outcome: JobOutcome | undefined): Promise<void> {
    const job = this.jobs.get(id);
    if (!job || job.terminal) return;
    if (!outcome) {
      this.finishJob(job, 'failed', { message: 'the worker returned no outcome', code: 'generation_failed' });
      return;
    }
    job.worker = outcome.worker;
    job.step = outcome.step;
    if (outcome.stopRequestedAt !== undefined) job.stopRequestedAt = outcome.stopRequestedAt;
    if (outcome.status !== 'completed') {
      this.finishJob(job, outcome.status, outcome.error ?? { message: outcome.status, code: outcome.status });
      return;
    }
    if (outcome.store === 'dir' && this.opts.resultsDir === undefined) {
      this.finishJob(job, 'failed', { message: `worker ${outcome.worker} wrote the images to its --results-dir, but this front end has none: start it with --results-dir on the same shared folder`, code: 'generation_failed' });
      return;
    }
    let pngs: (Buffer | null)[];
    try {
      pngs = await withTimeout(readResults(this.redis, outcome.store === 'dir' ? this.opts.resultsDir : undefined, id, outcome.images.length), this.timeoutMs, 'reading the images');
    } catch {
      // Redis went away between the event and the read: the reconciliation poll tries again.
      return;
    }
    if (job.terminal) return;
    if (pngs.some((p) => !p)) {
      this.finishJob(job, 'failed', { message: 'the images of this job are no longer stored (their time ran out, or Redis or the results folder lost them)', code: 'generation_failed' });
      return;
    }
    job.images = outcome.images.map((img, n): JobResultImage => ({ ...img, png: pngs[n]! }));
    job.interrupted = outcome.interrupted;
    this.measure(job, outcome);
    this.finishJob(job, 'completed');
  }

  private measure(job: Job, o: JobOutcome): void {
    if (o.step === 0 || o.interrupted) return;
    const mpx = job.spec.batch * ((job.spec.width * job.spec.height) / 1e6);
    const perStep = o.loopSeconds / o.step / mpx;
    const a = 0.5;
    this.perStepMpx = this.perStepMpx === undefined ? perStep : a * perStep + (1 - a) * this.perStepMpx;
    this.overhead = a * Math.max(0, o.seconds - o.loopSeconds) + (1 - a) * this.overhead;
    this.jobSeconds = this.jobSeconds === undefined ? o.seconds : a * o.seconds + (1 - a) * this.jobSeconds;
  }

  /**
   * Catches up on events missed while Redis (or this front end's connection to it) was away: each unfinished
   * job's state is read back; a job Redis no longer has (it restarted without its data) fails in words.
   */
  private reconciling = false;
  private ticks = 0;

  private async reconcile(): Promise<void> {
    if (this.reconciling) return;
    this.reconciling = true;
    try {
      const now = Date.now();
      // The live workers, for the estimates (health() refreshes it too).
      if (this.ticks++ % 5 === 0) await this.health();
      for (const job of [...this.jobs.values()]) {
        if (job.terminal || now - job.created < 1000) continue;
        const bj = await withTimeout(BullJob.fromId(this.queue, job.id), this.timeoutMs, 'reading a job');
        if (job.terminal) continue;
        if (!bj) {
          this.finishJob(job, 'failed', { message: 'the job was lost: Redis no longer has it (it restarted without its data); submit it again', code: 'generation_failed' });
          continue;
        }
        if (bj.finishedOn && bj.failedReason) this.onFailed(job.id, bj.failedReason);
        else if (bj.finishedOn) await this.onOutcome(job.id, parseOutcome(bj.returnvalue));
      }
    } catch {
      // Redis is away: the next tick tries again.
    } finally {
      this.reconciling = false;
      this.sweep();
    }
  }

  private finishJob(job: Job, status: 'completed' | 'failed' | 'cancelled', error?: { message: string; code: string }): void {
    if (job.terminal) return;
    job.end(status, error);
    this.onFinish?.(job);
    this.sweep();
  }

  private sweep(): void {
    sweepFinished(this.jobs, this.expired, this.keepMs, this.keepJobs);
  }
}

function parseOutcome(v: unknown): JobOutcome | undefined {
  if (typeof v === 'string') {
    try {
      return JSON.parse(v) as JobOutcome;
    } catch {
      return undefined;
    }
  }
  return v && typeof v === 'object' ? v as JobOutcome : undefined;
}
