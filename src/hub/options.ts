/** Options shared by the hub functions, with their environment defaults. */
import { SD3Error } from '../core/errors.js';
import { findToken, hubCacheDir, hubEndpoint, hubTimeoutSeconds, isOfflineMode } from './env.js';

export interface HubOptions {
  /** Hub URL; default `HF_ENDPOINT` or https://huggingface.co. */
  readonly endpoint?: string;
  /** Access token; default `HF_TOKEN` or the token file. `null` sends none. */
  readonly token?: string | null;
  /** Cache folder; default `HF_HUB_CACHE` or `$HF_HOME/hub`. */
  readonly cacheDir?: string;
  /** Cancels requests and transfers; partial data stays as `.incomplete` for the next run. */
  readonly signal?: AbortSignal;
  /** Use the cache only, never the network; default `HF_HUB_OFFLINE`. */
  readonly offline?: boolean;
  /**
   * Seconds to wait for a server's first answer (connection and headers), and the longest pause between two
   * pieces of a download's body; default `SD3_HUB_TIMEOUT` or 30. Total download time is never limited.
   */
  readonly timeoutSeconds?: number;
}

export interface HubSettings {
  readonly endpoint: string;
  readonly token: string | null;
  readonly tokenSource: string | null;
  readonly cacheDir: string;
  readonly offline: boolean;
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
}

export function hubSettings(options: HubOptions = {}): HubSettings {
  const found = options.token === undefined ? findToken() : null;
  const token = options.token === undefined ? (found?.token ?? null) : options.token;
  return {
    endpoint: (options.endpoint ?? hubEndpoint()).replace(/\/+$/, ''),
    token,
    tokenSource: options.token === undefined ? (found?.source ?? null) : token ? 'the token option' : null,
    cacheDir: options.cacheDir ?? hubCacheDir(),
    offline: options.offline ?? isOfflineMode(),
    timeoutMs: 1000 * checkTimeout(options.timeoutSeconds ?? hubTimeoutSeconds(), 'the timeoutSeconds option'),
    signal: options.signal,
  };
}

function checkTimeout(seconds: number, name: string): number {
  if (!Number.isFinite(seconds) || seconds <= 0) throw new SD3Error(`${name} is ${seconds}; expected a number of seconds above 0`);
  return seconds;
}
