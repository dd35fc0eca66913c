/**
 * Where a worker leaves a finished job's images for the front end: in Redis under resultKey(id, n) with a
 * TTL (the default), or as files on a disk both share (`--results-dir`): DIR/<job id>/<n>.png, each written to
 * a temporary name and renamed into place (a rename is atomic within one filesystem, so a reader never sees
 * half a file), the job's folder appearing last. Folders older than the TTL are swept by the workers.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { Redis } from 'ioredis';
import { resultKey } from './protocol.js';

const JOB_ID = /^[0-9a-f-]{36}$/;

export async function storeResults(redis: Redis, dir: string | undefined, id: string, pngs: Buffer[], ttl: number): Promise<void> {
  if (pngs.length === 0) return;
  if (dir === undefined) {
    const m = redis.multi();
    pngs.forEach((png, n) => m.set(resultKey(id, n), png, 'EX', ttl));
    await m.exec();
    return;
  }
  if (!JOB_ID.test(id)) throw new Error(`job id ${JSON.stringify(id)} is not a job id`);
  // Files first into a hidden temporary folder, then the folder renamed to the job's id: all or nothing.
  const tmp = path.join(dir, `.tmp-${id}-${process.pid}`);
  await fs.rm(tmp, { recursive: true, force: true });
  await fs.mkdir(tmp, { recursive: true });
  await Promise.all(pngs.map((png, n) => fs.writeFile(path.join(tmp, `${n}.png`), png)));
  const final = path.join(dir, id);
  // A job that ran twice (its first worker was taken for dead) left the same images: replace them.
  await fs.rm(final, { recursive: true, force: true });
  await fs.rename(tmp, final);
}

/** The images, or null for any that is missing (expired, or never written). */
export async function readResults(redis: Redis, dir: string | undefined, id: string, count: number): Promise<(Buffer | null)[]> {
  if (count === 0) return [];
  if (dir === undefined) return redis.mgetBuffer(...Array.from({ length: count }, (_, n) => resultKey(id, n)));
  if (!JOB_ID.test(id)) return Array.from({ length: count }, () => null);
  return Promise.all(Array.from({ length: count }, (_, n) => fs.readFile(path.join(dir, id, `${n}.png`)).catch(() => null)));
}

/** Removes job folders (and abandoned temporary ones) older than `ttl` seconds. */
export async function sweepResults(dir: string, ttl: number): Promise<void> {
  const now = Date.now();
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return;
  }
  await Promise.all(names.filter((n) => JOB_ID.test(n) || n.startsWith('.tmp-')).map(async (n) => {
    const p = path.join(dir, n);
    const st = await fs.stat(p).catch(() => undefined);
    if (st && now - st.mtimeMs > ttl * 1000) await fs.rm(p, { recursive: true, force: true });
  }));
}
