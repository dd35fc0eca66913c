/**
 * HTTP plumbing shared by the routes: bodies read under a per-route limit (413 past it), JSON and multipart
 * parsing (multipart through busboy), JSON replies and Server-Sent Events.
 */
import type * as http from 'node:http';
import busboy from 'busboy';
import { describe } from '../core/errors.js';
import { RequestError } from './errors.js';

export const KiB = 1024;
export const MiB = 1024 * 1024;

function tooLarge(limit: number): RequestError {
  return new RequestError(413, `request body is larger than this route takes (${Math.round(limit / KiB)} KiB)`, 'payload_too_large');
}

/** The media type of a request, lower case, without parameters ('' when absent). */
export function mediaType(req: http.IncomingMessage): string {
  return ((req.headers['content-type'] ?? '').split(';')[0] ?? '').trim().toLowerCase();
}

/**
 * Marks the connection to close once the reply is out and discards whatever the client is still sending, so a
 * client that uploads past the limit can read its 413 instead of seeing the socket reset mid-upload.
 */
export function drainAndClose(req: http.IncomingMessage, res: http.ServerResponse): void {
  res.shouldKeepAlive = false;
  req.removeAllListeners('data');
  req.resume();
  const timer = setTimeout(() => req.socket.destroy(), 10_000);
  timer.unref();
  req.once('end', () => clearTimeout(timer));
}

/** The whole body, or a 413 once it passes `limit` bytes (checked against Content-Length first). */
export function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(tooLarge(limit));
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.off('data', onData);
        chunks.length = 0;
        reject(tooLarge(limit));
      } else chunks.push(c);
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', (e) => reject(new RequestError(400, `could not read the request body: ${e.message}`, 'invalid_request')));
  });
}

/** A JSON object body (an empty body is `{}`). */
export async function readJSON(req: http.IncomingMessage, limit: number): Promise<Record<string, unknown>> {
  const text = (await readBody(req, limit)).toString('utf8');
  if (text.trim() === '') return {};
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (e) {
    throw new RequestError(400, `the body is not valid JSON: ${(e as Error).message}`, 'invalid_request');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new RequestError(400, `the body must be a JSON object, got ${describe(body)}`, 'invalid_request');
  }
  return body as Record<string, unknown>;
}

export interface UploadedFile {
  readonly field: string;
  readonly filename: string;
  readonly type: string;
  readonly data: Buffer;
}

export interface MultipartBody {
  /** Text fields; a repeated field keeps its last value. */
  readonly fields: Record<string, string>;
  readonly files: UploadedFile[];
}

/** A multipart/form-data body, parsed by busboy under a total-size limit. */
export function readMultipart(req: http.IncomingMessage, limit: number): Promise<MultipartBody> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(tooLarge(limit));
  return new Promise((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      parser = busboy({ headers: req.headers, limits: { fileSize: limit, fields: 100, files: 16, parts: 200, fieldSize: 64 * KiB } });
    } catch (e) {
      reject(new RequestError(400, `the multipart body cannot be read: ${(e as Error).message}`, 'invalid_request'));
      return;
    }
    const fields: Record<string, string> = {};
    const files: UploadedFile[] = [];
    let total = 0;
    let failed = false;
    const fail = (e: RequestError) => {
      if (failed) return;
      failed = true;
      req.unpipe(parser);
      reject(e);
    };
    const count = (n: number) => {
      total += n;
      if (total > limit) fail(tooLarge(limit));
    };
    parser.on('field', (name, value, info) => {
      if (info.valueTruncated) return fail(new RequestError(400, `multipart field ${name} is longer than ${64 * KiB} bytes`, 'invalid_field', name));
      count(value.length);
      fields[name] = value;
    });
    parser.on('file', (name, stream, info) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => {
        count(c.length);
        if (!failed) chunks.push(c);
      });
      stream.on('limit', () => fail(tooLarge(limit)));
      stream.on('end', () => {
        if (!failed) files.push({ field: name, filename: info.filename ?? '', type: info.mimeType, data: Buffer.concat(chunks) }); // filename may be absent
      });
    });
    parser.on('partsLimit', () => fail(new RequestError(400, 'the multipart body has too many parts', 'invalid_request')));
    parser.on('filesLimit', () => fail(new RequestError(400, 'the multipart body has too many files', 'invalid_request')));
    parser.on('fieldsLimit', () => fail(new RequestError(400, 'the multipart body has too many fields', 'invalid_request')));
    parser.on('error', (e: Error) => fail(new RequestError(400, `the multipart body cannot be read: ${e.message}`, 'invalid_request')));
    parser.on('close', () => { if (!failed) resolve({ fields, files }); });
    req.pipe(parser);
  });
}

export function sendJSON(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers }).end(text);
}

/** A Server-Sent Events stream on a response. */
export class EventStream {
  private open = true;
  private readonly keepAlive: NodeJS.Timeout;

  constructor(private readonly res: http.ServerResponse, headers: Record<string, string> = {}) {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
      ...headers,
    });
    res.flushHeaders();
    // A comment line every 15 s keeps proxies from closing an idle stream while a long job waits in the queue.
    this.keepAlive = setInterval(() => { if (this.open) res.write(': keep-alive\n\n'); }, 15_000);
    this.keepAlive.unref();
    res.on('close', () => this.end());
  }

  get closed(): boolean {
    return !this.open;
  }

  /** One event; `event` omitted sends a plain `data:` message (what the OpenAI client reads). */
  send(data: unknown, event?: string): void {
    if (!this.open) return;
    const text = typeof data === 'string' ? data : JSON.stringify(data);
    this.res.write(`${event ? `event: ${event}\n` : ''}data: ${text}\n\n`);
  }

  end(): void {
    if (!this.open) return;
    this.open = false;
    clearInterval(this.keepAlive);
    this.res.end();
  }
}
