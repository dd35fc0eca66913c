/** Hub inputs that could reach outside the cache, and credentials that must not be printed (review L9). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SD3Error } from '../../src/core/errors.js';
import { checkRevision } from '../../src/hub/cache.js';
import { withoutQuery } from '../../src/hub/hub-error.js';

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
