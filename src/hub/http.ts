/** Requests to the hub with Node's fetch: auth header, no compression, abort and network errors made plain. */
import { AbortError } from '../core/errors.js';
import { networkError } from './hub-error.js';

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

/** fetch() that throws AbortError when `signal` fires and HubError("cannot reach ...") when the network fails. */
export async function hubFetch(url: string, init: RequestInit & { signal?: AbortSignal }): Promise<Response> {
  if (init.signal?.aborted) throw abortError();
  try {
    return await fetch(url, init);
  } catch (err) {
    if (init.signal?.aborted) throw abortError();
    throw networkError(url, err);
  }
}

export function resolveUrl(endpoint: string, repoId: string, revision: string, file: string): string {
  const encoded = file.split('/').map(encodeURIComponent).join('/');
  return `${endpoint}/${repoId}/resolve/${encodeURIComponent(revision)}/${encoded}`;
}

export function sameOrigin(a: string, b: string): boolean {
  return new URL(a).origin === new URL(b).origin;
}
