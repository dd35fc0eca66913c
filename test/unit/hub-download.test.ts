import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import { AbortError } from '../../src/core/errors.js';
import { downloadFiles, downloadSD3, HubError, resolveHubFiles, type DownloadProgress } from '../../src/hub/index.js';
import { hubTimeoutSeconds } from '../../src/hub/env.js';
import { hubSettings } from '../../src/hub/options.js';
import { bytesOf, sd3DiffusersRepo, startFakeHub, type FakeFile, type FakeHub } from '../helpers/fake-hub.js';

const SD3 = 'tiny/sd3-diffusers';
const SINGLE = 'tiny/sd3-single';
const TRANSFORMER = 'transformer/diffusion_pytorch_model.safetensors';
const VAE = 'vae/diffusion_pytorch_model.safetensors';

let hub: FakeHub;
let cacheDir: string;
let source: Map<string, Buffer>;
let stopped = false;

beforeEach(async () => {
  const files = sd3DiffusersRepo();
  source = new Map(files.map((f) => [f.path, Buffer.from(f.content)]));
  const single: FakeFile[] = [
    { path: 'README.md', content: '# single file\n' },
    { path: 'sd3_medium.safetensors', content: bytesOf(4096, 50) },
    { path: 'sd3_medium_incl_clips.safetensors', content: bytesOf(8192, 51) },
    { path: 'text_encoders/clip_l.safetensors', content: bytesOf(512, 52) },
  ];
  hub = await startFakeHub({ [SD3]: { files, gated: true }, [SINGLE]: { files: single, gated: true } });
  cacheDir = await fs.mkdtemp(path.join(os.tmpdir(), 'sd3-hub-'));
  stopped = false;
});

afterEach(async () => {
  if (!stopped) await hub.close();
  await fs.rm(cacheDir, { recursive: true, force: true });
});

function opts(extra: Record<string, unknown> = {}) {
  return { endpoint: hub.endpoint, cacheDir, token: hub.token, offline: false, ...extra };
}

async function stopHub(): Promise<void> {
  await hub.close();
  stopped = true;
}

const repoDir = (id: string) => path.join(cacheDir, `models--${id.replace('/', '--')}`);
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const gitSha1 = (b: Buffer) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
const blobs = async (id: string) => (await fs.readdir(path.join(repoDir(id), 'blobs')).catch(() => [] as string[])).sort();

const NO_T5 = [
  'model_index.json',
  'scheduler/scheduler_config.json',
  'text_encoder/config.json',
  'text_encoder/model.fp16.safetensors',
  'text_encoder_2/config.json',
  'text_encoder_2/model.fp16.safetensors',
  'tokenizer/merges.txt',
  'tokenizer/special_tokens_map.json',
  'tokenizer/tokenizer_config.json',
  'tokenizer/vocab.json',
  'tokenizer_2/merges.txt',
  'tokenizer_2/special_tokens_map.json',
  'tokenizer_2/tokenizer_config.json',
  'tokenizer_2/vocab.json',
  'transformer/config.json',
  TRANSFORMER,
  'vae/config.json',
  VAE,
];

test('first download: what SD3 needs, in the huggingface_hub cache layout with relative symlinks', async () => {
  const result = await downloadSD3(SD3, opts({ t5: false }));
  const commit = hub.commitOf(SD3);
  assert.equal(result.commit, commit);
  assert.equal(result.snapshotDir, path.join(repoDir(SD3), 'snapshots', commit));
  assert.deepEqual(Object.keys(result.files).sort(), NO_T5);
  assert.equal(await fs.readFile(path.join(repoDir(SD3), 'refs', 'main'), 'utf8'), commit);

  for (const [file, abs] of Object.entries(result.files)) {
    assert.equal(abs, path.join(result.snapshotDir, ...file.split('/')));
    assert.ok((await fs.lstat(abs)).isSymbolicLink(), `${file} is a symlink`);
    const target = await fs.readlink(abs);
    assert.ok(!path.isAbsolute(target), `${file} -> ${target} is relative`);
    const bytes = source.get(file)!;
    const etag = file.endsWith('.safetensors') ? sha256(bytes) : gitSha1(bytes);
    assert.equal(path.resolve(path.dirname(abs), target), path.join(repoDir(SD3), 'blobs', etag), file);
    assert.deepEqual(await fs.readFile(abs), bytes, file);
  }
  assert.ok((await blobs(SD3)).every((b) => !b.endsWith('.incomplete')));

  const urls = hub.requests.map((r) => decodeURIComponent(r.url));
  for (const skipped of ['text_encoder_3', 'tokenizer_3', 'text_encoder/model.safetensors', '.onnx', '.msgpack', 'README.md']) {
    assert.ok(!urls.some((u) => u.includes(skipped)), `no request for ${skipped}`);
  }
  const cdn = hub.requests.filter((r) => r.server === 'cdn');
  assert.equal(cdn.length, NO_T5.filter((f) => f.endsWith('.safetensors')).length);
  assert.ok(cdn.every((r) => r.headers.authorization === undefined), 'the token is not sent to the CDN');
  assert.ok(hub.requests.filter((r) => r.server === 'hub').every((r) => r.headers.authorization === `Bearer ${hub.token}`));
});

test('with T5: the fp16 shard index and both of its shards, never the fp32 set or the .bin', async () => {
  const result = await downloadSD3(SD3, opts({ t5: true }));
  const t5 = Object.keys(result.files).filter((f) => f.startsWith('text_encoder_3/') || f.startsWith('tokenizer_3/')).sort();
  assert.deepEqual(t5, [
    'text_encoder_3/config.json',
    'text_encoder_3/model.fp16-00001-of-00002.safetensors',
    'text_encoder_3/model.fp16-00002-of-00002.safetensors',
    'text_encoder_3/model.safetensors.index.fp16.json',
    'tokenizer_3/special_tokens_map.json',
    'tokenizer_3/spiece.model',
    'tokenizer_3/tokenizer.json',
    'tokenizer_3/tokenizer_config.json',
  ]);
  assert.deepEqual(await fs.readFile(result.files['tokenizer_3/spiece.model']!), source.get('tokenizer_3/spiece.model'));
});

test('a single-file checkpoint repository: only the named file is downloaded', async () => {
  const result = await downloadSD3(SINGLE, opts({ file: 'sd3_medium_incl_clips.safetensors' }));
  assert.equal(result.layout, 'single-file');
  assert.deepEqual(Object.keys(result.files), ['sd3_medium_incl_clips.safetensors']);
  assert.deepEqual(await fs.readFile(result.files['sd3_medium_incl_clips.safetensors']!), bytesOf(8192, 51));
  assert.ok(!hub.requests.some((r) => r.url.includes('sd3_medium.safetensors')));
  await assert.rejects(downloadSD3(SINGLE, opts({ file: 'sd3_large.safetensors' })), (err: Error) => {
    assert.match(err.message, /"sd3_large\.safetensors" is not in the repository/);
    assert.match(err.message, /sd3_medium_incl_clips\.safetensors/);
    return true;
  });
});

test('a complete cache answers with the hub stopped, and with a commit hash sends no request at all', async () => {
  const first = await downloadSD3(SD3, opts({ t5: false }));
  const before = hub.requests.length;
  const again = await downloadFiles(SD3, Object.keys(first.files), opts({ revision: first.commit }));
  assert.equal(hub.requests.length, before, 'pinned to a commit: no request');
  assert.deepEqual(again.files, first.files);

  await stopHub();
  const events: DownloadProgress[] = [];
  const offline = await downloadSD3(SD3, opts({ t5: false, onProgress: (e: DownloadProgress) => events.push(e) }));
  assert.deepEqual(offline.files, first.files);
  assert.equal(offline.commit, first.commit);
  assert.equal(events.length, NO_T5.length);
  assert.ok(events.every((e) => e.phase === 'cached'));
  assert.equal(events.at(-1)!.loaded, events.at(-1)!.total);
});

/** Starts a download of `file`, lets `bytes` of it reach the disk, then has the server drop the connection. */
async function interruptedAt(file: string, bytes: number): Promise<string> {
  hub.stall(SD3, file, bytes);
  const incomplete = path.join(repoDir(SD3), 'blobs', sha256(source.get(file)!) + '.incomplete');
  const pending = downloadFiles(SD3, [file], opts());
  pending.catch(() => {}); // awaited below
  while ((await fs.stat(incomplete).catch(() => null))?.size !== bytes) await new Promise((r) => setTimeout(r, 5));
  hub.cutStalled();
  await assert.rejects(pending, (err: Error) => {
    assert.ok(err instanceof HubError);
    assert.match(err.message, new RegExp(`transfer of ${SD3}/${file} was cut off after ${bytes} of ${source.get(file)!.length} bytes`));
    assert.match(err.message, /next run resumes it/);
    return true;
  });
  await assert.rejects(fs.stat(incomplete.replace(/\.incomplete$/, '')), { code: 'ENOENT' }, 'no final blob');
  return incomplete;
}

// the timeout only guards against a hang (the fake server stalls until told to cut)
test('an interrupted transfer resumes with a Range request and ends with the right file', { timeout: 30_000 }, async () => {
  const incomplete = await interruptedAt(TRANSFORMER, 100_000);
  const events: DownloadProgress[] = [];
  const result = await downloadFiles(SD3, [TRANSFORMER], opts({ onProgress: (e: DownloadProgress) => events.push(e) }));
  const gets = hub.requests.filter((r) => r.server === 'cdn' && r.method === 'GET');
  assert.equal(gets.length, 2);
  assert.equal(gets[0]!.headers.range, undefined);
  assert.equal(gets[1]!.headers.range, 'bytes=100000-');
  assert.deepEqual(await fs.readFile(result.files[TRANSFORMER]!), source.get(TRANSFORMER));
  await assert.rejects(fs.stat(incomplete), { code: 'ENOENT' });
  const data = events.filter((e) => e.phase === 'data');
  assert.equal(data[0]!.fileLoaded, 100_000, 'progress starts from the resumed length');
  assert.equal(events.at(-1)!.phase, 'done');
});

test('a server that ignores Range gets the whole file again, and the result is still right', { timeout: 30_000 }, async () => {
  await interruptedAt(TRANSFORMER, 60_000);
  hub.ignoreRange(SD3, TRANSFORMER);
  const result = await downloadFiles(SD3, [TRANSFORMER], opts());
  const gets = hub.requests.filter((r) => r.server === 'cdn' && r.method === 'GET');
  assert.equal(gets[1]!.headers.range, 'bytes=60000-');
  assert.deepEqual(await fs.readFile(result.files[TRANSFORMER]!), source.get(TRANSFORMER));
});

// the test timeouts only guard against a hang (the fake server stalls until told otherwise)
test('a body that stalls ends in a HubError naming the URL without its query and the timeout; the next run resumes', { timeout: 30_000 }, async () => {
  hub.stall(SD3, TRANSFORMER, 50_000);
  const incomplete = path.join(repoDir(SD3), 'blobs', sha256(source.get(TRANSFORMER)!) + '.incomplete');
  await assert.rejects(downloadFiles(SD3, [TRANSFORMER], opts({ timeoutSeconds: 0.3 })), (err: Error) => {
    assert.ok(err instanceof HubError);
    assert.equal(err.code, 'timeout');
    const size = source.get(TRANSFORMER)!.length;
    assert.match(err.message, new RegExp(`no data after byte 50000 of ${size} for ${SD3}/${TRANSFORMER} from ${hub.cdnOrigin}/repos/[0-9a-f]{64}\\?\\.\\.\\. for 0.3 s`));
    assert.match(err.message, /SD3_HUB_TIMEOUT/);
    assert.doesNotMatch(err.message, /Signature/, 'the signed query is not printed');
    assert.match(err.message, /next run resumes it/);
    return true;
  });
  assert.equal((await fs.stat(incomplete)).size, 50_000);
  const result = await downloadFiles(SD3, [TRANSFORMER], opts({ timeoutSeconds: 0.3 }));
  assert.deepEqual(await fs.readFile(result.files[TRANSFORMER]!), source.get(TRANSFORMER));
});

test('a slow body that keeps moving is not cut off: the stall limit is between chunks, not on the total', { timeout: 30_000 }, async () => {
  hub.stall(SD3, TRANSFORMER, 50_000);
  const pending = downloadFiles(SD3, [TRANSFORMER], opts({ timeoutSeconds: 1 }));
  const incomplete = path.join(repoDir(SD3), 'blobs', sha256(source.get(TRANSFORMER)!) + '.incomplete');
  while ((await fs.stat(incomplete).catch(() => null))?.size !== 50_000) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 600)); // under the 1 s stall limit
  hub.finishStalled();
  const result = await pending;
  assert.deepEqual(await fs.readFile(result.files[TRANSFORMER]!), source.get(TRANSFORMER));
});

test('a server that never answers ends in a HubError after the first-byte timeout', { timeout: 30_000 }, async () => {
  hub.hold(SD3, 'model_index.json');
  await assert.rejects(downloadFiles(SD3, ['model_index.json'], opts({ timeoutSeconds: 0.3 })), (err: Error) => {
    assert.ok(err instanceof HubError);
    assert.equal(err.code, 'timeout');
    assert.match(err.message, new RegExp(`no answer from ${hub.endpoint}/${SD3}/resolve/main/model_index.json for 0.3 s`));
    return true;
  });
});

test('SD3_HUB_TIMEOUT sets the timeout; a bad value or option is refused with its name', () => {
  assert.equal(hubTimeoutSeconds({}), 30);
  assert.equal(hubTimeoutSeconds({ SD3_HUB_TIMEOUT: '2.5' }), 2.5);
  assert.throws(() => hubTimeoutSeconds({ SD3_HUB_TIMEOUT: 'soon' }), /SD3_HUB_TIMEOUT="soon" is not a number of seconds above 0/);
  assert.throws(() => hubTimeoutSeconds({ SD3_HUB_TIMEOUT: '0' }), /SD3_HUB_TIMEOUT="0"/);
  assert.equal(hubSettings({ timeoutSeconds: 4 }).timeoutMs, 4000);
  assert.throws(() => hubSettings({ timeoutSeconds: -1 }), /timeoutSeconds option is -1; expected a number of seconds above 0/);
});

test('two concurrent downloads of one blob both succeed: the second waits on the lock and reuses the finished blob', { timeout: 30_000 }, async () => {
  hub.stall(SD3, TRANSFORMER, 100_000);
  const first = downloadFiles(SD3, [TRANSFORMER], opts());
  const incomplete = path.join(repoDir(SD3), 'blobs', sha256(source.get(TRANSFORMER)!) + '.incomplete');
  while ((await fs.stat(incomplete).catch(() => null))?.size !== 100_000) await new Promise((r) => setTimeout(r, 5));
  const second = downloadFiles(SD3, [TRANSFORMER], opts());
  const heads = () => hub.requests.filter((r) => r.method === 'HEAD' && r.url.endsWith(TRANSFORMER)).length;
  while (heads() < 2) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 100)); // the second call is now at the lock
  hub.finishStalled();
  const [a, b] = await Promise.all([first, second]);
  for (const r of [a, b]) assert.equal(sha256(await fs.readFile(r.files[TRANSFORMER]!)), sha256(source.get(TRANSFORMER)!));
  const gets = hub.requests.filter((r) => r.server === 'cdn' && r.method === 'GET');
  assert.equal(gets.length, 1, 'the blob was transferred once');
  assert.deepEqual(await blobs(SD3), [sha256(source.get(TRANSFORMER)!)], 'no .incomplete or .lock left');
});

test('a call waiting on the lock of a blob stops when its signal fires, and the holder goes on', { timeout: 30_000 }, async () => {
  hub.stall(SD3, TRANSFORMER, 100_000);
  const first = downloadFiles(SD3, [TRANSFORMER], opts());
  const incomplete = path.join(repoDir(SD3), 'blobs', sha256(source.get(TRANSFORMER)!) + '.incomplete');
  while ((await fs.stat(incomplete).catch(() => null))?.size !== 100_000) await new Promise((r) => setTimeout(r, 5));
  const controller = new AbortController();
  const waiting = downloadFiles(SD3, [TRANSFORMER], opts({ signal: controller.signal }));
  const heads = () => hub.requests.filter((r) => r.method === 'HEAD' && r.url.endsWith(TRANSFORMER)).length;
  while (heads() < 2) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 100));
  controller.abort();
  await assert.rejects(waiting, (err: Error) => err instanceof AbortError);
  hub.finishStalled();
  const result = await first;
  assert.deepEqual(await fs.readFile(result.files[TRANSFORMER]!), source.get(TRANSFORMER));
});

test('a checksum mismatch is rejected and leaves no blob, final or partial', async () => {
  hub.tamper(SD3, VAE);
  await assert.rejects(downloadFiles(SD3, [VAE], opts()), (err: Error) => {
    assert.match(err.message, new RegExp(`checksum mismatch for ${SD3}/${VAE}: expected sha256 ${sha256(source.get(VAE)!)}, got [0-9a-f]{64}`));
    return true;
  });
  hub.tamper(SD3, 'model_index.json');
  await assert.rejects(downloadFiles(SD3, ['model_index.json'], opts()), /checksum mismatch .* expected git-sha1 [0-9a-f]{40}/);
  assert.deepEqual(await blobs(SD3), []);
  await assert.rejects(fs.stat(path.join(repoDir(SD3), 'snapshots', hub.commitOf(SD3), VAE)), { code: 'ENOENT' });
});

test('a gated model without a token: the error says to accept the licence and set HF_TOKEN', async () => {
  const check = (status: number, sent: RegExp) => (err: Error) => {
    assert.ok(err instanceof HubError);
    assert.equal(err.status, status);
    assert.equal(err.code, 'GatedRepo');
    assert.match(err.message, /tiny\/sd3-diffusers is a gated model/);
    assert.ok(err.message.includes(`accept the licence on the model page ${hub.endpoint}/${SD3}`), err.message);
    assert.match(err.message, /set HF_TOKEN/);
    assert.match(err.message, sent);
    return true;
  };
  await assert.rejects(downloadFiles(SD3, ['model_index.json'], opts({ token: null })), check(401, /No token was sent/));
  await assert.rejects(resolveHubFiles(SD3, opts({ token: null })), check(401, /No token was sent/));
  await assert.rejects(downloadSD3(SD3, opts({ token: 'hf_wrong' })), check(403, /token from the token option was refused/));
  assert.deepEqual(await blobs(SD3), []);
});

test('missing files and repositories are named; no blob is written', async () => {
  await assert.rejects(downloadFiles(SD3, ['vae/nope.safetensors'], opts()), (err: Error) => {
    assert.ok(err instanceof HubError);
    assert.equal(err.status, 404);
    assert.match(err.message, /file "vae\/nope\.safetensors" does not exist in tiny\/sd3-diffusers at revision main/);
    return true;
  });
  await assert.rejects(resolveHubFiles('tiny/absent', opts({ token: null })), /repository tiny\/absent was not found/);
  await assert.rejects(downloadFiles(SD3, ['model_index.json'], opts({ revision: 'v9' })), /revision "v9" does not exist/);
  assert.deepEqual(await blobs(SD3), []);
});

test('offline mode: a complete cache works without the hub, an incomplete one names what is missing', async () => {
  const first = await downloadSD3(SD3, opts({ t5: false }));
  const count = hub.requests.length;
  const offline = await downloadSD3(SD3, opts({ t5: false, offline: true }));
  assert.deepEqual(offline.files, first.files);
  assert.equal(hub.requests.length, count, 'offline: no request');

  await assert.rejects(downloadSD3(SD3, opts({ t5: true, offline: true })), (err: Error) => {
    assert.match(err.message, /read from the cache/);
    assert.match(err.message, /text_encoder_3\/config\.json is missing/);
    assert.match(err.message, /pass t5: false/);
    return true;
  });

  await fs.rm(path.join(repoDir(SD3), 'blobs', sha256(source.get(VAE)!)));
  await assert.rejects(downloadFiles(SD3, [VAE, 'vae/config.json'], opts({ offline: true })), (err: Error) => {
    assert.match(err.message, /^offline mode \(HF_HUB_OFFLINE=1\): the cached snapshot [0-9a-f]{40} of tiny\/sd3-diffusers/);
    assert.match(err.message, /lacks 1 of 2 file\(s\): vae\/diffusion_pytorch_model\.safetensors;/);
    return true;
  });
  await assert.rejects(downloadSD3(SD3, opts({ t5: false, offline: true })), /vae\/ has no usable \.safetensors weights/);
  await assert.rejects(downloadFiles(SINGLE, ['sd3_medium.safetensors'], opts({ offline: true })), /no cached snapshot of tiny\/sd3-single at revision "main" .*refs\/main is missing/);
});

test('HF_HUB_OFFLINE, HF_ENDPOINT, HF_HUB_CACHE and HF_TOKEN are read from the environment', async () => {
  const saved = { ...process.env };
  try {
    Object.assign(process.env, { HF_ENDPOINT: hub.endpoint + '/', HF_HUB_CACHE: cacheDir, HF_TOKEN: hub.token, HF_HUB_OFFLINE: '0' });
    const online = await downloadFiles(SD3, ['model_index.json']);
    assert.ok(online.files['model_index.json']!.startsWith(cacheDir));
    process.env.HF_HUB_OFFLINE = '1';
    const count = hub.requests.length;
    assert.deepEqual((await downloadFiles(SD3, ['model_index.json'])).files, online.files);
    await assert.rejects(downloadFiles(SD3, ['vae/config.json']), /offline mode .*lacks 1 of 1 file\(s\): vae\/config\.json/);
    assert.equal(hub.requests.length, count);
  } finally {
    for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
    Object.assign(process.env, saved);
  }
});

// the timeout only guards against a hang if the abort were ignored (the fake server stalls)
test('abort through the signal stops the transfer and leaves no final blob', { timeout: 30_000 }, async () => {
  hub.stall(SD3, TRANSFORMER, 50_000);
  const controller = new AbortController();
  const blob = path.join(repoDir(SD3), 'blobs', sha256(source.get(TRANSFORMER)!));
  const onProgress = (e: DownloadProgress) => {
    if (e.phase === 'data' && e.fileLoaded > 0) controller.abort();
  };
  await assert.rejects(downloadFiles(SD3, [TRANSFORMER], opts({ signal: controller.signal, onProgress })), (err: Error) => {
    assert.ok(err instanceof AbortError, `${err.name}: ${err.message}`);
    return true;
  });
  await assert.rejects(fs.stat(blob), { code: 'ENOENT' });
  assert.ok((await fs.stat(`${blob}.incomplete`)).size <= 50_000);
  await assert.rejects(downloadSD3(SD3, opts({ signal: AbortSignal.abort() })), AbortError);
});

test('an unreachable hub with no cache gives a clear error', async () => {
  const endpoint = hub.endpoint;
  await stopHub();
  await assert.rejects(downloadSD3(SD3, { endpoint, cacheDir, token: null, offline: false }), (err: Error) => {
    assert.match(err.message, new RegExp(`^cannot reach ${endpoint.replace(/[.]/g, '\\.')} \\(ECONNREFUSED\\), and there is no cached snapshot of tiny/sd3-diffusers`));
    return true;
  });
});
