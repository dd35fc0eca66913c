/** Hub inputs that could reach outside the cache, and credentials that must not be printed (review L9). */
import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { test } from 'node:test';
import { SD3Error } from '../../src/core/errors.js';
import { RepoCache, checkRevision } from '../../src/hub/cache.js';
import { withoutQuery } from '../../src/hub/hub-error.js';
import { fetchFileMetadata } from '../../src/hub/metadata.js';

test('revisions: branches, tags, commits and refs/pr/N pass; traversal in either separator does not', () => {
  for (const ok of ['main', 'v1.0', 'refs/pr/1', 'a'.repeat(40)]) assert.doesNotThrow(() => checkRevision(ok));
  for (const bad of ['', '..', 'a/../b', '..\\..\\x', 'a\\b', 'c:x', 'a\0b', '/abs']) {
    assert.throws(() => checkRevision(bad), (e: unknown) => e instanceof SD3Error && /is not valid/.test(e.message), JSON.stringify(bad));
  }
});

test('URLs in errors lose their query (signed CDN parameters)', () => {
  assert.equal(withoutQuery('https://cdn-lfs.hf.co/repos/ab/cd/x?X-Amz-Signature=secret&Expires=1'), 'https://cdn-lfs.hf.co/repos/ab/cd/x?...');
  assert.equal(withoutQuery('https://huggingface.co/api/models/a/b'), 'https://huggingface.co/api/models/a/b');
});

test("file metadata: a commit that is not a 40-digit hash, a missing ETag or a bad size is refused (the names of cache files come from them)", async () => {
  let headers: Record<string, string> = {};
  const server = http.createServer((_req, res) => { res.writeHead(200, headers); res.end(); });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const ctx = { repoId: 'a/b', revision: 'main', endpoint, tokenSource: null, path: 'x.json' };
  const meta = (h: Record<string, string>) => { headers = h; return fetchFileMetadata(`${endpoint}/a/b/resolve/main/x.json`, ctx, null); };
  const commit = 'a'.repeat(40);
  try {
    assert.deepEqual(await meta({ 'x-repo-commit': commit, etag: '"abc"', 'content-length': '0' }), { commit, etag: 'abc', size: 0, downloadUrl: `${endpoint}/a/b/resolve/main/x.json` });
    const refused = async (h: Record<string, string>, message: RegExp) => assert.rejects(meta(h), (e: unknown) => e instanceof SD3Error && message.test(e.message));
    await refused({ 'x-repo-commit': '../../../etc', etag: '"abc"', 'content-length': '0' }, /X-Repo-Commit "\.\.\/\.\.\/\.\.\/etc"; expected a 40-digit commit hash/);
    await refused({ 'x-repo-commit': commit, 'content-length': '0' }, /has no ETag/);
    await refused({ 'x-repo-commit': commit, etag: '"abc"', 'x-linked-size': '-5' }, /has size "-5"/);
  } finally {
    server.close();
  }
});

test('an ETag that is not a plain digest cannot name a blob (it would be a path)', () => {
  const cache = new RepoCache('/tmp/hub', 'a/b');
  assert.equal(cache.blob('abc123'), path.join('/tmp/hub', 'models--a--b', 'blobs', 'abc123'));
  for (const bad of ['../x', 'a/b', 'a\\b', '']) assert.throws(() => cache.blob(bad), (e: unknown) => e instanceof SD3Error && /is not a hex digest/.test(e.message));
});
