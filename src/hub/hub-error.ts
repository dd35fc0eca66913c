/** Errors from the hub's HTTP answers, phrased as what the user should do. */
import { SD3Error } from '../core/errors.js';

export class HubError extends SD3Error {
  constructor(message: string, readonly status?: number, readonly code?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'HubError';
  }
}

export interface RequestContext {
  readonly repoId: string;
  readonly revision: string;
  readonly endpoint: string;
  /** Where the token sent came from (`HF_TOKEN`, a file path, `the token option`), or null when none was sent. */
  readonly tokenSource: string | null;
  /** The repository file asked for; absent for API calls. */
  readonly path?: string;
}

/** The hub's own explanation: the `X-Error-Message` header (HEAD answers have no body), else the JSON body. */
export async function hubMessage(res: Response): Promise<string> {
  const header = res.headers.get('x-error-message');
  if (header) return header;
  if (res.bodyUsed) return '';
  try {
    const text = await res.text();
    try {
      const json = JSON.parse(text) as { error?: unknown };
      if (typeof json.error === 'string') return json.error;
    } catch {
      // not JSON: use the text itself
    }
    return text.slice(0, 300);
  } catch {
    return '';
  }
}

export function gatedAdvice(ctx: RequestContext): string {
  const page = `${ctx.endpoint}/${ctx.repoId}`;
  const steps =
    `To download it: log in on ${ctx.endpoint}, accept the licence on the model page ${page}, ` +
    `create a read token at ${ctx.endpoint}/settings/tokens and set HF_TOKEN to it ` +
    '(or store it in the token file $HF_HOME/token, as `hf auth login` does).';
  const sent = ctx.tokenSource
    ? ` The token from ${ctx.tokenSource} was refused: check that it is valid and that its account accepted the licence.`
    : ' No token was sent: HF_TOKEN is unset and there is no token file.';
  return steps + sent;
}

/** Turns a non-OK hub answer into a HubError that names the repository, the file and the fix. */
export async function errorFromResponse(res: Response, ctx: RequestContext): Promise<HubError> {
  const code = res.headers.get('x-error-code') ?? undefined;
  const said = await hubMessage(res);
  const who = res.url && new URL(res.url).origin !== new URL(ctx.endpoint).origin ? 'server' : 'hub';
  const hub = said ? ` (${who} said: ${res.status} ${said})` : ` (HTTP ${res.status})`;
  const what = ctx.path ? `${ctx.repoId}/${ctx.path}@${ctx.revision}` : `${ctx.repoId}@${ctx.revision}`;
  const gated = code === 'GatedRepo' || /\brestricted\b|\bgated\b/i.test(said);
  let message: string;
  if (gated && (res.status === 401 || res.status === 403)) {
    message = `${ctx.repoId} is a gated model and the hub refused access to ${what}${hub}. ${gatedAdvice(ctx)}`;
  } else if (code === 'RepoNotFound' || (res.status === 401 && !code)) {
    message =
      `repository ${ctx.repoId} was not found on ${ctx.endpoint}, or it is private or gated and needs a token${hub}. ` +
      `Check the id; for a gated or private model: ${gatedAdvice(ctx)}`;
  } else if (code === 'RevisionNotFound') {
    message = `revision ${JSON.stringify(ctx.revision)} does not exist in ${ctx.repoId}${hub}`;
  } else if (code === 'EntryNotFound' || (res.status === 404 && ctx.path)) {
    message = `file ${JSON.stringify(ctx.path)} does not exist in ${ctx.repoId} at revision ${ctx.revision}${hub}`;
  } else if (res.status === 403) {
    message = `the hub refused access to ${what}${hub}. ${gatedAdvice(ctx)}`;
  } else {
    message = `request for ${what} failed${hub}: ${withoutQuery(res.url)}`;
  }
  return new HubError(message, res.status, code);
}

/** A URL without its query: CDN redirects carry signed, time-limited credentials there, which must not be printed. */
export function withoutQuery(url: string): string {
  try {
    const u = new URL(url);
    return u.search ? `${u.origin}${u.pathname}?...` : url;
  } catch {
    return url.replace(/\?.*$/, '?...');
  }
}

/** True for a failure to reach the hub at all (refused, DNS, reset), as opposed to an HTTP answer or an abort. */
export function isNetworkError(err: unknown): err is HubError {
  return err instanceof HubError && err.code === 'network';
}

export function networkError(url: string, err: unknown): HubError {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const detail = cause?.code ?? cause?.message ?? (err as Error).message;
  return new HubError(`cannot reach ${new URL(url).origin} (${detail})`, undefined, 'network', { cause: err });
}
