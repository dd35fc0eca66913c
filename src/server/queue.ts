/**
 * The one job queue every API family shares: a bounded FIFO of pending jobs and one worker loop per loaded
 * model, which runs one job at a time (a generation already uses every core). Jobs carry an event log that
 * the SSE route replays, a deadline, cancellation (queued: removed; running: aborted within one step) and
 * A1111's interrupt (stop within one step and keep what the latent shows). Finished jobs are kept for a
 * bounded time and number, then answered as expired (410).
 */
import { randomUUID } from 'node:crypto';
import { AbortError, SD3Error } from '../core/errors.js';
import type { RGBImage } from '../image/image.js';
import type { StepInfo } from '../pipelines/denoise.js';
import type { LongPrompts } from '../pipelines/text-windows.js';
import type { SkipLayerGuidance } from '../sampler/skip-layer-guidance.js';
import type { StepCache } from '../sampler/step-cache.js';
import type { SamplerName } from '../sampler/steppers.js';
import { RequestError } from './errors.js';
import type { JobLora } from './features.js';

export type JobStatus = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';

/** What a job generates, in the server's terms (each family maps its fields onto this). */
export interface JobSpec {
  readonly prompt: string;
  readonly negativePrompt: string;
  readonly width: number;
  readonly height: number;
  readonly steps: number;
  readonly cfgScale: number;
  /** Image i uses seed + i. */
  readonly seed: number;
  readonly batch: number;
  /** Image-to-image and inpainting. */
  readonly image?: RGBImage;
  /** Inpainting: white (255) = repaint, one byte per pixel of `image`. */
  readonly mask?: RGBImage;
  readonly strength?: number;
  /** LoRAs by name inside the engine's LoRA folder (features.ts); none: the base model. */
  readonly loras?: readonly JobLora[];
  readonly sampler?: SamplerName;
  readonly skipLayerGuidance?: SkipLayerGuidance;
  readonly stepCache?: StepCache;
  readonly promptWeights?: boolean;
  readonly longPrompts?: LongPrompts;
}

export type JobKind = 'text-to-image' | 'image-to-image' | 'inpaint';

export function jobKind(s: JobSpec): JobKind {
  return s.mask ? 'inpaint' : s.image ? 'image-to-image' : 'text-to-image';
}

export interface JobEvent {
  /** `decoded` (true VAE decodes of an unfinished latent, for OpenAI partial images) is live only, never replayed. */
  readonly event: 'queued' | 'started' | 'progress' | 'preview' | 'decoded' | 'completed' | 'failed' | 'cancelled';
  readonly data: unknown;
}

export interface JobResultImage {
  readonly png: Buffer;
  readonly seed: number;
  /** The A1111 infotext (also in the PNG's `parameters` chunk). */
  readonly infotext: string;
  /** Our JSON parameters (also in the PNG). */
  readonly parameters: Record<string, unknown>;
}

/** Runs one job on the model: images, or an AbortError when its signal fires. */
export interface JobRunner {
  run(job: Job, signal: AbortSignal, onStep: (info: StepInfo) => void): Promise<JobResultImage[]>;
  /** Steps the denoising loop will run for this spec (strength cuts image-to-image short). */
  stepsRun(spec: JobSpec): number;
}

export class Job {
  readonly id = randomUUID();
  readonly kind: JobKind;
  readonly created = Date.now();
  status: JobStatus = 'queued';
  started: number | undefined;
  finished: number | undefined;
  step = 0;
  readonly total: number;
  images: JobResultImage[] = [];
  error: { message: string; code: string } | undefined;
  /** A1111 interrupt: the run stopped early and its images show the latent it had. */
  interrupted = false;
  /** The latent after the latest step (what an interrupt decodes). */
  lastStep: StepInfo | undefined;
  /** The latest cheap preview (PNG of the first image), with its step. */
  preview: { step: number; png: Buffer } | undefined;
  /** Whether to make per-step previews (SSE `preview` events, A1111's current_image). */
  wantsPreviews = false;
  /** Steps after which to VAE-decode the unfinished latent (OpenAI partial images). */
  readonly decodeAt = new Set<number>();
  readonly controller = new AbortController();
  /** Why the running job is being stopped. */
  stopReason: 'cancel' | 'interrupt' | 'deadline' | 'shutdown' | undefined;
  /** The step the job had reached when it was asked to stop. */
  stopRequestedAt: number | undefined;
  private readonly log: JobEvent[] = [];
  private readonly listeners = new Set<(e: JobEvent) => void>();
  /** Seconds per step measured in this job. */
  secondsPerStep: number | undefined;
  /** The worker that ran it, when it ran on another process (the Redis backend). */
  worker: string | undefined;
  readonly done: Promise<void>;
  private resolveDone!: () => void;

  private specValue: JobSpec;

  constructor(spec: JobSpec, total: number) {
    this.specValue = spec;
    this.kind = jobKind(spec);
    this.total = total;
    this.done = new Promise((r) => { this.resolveDone = r; });
  }

  /** What the job generates (a finished job no longer holds its input image and mask). */
  get spec(): JobSpec {
    return this.specValue;
  }

  get terminal(): boolean {
    return this.status === 'completed' || this.status === 'failed' || this.status === 'cancelled';
  }

  /** Seconds left, from this job's measured step time (or the estimate given). */
  eta(fallbackPerStep: number): number {
    const per = this.secondsPerStep ?? fallbackPerStep;
    return Math.max(0, (this.total - this.step) * per);
  }

  emit(event: JobEvent['event'], data: unknown): void {
    const e = { event, data };
    // Previews are replaced, not logged: a late subscriber gets the latest one, and the log stays small.
    if (event !== 'preview' && event !== 'decoded') this.log.push(e);
    for (const l of this.listeners) l(e);
  }

  /** Every logged event so far, then the live ones, until `off` is called. */
  subscribe(listener: (e: JobEvent) => void): () => void {
    for (const e of this.log) listener(e);
    if (this.preview && !this.terminal) listener({ event: 'preview', data: { step: this.preview.step, png: this.preview.png.toString('base64'), source: 'latent' } });
    this.listeners.add(listener);
    return () => { this.listeners.delete(listener); };
  }

  markStarted(): void {
    this.status = 'running';
    this.started = Date.now();
  }

  markStep(info: StepInfo): void {
    this.step = info.step;
    this.lastStep = info;
    this.secondsPerStep = info.elapsed / info.step;
  }

  private readonly previewSteps = { latent: 0, vae: 0 };

  /** A preview of either kind; each kind's steps only go forward (a slow VAE decode may land after later cheap ones). */
  setPreview(step: number, png: Buffer, source: 'latent' | 'vae'): void {
    if (this.terminal || step < this.previewSteps[source]) return;
    this.previewSteps[source] = step;
    if (!this.preview || step >= this.preview.step) this.preview = { step, png };
    this.emit('preview', { step, png: png.toString('base64'), source });
  }

  setDecoded(step: number, pngs: Buffer[]): void {
    if (this.terminal) return;
    this.emit('decoded', { step, pngs });
  }

  finish(status: 'completed' | 'failed' | 'cancelled', error?: { message: string; code: string }): void {
    this.status = status;
    this.finished = Date.now();
    this.error = error;
    this.lastStep = undefined;
    // Input pictures can be 4096x4096: kept finished jobs keep only their results.
    const { image: _image, mask: _mask, ...rest } = this.specValue;
    this.specValue = rest;
    this.resolveDone();
  }

  /** Finishes the job and tells its listeners how it ended (the terminal event of every backend). */
  end(status: 'completed' | 'failed' | 'cancelled', error?: { message: string; code: string }): void {
    this.finish(status, error);
    if (status === 'completed') this.emit('completed', null);
    else this.emit(status, { error: { message: error!.message, code: error!.code } });
  }
}

/** How many expired ids are remembered (to answer 410 rather than 404). */
const EXPIRED_IDS = 10_000;

/**
 * Drops finished jobs past their time, and the oldest past the count, remembering their ids (bounded) so that
 * a later request for one is told it expired (410) rather than never existed (404). Shared by every backend.
 */
export function sweepFinished(jobs: Map<string, Job>, expired: Set<string>, keepMs: number, keepJobs: number): void {
  const now = Date.now();
  const finished = [...jobs.values()].filter((j) => j.terminal).sort((a, b) => a.finished! - b.finished!);
  finished.forEach((j, i) => {
    if (now - j.finished! > keepMs || finished.length - i > keepJobs) {
      jobs.delete(j.id);
      expired.add(j.id);
    }
  });
  while (expired.size > EXPIRED_IDS) expired.delete(expired.values().next().value!);
}

/**
 * What the routes use of a queue: the in-process {@link JobQueue} below, or the Redis/BullMQ backend of
 * src/cluster (jobs run on `sd3 worker` processes; the routes see the same Job objects either way).
 */
export interface JobBackend {
  readonly maxQueue: number;
  /** A running job (the A1111 progress route shows it). */
  readonly running: Job | undefined;
  readonly pendingCount: number;
  /** Jobs ahead of this one. */
  position(job: Job): number;
  /** Seconds until this job would finish. */
  estimate(job: Job): number;
  /** Queues a job, or throws 429 (queue full) / 503 (shutting down, or the backend unreachable). */
  submit(spec: JobSpec, opts?: SubmitOptions): Job | Promise<Job>;
  get(id: string): Job | 'expired' | undefined;
  cancel(job: Job, reason?: 'cancel' | 'shutdown'): boolean;
  interrupt(): boolean;
  close(): Promise<void>;
  /** What /api/health adds (queue counts, workers), when the backend has more to say than the job objects. */
  health?(): Promise<Record<string, unknown>>;
  /** Called with each job as it finishes (tests, logging). */
  onFinish: ((job: Job) => void) | undefined;
}

export interface SubmitOptions {
  /** Steps after which to VAE-decode the unfinished latent (OpenAI partial images). */
  readonly decodeAt?: Iterable<number>;
}

export interface QueueOptions {
  /** Pending jobs at most (the running one not counted); default 8. */
  readonly maxQueue?: number;
  /** A running job is stopped after this many seconds (default 3600). */
  readonly jobTimeout?: number;
  /** Finished jobs are kept this many seconds (default 3600), then expire (410). */
  readonly keepSeconds?: number;
  /** Finished jobs kept at most (oldest expire first; default 64). */
  readonly keepJobs?: number;
  /** Make a cheap latent preview after every step (default true). */
  readonly previews?: boolean;
}


export class JobQueue implements JobBackend {
  readonly maxQueue: number;
  private readonly jobTimeout: number;
  private readonly keepMs: number;
  private readonly keepJobs: number;
  private readonly previews: boolean;
  private readonly pending: Job[] = [];
  private readonly jobs = new Map<string, Job>();
  private readonly expired = new Set<string>();
  private runningJob: Job | undefined;
  private closing = false;
  private loop: Promise<void> | undefined;
  /** Set and cleared inside work() itself, so a job submitted as the loop ends can never be left unrun. */
  private working = false;
  /** Seconds per step per megapixel-image, measured over finished runs (an exponential average). */
  private perStepMpx: number | undefined;
  /** Seconds outside the loop per job (encode, decode), measured the same way. */
  private overhead = 0;
  private readonly sweeper: NodeJS.Timeout;
  /** Called with each job as it finishes (tests, logging). */
  onFinish: ((job: Job) => void) | undefined;

  constructor(private readonly runner: JobRunner, opts: QueueOptions = {}) {
    this.maxQueue = opts.maxQueue ?? 8;
    this.jobTimeout = opts.jobTimeout ?? 3600;
    this.keepMs = (opts.keepSeconds ?? 3600) * 1000;
    this.keepJobs = opts.keepJobs ?? 64;
    this.previews = opts.previews ?? true;
    this.sweeper = setInterval(() => sweepFinished(this.jobs, this.expired, this.keepMs, this.keepJobs), Math.min(30_000, Math.max(1000, this.keepMs / 4)));
    this.sweeper.unref();
  }

  get running(): Job | undefined {
    return this.runningJob;
  }

  get pendingCount(): number {
    return this.pending.length;
  }

  /** Jobs ahead of this one (0 for the next to run and the running one). */
  position(job: Job): number {
    const i = this.pending.indexOf(job);
    return i < 0 ? 0 : i + (this.runningJob ? 1 : 0);
  }

  /** Seconds one step of this spec takes, from measurements (1 s per step per megapixel-image before any). */
  secondsPerStep(spec: JobSpec): number {
    return (this.perStepMpx ?? 1) * spec.batch * ((spec.width * spec.height) / 1e6);
  }

  /** Seconds until this job would finish (its own run plus everything ahead of it). */
  estimate(job: Job): number {
    let s = 0;
    if (this.runningJob && this.runningJob !== job) s += this.runningJob.eta(this.secondsPerStep(this.runningJob.spec));
    for (const p of this.pending) {
      if (p === job) break;
      s += p.total * this.secondsPerStep(p.spec) + this.overhead;
    }
    return s + job.eta(this.secondsPerStep(job.spec)) + (job.status === 'queued' ? this.overhead : 0);
  }

  /** Seconds until a pending slot frees: the running job's remaining time, at least 1. */
  retryAfter(): number {
    const r = this.runningJob;
    return Math.max(1, Math.ceil(r ? r.eta(this.secondsPerStep(r.spec)) + this.overhead : 1));
  }

  /** Queues a job, or throws 429 (queue full) / 503 (shutting down). */
  submit(spec: JobSpec, opts: SubmitOptions = {}): Job {
    if (this.closing) throw new RequestError(503, 'the server is shutting down', 'not_ready', null, 5);
    if (this.pending.length >= this.maxQueue && (this.runningJob !== undefined || this.pending.length > 0)) {
      throw new RequestError(429, `the queue is full (${this.pending.length} pending, at most ${this.maxQueue}); retry later`, 'queue_full', null, this.retryAfter());
    }
    const job = new Job(spec, this.runner.stepsRun(spec));
    job.wantsPreviews = this.previews;
    for (const s of opts.decodeAt ?? []) job.decodeAt.add(s);
    this.jobs.set(job.id, job);
    this.pending.push(job);
    job.emit('queued', { queue_position: this.position(job) });
    if (!this.working) this.loop = this.work();
    return job;
  }

  /** The job, 'expired' once it has been dropped, or undefined for an id never seen. */
  get(id: string): Job | 'expired' | undefined {
    return this.jobs.get(id) ?? (this.expired.has(id) ? 'expired' : undefined);
  }

  /** Cancels a queued job at once, a running one within one step. False when it had already finished. */
  cancel(job: Job, reason: 'cancel' | 'shutdown' = 'cancel'): boolean {
    if (job.terminal) return false;
    const i = this.pending.indexOf(job);
    if (i >= 0) {
      this.pending.splice(i, 1);
      this.finishJob(job, 'cancelled', { message: reason === 'shutdown' ? 'the server shut down' : 'cancelled', code: 'cancelled' });
      this.announcePositions();
      return true;
    }
    job.stopReason ??= reason;
    job.stopRequestedAt ??= job.step;
    job.controller.abort();
    return true;
  }

  /** A1111's interrupt: the running job stops within one step and returns the images its latent shows. */
  interrupt(): boolean {
    const job = this.runningJob;
    if (!job) return false;
    job.stopReason ??= 'interrupt';
    job.stopRequestedAt ??= job.step;
    job.controller.abort();
    return true;
  }

  /** Stops taking jobs, cancels the pending ones, aborts the running one and waits for it. */
  async close(): Promise<void> {
    this.closing = true;
    for (const job of [...this.pending]) this.cancel(job, 'shutdown');
    if (this.runningJob) this.cancel(this.runningJob, 'shutdown');
    await this.loop;
    clearInterval(this.sweeper);
  }

  private announcePositions(): void {
    for (const p of this.pending) p.emit('queued', { queue_position: this.position(p) });
  }

  private async work(): Promise<void> {
    this.working = true;
    try {
      while (this.pending.length > 0) {
        const job = this.pending.shift()!;
        this.runningJob = job;
        this.announcePositions();
        await this.runOne(job);
        this.runningJob = undefined;
      }
    } finally {
      this.working = false;
    }
  }

  private async runOne(job: Job): Promise<void> {
    job.markStarted();
    job.emit('started', { queue_position: 0 });
    const deadline = setTimeout(() => {
      job.stopReason ??= 'deadline';
      job.controller.abort();
    }, this.jobTimeout * 1000);
    deadline.unref();
    const t0 = performance.now();
    let loopSeconds = 0;
    try {
      const images = await this.runner.run(job, job.controller.signal, (info) => {
        job.markStep(info);
        loopSeconds = info.elapsed;
        job.emit('progress', { step: info.step, total: info.total, eta: round(job.eta(this.secondsPerStep(job.spec))) });
      });
      job.images = images;
      if (job.stopReason === 'interrupt') job.interrupted = true;
      this.measure(job, (performance.now() - t0) / 1000, loopSeconds);
      this.finishJob(job, 'completed');
    } catch (e) {
      const aborted = e instanceof AbortError || (e as Error).name === 'AbortError';
      if (aborted && job.stopReason === 'deadline') {
        this.finishJob(job, 'failed', { message: `the job ran past its deadline (${this.jobTimeout} s)`, code: 'deadline' });
      } else if (aborted) {
        this.finishJob(job, 'cancelled', { message: job.stopReason === 'shutdown' ? 'the server shut down' : 'cancelled', code: 'cancelled' });
      } else {
        // An SD3Error is the library refusing this request's input (400 to the client); anything else is ours (500).
        this.finishJob(job, 'failed', { message: (e as Error).message, code: e instanceof SD3Error ? 'invalid_request' : 'generation_failed' });
      }
    } finally {
      clearTimeout(deadline);
    }
  }

  private measure(job: Job, seconds: number, loopSeconds: number): void {
    if (job.step === 0 || job.interrupted) return;
    const mpx = job.spec.batch * ((job.spec.width * job.spec.height) / 1e6);
    const perStep = loopSeconds / job.step / mpx;
    const a = 0.5;
    this.perStepMpx = this.perStepMpx === undefined ? perStep : a * perStep + (1 - a) * this.perStepMpx;
    this.overhead = a * Math.max(0, seconds - loopSeconds) + (1 - a) * this.overhead;
  }

  private finishJob(job: Job, status: 'completed' | 'failed' | 'cancelled', error?: { message: string; code: string }): void {
    // Before anyone awaiting the job resumes: a finished job no longer holds the worker.
    if (this.runningJob === job) this.runningJob = undefined;
    job.end(status, error);
    this.onFinish?.(job);
    sweepFinished(this.jobs, this.expired, this.keepMs, this.keepJobs);
  }
}

function round(s: number): number {
  return Math.round(s * 100) / 100;
}
