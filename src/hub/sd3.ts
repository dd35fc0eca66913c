/** One call for the CLI and server: list an SD3 repository, pick what the pipeline needs, download it. */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { SD3Error } from '../core/errors.js';
import { downloadFiles, type DownloadOptions, type DownloadResult } from './download.js';
import { parseWeightName, selectSD3Components, selectSingleFiles } from './select.js';
import { resolveHubFiles, type ResolvedRepo } from './resolve.js';

export interface SD3DownloadOptions extends DownloadOptions {
  /** Single-file checkpoint(s) to take from the repository; omit for the diffusers layout. */
  readonly file?: string | readonly string[];
  /** Diffusers layout: include the T5 encoder (`text_encoder_3/`, `tokenizer_3/`). Default true. */
  readonly t5?: boolean;
  /** Diffusers layout: preferred weight variant (see select.ts); default `fp16`, `null` for none. */
  readonly variant?: string | null;
}

export interface SD3Download extends DownloadResult {
  readonly layout: 'diffusers' | 'single-file';
}

/**
 * Downloads what an SD3 pipeline needs from a hub repository into the Hugging Face cache.
 *
 * @example
 * const sd3 = await downloadSD3('stabilityai/stable-diffusion-3-medium-diffusers', { t5: false, onProgress: createProgressBar() });
 * sd3.snapshotDir // folder in the diffusers layout, ready for the loader
 * await downloadSD3('stabilityai/stable-diffusion-3-medium', { file: 'sd3_medium_incl_clips.safetensors' });
 */
export async function downloadSD3(repoId: string, options: SD3DownloadOptions = {}): Promise<SD3Download> {
  const repo = await resolveHubFiles(repoId, options);
  const layout = options.file === undefined ? 'diffusers' : 'single-file';
  let paths: string[];
  try {
    paths = layout === 'diffusers'
      ? selectSD3Components(repo.files, { t5: options.t5 ?? true, variant: options.variant })
      : selectSingleFiles(repo.files, options.file ?? []);
  } catch (err) {
    if (!(err instanceof SD3Error)) throw err;
    throw new SD3Error(`${describeRepo(repo)}: ${err.message}`, { cause: err });
  }
  const pinned = { ...options, revision: repo.commit };
  let result = await downloadFiles(repoId, paths, pinned);
  const extra = await missingShards(result, repo);
  if (extra.length > 0) {
    const more = await downloadFiles(repoId, extra, pinned);
    result = { ...result, files: { ...result.files, ...more.files } };
  }
  return { ...result, revision: repo.revision, layout };
}

function describeRepo(repo: ResolvedRepo): string {
  const where = repo.source === 'cache' ? ', read from the cache because the hub was not used (offline or unreachable)' : '';
  return `${repo.repoId}@${repo.revision} (commit ${repo.commit}${where})`;
}

/** Shards named by downloaded index files but not downloaded; an error when the repository lacks one. */
async function missingShards(result: DownloadResult, repo: ResolvedRepo): Promise<string[]> {
  const missing: string[] = [];
  for (const [file, abs] of Object.entries(result.files)) {
    if (!parseWeightName(path.posix.basename(file))?.index) continue;
    let map: unknown;
    try {
      map = (JSON.parse(await fs.readFile(abs, 'utf8')) as { weight_map?: unknown }).weight_map;
    } catch (err) {
      throw new SD3Error(`${file} in ${describeRepo(repo)} is not a JSON shard index: ${(err as Error).message}`);
    }
    if (typeof map !== 'object' || map === null) throw new SD3Error(`${file} in ${describeRepo(repo)} has no weight_map`);
    const dir = path.posix.dirname(file);
    for (const shard of new Set(Object.values(map as Record<string, unknown>))) {
      const name = dir === '.' ? String(shard) : `${dir}/${String(shard)}`;
      if (name in result.files || missing.includes(name)) continue;
      if (!repo.files.includes(name)) {
        throw new SD3Error(`${file} names shard ${JSON.stringify(String(shard))}, which is not among the files of ${describeRepo(repo)}`);
      }
      missing.push(name);
    }
  }
  return missing;
}
