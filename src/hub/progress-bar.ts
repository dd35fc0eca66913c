/**
 * Terminal progress for downloads, for the CLI: a redrawn bar on stderr when it is a TTY, plain lines
 * (one when a transfer starts, one when it ends, a summary) when it is a pipe or a log file.
 */
import type { DownloadProgress } from './download.js';

export interface ProgressStream {
  write(text: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

export function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = n;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

/**
 * Returns an `onProgress` callback that draws download progress on `stream` (default stderr).
 *
 * @example
 * await downloadSD3(repoId, { onProgress: createProgressBar() });
 * // TTY:  [##########----------]  50%  2.1 GB / 4.2 GB  12.3 MB/s  3/17 transformer/diffusion_pytorch_model.safetensors
 * // pipe: downloading transformer/diffusion_pytorch_model.safetensors (4.2 GB), file 3 of 17
 */
export function createProgressBar(stream: ProgressStream = process.stderr): (event: DownloadProgress) => void {
  const tty = stream.isTTY === true;
  let startedAt = 0;
  let startLoaded = 0;
  let lastPermille = -1;
  let lastFile = '';
  let fromCache = 0;

  return (e) => {
    if (e.phase === 'cached') fromCache++;
    const last = e.fileIndex === e.fileCount - 1 && (e.phase === 'done' || e.phase === 'cached');
    if (tty) {
      if (e.phase === 'start' && startedAt === 0) {
        startedAt = Date.now();
        startLoaded = e.loaded;
      }
      const permille = e.total > 0 ? Math.floor((1000 * e.loaded) / e.total) : 1000;
      if (!last && e.phase === 'data' && permille === lastPermille && e.file === lastFile) return;
      lastPermille = permille;
      lastFile = e.file;
      const width = 20;
      const filled = Math.round((width * permille) / 1000);
      const seconds = startedAt ? (Date.now() - startedAt) / 1000 : 0;
      const rate = seconds > 0.5 ? `  ${formatBytes((e.loaded - startLoaded) / seconds)}/s` : '';
      const line =
        `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(permille / 10).toFixed(0).padStart(3)}%  ` +
        `${formatBytes(e.loaded)} / ${formatBytes(e.total)}${rate}  ${e.fileIndex + 1}/${e.fileCount} ${e.file}`;
      const max = Math.max(20, (stream.columns ?? 100) - 1);
      stream.write(`\r\x1b[2K${line.length > max ? line.slice(0, max - 1) + '…' : line}${last ? '\n' : ''}`);
      return;
    }
    if (e.phase === 'start') {
      stream.write(`downloading ${e.file} (${formatBytes(e.fileTotal)}), file ${e.fileIndex + 1} of ${e.fileCount}\n`);
    } else if (e.phase === 'done') {
      stream.write(`downloaded ${e.file}\n`);
    }
    if (last) {
      const cached = fromCache > 0 ? `, ${fromCache} already in the cache` : '';
      stream.write(`${e.fileCount} file(s) ready, ${formatBytes(e.total)}${cached}\n`);
    }
  };
}
