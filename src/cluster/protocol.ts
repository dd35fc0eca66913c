/**
 * What the front end (src/cluster/redis-queue.ts) and the workers (src/worker) agree on in Redis: one BullMQ
 * queue per model name (a worker only listens on its model's queue, so a job only reaches a worker that has its
 * model), the job's data (the spec with its images as base64), the progress messages a worker reports through
 * BullMQ job progress, the outcome it returns, the keys that hold result images (with a TTL), the channel and
 * keys that carry cancel and interrupt to the worker running a job, and the hash of worker heartbeats.
 */
import { SD3Error } from '../core/errors.js';
import { RGBImage } from '../image/image.js';
import type { JobSpec } from '../server/queue.js';

/** Every key and queue this project makes starts with this (BullMQ's own keys are under `bull:`). */
export const PREFIX = 'sd3';
/** Cancel, interrupt and shutdown requests for running jobs: JSON {@link ControlMessage}. */
export const CONTROL_CHANNEL = `${PREFIX}:control`;
/** Hash: worker id -> JSON {@link WorkerInfo}. */
export const WORKERS_KEY = `${PREFIX}:workers`;

/** The BullMQ queue of one model; the name keeps only characters BullMQ allows in a queue name. */
export function queueName(model: string): string {
  return `${PREFIX}-${model.replace(/[^A-Za-z0-9._-]/g, '_')}`;
}

/** Set (with a TTL) when a job is asked to stop, so a worker that picks the job up later still sees it. */
export function stopKey(id: string): string {
  return `${PREFIX}:stop:${id}`;
}

/** Image n of a finished job (a PNG, with a TTL). */
export function resultKey(id: string, n: number): string {
  return `${PREFIX}:result:${id}:${n}`;
}

export type StopReason = 'cancel' | 'interrupt' | 'shutdown';

export interface ControlMessage {
  readonly id: string;
  readonly reason: StopReason;
}

interface WireImage {
  readonly width: number;
  readonly height: number;
  /** RGB bytes, base64. */
  readonly rgb: string;
}

export type WireSpec = Omit<JobSpec, 'image' | 'mask'> & { image?: WireImage; mask?: WireImage };

/** A job's BullMQ data. */
export interface JobData {
  readonly model: string;
  readonly spec: WireSpec;
  /** Make per-step latent previews. */
  readonly previews: boolean;
  /** Steps after which to VAE-decode the unfinished latent (OpenAI partial images). */
  readonly decodeAt: number[];
}

/** What a worker reports through BullMQ job progress. */
export type Progress =
  | { readonly kind: 'step'; readonly step: number; readonly total: number; readonly elapsed: number; readonly worker: string }
  | { readonly kind: 'preview'; readonly step: number; readonly png: string; readonly source: 'latent' | 'vae' }
  | { readonly kind: 'decoded'; readonly step: number; readonly pngs: string[] };

/** What a worker's processor returns (BullMQ's return value). */
export interface JobOutcome {
  readonly status: 'completed' | 'failed' | 'cancelled';
  readonly error?: { readonly message: string; readonly code: string };
  /** Images are in Redis under resultKey(id, n), n < images.length, or files in the shared --results-dir. */
  readonly images: { readonly seed: number; readonly infotext: string; readonly parameters: Record<string, unknown> }[];
  readonly store: 'redis' | 'dir';
  readonly interrupted: boolean;
  /** Steps done, and the step the worker was at when asked to stop. */
  readonly step: number;
  readonly stopRequestedAt?: number;
  /** Seconds in the denoising loop and in all. */
  readonly loopSeconds: number;
  readonly seconds: number;
  readonly worker: string;
}

export interface WorkerInfo {
  readonly id: string;
  readonly model: string;
  readonly device: string;
  readonly host: string;
  readonly pid: number;
  readonly concurrency: number;
  /** Ids of the jobs it runs now. */
  readonly jobs: string[];
  readonly busy: boolean;
  /** 'running', 'draining' (SIGTERM: finishing its jobs, taking no new one) or 'stopped'. */
  readonly state: 'starting' | 'running' | 'draining' | 'stopped';
  readonly jobsDone: number;
  readonly lastHeartbeat: number;
  readonly heartbeatMs: number;
}

/** Where Redis is: options both ioredis and BullMQ take. */
export interface RedisAddress {
  readonly host: string;
  readonly port: number;
  readonly username?: string;
  readonly password?: string;
  readonly db?: number;
  readonly tls?: Record<string, never>;
}

/** redis://[user:password@]host:port[/db] (or rediss://) as connection options. */
export function redisOptions(url: string): RedisAddress {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new SD3Error(`--redis must be a URL like redis://127.0.0.1:6379, got "${url}"`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new SD3Error(`--redis must start with redis:// or rediss://, got "${url}"`);
  const db = u.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d+$/.test(db)) throw new SD3Error(`the database in --redis must be a number (redis://host:port/0), got "${db}"`);
  return {
    host: u.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(db !== '' ? { db: Number(db) } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

function toWire(img: RGBImage): WireImage {
  return { width: img.width, height: img.height, rgb: Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength).toString('base64') };
}

function fromWire(w: WireImage): RGBImage {
  return new RGBImage(w.width, w.height, new Uint8Array(Buffer.from(w.rgb, 'base64')));
}

export function specToWire(spec: JobSpec): WireSpec {
  const { image, mask, ...rest } = spec;
  return { ...rest, ...(image ? { image: toWire(image) } : {}), ...(mask ? { mask: toWire(mask) } : {}) };
}

export function specFromWire(w: WireSpec): JobSpec {
  const { image, mask, ...rest } = w;
  return { ...rest, ...(image ? { image: fromWire(image) } : {}), ...(mask ? { mask: fromWire(mask) } : {}) };
}

/** Resolves as `p` does, or rejects after `ms` (Redis calls must not hang a request while Redis is away). */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
