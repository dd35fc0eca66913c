import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { SafetensorsFile, writeSafetensors } from '../../src/core/safetensors.js';
import { float32ToHalf, tensor } from '../../src/core/tensor.js';
import { SafetensorsStore, withPrefix } from '../../src/core/weights.js';
import { linear } from '../../src/nn/layers.js';
import { GraphBuilder } from '../../src/onnx/builder.js';
import { LinearRecorder, openInt8Cache, quantizePerChannel } from '../../src/quant/int8.js';
import { gaussian } from '../../src/sampler/noise.js';
import { Session } from '../../src/runtime/ort.js';

test('per-channel quantization reconstructs each row within half a step', () => {
  const w = gaussian(6 * 5, 3);
  const { q, scale } = quantizePerChannel(w, 6, 5);
  for (let o = 0; o < 6; o++) for (let i = 0; i < 5; i++) {
    assert.ok(Math.abs(q[i * 6 + o]! * scale[o]! - w[o * 5 + i]!) <= scale[o]! / 2 + 1e-7);
  }
});

test('int8 Linear through the cache file matches float32 within int8 error, and the cache is reused/invalidated', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sd3-q-'));
  const file = path.join(dir, 'm.safetensors');
  const [out, inp] = [48, 64];
  const w = Float32Array.from(gaussian(out * inp, 1), (v) => v / 8);
  writeSafetensors(file, { 'fc.weight': float32ToHalf(tensor('float32', [out, inp], w), 'float16'), 'fc.bias': tensor('float32', [out], gaussian(out, 2)) });
  const store = new SafetensorsStore([SafetensorsFile.open(file)], withPrefix(''));
  const build = (quant?: ReturnType<typeof openInt8Cache>) => {
    const g = new GraphBuilder('fc');
    g.output(linear({ g, w: store, ...(quant ? { quant } : {}) }, 'fc', g.input('x', 'float32', ['B', inp])), 'y');
    return g.build();
  };
  const rec = new LinearRecorder();
  { const g = new GraphBuilder('rec'); linear({ g, w: store, quant: rec }, 'fc', g.input('x', 'float32', [1, inp])); }
  assert.deepEqual(rec.names, ['fc.weight']);
  const quant = openInt8Cache(store, rec.names, 'test');
  const cacheFile = path.join(dir, 'm.test.int8.safetensors');
  assert.ok(fs.existsSync(cacheFile));
  const mtime = fs.statSync(cacheFile).mtimeMs;
  openInt8Cache(store, rec.names, 'test');
  assert.equal(fs.statSync(cacheFile).mtimeMs, mtime, 'reused, not rebuilt');
  const x = tensor('float32', [4, inp], gaussian(4 * inp, 5));
  const run = async (m: ReturnType<typeof build>) => {
    const s = await Session.create('fc', m, { threads: 1 });
    const y = (await s.run({ x })).y!.data as Float32Array;
    await s.dispose();
    return y;
  };
  const ref = await run(build());
  const q8 = await run(build(quant));
  let err = 0, norm = 0;
  for (let i = 0; i < ref.length; i++) { err += (ref[i]! - q8[i]!) ** 2; norm += ref[i]! ** 2; }
  const rel = Math.sqrt(err / norm);
  // weights and activations both quantized: ~1.5% at real sizes, a few % at this tiny K (a wrong layout gives ~100%)
  assert.ok(rel < 0.06 && rel > 0, `relative RMS error ${rel}`);
  // touching the checkpoint invalidates the cache
  const later = new Date(Date.now() + 5000);
  fs.utimesSync(file, later, later);
  openInt8Cache(store, rec.names, 'test');
  assert.notEqual(fs.statSync(cacheFile).mtimeMs, mtime, 'rebuilt after the checkpoint changed');
  fs.rmSync(dir, { recursive: true });
});
