/** Requests to the hub with Node's fetch: auth header, no compression, abort and network errors made plain. */
import { AbortError } from '../core/errors.js';
import { HubError, networkError, withoutQuery } from './hub-error.js';

export const USER_AGENT = 'sd3-ts/0.1 (+huggingface_hub-compatible cache)';

export function hubHeaders(token: string | null, extra: Record<string, string> = {}): Record<string, string> {
  // identity: sizes and Range offsets must count stored bytes, not gzip bytes
  const headers: Record<string, string> = { 'user-agent': USER_AGENT, 'accept-encoding': 'identity', ...extra };
  if (token) headers.authorization = `Bearer ${token}`;
  return headers;
}

export function abortError(): AbortError {
  return new AbortError('hub download was aborted');
}

/** The HubError for a server that went quiet: names the URL (without its signed query) and the limit. */
export function timeoutError(url: string, timeoutMs: number, what: string): HubError {
  return new HubError(
    `${what} ${withoutQuery(url)} for ${timeoutMs / 1000} s (the hub timeout; raise it with SD3_HUB_TIMEOUT=seconds or the timeoutSeconds option)`,
    undefined,
    'timeout',
  );
}

/**
 * fetch() that throws AbortError when `signal` fires, HubError("cannot reach ...") when the network fails, and
 * HubError("no answer from ...") when the connection and response headers take longer than `timeoutMs`. The
 * timer stops once the headers are in; the body's own stall limit is the caller's (see transfer.ts).
 */
export async function hubFetch(url: string, init: RequestInit & { signal?: AbortSignal }, timeoutMs?: number): Promise<Response> {
  if (init.signal?.aborted) throw abortError();
  // a timer of our own, not AbortSignal.timeout(): it must stop once the headers are in, or it would cut the body
  const timer = new AbortController();
  const clock = timeoutMs ? setTimeout(() => timer.abort(), timeoutMs) : undefined;
  const signal = init.signal ? AbortSignal.any([init.signal, timer.signal]) : timer.signal;
  try {
    return await fetch(url, { ...init, signal });
  } catch (err) {
    if (init.signal?.aborted) throw abortError();
    if (timer.signal.aborted && timeoutMs) throw timeoutError(url, timeoutMs, 'no answer from');
    throw networkError(url, err);
  } finally {
    clearTimeout(clock);
  }
}

export function resolveUrl(endpoint: string, repoId: string, revision: string, file: string): string {
  const encoded = file.split('/').map(encodeURIComponent).join('/');
  return `${endpoint}/${repoId}/resolve/${encodeURIComponent(revision)}/${encoded}`;
}

export function sameOrigin(a: string, b: string): boolean {
  return new URL(a).origin === new URL(b).origin;
}
