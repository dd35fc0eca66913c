/**
 * The int8 cache is never half-written: atomic writes, validation on open, an interruptible build, stale
 * temporary files swept, NaN weights named, and a process killed mid-build leaves a state the next run fixes.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { AbortError, SD3Error } from '../../src/core/errors.js';
import { SafetensorsFile, sweepStaleTemps, writeSafetensors } from '../../src/core/safetensors.js';
import { float32ToHalf, tensor } from '../../src/core/tensor.js';
import { SafetensorsStore, withPrefix } from '../../src/core/weights.js';
import { int8CacheFile } from '../../src/loaders/checkpoint.js';
import { openInt8Cache, openInt8CacheAsync } from '../../src/quant/int8.js';
import { gaussian } from '../../src/sampler/noise.js';
import { REPO } from '../helpers/cli.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sd3-int8-cache-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
let n = 0;

/** A checkpoint of `count` fp16 Linear weights [rows, cols]; returns its path, store and Linear names. */
function checkpoint(count: number, rows = 32, cols = 48, poison?: number): { file: string; store: SafetensorsStore; names: string[]; dir: string } {
  const dir = path.join(root, `c${n++}`);
  fs.mkdirSync(dir);
  const file = path.join(dir, 'm.safetensors');
  const tensors: Record<string, ReturnType<typeof tensor>> = {};
  for (let i = 0; i < count; i++) {
    const w = Float32Array.from(gaussian(rows * cols, i + 1), (v) => v / 8);
    if (poison !== undefined && i === 1) w[poison] = Number.NaN;
    tensors[`l${i}.weight`] = float32ToHalf(tensor('float32', [rows, cols], w), 'float16');
  }
  writeSafetensors(file, tensors);
  const names = Object.keys(tensors);
  return { file, dir, names, store: new SafetensorsStore([SafetensorsFile.open(file)], withPrefix('')) };
}

const cacheOf = (dir: string) => path.join(dir, 'm.test.int8.safetensors');
const temps = (dir: string) => fs.readdirSync(dir).filter((f) => f.endsWith('.tmp'));

describe('int8 cache', () => {
  it('builds the same file without blocking as the blocking build', async () => {
    const a = checkpoint(3);
    openInt8Cache(a.store, a.names, 'test');
    const b = checkpoint(3);
    let ticks = 0;
    const timer = setInterval(() => { ticks++; }, 0);
    await openInt8CacheAsync(b.store, b.names, 'test');
    clearInterval(timer);
    const strip = (f: string) => { const s = SafetensorsFile.open(f); const keys = s.keys(); const out = keys.map((k) => [k, [...s.readBytes(k)]]); s.close(); return out; };
    assert.deepEqual(strip(cacheOf(b.dir)), strip(cacheOf(a.dir)));
    assert.deepEqual(temps(b.dir), []);
  });

  it('stops on the signal with an AbortError, leaving no cache and no temporary file', async () => {
    const c = checkpoint(6);
    const controller = new AbortController();
    await assert.rejects(openInt8CacheAsync(c.store, c.names, 'test', { signal: controller.signal, onProgress: (d) => { if (d === 2) controller.abort(); } }),
      (e: unknown) => e instanceof AbortError);
    assert.deepEqual(fs.readdirSync(c.dir), ['m.safetensors']);
  });

  it('rebuilds a cache that fails validation (a NaN scale, a wrong shape)', async () => {
    const c = checkpoint(2);
    await openInt8CacheAsync(c.store, c.names, 'test');
    const good = fs.readFileSync(cacheOf(c.dir));
    const meta = SafetensorsFile.open(cacheOf(c.dir));
    const scaleAt = meta.info('l0.weight.scale').fileOffset;
    const stamp = meta.metadata;
    meta.close();
    const bad = Buffer.from(good);
    bad.writeFloatLE(Number.NaN, scaleAt);
    fs.writeFileSync(cacheOf(c.dir), bad);
    await openInt8CacheAsync(c.store, c.names, 'test');
    assert.ok(fs.readFileSync(cacheOf(c.dir)).equals(good), 'the NaN scale was not rebuilt');
    // Same stamp, but a tensor of the wrong shape.
    writeSafetensors(cacheOf(c.dir), { 'l0.weight.q': tensor('int8', [2, 2], new Int8Array(4)) }, stamp);
    await openInt8CacheAsync(c.store, c.names, 'test');
    assert.ok(fs.readFileSync(cacheOf(c.dir)).equals(good), 'the wrong-shape cache was not rebuilt');
  });

  it('names a weight that holds NaN', async () => {
    const c = checkpoint(3, 32, 48, 50);
    await assert.rejects(openInt8CacheAsync(c.store, c.names, 'test'), (e: unknown) => e instanceof SD3Error && /"l1\.weight" holds NaN values \(output channel 1\)/.test(e.message));
    assert.deepEqual(fs.readdirSync(c.dir), ['m.safetensors']);
  });

  it('sweeps temporary files of dead processes and keeps those of live ones', () => {
    const c = checkpoint(1);
    const dead = path.join(c.dir, '.m.test.int8.safetensors.999999999.tmp');
    const live = path.join(c.dir, `.m.test.int8.safetensors.${process.ppid}.tmp`);
    fs.writeFileSync(dead, 'x');
    fs.writeFileSync(live, 'x');
    assert.deepEqual(sweepStaleTemps(cacheOf(c.dir)), [dead]);
    assert.deepEqual(temps(c.dir), [path.basename(live)]);
  });

  it('puts the cache of a hub blob under $HF_HOME/sd3-ts/int8, and others next to the file', () => {
    const env = { HF_HOME: '/h' };
    assert.equal(int8CacheFile('/h/hub/models--a--b/blobs/abc123', 'mmdit', env), '/h/sd3-ts/int8/abc123.mmdit.int8.safetensors');
    assert.equal(int8CacheFile('/data/sd3.safetensors', 'mmdit', env), '/data/sd3.mmdit.int8.safetensors');
  });

  it('a process killed while writing leaves the old cache (or none), and the next run recovers', { timeout: 120_000 }, async () => {
    const c = checkpoint(40, 256, 256);
    c.store.files[0]!.close();
    const kill = (): Promise<{ killed: boolean; out: string }> => new Promise((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO, 'test/helpers/int8-build-child.ts'), c.file], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let killed = false;
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        if (!killed && /progress 3\//.test(out)) { killed = true; child.kill('SIGKILL'); }
      });
      child.on('error', reject);
      child.on('close', () => resolve({ killed, out }));
    });
    // No cache yet: the kill leaves none under the final name, only the temporary file.
    const first = await kill();
    assert.ok(first.killed && !/done/.test(first.out), `the child was not killed mid-build: ${first.out}`);
    assert.equal(fs.existsSync(cacheOf(c.dir)), false, 'a half-written cache under the final name');
    assert.equal(temps(c.dir).length, 1, 'the killed build left no temporary file to sweep (was it mid-write?)');
    // The next run sweeps it and builds a valid cache.
    const store = new SafetensorsStore([SafetensorsFile.open(c.file)], withPrefix(''));
    await openInt8CacheAsync(store, c.names, 'test');
    assert.deepEqual(temps(c.dir), []);
    const good = fs.readFileSync(cacheOf(c.dir));
    const stampOf = () => { const f = SafetensorsFile.open(cacheOf(c.dir)); const m = f.metadata.sd3ts_int8_source; f.close(); return m; };
    const oldStamp = stampOf();
    // With a valid cache of older weights in place, a killed rebuild leaves that file untouched.
    store.files[0]!.close();
    const later = new Date(Date.now() + 5000);
    fs.utimesSync(c.file, later, later);
    const second = await kill();
    assert.ok(second.killed, second.out);
    assert.ok(fs.readFileSync(cacheOf(c.dir)).equals(good), 'the old cache was damaged by the killed rebuild');
    const again = new SafetensorsStore([SafetensorsFile.open(c.file)], withPrefix(''));
    await openInt8CacheAsync(again, c.names, 'test');
    assert.deepEqual(temps(c.dir), []);
    assert.notEqual(stampOf(), oldStamp, 'the cache of the older weights was not rebuilt');
    again.files[0]!.close();
  });
});
