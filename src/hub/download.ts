/**
 * Downloads repository files into the Hugging Face cache, reusing whatever is already there (also files
 * fetched by Python tools). The transfer is ours rather than @huggingface/hub's downloadFileToCacheDir: that
 * function has no resume, no size or checksum check, no AbortSignal, no offline mode and no progress, and it
 * files each blob under the file's last commit instead of the revision's commit (huggingface_hub's layout).
 */
import * as fs from 'node:fs/promises';
import { SD3Error } from '../core/errors.js';
import { checkRepoPath, checkRevision, COMMIT_HASH, RepoCache } from './cache.js';
import { isNetworkError, type RequestContext } from './hub-error.js';
import { hubHeaders, resolveUrl, sameOrigin } from './http.js';
import { fetchFileMetadata, type FileMetadata } from './metadata.js';
import { hubSettings, type HubOptions, type HubSettings } from './options.js';
import { transferBlob } from './transfer.js';

export interface DownloadProgress {
  /** Repository path of the file this event is about. */
  readonly file: string;
  /** `cached`: already on disk; `start`, `data`, `done`: a transfer. */
  readonly phase: 'cached' | 'start' | 'data' | 'done';
  readonly fileLoaded: number;
  readonly fileTotal: number;
  /** Bytes present (cached or transferred) and expected, over all files of the call. */
  readonly loaded: number;
  readonly total: number;
  readonly fileIndex: number;
  readonly fileCount: number;
}

export interface DownloadOptions extends HubOptions {
  /** Branch, tag or commit hash; default `main`. */
  readonly revision?: string;
  readonly onProgress?: (event: DownloadProgress) => void;
}

export interface DownloadResult {
  readonly repoId: string;
  readonly revision: string;
  readonly commit: string;
  /** `.../models--org--name/snapshots/{commit}`. */
  readonly snapshotDir: string;
  /** Repository path -> absolute path of the file in the snapshot folder. */
  readonly files: Record<string, string>;
}

/**
 * Makes `paths` of `repoId` present in the cache and returns where they are.
 *
 * @example
 * const { files } = await downloadFiles('stabilityai/stable-diffusion-3-medium-diffusers', ['model_index.json']);
 * files['model_index.json'] // ~/.cache/huggingface/hub/models--stabilityai--.../snapshots/<commit>/model_index.json
 */
export async function downloadFiles(repoId: string, paths: readonly string[], options: DownloadOptions = {}): Promise<DownloadResult> {
  const revision = options.revision ?? 'main';
  checkRevision(revision);
  if (!Array.isArray(paths) || paths.length === 0) {
    throw new SD3Error(`downloadFiles needs a non-empty list of repository paths, got ${JSON.stringify(paths)}`);
  }
  paths.forEach(checkRepoPath);
  const files = [...new Set(paths)];
  const settings = hubSettings(options);
  const cache = new RepoCache(settings.cacheDir, repoId);
  const emit = options.onProgress ?? (() => {});

  if (settings.offline) return fromCache(cache, revision, files, 'offline mode (HF_HUB_OFFLINE=1)', emit);
  if (COMMIT_HASH.test(revision) && (await missingFiles(cache, revision, files)).length === 0) {
    return fromCache(cache, revision, files, '', emit);
  }

  // 1. metadata for every file: the first answer pins the commit, the rest ask for that commit, 8 at a time
  let commit = COMMIT_HASH.test(revision) ? revision : null;
  const head = async (file: string) => {
    const ctx = context(settings, repoId, revision, file);
    const url = resolveUrl(settings.endpoint, repoId, commit ?? revision, file);
    return { file, ctx, meta: await fetchFileMetadata(url, ctx, settings.token, settings.signal, settings.timeoutMs) };
  };
  let plans: { file: string; meta: FileMetadata; ctx: RequestContext }[];
  try {
    const first = await head(files[0]!);
    commit ??= first.meta.commit;
    plans = [first, ...(await mapLimit(files.slice(1), 8, head))];
  } catch (err) {
    // like huggingface_hub: without a connection, a complete cached snapshot still answers
    if (isNetworkError(err)) return fromCache(cache, revision, files, err.message, emit);
    throw err;
  }
  if (!commit) throw new SD3Error('unreachable: no commit after metadata');
  await cache.writeRef(revision, commit);

  // 2. transfers, one file at a time
  const total = plans.reduce((sum, p) => sum + p.meta.size, 0);
  let done = 0;
  const out: Record<string, string> = {};
  for (const [index, { file, meta, ctx }] of plans.entries()) {
    const base = { file, fileTotal: meta.size, total, fileIndex: index, fileCount: plans.length };
    const present = (await cache.cached(commit, file)) ?? (await blobExists(cache, meta.etag) ? await cache.link(commit, file, meta.etag) : null);
    if (present) {
      done += meta.size;
      out[file] = present;
      emit({ ...base, phase: 'cached', fileLoaded: meta.size, loaded: done });
      continue;
    }
    emit({ ...base, phase: 'start', fileLoaded: 0, loaded: done });
    // a signed CDN URL must not carry the hub token (S3 rejects two auth schemes; the token stays private)
    const auth = sameOrigin(meta.downloadUrl, settings.endpoint) ? settings.token : null;
    await transferBlob(
      { url: meta.downloadUrl, headers: hubHeaders(auth), finalPath: cache.blob(meta.etag), size: meta.size, etag: meta.etag },
      ctx,
      settings.signal,
      settings.timeoutMs,
      (bytes) => emit({ ...base, phase: 'data', fileLoaded: bytes, loaded: done + bytes }),
    );
    out[file] = await cache.link(commit, file, meta.etag);
    done += meta.size;
    emit({ ...base, phase: 'done', fileLoaded: meta.size, loaded: done });
  }
  return { repoId, revision, commit, snapshotDir: cache.snapshotDir(commit), files: out };
}

/** `fn` over `items` with at most `limit` calls in flight, results in input order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

function context(settings: HubSettings, repoId: string, revision: string, path?: string): RequestContext {
  return { repoId, revision, endpoint: settings.endpoint, tokenSource: settings.tokenSource, path };
}

async function blobExists(cache: RepoCache, etag: string): Promise<boolean> {
  try {
    return (await fs.stat(cache.blob(etag))).isFile();
  } catch {
    return false;
  }
}

async function missingFiles(cache: RepoCache, commit: string, files: readonly string[]): Promise<string[]> {
  const missing: string[] = [];
  for (const f of files) if (!(await cache.cached(commit, f))) missing.push(f);
  return missing;
}

/** Answers from the cache alone; `why` says why the network is not used (empty: nothing needed it). */
async function fromCache(
  cache: RepoCache,
  revision: string,
  files: readonly string[],
  why: string,
  emit: (e: DownloadProgress) => void,
): Promise<DownloadResult> {
  const commit = await cache.commitFor(revision);
  if (!commit) {
    throw new SD3Error(
      `${why}: no cached snapshot of ${cache.repoId} at revision ${JSON.stringify(revision)} in ${cache.cacheDir} ` +
        `(refs/${revision} is missing); run once with network access to download it`,
    );
  }
  const missing = await missingFiles(cache, commit, files);
  if (missing.length > 0) {
    const shown = missing.slice(0, 10).join(', ') + (missing.length > 10 ? `, ... (${missing.length - 10} more)` : '');
    throw new SD3Error(
      `${why}: the cached snapshot ${commit} of ${cache.repoId} in ${cache.snapshotDir(commit)} lacks ` +
        `${missing.length} of ${files.length} file(s): ${shown}; run once with network access to complete it`,
    );
  }
  const out: Record<string, string> = {};
  const sizes = await Promise.all(files.map(async (f) => (await fs.stat(cache.pointer(commit, f))).size));
  const total = sizes.reduce((a, b) => a + b, 0);
  let loaded = 0;
  for (const [index, file] of files.entries()) {
    out[file] = cache.pointer(commit, file);
    loaded += sizes[index];
    emit({ file, phase: 'cached', fileLoaded: sizes[index], fileTotal: sizes[index], loaded, total, fileIndex: index, fileCount: files.length });
  }
  return { repoId: cache.repoId, revision, commit, snapshotDir: cache.snapshotDir(commit), files: out };
}
