/**
 * The Hugging Face cache layout, shared with huggingface_hub:
 *
 *   {cacheDir}/models--{org}--{name}/
 *     blobs/{etag}                      file contents, named by sha256 (LFS) or git-sha1 (small files)
 *     blobs/{etag}.incomplete           a transfer in progress (resumed from its length)
 *     blobs/{etag}.lock                 held by the process transferring that blob (proper-lockfile)
 *     refs/{revision}                   the commit hash a branch or tag pointed to
 *     snapshots/{commit}/{path}         relative symlinks into blobs/
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { SD3Error } from '../core/errors.js';

export const COMMIT_HASH = /^[0-9a-f]{40}$/;
const REPO_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/;

export function checkRepoId(repoId: string): void {
  if (typeof repoId !== 'string' || !REPO_ID.test(repoId) || repoId.includes('..')) {
    throw new SD3Error(`hub repository id ${JSON.stringify(repoId)} is not valid; expected "org/name", e.g. stabilityai/stable-diffusion-3-medium-diffusers`);
  }
}

/** Rejects paths that would escape the snapshot folder. */
export function checkRepoPath(file: string): void {
  const parts = typeof file === 'string' ? file.split('/') : [];
  if (!file || file.startsWith('/') || file.includes('\\') || parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw new SD3Error(`repository file path ${JSON.stringify(file)} is not valid; expected a relative path like "vae/config.json"`);
  }
}

export function checkRevision(revision: string): void {
  // '/' separates a branch's parts (refs/pr/1); a backslash (a separator on Windows), ':' and NUL never belong in a
  // revision, and no part may step out of the cache folder.
  if (typeof revision !== 'string' || !revision || /[\\:\0]/.test(revision) || revision.split('/').some((p) => p === '' || p === '.' || p === '..')) {
    throw new SD3Error(`revision ${JSON.stringify(revision)} is not valid; expected a branch, tag or commit hash such as "main"`);
  }
}

export class RepoCache {
  readonly dir: string;

  constructor(readonly cacheDir: string, readonly repoId: string) {
    checkRepoId(repoId);
    this.dir = path.join(cacheDir, `models--${repoId.replace('/', '--')}`);
  }

  blob(etag: string): string {
    if (!/^[A-Za-z0-9]+$/.test(etag)) throw new SD3Error(`hub etag ${JSON.stringify(etag)} is not a hex digest`);
    return path.join(this.dir, 'blobs', etag);
  }

  snapshotDir(commit: string): string {
    return path.join(this.dir, 'snapshots', commit);
  }

  pointer(commit: string, file: string): string {
    return path.join(this.snapshotDir(commit), ...file.split('/'));
  }

  /** The commit a revision resolves to in the cache: itself when it is a hash, else `refs/{revision}`. */
  async commitFor(revision: string): Promise<string | null> {
    if (COMMIT_HASH.test(revision)) return revision;
    try {
      const text = (await fs.readFile(path.join(this.dir, 'refs', ...revision.split('/')), 'utf8')).trim();
      return COMMIT_HASH.test(text) ? text : null;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  async writeRef(revision: string, commit: string): Promise<void> {
    if (COMMIT_HASH.test(revision)) return;
    const file = path.join(this.dir, 'refs', ...revision.split('/'));
    await fs.mkdir(path.dirname(file), { recursive: true });
    // huggingface_hub writes the bare hash with no newline
    await fs.writeFile(file, commit);
  }

  /** The snapshot file's real path if it exists and its blob is there (a dangling link counts as missing). */
  async cached(commit: string, file: string): Promise<string | null> {
    const p = this.pointer(commit, file);
    try {
      return (await fs.stat(p)).isFile() ? p : null;
    } catch {
      return null;
    }
  }

  /** Points `snapshots/{commit}/{file}` at `blobs/{etag}` with a relative symlink (a copy where links fail). */
  async link(commit: string, file: string, etag: string): Promise<string> {
    const p = this.pointer(commit, file);
    const blob = this.blob(etag);
    await fs.mkdir(path.dirname(p), { recursive: true });
    await fs.rm(p, { force: true });
    try {
      await fs.symlink(path.relative(path.dirname(p), blob), p);
    } catch (err) {
      // like huggingface_hub on file systems without symlinks (Windows without developer mode)
      if (!['EPERM', 'EACCES', 'ENOTSUP', 'EOPNOTSUPP'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
      await fs.copyFile(blob, p);
    }
    return p;
  }

  /** Every file of a cached snapshot whose blob is present, as repository paths. */
  async listSnapshot(commit: string): Promise<string[]> {
    const root = this.snapshotDir(commit);
    const out: string[] = [];
    const walk = async (dir: string, prefix: string): Promise<void> => {
      for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
        const rel = prefix + entry.name;
        if (entry.isDirectory()) await walk(path.join(dir, entry.name), rel + '/');
        else if (await this.cached(commit, rel)) out.push(rel);
      }
    };
    try {
      await walk(root, '');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    return out.sort();
  }
}
