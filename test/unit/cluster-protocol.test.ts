/** What front ends and workers agree on: Redis URLs, queue names, job specs (with images) on the wire, result files. */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { readResults, storeResults, sweepResults } from '../../src/cluster/results.js';
import { queueName, redisOptions, specFromWire, specToWire } from '../../src/cluster/protocol.js';
import { RGBImage } from '../../src/image/image.js';
import { SD3Error } from '../../src/core/errors.js';

describe('cluster protocol', () => {
  it('reads redis:// URLs (host, port, credentials, database, TLS) and refuses others in words', () => {
    assert.deepEqual(redisOptions('redis://127.0.0.1:6380'), { host: '127.0.0.1', port: 6380 });
    assert.deepEqual(redisOptions('redis://redis'), { host: 'redis', port: 6379 });
    assert.deepEqual(redisOptions('rediss://me:p%40ss@cache.local:7000/2'), { host: 'cache.local', port: 7000, username: 'me', password: 'p@ss', db: 2, tls: {} });
    assert.deepEqual(redisOptions('redis://[::1]:6379'), { host: '::1', port: 6379 });
    assert.throws(() => redisOptions('http://127.0.0.1:6379'), (e: Error) => e instanceof SD3Error && /must start with redis:\/\/ or rediss:\/\/, got "http/.test(e.message));
    assert.throws(() => redisOptions('127.0.0.1:6379'), /--redis must be a URL like redis:\/\/127\.0\.0\.1:6379/);
    assert.throws(() => redisOptions('not a url'), /--redis must be a URL like redis:\/\/127\.0\.0\.1:6379, got "not a url"/);
    assert.throws(() => redisOptions('redis://h:1/x'), /database in --redis must be a number/);
  });

  it('one BullMQ queue per model, named with the characters BullMQ allows', () => {
    assert.equal(queueName('tiny-random'), 'sd3-tiny-random');
    assert.equal(queueName('stabilityai/stable-diffusion-3-medium:fp16'), 'sd3-stabilityai_stable-diffusion-3-medium_fp16');
    assert.notEqual(queueName('a'), queueName('b'));
  });

  it('a spec with an image and a mask survives the trip through JSON unchanged', () => {
    const image = new RGBImage(2, 1, Uint8Array.from([1, 2, 3, 250, 251, 252]));
    const mask = new RGBImage(2, 1, Uint8Array.from([255, 255, 255, 0, 0, 0]));
    const spec = { prompt: 'p', negativePrompt: 'n', width: 16, height: 16, steps: 3, cfgScale: 7, seed: 4, batch: 1, image, mask, strength: 0.5 };
    const back = specFromWire(JSON.parse(JSON.stringify(specToWire(spec))));
    assert.deepEqual({ ...back, image: undefined, mask: undefined }, { ...spec, image: undefined, mask: undefined });
    assert.deepEqual([...back.image!.data], [...image.data]);
    assert.deepEqual([...back.mask!.data], [...mask.data]);
    assert.equal(back.image!.width, 2);
    const plain = specFromWire(JSON.parse(JSON.stringify(specToWire({ ...spec, image: undefined, mask: undefined }))));
    assert.equal(plain.image, undefined);
  });
});

describe('cluster results on a shared disk (--results-dir)', () => {
  it('a job\'s images appear together under DIR/<id>, read back as written, swept after their TTL', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sd3-results-unit-'));
    try {
      const id = '0b6c2a8e-1111-4222-8333-944445555666';
      const noRedis = {} as Redis;
      await storeResults(noRedis, dir, id, [Buffer.from('png0'), Buffer.from('png1')], 3600);
      assert.deepEqual(fs.readdirSync(dir), [id]);
      const back = await readResults(noRedis, dir, id, 3);
      assert.deepEqual(back.map((b) => b?.toString() ?? null), ['png0', 'png1', null]);
      // Stored again (a job rerun after its worker was taken for dead): replaced, not mixed.
      await storeResults(noRedis, dir, id, [Buffer.from('again')], 3600);
      assert.deepEqual(fs.readdirSync(path.join(dir, id)), ['0.png']);
      // Ids that are not job ids never become paths.
      assert.deepEqual(await readResults(noRedis, dir, '../etc', 1), [null]);
      await assert.rejects(storeResults(noRedis, dir, '../x', [Buffer.from('x')], 1), /is not a job id/);
      await sweepResults(dir, 3600);
      assert.deepEqual(fs.readdirSync(dir), [id]);
      const old = new Date(Date.now() - 7200_000);
      fs.utimesSync(path.join(dir, id), old, old);
      await sweepResults(dir, 3600);
      assert.deepEqual(fs.readdirSync(dir), []);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
