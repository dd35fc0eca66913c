import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { findToken, hfHome, hubCacheDir, hubEndpoint, isOfflineMode, readToken } from '../../src/hub/index.js';

test('endpoint: HF_ENDPOINT without trailing slash, default huggingface.co, bad values named', () => {
  assert.equal(hubEndpoint({}), 'https://huggingface.co');
  assert.equal(hubEndpoint({ HF_ENDPOINT: 'http://127.0.0.1:8080/' }), 'http://127.0.0.1:8080');
  assert.throws(() => hubEndpoint({ HF_ENDPOINT: 'not a url' }), /HF_ENDPOINT="not a url" is not a URL/);
  assert.throws(() => hubEndpoint({ HF_ENDPOINT: 'ftp://x' }), /must be an http\(s\) URL/);
});

test('cache folder precedence matches huggingface_hub', () => {
  const home = os.homedir();
  assert.equal(hubCacheDir({}), path.join(home, '.cache', 'huggingface', 'hub'));
  assert.equal(hubCacheDir({ XDG_CACHE_HOME: '/x' }), '/x/huggingface/hub');
  assert.equal(hubCacheDir({ HF_HOME: '~/hf', XDG_CACHE_HOME: '/x' }), path.join(home, 'hf', 'hub'));
  assert.equal(hubCacheDir({ HF_HOME: '/h', HUGGINGFACE_HUB_CACHE: '/legacy' }), '/legacy');
  assert.equal(hubCacheDir({ HF_HOME: '/h', HUGGINGFACE_HUB_CACHE: '/legacy', HF_HUB_CACHE: '/c' }), '/c');
  assert.equal(hfHome({ HF_HOME: '/h' }), '/h');
});

test('token: HF_TOKEN, then the legacy variable, then HF_TOKEN_PATH or $HF_HOME/token', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sd3-token-'));
  try {
    assert.equal(readToken({ HF_HOME: dir }), null);
    fs.writeFileSync(path.join(dir, 'token'), 'hf_from_file\n');
    assert.deepEqual(findToken({ HF_HOME: dir }), { token: 'hf_from_file', source: path.join(dir, 'token') });
    fs.writeFileSync(path.join(dir, 'other'), '  hf_other  ');
    assert.equal(readToken({ HF_HOME: dir, HF_TOKEN_PATH: path.join(dir, 'other') }), 'hf_other');
    assert.equal(readToken({ HF_HOME: dir, HUGGING_FACE_HUB_TOKEN: 'hf_legacy' }), 'hf_legacy');
    assert.deepEqual(findToken({ HF_HOME: dir, HF_TOKEN: 'hf_env', HUGGING_FACE_HUB_TOKEN: 'hf_legacy' }), { token: 'hf_env', source: 'HF_TOKEN' });
    assert.equal(readToken({ HF_HOME: dir, HF_TOKEN: '   ' }), 'hf_from_file', 'a blank variable counts as unset');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('HF_HUB_OFFLINE truthy values', () => {
  for (const v of ['1', 'true', 'TRUE', 'yes', 'on']) assert.equal(isOfflineMode({ HF_HUB_OFFLINE: v }), true, v);
  for (const v of [undefined, '', '0', 'false', 'no']) assert.equal(isOfflineMode({ HF_HUB_OFFLINE: v }), false, String(v));
});
