/**
 * The diffusers folder reader on copies of the diffusers_layout fixture (linked, not copied): the scheduler's
 * shift is read, a shard index may only name files in its own folder, oversized JSON is refused; the int8 mode's
 * cache is built through the pipeline without blocking, and an aborted build leaves nothing.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { AbortError, SD3Error } from '../../src/core/errors.js';
import { writeSafetensors } from '../../src/core/safetensors.js';
import { tensor } from '../../src/core/tensor.js';
import { MAX_JSON_BYTES, openDiffusers, shardFileNames } from '../../src/loaders/checkpoint.js';
import { SD3Backbone } from '../../src/pipelines/backbone.js';
import { REPO } from '../helpers/cli.js';

const FIXTURE = path.join(REPO, 'test', 'fixtures', 'diffusers_layout');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sd3-loaders-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
let n = 0;

/** A diffusers folder whose entries link to the fixture's, except the ones `own` writes itself. */
function layout(own: (dir: string) => void, replaced: readonly string[]): string {
  const dir = path.join(root, `d${n++}`);
  fs.mkdirSync(dir);
  for (const e of fs.readdirSync(FIXTURE)) if (!replaced.includes(e)) fs.symlinkSync(path.join(FIXTURE, e), path.join(dir, e));
  own(dir);
  return dir;
}

const rejects = (run: () => unknown, message: RegExp) => assert.throws(run, (e: unknown) => e instanceof SD3Error && message.test(e.message));

describe('diffusers folders', () => {
  it("takes the scheduler's shift from scheduler_config.json, and refuses one that is not a positive number", () => {
    const withShift = (shift: unknown) => layout((dir) => {
      fs.mkdirSync(path.join(dir, 'scheduler'));
      fs.writeFileSync(path.join(dir, 'scheduler', 'scheduler_config.json'), JSON.stringify({ shift }));
    }, ['scheduler']);
    const opened = openDiffusers(withShift(2.5));
    assert.equal(opened.weights.shift, 2.5);
    opened.weights.close?.();
    rejects(() => openDiffusers(withShift('3')), /shift must be a positive number, got "3"/);
    rejects(() => openDiffusers(withShift(-1)), /shift must be a positive number, got number -1/);
  });

  it('refuses a shard index that names a file outside its folder, before opening anything', () => {
    const dir = layout((d) => {
      fs.mkdirSync(path.join(d, 'transformer'));
      fs.copyFileSync(path.join(FIXTURE, 'transformer', 'config.json'), path.join(d, 'transformer', 'config.json'));
      writeSafetensors(path.join(root, 'outside.safetensors'), { x: tensor('float32', [1], new Float32Array(1)) });
      fs.writeFileSync(path.join(d, 'transformer', 'diffusion_pytorch_model.safetensors.index.json'),
        JSON.stringify({ weight_map: { a: 'diffusion_pytorch_model-00001.safetensors', b: '../../outside.safetensors' } }));
    }, ['transformer']);
    rejects(() => openDiffusers(dir), /weight_map\["b"\] names "\.\.\/\.\.\/outside\.safetensors"; shards must be \.safetensors files in the index's own folder/);
  });

  it('reads shard names only as plain .safetensors names', () => {
    assert.deepEqual(shardFileNames({ weight_map: { a: 'm-1.safetensors', b: 'm-2.safetensors', c: 'm-1.safetensors' } }, 'i.json'), ['m-1.safetensors', 'm-2.safetensors']);
    for (const bad of ['/etc/x.safetensors', 'a/b.safetensors', '..\\b.safetensors', 'C:\\b.safetensors', 'b.bin', '..']) {
      rejects(() => shardFileNames({ weight_map: { a: bad } }, 'i.json'), /shards must be \.safetensors files in the index's own folder/);
    }
    rejects(() => shardFileNames({ weight_map: [] }, 'i.json'), /weight_map must be an object/);
    rejects(() => shardFileNames({ weight_map: { a: 3 } }, 'i.json'), /weight_map\["a"\] must be a file name, got number 3/);
    rejects(() => shardFileNames({ weight_map: {} }, 'i.json'), /lists no shard/);
  });

  it('refuses a JSON file over MAX_JSON_BYTES without reading it', () => {
    const dir = layout((d) => {
      fs.mkdirSync(path.join(d, 'scheduler'));
      const f = path.join(d, 'scheduler', 'scheduler_config.json');
      fs.writeFileSync(f, '{}');
      fs.truncateSync(f, MAX_JSON_BYTES + 1); // sparse: no disk used
    }, ['scheduler']);
    rejects(() => openDiffusers(dir), new RegExp(`scheduler_config\\.json is ${MAX_JSON_BYTES + 1} bytes; a JSON file may be at most ${MAX_JSON_BYTES}`));
  });
});

describe('the int8 mode through the backbone', () => {
  /** The layout with its transformer copied (the int8 cache is written next to the real weight file). */
  const withOwnTransformer = () => layout((d) => {
    fs.cpSync(path.join(FIXTURE, 'transformer'), path.join(d, 'transformer'), { recursive: true });
  }, ['transformer']);

  it('builds the MMDiT cache without blocking the event loop, stops on the signal leaving nothing, then denoises', { timeout: 120_000 }, async () => {
    const dir = withOwnTransformer();
    const cacheFiles = () => fs.readdirSync(path.join(dir, 'transformer')).filter((f) => f.includes('int8') || f.endsWith('.tmp'));
    const { weights } = openDiffusers(dir);
    // One denoising step on zero conditioning of the fixture MMDiT's sizes.
    const denoise = async (backbone: SD3Backbone, signal?: AbortSignal) => {
      const c = backbone.mmditConfig;
      const shape = [1, c.inChannels, 4, 4] as const;
      const zeros = (dims: number[]) => tensor('float32', dims, new Float32Array(dims.reduce((a, b) => a * b, 1)));
      return backbone.denoise({
        shape, noise: new Float32Array(c.inChannels * 16).fill(0.5), sigmas: Float32Array.from([1, 0]), start: 0, guidanceScale: 1,
        cond: { positive: { context: zeros([1, 8, c.contextInFeatures]), y: zeros([1, c.admInChannels]) } }, ...(signal ? { signal } : {}),
      });
    };
    const backbone = new SD3Backbone(weights, { dtype: 'int8', threads: 1 });
    try {
      // Aborted while the cache is built: AbortError, no cache, no temporary file.
      await assert.rejects(denoise(backbone, AbortSignal.abort()), (e: unknown) => e instanceof AbortError);
      assert.deepEqual(cacheFiles(), []);
      let ticks = 0;
      const timer = setInterval(() => { ticks++; }, 0);
      const out = await denoise(backbone).finally(() => clearInterval(timer));
      assert.equal(out.length, backbone.mmditConfig.inChannels * 16);
      assert.ok(out.every(Number.isFinite));
      assert.deepEqual(cacheFiles(), ['diffusion_pytorch_model.mmdit.int8.safetensors']);
      assert.ok(ticks > 0, 'the event loop never ran while the int8 model loaded');
    } finally {
      await backbone.dispose();
    }
  });
});
