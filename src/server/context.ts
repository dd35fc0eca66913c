/**
 * What every route sees: the model and queue once loaded (503 before), the caps, and the route type the three
 * API families register with the server (index.ts).
 */
import type * as http from 'node:http';
import type { Engine } from './engine.js';
import { RequestError } from './errors.js';
import type { LongPrompts } from '../pipelines/text-windows.js';
import type { Limits } from './params.js';
import type { Job, JobBackend } from './queue.js';

export type Family = 'openai' | 'sdapi' | 'native';

export interface ServerContext {
  /** The -m name clients see. */
  readonly modelName: string;
  readonly limits: Limits;
  /** The LoRA folder prompt tags name files in (none: tags are refused). */
  readonly loraDir?: string;
  /** The OpenAI and native APIs' long-prompt mode when a request names none. */
  readonly longPrompts: LongPrompts;
  /** The engine (none on a front end whose jobs run on workers) and queue; throws 503 with Retry-After while loading or shutting down. */
  ready(): { engine: Engine | undefined; queue: JobBackend };
  /** The engine while loaded (undefined while loading). */
  readonly engine: Engine | undefined;
  readonly queue: JobBackend | undefined;
  readonly state: 'loading' | 'ready' | 'shutting_down' | 'failed';
  /** The served model's own sampling defaults (steps, guidance), once known; see modeDefaults. */
  readonly sampling: { readonly numSteps?: number; readonly guidanceScale?: number } | undefined;
  /** Default size of a generated image. */
  readonly defaultSize: { width: number; height: number };
  /** Whether a bearer key is required. */
  readonly auth: boolean;
  /** `http://host:port` as the client addressed us (for absolute URLs). */
  origin(req: http.IncomingMessage): string;
}

export type BodyKind = 'none' | 'json' | 'multipart' | 'json-or-multipart';

export interface Route {
  readonly method: 'GET' | 'POST' | 'DELETE';
  /** Exact path, or a pattern whose groups become `params`. */
  readonly path: string | RegExp;
  readonly family: Family;
  /** What the body may be (415 otherwise) and how large (413 past it). */
  readonly body: BodyKind;
  readonly limit: number;
  handle(req: http.IncomingMessage, res: http.ServerResponse, params: string[], ctx: ServerContext): Promise<void>;
}

/**
 * Waits for a job a synchronous request is waiting on; when the client goes away first, the job is cancelled
 * (removed if queued, stopped within one step if running).
 */
export async function awaitJob(job: Job, queue: JobBackend, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const onClose = () => { if (!res.writableFinished) queue.cancel(job); };
  res.on('close', onClose);
  req.on('aborted', onClose);
  try {
    await job.done;
  } finally {
    res.off('close', onClose);
    req.off('aborted', onClose);
  }
}

/** The error a finished, unsuccessful job gives its synchronous request. */
export function jobError(job: Job): RequestError {
  const e = job.error ?? { message: 'the job did not finish', code: 'generation_failed' };
  if (e.code === 'invalid_request') return new RequestError(400, e.message, 'invalid_request');
  if (job.status === 'cancelled' && e.message.includes('shut down')) return new RequestError(503, e.message, 'not_ready', null, 5);
  if (job.status === 'cancelled') return new RequestError(409, `the job was cancelled`, 'conflict');
  return new RequestError(500, e.message, 'server_error');
}
