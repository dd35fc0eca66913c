/**
 * Which files a repository has at a revision, and the commit it resolves to. The listing comes from
 * @huggingface/hub's modelInfo (`GET /api/models/{repo}/revision/{rev}`: sha and siblings); its requests go
 * through our fetch so that tokens, AbortSignal and error messages behave as in the downloads.
 */
import { modelInfo } from '@huggingface/hub';
import { SD3Error } from '../core/errors.js';
import { checkRevision, COMMIT_HASH, RepoCache } from './cache.js';
import { fileFilter } from './glob.js';
import { errorFromResponse, isNetworkError } from './hub-error.js';
import { hubFetch, hubHeaders } from './http.js';
import { hubSettings, type HubOptions, type HubSettings } from './options.js';

export interface ResolveOptions extends HubOptions {
  /** Branch, tag or commit hash; default `main`. */
  readonly revision?: string;
  /** Keeps only matching paths: a predicate, or globs with huggingface_hub's allow_patterns semantics. */
  readonly include?: ((path: string) => boolean) | readonly string[];
}

export interface ResolvedRepo {
  readonly repoId: string;
  readonly revision: string;
  readonly commit: string;
  /** Repository paths, sorted. */
  readonly files: string[];
  /** `cache` when the listing was read from a cached snapshot (offline, or the hub unreachable). */
  readonly source: 'hub' | 'cache';
}

/**
 * Lists the files of `repoId` at `revision` and the commit it points to.
 *
 * @example
 * const repo = await resolveHubFiles('stabilityai/stable-diffusion-3-medium-diffusers', { include: ['vae/*'] });
 * repo.files // ['vae/config.json', 'vae/diffusion_pytorch_model.safetensors']
 */
export async function resolveHubFiles(repoId: string, options: ResolveOptions = {}): Promise<ResolvedRepo> {
  const revision = options.revision ?? 'main';
  checkRevision(revision);
  const keep = fileFilter(options.include);
  const settings = hubSettings(options);
  const cache = new RepoCache(settings.cacheDir, repoId);
  if (settings.offline) return listCached(cache, revision, keep, 'offline mode (HF_HUB_OFFLINE=1)');

  let info: { sha?: unknown; filePaths?: unknown };
  try {
    info = await modelInfo({
      name: repoId,
      revision,
      hubUrl: settings.endpoint,
      additionalFields: ['sha', 'filePaths'],
      fetch: hubApiFetch(settings, repoId, revision),
    });
  } catch (err) {
    if (isNetworkError(err)) return listCached(cache, revision, keep, err.message);
    throw err;
  }
  const { sha, filePaths } = info;
  if (typeof sha !== 'string' || !COMMIT_HASH.test(sha) || !Array.isArray(filePaths) || filePaths.some((f) => typeof f !== 'string')) {
    throw new SD3Error(`hub listing of ${repoId}@${revision} from ${settings.endpoint} has no commit sha or file list`);
  }
  await cache.writeRef(revision, sha);
  return { repoId, revision, commit: sha, files: (filePaths as string[]).filter(keep).sort(), source: 'hub' };
}

/** The fetch handed to @huggingface/hub: our headers and signal, and our error for a non-OK answer. */
function hubApiFetch(settings: HubSettings, repoId: string, revision: string): typeof fetch {
  return async (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const res = await hubFetch(url, { ...init, headers: hubHeaders(settings.token, { accept: 'application/json' }), signal: settings.signal }, settings.timeoutMs);
    if (!res.ok) {
      throw await errorFromResponse(res, { repoId, revision, endpoint: settings.endpoint, tokenSource: settings.tokenSource });
    }
    return res;
  };
}

async function listCached(cache: RepoCache, revision: string, keep: (p: string) => boolean, why: string): Promise<ResolvedRepo> {
  const commit = await cache.commitFor(revision);
  const files = commit ? (await cache.listSnapshot(commit)).filter(keep) : [];
  if (!commit || files.length === 0) {
    throw new SD3Error(
      `${why}, and there is no cached snapshot of ${cache.repoId} at revision ${JSON.stringify(revision)} in ${cache.cacheDir}` +
        (commit ? ` (snapshots/${commit} has no matching files)` : ` (refs/${revision} is missing)`) +
        '; run once with network access to download it',
    );
  }
  return { repoId: cache.repoId, revision, commit, files, source: 'cache' };
}
