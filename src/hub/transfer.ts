/**
 * One blob transfer into `blobs/{etag}.incomplete`, resumed with an HTTP Range request when a partial file is
 * there, checked against the expected size and digest, then renamed to `blobs/{etag}`. Nothing reaches the final
 * name unless it verified; an interrupted or aborted transfer leaves only the `.incomplete` file (to resume),
 * and a file that fails its checksum is deleted.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import lockfile from 'proper-lockfile';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { errorFromResponse, HubError, type RequestContext } from './hub-error.js';
import { abortError, hubFetch, timeoutError } from './http.js';

export interface BlobTransfer {
  /** Where to GET the bytes (CDN location or resolve URL). */
  readonly url: string;
  /** Request headers; the caller leaves out Authorization for another origin (a signed CDN URL). */
  readonly headers: Record<string, string>;
  readonly finalPath: string;
  readonly size: number;
  /** sha256 (64 hex digits), git blob sha1 (40), or anything else: size check only. */
  readonly etag: string;
}

interface Digest {
  readonly algorithm: 'sha256' | 'git-sha1' | 'size only';
  readonly hash: Hash | null;
}

function startDigest(etag: string, size: number): Digest {
  if (/^[0-9a-f]{64}$/.test(etag)) return { algorithm: 'sha256', hash: createHash('sha256') };
  if (/^[0-9a-f]{40}$/.test(etag)) {
    // git names a blob by sha1("blob <size>\0" + content)
    return { algorithm: 'git-sha1', hash: createHash('sha1').update(`blob ${size}\0`) };
  }
  return { algorithm: 'size only', hash: null };
}

async function sizeOf(file: string): Promise<number> {
  try {
    return (await fs.stat(file)).size;
  } catch {
    return 0;
  }
}

/** Range answers must start where the partial file ends: `Content-Range: bytes {start}-{end}/{total}`. */
function rangeStart(res: Response): number {
  const m = /^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '');
  return m ? Number(m[1]) : -1;
}

/**
 * Holds `blobs/{etag}.lock` (proper-lockfile: a lock directory whose mtime the holder refreshes, so the lock of a
 * crashed process goes stale and is taken over) for the whole transfer: a second process or call for the same blob
 * waits, then finds the finished blob and returns without downloading it again.
 */
export async function transferBlob(
  t: BlobTransfer,
  ctx: RequestContext,
  signal: AbortSignal | undefined,
  timeoutMs: number,
  onBytes: (bytesOnDisk: number) => void,
): Promise<void> {
  await fs.mkdir(path.dirname(t.finalPath), { recursive: true });
  const release = await lockBlob(t.finalPath, signal);
  try {
    if (signal?.aborted) throw abortError();
    if ((await sizeOf(t.finalPath)) === t.size && (await exists(t.finalPath))) {
      onBytes(t.size);
      return;
    }
    await transferLocked(t, ctx, signal, timeoutMs, onBytes);
  } finally {
    await release().catch(() => undefined); // a lock taken over as stale is no longer ours to remove
  }
}

/** Waits for the blob's lock as long as its holder is alive (the lock is fresh), stopping when `signal` fires. */
async function lockBlob(finalPath: string, signal: AbortSignal | undefined): Promise<() => Promise<void>> {
  for (let wait = 50; ; wait = Math.min(1000, wait * 2)) {
    if (signal?.aborted) throw abortError();
    try {
      return await lockfile.lock(finalPath, { realpath: false, lockfilePath: `${finalPath}.lock`, stale: 20_000, retries: 0 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ELOCKED') throw err;
    }
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.access(file);
    return true;
  } catch {
    return false;
  }
}

/** Downloads (or resumes) one blob; `onBytes` gets the number of bytes now in the partial file. */
async function transferLocked(
  t: BlobTransfer,
  ctx: RequestContext,
  signal: AbortSignal | undefined,
  timeoutMs: number,
  onBytes: (bytesOnDisk: number) => void,
): Promise<void> {
  const incomplete = `${t.finalPath}.incomplete`;
  const label = `${ctx.repoId}/${ctx.path}`;
  await fs.mkdir(path.dirname(incomplete), { recursive: true });
  await fs.appendFile(incomplete, ''); // exists even when nothing is transferred (empty files)
  let have = await sizeOf(incomplete);
  if (have > t.size) {
    await fs.rm(incomplete, { force: true });
    have = 0;
  }
  let digest = startDigest(t.etag, t.size);
  if (have > 0 && digest.hash) {
    for await (const chunk of createReadStream(incomplete)) digest.hash.update(chunk as Buffer);
  }
  onBytes(have);

  if (have < t.size) {
    const headers = have > 0 ? { ...t.headers, range: `bytes=${have}-` } : t.headers;
    const res = await hubFetch(t.url, { headers, signal }, timeoutMs);
    if (res.status === 206) {
      if (rangeStart(res) !== have) {
        await res.body?.cancel();
        throw new HubError(`server answered the resume of ${label} at byte ${have} with Content-Range ${JSON.stringify(res.headers.get('content-range'))}`);
      }
    } else if (res.ok) {
      if (have > 0) {
        // the server ignored Range and sent the whole file: start over
        await fs.truncate(incomplete, 0);
        have = 0;
        digest = startDigest(t.etag, t.size);
        onBytes(0);
      }
    } else {
      throw await errorFromResponse(res, ctx);
    }
    if (!res.body) throw new HubError(`empty answer body for ${label}`);
    await pump(res.body as WebReadableStream<Uint8Array>, incomplete, digest, have, t.size, label, signal, onBytes, t.url, timeoutMs);
  }

  const got = await sizeOf(incomplete);
  if (got !== t.size) {
    if (got > t.size) await fs.rm(incomplete, { force: true });
    throw new HubError(
      `transfer of ${label} ended at ${got} of ${t.size} bytes` +
        (got > t.size ? '; the oversized partial file was removed' : `; the partial file ${incomplete} is kept and the next run resumes it`),
    );
  }
  const actual = digest.hash?.digest('hex');
  if (actual !== undefined && actual !== t.etag) {
    await fs.rm(incomplete, { force: true });
    throw new HubError(
      `checksum mismatch for ${label}: expected ${digest.algorithm} ${t.etag}, got ${actual}; the corrupt download was removed, run again to retry`,
    );
  }
  await fs.rename(incomplete, t.finalPath);
}

async function pump(
  body: WebReadableStream<Uint8Array>,
  file: string,
  digest: Digest,
  start: number,
  size: number,
  label: string,
  signal: AbortSignal | undefined,
  onBytes: (n: number) => void,
  url: string,
  timeoutMs: number,
): Promise<void> {
  let written = start;
  // a stall limit, not a total one: the timer restarts with every chunk, so a slow but moving download goes on
  let stall: NodeJS.Timeout | undefined;
  const armStall = (): void => {
    clearTimeout(stall);
    stall = setTimeout(() => {
      tap.destroy(timeoutError(url, timeoutMs, `no data after byte ${written} of ${size} for ${label} from`));
    }, timeoutMs);
  };
  let overflow = false;
  const out = createWriteStream(file, { flags: 'a' });
  const tap = new Transform({
    transform(chunk: Buffer, _enc, done) {
      armStall();
      written += chunk.length;
      if (written > size) {
        overflow = true;
        done(new HubError(`server sent more than the expected ${size} bytes for ${label}; the partial file was removed`));
        return;
      }
      digest.hash?.update(chunk);
      onBytes(written);
      done(null, chunk);
    },
  });
  try {
    armStall();
    await pipeline(Readable.fromWeb(body), tap, out, signal ? { signal } : {});
  } catch (err) {
    if (!out.closed) await new Promise<void>((resolve) => out.once('close', () => resolve()));
    if (signal?.aborted) throw abortError();
    if (overflow) await fs.rm(file, { force: true });
    if (err instanceof HubError && err.code === 'timeout') {
      throw new HubError(`${err.message}; the partial file ${file} is kept and the next run resumes it`, undefined, 'timeout', { cause: err });
    }
    if (err instanceof HubError) throw err;
    const cause = (err as { cause?: { message?: string } }).cause?.message ?? (err as Error).message;
    throw new HubError(
      `transfer of ${label} was cut off after ${await sizeOf(file)} of ${size} bytes (${cause}); ` +
        `the partial file ${file} is kept and the next run resumes it`,
      undefined,
      undefined,
      { cause: err },
    );
  } finally {
    clearTimeout(stall);
  }
}
