/**
 * Hub settings read from the environment, with huggingface_hub's names and precedence so a cache and token
 * written by the Python tools are found here too.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SD3Error } from '../core/errors.js';

type Env = Readonly<Record<string, string | undefined>>;

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

function expandHome(p: string): string {
  return p === '~' || p.startsWith('~/') ? path.join(os.homedir(), p.slice(1)) : p;
}

function nonEmpty(value: string | undefined): string | undefined {
  const v = value?.trim();
  return v ? v : undefined;
}

/** `HF_ENDPOINT`, default https://huggingface.co, without a trailing slash. */
export function hubEndpoint(env: Env = process.env): string {
  const raw = nonEmpty(env.HF_ENDPOINT) ?? DEFAULT_ENDPOINT;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new SD3Error(`HF_ENDPOINT=${JSON.stringify(raw)} is not a URL; expected e.g. ${DEFAULT_ENDPOINT}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new SD3Error(`HF_ENDPOINT=${JSON.stringify(raw)} must be an http(s) URL`);
  }
  return raw.replace(/\/+$/, '');
}

export const DEFAULT_HUB_TIMEOUT_SECONDS = 30;

/** `SD3_HUB_TIMEOUT` (seconds, above 0), default 30: see HubOptions.timeoutSeconds. */
export function hubTimeoutSeconds(env: Env = process.env): number {
  const raw = nonEmpty(env.SD3_HUB_TIMEOUT);
  if (raw === undefined) return DEFAULT_HUB_TIMEOUT_SECONDS;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new SD3Error(`SD3_HUB_TIMEOUT=${JSON.stringify(raw)} is not a number of seconds above 0`);
  return n;
}

/** `HF_HOME`, default `$XDG_CACHE_HOME/huggingface` or `~/.cache/huggingface`. */
export function hfHome(env: Env = process.env): string {
  const home = nonEmpty(env.HF_HOME);
  if (home) return expandHome(home);
  const xdg = nonEmpty(env.XDG_CACHE_HOME);
  return path.join(xdg ? expandHome(xdg) : path.join(os.homedir(), '.cache'), 'huggingface');
}

/**
 * The hub cache folder: `HF_HUB_CACHE`, else the legacy `HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`.
 * Written here rather than taken from @huggingface/hub's getHFHubCachePath, which reads process.env only
 * and does not expand `~` the way huggingface_hub does.
 */
export function hubCacheDir(env: Env = process.env): string {
  const dir = nonEmpty(env.HF_HUB_CACHE) ?? nonEmpty(env.HUGGINGFACE_HUB_CACHE);
  return dir ? expandHome(dir) : path.join(hfHome(env), 'hub');
}

export interface TokenInfo {
  readonly token: string;
  /** Where it came from, for error messages: `HF_TOKEN`, or the token file's path. */
  readonly source: string;
}

/** The token and its origin: `HF_TOKEN`, legacy `HUGGING_FACE_HUB_TOKEN`, then `HF_TOKEN_PATH` or `$HF_HOME/token`. */
export function findToken(env: Env = process.env): TokenInfo | null {
  for (const name of ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN']) {
    const token = nonEmpty(env[name]);
    if (token) return { token, source: name };
  }
  const file = expandHome(nonEmpty(env.HF_TOKEN_PATH) ?? path.join(hfHome(env), 'token'));
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new SD3Error(`cannot read the Hugging Face token file ${file}: ${(err as Error).message}`, { cause: err });
  }
  const token = text.trim();
  return token ? { token, source: file } : null;
}

/** The hub token, or null when none is configured. */
export function readToken(env: Env = process.env): string | null {
  return findToken(env)?.token ?? null;
}

/** `HF_HUB_OFFLINE` set to 1/true/yes/on (case-insensitive), as huggingface_hub reads it. */
export function isOfflineMode(env: Env = process.env): boolean {
  return ['1', 'ON', 'YES', 'TRUE'].includes((env.HF_HUB_OFFLINE ?? '').trim().toUpperCase());
}
