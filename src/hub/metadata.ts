/**
 * What the resolve endpoint says about a file before it is downloaded, read the way huggingface_hub's
 * get_hf_file_metadata reads it: a HEAD request that follows relative redirects only (a renamed repository)
 * and stops at the redirect to the CDN, whose headers carry the LFS file's sha256 and size.
 */
import { SD3Error } from '../core/errors.js';
import { COMMIT_HASH } from './cache.js';
import { errorFromResponse, HubError, type RequestContext } from './hub-error.js';
import { hubFetch, hubHeaders } from './http.js';

export interface FileMetadata {
  /** Commit the revision resolved to (`X-Repo-Commit`). */
  readonly commit: string;
  /** Blob name: sha256 for LFS files (`X-Linked-Etag`), git-sha1 for small files (`ETag`). */
  readonly etag: string;
  /** Size of the real file, not of an LFS pointer (`X-Linked-Size`, else `Content-Length`). */
  readonly size: number;
  /** Where to GET the bytes: the CDN location for LFS files, else the resolve URL. */
  readonly downloadUrl: string;
}

/** `W/"abc"` or `"abc"` -> `abc`. */
export function normalizeEtag(etag: string): string {
  return etag.trim().replace(/^W\//, '').replace(/^"|"$/g, '');
}

function isRelative(location: string): boolean {
  return !/^[A-Za-z][A-Za-z0-9+.-]*:/.test(location) && !location.startsWith('//');
}

function parse(res: Response, downloadUrl: string, ctx: RequestContext): FileMetadata {
  const name = `${ctx.repoId}/${ctx.path}`;
  const commit = res.headers.get('x-repo-commit') ?? '';
  const etagHeader = res.headers.get('x-linked-etag') ?? res.headers.get('etag');
  const sizeHeader = res.headers.get('x-linked-size') ?? res.headers.get('content-length');
  if (!COMMIT_HASH.test(commit)) {
    throw new SD3Error(`hub answer for ${name} has X-Repo-Commit ${JSON.stringify(commit)}; expected a 40-digit commit hash (is ${ctx.endpoint} a Hugging Face hub?)`);
  }
  if (!etagHeader) throw new SD3Error(`hub answer for ${name} has no ETag; cannot name the cached file`);
  const size = Number(sizeHeader);
  if (sizeHeader === null || !Number.isSafeInteger(size) || size < 0) {
    throw new SD3Error(`hub answer for ${name} has size ${JSON.stringify(sizeHeader)}; expected X-Linked-Size or Content-Length in bytes`);
  }
  return { commit, etag: normalizeEtag(etagHeader), size, downloadUrl };
}

export async function fetchFileMetadata(
  url: string,
  ctx: RequestContext,
  token: string | null,
  signal?: AbortSignal,
  timeoutMs?: number,
): Promise<FileMetadata> {
  let current = url;
  for (let hop = 0; hop < 10; hop++) {
    const res = await hubFetch(current, { method: 'HEAD', redirect: 'manual', headers: hubHeaders(token), signal }, timeoutMs);
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location) {
      if (isRelative(location)) {
        current = new URL(location, current).href;
        continue;
      }
      return parse(res, location, ctx);
    }
    if (!res.ok) throw await errorFromResponse(res, ctx);
    return parse(res, current, ctx);
  }
  throw new HubError(`too many redirects resolving ${ctx.repoId}/${ctx.path} (last: ${current})`);
}
