/**
 * `sd3 download` as a user runs it (a child process through tsx) against the loopback fake hub: plain progress
 * lines on stderr (stderr is a pipe here), the snapshot path on stdout, the files in the huggingface_hub cache,
 * and a second run with HF_HUB_OFFLINE=1 served from that cache with the hub stopped.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { runCLI } from '../helpers/cli.js';
import { bytesOf, sd3DiffusersRepo, startFakeHub, type FakeHub } from '../helpers/fake-hub.js';

const SD3 = 'tiny/sd3-diffusers';
const SINGLE = 'tiny/sd3-single';
const TRANSFORMER = 'transformer/diffusion_pytorch_model.safetensors';
/** What `sd3 download` without --t5 takes from a diffusers repository (see test/unit/hub-download.test.ts). */
const NO_T5 = [
  'model_index.json', 'scheduler/scheduler_config.json',
  'text_encoder/config.json', 'text_encoder/model.fp16.safetensors',
  'text_encoder_2/config.json', 'text_encoder_2/model.fp16.safetensors',
  'tokenizer/merges.txt', 'tokenizer/special_tokens_map.json', 'tokenizer/tokenizer_config.json', 'tokenizer/vocab.json',
  'tokenizer_2/merges.txt', 'tokenizer_2/special_tokens_map.json', 'tokenizer_2/tokenizer_config.json', 'tokenizer_2/vocab.json',
  'transformer/config.json', TRANSFORMER, 'vae/config.json', 'vae/diffusion_pytorch_model.safetensors',
];

let hub: FakeHub;
let hubOpen = true;
let cache: string;
const files = sd3DiffusersRepo();
const source = new Map(files.map((f) => [f.path, Buffer.from(f.content)]));
const single = bytesOf(4096, 50);
const both = bytesOf(300_000, 51);

before(async () => {
  hub = await startFakeHub({
    [SD3]: { files, gated: true },
    [SINGLE]: {
      files: [
        { path: 'README.md', content: '# single\n' },
        { path: 'sd3_medium.safetensors', content: single },
        { path: 'sd3_medium_incl_clips.safetensors', content: both },
      ],
    },
  });
  cache = await fs.mkdtemp(path.join(os.tmpdir(), 'sd3-cli-download-'));
});

after(async () => {
  if (hubOpen) await hub.close();
  await fs.rm(cache, { recursive: true, force: true });
});

/** The child's hub environment: this fake hub, this cache, no token file, the network allowed. */
function env(extra: Record<string, string | undefined> = {}) {
  return { HF_ENDPOINT: hub.endpoint, HF_HUB_CACHE: cache, HF_HOME: path.join(cache, 'no-home'), HF_TOKEN: hub.token, HF_HUB_OFFLINE: '0', ...extra };
}

const snapshot = () => path.join(cache, 'models--tiny--sd3-diffusers', 'snapshots', hub.commitOf(SD3));

test('sd3 download: progress lines on stderr, the snapshot folder on stdout, the files in the cache', async () => {
  const r = await runCLI(['download', SD3], { env: env() });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `${snapshot()}\n`);
  const index = NO_T5.indexOf(TRANSFORMER);
  assert.match(r.stderr, new RegExp(`^downloading ${TRANSFORMER} \\(262\\.1 kB\\), file ${index + 1} of ${NO_T5.length}$`, 'm'));
  assert.match(r.stderr, new RegExp(`^downloaded ${TRANSFORMER}$`, 'm'));
  // files with the same bytes (the two tokenizers' merges.txt, ...) share one blob: the second is "in the cache"
  const distinct = new Set(NO_T5.map((f) => source.get(f)!.toString('hex'))).size;
  const shared = NO_T5.length - distinct;
  assert.match(r.stderr, new RegExp(`\\n${NO_T5.length} file\\(s\\) ready, 265\\.5 kB, ${shared} already in the cache\\n$`));
  assert.equal(r.stderr.match(/^downloading /gm)?.length, distinct);
  for (const file of NO_T5) assert.deepEqual(await fs.readFile(path.join(snapshot(), file)), source.get(file), file);
  assert.ok((await fs.lstat(path.join(snapshot(), TRANSFORMER))).isSymbolicLink(), 'snapshot files link into blobs/');
  const blobs = await fs.readdir(path.join(cache, 'models--tiny--sd3-diffusers', 'blobs'));
  assert.equal(blobs.length, distinct);
  assert.ok(blobs.every((b) => /^[0-9a-f]{40}$|^[0-9a-f]{64}$/.test(b)), `only finished blobs: ${blobs.join(' ')}`);
});

test('sd3 download --file: a single-file checkpoint, its path on stdout', async () => {
  const r = await runCLI(['download', SINGLE, '--file', 'sd3_medium.safetensors'], { env: env() });
  assert.equal(r.code, 0, r.stderr);
  const file = r.stdout.trim();
  assert.equal(path.basename(file), 'sd3_medium.safetensors');
  assert.deepEqual(await fs.readFile(file), single);
  assert.match(r.stderr, /^1 file\(s\) ready, 4\.1 kB\n$/m);
});

test('two sd3 download processes fetching one file both succeed; it is transferred once', { timeout: 60_000 }, async () => {
  const FILE = 'sd3_medium_incl_clips.safetensors';
  const args = ['download', SINGLE, '--file', FILE];
  hub.stall(SINGLE, FILE, 100_000);
  const first = runCLI(args, { env: env() });
  const blobs = path.join(cache, 'models--tiny--sd3-single', 'blobs');
  const partial = async () => (await fs.readdir(blobs).catch(() => [] as string[])).find((b) => b.endsWith('.incomplete'));
  for (let p; !(p = await partial()) || (await fs.stat(path.join(blobs, p))).size !== 100_000; ) await new Promise((r) => setTimeout(r, 10));
  const second = runCLI(args, { env: env() });
  const heads = () => hub.requests.filter((r) => r.method === 'HEAD' && r.url.endsWith(FILE)).length;
  while (heads() < 2) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 300)); // the second process is now waiting on the lock
  hub.finishStalled();
  const [a, b] = await Promise.all([first, second]);
  for (const r of [a, b]) {
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await fs.readFile(r.stdout.trim()), both);
  }
  const sha = createHash('sha256').update(both).digest('hex');
  assert.equal(hub.requests.filter((r) => r.server === 'cdn' && r.method === 'GET' && r.url.startsWith(`/repos/${sha}?`)).length, 1, 'one transfer');
  assert.ok((await fs.readdir(blobs)).every((f) => !/\.(incomplete|lock)$/.test(f)), 'no partial file or lock left');
});

test('sd3 download of a gated model without a token fails with exit 1 and says to set HF_TOKEN', async () => {
  const r = await runCLI(['download', SD3, '--t5'], { env: env({ HF_TOKEN: undefined }) });
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /^sd3 download: tiny\/sd3-diffusers is a gated model/);
  assert.match(r.stderr, /HF_TOKEN/);
});

test('sd3 download with HF_HUB_OFFLINE=1 and the hub stopped answers from the cache', async () => {
  await hub.close();
  hubOpen = false;
  const r = await runCLI(['download', SD3], { env: env({ HF_HUB_OFFLINE: '1' }) });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `${snapshot()}\n`);
  assert.doesNotMatch(r.stderr, /^downloading/m);
  assert.match(r.stderr, new RegExp(`^${NO_T5.length} file\\(s\\) ready, [0-9.]+ kB, ${NO_T5.length} already in the cache$`, 'm'));
  // what is not in the cache is named, and nothing is fetched
  const t5 = await runCLI(['download', SD3, '--t5'], { env: env({ HF_HUB_OFFLINE: '1' }) });
  assert.equal(t5.code, 1);
  assert.match(t5.stderr, /text_encoder_3/);
});
