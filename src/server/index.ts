/**
 * The sd3.ts image server: the OpenAI Images API (/v1), AUTOMATIC1111's (/sdapi/v1) and our jobs API (/api)
 * over one shared, bounded job queue, plus the web page (static files from ./web).
 *
 * Safety, for a server that runs on a desktop next to a browser: it listens on 127.0.0.1 unless told
 * otherwise; on loopback the Host header must be a loopback name (DNS rebinding); a request from a web page
 * (Origin) must come from this server's own origin or the one given with `cors`; a body must be JSON or
 * multipart as the route says (a cross-site text/plain POST gets 415); bodies are capped per route (413);
 * with `apiKey` every API route needs `Authorization: Bearer KEY`. Requests never name files.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { timingSafeEqual } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { SD3Error } from '../core/errors.js';
import type { Family, Route, ServerContext } from './context.js';
import { Engine, type LoadedModel } from './engine.js';
import { RequestError } from './errors.js';
import { drainAndClose, mediaType, sendJSON } from './http.js';
import { nativeError, nativeRoutes } from './jobs.js';
import { openaiError, openaiRoutes } from './openai.js';
import type { LongPrompts } from '../pipelines/text-windows.js';
import type { Limits } from './params.js';
import { type JobBackend, JobQueue, type QueueOptions } from './queue.js';
import { sdapiError, sdapiRoutes } from './sdapi.js';

export type { LoadedModel } from './engine.js';

export interface ServerOptions extends QueueOptions {
  /**
   * The model, or its loading (the server answers 503 until it resolves). Without `backend` it is required;
   * with one it is optional (the jobs run elsewhere; it only names the checkpoint and size grid).
   */
  readonly model?: LoadedModel | Promise<LoadedModel>;
  /**
   * Where the jobs go instead of the in-process queue, e.g. the cluster's RedisJobQueue (src/cluster), which
   * queues them in Redis for `sd3 worker` processes. The caller builds it, so the server knows no backend but its own.
   */
  readonly backend?: JobBackend;
  /** The default image size when no model is given (a front end with no local model). */
  readonly imageShape?: { readonly width: number; readonly height: number };
  /** Steps and guidance for requests that name none, on a front end without the model (else the model's own). */
  readonly sampling?: { readonly numSteps?: number; readonly guidanceScale?: number };
  /** The name clients see (default: the checkpoint's). */
  readonly modelName: string;
  readonly port?: number;
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** Require `Authorization: Bearer KEY` on the API routes. */
  readonly apiKey?: string;
  /** Allow this origin (or '*') to call the API from a browser page (CORS). Off by default. */
  readonly cors?: string;
  /** More Host names to accept on a loopback listener (e.g. a name in /etc/hosts). */
  readonly allowedHosts?: readonly string[];
  readonly maxSteps?: number;
  readonly maxBatch?: number;
  /** Largest width or height (also capped by the model's position grid). Default 1536. */
  readonly maxSize?: number;
  readonly maxPromptChars?: number;
  /** Also VAE-decode the latent every N steps as a preview (default off: the cheap latent preview only). */
  readonly previewDecodeEvery?: number;
  /** The folder `<lora:NAME:SCALE>` prompt tags name files in (no folder: such tags are refused). */
  readonly loraDir?: string;
  /** How the OpenAI and native APIs read prompts past CLIP's 75 tokens when a request does not say (default 'truncate'). */
  readonly longPrompts?: LongPrompts;
  /** The folder of the web page (default ./web beside this module). */
  readonly webRoot?: string;
}

export interface ServerHandle {
  readonly server: http.Server;
  readonly url: string;
  readonly context: ServerContext;
  /** Resolves once the model is loaded and jobs are taken. */
  readonly ready: Promise<void>;
  /** Stops taking work, aborts the running job and the queued ones, closes every connection. */
  close(): Promise<void>;
}

const ROUTES: Route[] = [...openaiRoutes, ...sdapiRoutes, ...nativeRoutes];

const FORMATTERS: Record<Family, (e: RequestError) => { status: number; body: unknown }> = {
  openai: openaiError, sdapi: sdapiError, native: nativeError,
};

function familyOf(p: string): Family {
  return p.startsWith('/v1/') || p === '/v1' ? 'openai' : p.startsWith('/sdapi/') ? 'sdapi' : 'native';
}

const LOOPBACK_NAMES = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);
const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.json': 'application/json', '.svg': 'image/svg+xml', '.png': 'image/png',
  '.ico': 'image/x-icon', '.txt': 'text/plain; charset=utf-8', '.webmanifest': 'application/manifest+json',
};

function isLoopback(host: string): boolean {
  return host === '127.0.0.1' || host === '::1' || host === 'localhost' || /^127\./.test(host);
}

function hostName(hostHeader: string): string {
  const h = hostHeader.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1);
  return h.replace(/:\d+$/, '');
}

function sameKey(given: string, key: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(key);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Starts the server and resolves once it listens (the model may still be loading). */
export async function startServer(opts: ServerOptions): Promise<ServerHandle> {
  const host = opts.host ?? '127.0.0.1';
  const webRoot = opts.webRoot ?? fileURLToPath(new URL('./web/', import.meta.url));
  let engine: Engine | undefined;
  let queue: JobBackend | undefined;
  let state: ServerContext['state'] = 'loading';
  let loadError: string | undefined;
  const loopback = isLoopback(host);
  const allowedHosts = new Set([...LOOPBACK_NAMES, ...(opts.allowedHosts ?? []).map((h) => h.toLowerCase())]);
  const limits: Limits & { maxSize: number } = {
    maxSteps: opts.maxSteps ?? 150,
    maxBatch: opts.maxBatch ?? 4,
    maxSize: opts.maxSize ?? 1536,
    get maxWidth() { return Math.min(this.maxSize, engine?.maxSize ?? this.maxSize); },
    get maxHeight() { return Math.min(this.maxSize, engine?.maxSize ?? this.maxSize); },
    maxPromptChars: opts.maxPromptChars ?? 2000,
  };
  let defaultSize = { width: 1024, height: 1024 };

  const ctx: ServerContext = {
    modelName: opts.modelName,
    limits,
    ...(opts.loraDir !== undefined ? { loraDir: opts.loraDir } : {}),
    longPrompts: opts.longPrompts ?? 'truncate',
    get engine() { return engine; },
    get queue() { return queue; },
    get state() { return state; },
    get defaultSize() { return defaultSize; },
    get sampling() { return engine?.model.backbone.sampling ?? opts.sampling; },
    auth: opts.apiKey !== undefined,
    ready() {
      if (state === 'ready' && queue) return { engine, queue };
      if (state === 'failed') throw new RequestError(503, `the model failed to load: ${loadError}`, 'not_ready', null, 60);
      if (state === 'shutting_down') throw new RequestError(503, 'the server is shutting down', 'not_ready', null, 5);
      throw new RequestError(503, 'the model is still loading', 'not_ready', null, 5);
    },
    origin(req) {
      return `http://${req.headers.host ?? `${host}:${port}`}`;
    },
  };

  if (opts.model === undefined && opts.backend === undefined) throw new SD3Error('startServer needs a model, or a backend for a front end whose jobs run on workers');
  if (opts.imageShape) defaultSize = { width: Math.min(opts.imageShape.width, limits.maxWidth), height: Math.min(opts.imageShape.height, limits.maxHeight) };
  if (opts.backend) {
    // The front end of a cluster: ready at once; each request finds out whether the backend answers (503 if not).
    queue = opts.backend;
    state = 'ready';
  }
  const ready = opts.model === undefined ? Promise.resolve() : Promise.resolve(opts.model).then((m) => {
    if (state === 'shutting_down') return;
    engine = new Engine(m, { ...(opts.previewDecodeEvery !== undefined ? { previewDecodeEvery: opts.previewDecodeEvery } : {}), ...(opts.loraDir !== undefined ? { loraDir: opts.loraDir } : {}) });
    queue ??= new JobQueue(engine, opts);
    defaultSize = { width: Math.min(m.imageShape.width, limits.maxWidth), height: Math.min(m.imageShape.height, limits.maxHeight) };
    state = 'ready';
  }, (e: unknown) => {
    state = 'failed';
    loadError = (e as Error).message;
  });

  /** Throws 403/401 unless the request may be served. Returns the CORS headers to add. */
  function guard(req: http.IncomingMessage, url: URL, isStatic: boolean): Record<string, string> {
    const hostHeader = req.headers.host;
    if (loopback && hostHeader !== undefined && !allowedHosts.has(hostName(hostHeader))) {
      throw new RequestError(403, `Host "${hostHeader}" is not this server's (it listens on ${host}); requests through other names are refused (DNS rebinding)`, 'forbidden');
    }
    const origin = req.headers.origin;
    const cors: Record<string, string> = {};
    if (origin !== undefined) {
      const own = hostHeader !== undefined && (origin === `http://${hostHeader}` || origin === `https://${hostHeader}`);
      const allowed = opts.cors !== undefined && (opts.cors === '*' || opts.cors === origin);
      if (!own && !allowed) throw new RequestError(403, `requests from the web page at ${origin} are refused (start the server with --cors ${origin} to allow it)`, 'forbidden');
      if (allowed && !own) {
        Object.assign(cors, {
          'access-control-allow-origin': opts.cors === '*' ? '*' : origin,
          'access-control-expose-headers': 'retry-after, x-sd3-seed, x-sd3-job, location',
          vary: 'Origin',
        });
      }
    }
    if (opts.apiKey !== undefined && !isStatic && req.method !== 'OPTIONS' && url.pathname !== '/api/health' && url.pathname !== '/api/config') {
      const auth = req.headers.authorization ?? '';
      const bearer = /^Bearer\s+(.+)$/i.exec(auth)?.[1]?.trim();
      // EventSource and <img> cannot send headers: GETs may carry the key as ?api_key=.
      const given = bearer ?? (req.method === 'GET' ? url.searchParams.get('api_key') ?? undefined : undefined);
      if (given === undefined || !sameKey(given, opts.apiKey)) {
        throw new RequestError(401, 'this server needs an API key: send "Authorization: Bearer KEY"', 'unauthorized');
      }
    }
    return cors;
  }

  function serveStatic(res: http.ServerResponse, pathname: string, headers: Record<string, string>): boolean {
    let rel: string;
    try {
      rel = pathname === '/' ? 'index.html' : decodeURIComponent(pathname.slice(1));
    } catch {
      return false; // malformed %-escape: no such file
    }
    const file = path.resolve(webRoot, rel);
    if (!file.startsWith(path.resolve(webRoot) + path.sep)) return false;
    let bytes: Buffer;
    try {
      if (!fs.statSync(file).isFile()) return false;
      bytes = fs.readFileSync(file);
    } catch {
      return false;
    }
    res.writeHead(200, {
      'content-type': CONTENT_TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream',
      'content-length': bytes.length,
      'cache-control': 'no-cache',
      'x-content-type-options': 'nosniff',
      ...headers,
    }).end(bytes);
    return true;
  }

  function fail(req: http.IncomingMessage, res: http.ServerResponse, family: Family, e: unknown, headers: Record<string, string>): void {
    let err: RequestError;
    if (e instanceof RequestError) err = e;
    else if (e instanceof SD3Error) err = new RequestError(400, e.message, 'invalid_request');
    else {
      console.error(`sd3 serve: ${req.method} ${req.url}: ${(e as Error)?.stack ?? e}`);
      err = new RequestError(500, `internal error: ${(e as Error)?.message ?? e}`, 'server_error');
    }
    const { status, body } = FORMATTERS[family](err);
    const extra: Record<string, string> = err.retryAfter !== undefined ? { 'retry-after': String(Math.max(1, Math.ceil(err.retryAfter))) } : {};
    if (status === 413) drainAndClose(req, res);
    sendJSON(res, status, body, { ...headers, ...extra });
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      return fail(req, res, 'native', new RequestError(400, `malformed request target ${JSON.stringify(req.url)}`, 'invalid_request'), {});
    }
    const pathname = url.pathname.length > 1 ? url.pathname.replace(/\/+$/, '') : url.pathname;
    const family = familyOf(pathname);
    const isAPI = /^\/(v1|sdapi|api)(\/|$)/.test(pathname);
    let cors: Record<string, string> = {};
    try {
      cors = guard(req, url, !isAPI);
      if (req.method === 'OPTIONS') {
        if (!cors['access-control-allow-origin']) throw new RequestError(403, 'cross-origin requests are not enabled (start the server with --cors ORIGIN)', 'forbidden');
        res.writeHead(204, {
          ...cors,
          'access-control-allow-methods': 'GET, POST, DELETE, OPTIONS',
          'access-control-allow-headers': req.headers['access-control-request-headers'] ?? 'authorization, content-type',
          'access-control-max-age': '600',
        }).end();
        return;
      }
      const matches = ROUTES.map((r) => {
        if (typeof r.path === 'string') return { r, params: r.path === pathname ? [] : undefined };
        const m = r.path.exec(pathname);
        return { r, params: m ? m.slice(1) : undefined };
      }).filter((m) => m.params !== undefined);
      const hit = matches.find((m) => m.r.method === req.method);
      if (!hit) {
        if (!isAPI && (req.method === 'GET' || req.method === 'HEAD') && serveStatic(res, pathname, cors)) return;
        if (matches.length > 0) {
          res.setHeader('allow', [...new Set(matches.map((m) => m.r.method))].join(', '));
          throw new RequestError(405, `${req.method} is not allowed on ${pathname} (use ${matches.map((m) => m.r.method).join(' or ')})`, 'method_not_allowed');
        }
        throw new RequestError(404, `no route ${req.method} ${pathname}`, 'not_found');
      }
      const { r, params } = hit;
      for (const [k, v] of Object.entries(cors)) res.setHeader(k, v);
      const hasBody = Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
      if (hasBody && r.body !== 'none') {
        const type = mediaType(req);
        const ok = (r.body === 'json' || r.body === 'json-or-multipart') && type === 'application/json'
          || (r.body === 'multipart' || r.body === 'json-or-multipart') && type === 'multipart/form-data';
        if (!ok) {
          const want = r.body === 'json' ? 'application/json' : r.body === 'multipart' ? 'multipart/form-data' : 'application/json or multipart/form-data';
          throw new RequestError(415, `the body must be ${want}, got ${type ? `"${type}"` : 'no content type'}`, 'unsupported_media_type');
        }
      } else if (hasBody && r.body === 'none') {
        const declared = Number(req.headers['content-length'] ?? 0);
        if (declared > r.limit) throw new RequestError(413, `this route takes no body (at most ${r.limit} bytes)`, 'payload_too_large');
        req.resume();
      }
      await r.handle(req, res, params!, ctx);
    } catch (e) {
      fail(req, res, family, e, cors);
    }
  }

  const server = http.createServer({ requestTimeout: 120_000, headersTimeout: 30_000 }, (req, res) => { void handle(req, res); });
  server.on('clientError', (_e, socket) => { if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n'); });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(new SD3Error(`cannot listen on ${host}:${opts.port ?? 7860}: ${e.code === 'EADDRINUSE' ? 'the port is in use' : e.code === 'EACCES' ? 'permission denied' : e.message}`, { cause: e })));
    server.listen(opts.port ?? 7860, host, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  let closing: Promise<void> | undefined;
  return {
    server,
    url: `http://${shownHost}:${port}`,
    context: ctx,
    ready,
    close() {
      closing ??= (async () => {
        state = 'shutting_down';
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        await queue?.close();
        server.closeIdleConnections();
        const force = setTimeout(() => server.closeAllConnections(), 1000);
        force.unref();
        await closed;
        clearTimeout(force);
      })();
      return closing;
    },
  };
}
