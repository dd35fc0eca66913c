import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createProgressBar, formatBytes, type DownloadProgress } from '../../src/hub/index.js';

function events(): DownloadProgress[] {
  const base = { fileCount: 2, total: 3000 };
  return [
    { ...base, file: 'model_index.json', phase: 'cached', fileIndex: 0, fileLoaded: 1000, fileTotal: 1000, loaded: 1000 },
    { ...base, file: 'vae/w.safetensors', phase: 'start', fileIndex: 1, fileLoaded: 0, fileTotal: 2000, loaded: 1000 },
    { ...base, file: 'vae/w.safetensors', phase: 'data', fileIndex: 1, fileLoaded: 1001, fileTotal: 2000, loaded: 2001 },
    { ...base, file: 'vae/w.safetensors', phase: 'data', fileIndex: 1, fileLoaded: 1002, fileTotal: 2000, loaded: 2002 },
    { ...base, file: 'vae/w.safetensors', phase: 'done', fileIndex: 1, fileLoaded: 2000, fileTotal: 2000, loaded: 3000 },
  ];
}

function sink(isTTY: boolean) {
  const chunks: string[] = [];
  return { chunks, stream: { isTTY, columns: 80, write: (t: string) => chunks.push(t) } };
}

test('plain lines when the stream is not a terminal', () => {
  const { chunks, stream } = sink(false);
  const bar = createProgressBar(stream);
  events().forEach(bar);
  assert.deepEqual(chunks, [
    'downloading vae/w.safetensors (2.0 kB), file 2 of 2\n',
    'downloaded vae/w.safetensors\n',
    '2 file(s) ready, 3.0 kB, 1 already in the cache\n',
  ]);
});

test('a redrawn bar on a terminal, one line in the end', () => {
  const { chunks, stream } = sink(true);
  const bar = createProgressBar(stream);
  events().forEach(bar);
  assert.equal(chunks.length, 4, 'the data event that changes nothing visible is not drawn');
  assert.ok(chunks.every((c) => c.startsWith('\r\x1b[2K')));
  assert.match(chunks[2]!, /\[#{13}-{7}\]  67%  2\.0 kB \/ 3\.0 kB.* 2\/2 vae\/w\.safetensors$/);
  assert.match(chunks[3]!, /\[#{20}\] 100%  3\.0 kB \/ 3\.0 kB.*\n$/);
  assert.equal(chunks.join('').split('\n').length, 2);
  for (const c of chunks) assert.ok(c.length <= 80 + 6, 'fits the terminal width');
});

test('byte sizes', () => {
  assert.equal(formatBytes(999), '999 B');
  assert.equal(formatBytes(1500), '1.5 kB');
  assert.equal(formatBytes(4.17e9), '4.2 GB');
});
