/**
 * The page's client for the server's native jobs API (`/api/config`, `/api/jobs`): JSON requests, the
 * `{error: {message, field?}}` error shape turned into ApiError, and a job watcher that follows the job's
 * Server-Sent Events and falls back to polling when the event stream breaks.
 */

/** A refused request: `message` is the server's words, `field` the request field it names (if any). */
export class ApiError extends Error {
  constructor(message, { status = 0, field, retryAfter } = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.field = field;
    this.retryAfter = retryAfter;
  }
}

let apiKey = '';

/** The key for a server started with --api-key (sent as a bearer token; as ?api_key= where headers cannot go). */
export function setApiKey(key) {
  apiKey = key.trim();
}

/** `url` with the API key as a query parameter, for EventSource, <img> and download links (no headers there). */
export function withKey(url) {
  if (!apiKey || !url) return url;
  const u = new URL(url, location.href);
  u.searchParams.set('api_key', apiKey);
  return u.origin === location.origin ? u.pathname + u.search : u.href;
}

async function request(method, url, body) {
  const init = { method, headers: { accept: 'application/json' } };
  if (apiKey) init.headers.authorization = `Bearer ${apiKey}`;
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(url, init);
  } catch (e) {
    throw new ApiError(`the server cannot be reached (${e.message})`);
  }
  const text = await res.text();
  let data;
  try {
    data = text ? JSON.parse(text) : undefined;
  } catch {
    data = undefined;
  }
  if (!res.ok) {
    const err = data && typeof data === 'object' ? data.error : undefined;
    const message = typeof err === 'string' ? err : err && typeof err.message === 'string' ? err.message : `${res.status} ${res.statusText || 'error'}`;
    const retry = res.headers.get('retry-after');
    const suffix = (res.status === 429 || res.status === 503) && retry ? ` (try again in ${retry} s)` : '';
    const retryAfter = retry !== null && Number.isFinite(Number(retry)) ? Number(retry) : undefined;
    throw new ApiError(message + suffix, { status: res.status, field: err && typeof err.field === 'string' ? err.field : undefined, retryAfter });
  }
  if (data === undefined) throw new ApiError(`the server answered ${method} ${url} with something that is not JSON`, { status: res.status });
  return data;
}

export const getConfig = () => request('GET', '/api/config');
export const createJob = (body) => request('POST', '/api/jobs', body);
export const getJob = (id) => request('GET', `/api/jobs/${encodeURIComponent(id)}`);
export const cancelJob = (id) => request('POST', `/api/jobs/${encodeURIComponent(id)}/cancel`, {});

const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

/**
 * Follows one job until it ends. `handlers` may have queued({queue_position}), started(), progress({step,total,eta}),
 * preview({step,png}), and must have done(job), where job.status is completed, failed or cancelled. Returns a
 * function that stops watching. Each handler is called with the parsed event data.
 */
export function watchJob(job, handlers) {
  let finished = false;
  let source;
  let pollTimer;

  const finish = (final) => {
    if (finished) return;
    finished = true;
    stop();
    handlers.done(final);
  };
  const stop = () => {
    if (source) source.close();
    clearTimeout(pollTimer);
  };

  // Polling, when the event stream is not available or broke (a proxy that buffers, a restart).
  const poll = async () => {
    if (finished) return;
    try {
      const j = await getJob(job.id);
      if (TERMINAL.has(j.status)) return finish(j);
      if (j.status === 'queued') handlers.queued?.({ queue_position: j.queue_position });
      else if (j.progress) handlers.progress?.(j.progress);
    } catch (e) {
      if (e instanceof ApiError && e.status >= 400 && e.status < 500) {
        return finish({ id: job.id, status: 'failed', error: { message: e.message } });
      }
    }
    pollTimer = setTimeout(poll, 1000);
  };

  const parse = (ev) => {
    try {
      return ev.data ? JSON.parse(ev.data) : {};
    } catch {
      return {};
    }
  };

  if (typeof EventSource === 'undefined' || !job.events_url) {
    poll();
  } else {
    source = new EventSource(withKey(job.events_url));
    source.addEventListener('queued', (ev) => handlers.queued?.(parse(ev)));
    source.addEventListener('started', (ev) => handlers.started?.(parse(ev)));
    source.addEventListener('progress', (ev) => handlers.progress?.(parse(ev)));
    source.addEventListener('preview', (ev) => handlers.preview?.(parse(ev)));
    source.addEventListener('completed', (ev) => {
      const data = parse(ev);
      finish({ ...data, id: data.id ?? job.id, status: 'completed' });
    });
    source.addEventListener('failed', (ev) => {
      const data = parse(ev);
      finish({ id: job.id, status: 'failed', error: data.error ?? { message: 'the job failed' } });
    });
    source.addEventListener('cancelled', () => finish({ id: job.id, status: 'cancelled' }));
    source.addEventListener('error', () => {
      // EventSource would reconnect on its own; the job's state is asked for instead, which also covers a
      // stream that the server closed right after the terminal event this page already handled.
      if (finished) return;
      source.close();
      source = undefined;
      poll();
    });
  }
  return () => {
    finished = true;
    stop();
  };
}
