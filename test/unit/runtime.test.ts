import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { SafetensorsFile, writeSafetensors } from '../../src/core/safetensors.js';
import { float32ToHalf, tensor, toFloat32 } from '../../src/core/tensor.js';
import { SafetensorsStore, withPrefix } from '../../src/core/weights.js';
import { GraphBuilder } from '../../src/onnx/builder.js';
import { Session } from '../../src/runtime/ort.js';

test('external-data initializers inside a safetensors file run with the right numbers (f32 and f16 weights)', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sd3-rt-'));
  const w32 = tensor('float32', [3, 2], Float32Array.from([1, 2, 3, 4, 5, 6]));
  const w16 = float32ToHalf(tensor('float32', [3], Float32Array.from([0.5, -1.25, 2048])), 'float16');
  const b = tensor('float32', [3], Float32Array.from([0.1, 0.2, 0.3]));
  writeSafetensors(path.join(dir, 'w.safetensors'), { 'pad.x': tensor('uint8', [3], Uint8Array.from([1, 2, 3])), 'm.w': w32, 'm.b': b, 'm.s': w16 });
  const file = SafetensorsFile.open(path.join(dir, 'w.safetensors'));
  const store = new SafetensorsStore([file], withPrefix('m.'));
  const g = new GraphBuilder('test');
  const x = g.input('x', 'float32', ['B', 2]);
  const y = g.mul(g.linear(x, g.weight(store.get('w')), g.weight(store.get('b'))), g.weight(store.get('s')));
  g.output(y, 'y');
  const built = g.build();
  // the weights are referenced, not copied: the model is far smaller than the weights would be inline
  assert.ok(!Buffer.from(built.bytes).includes(Buffer.from(new Uint8Array(w32.data.buffer))));
  assert.equal(built.externalFolder, dir);
  const s = await Session.create('test', built, { threads: 1 });
  const out = await s.run({ x: tensor('float32', [2, 2], Float32Array.from([1, 1, 0.5, -2])) });
  const got = [...(out.y!.data as Float32Array)];
  const sv = [...toFloat32(w16).data];
  const expect = [
    (1 * 1 + 2 * 1 + 0.1) * sv[0]!, (3 + 4 + 0.2) * sv[1]!, (5 + 6 + 0.3) * sv[2]!,
    (0.5 - 4 + 0.1) * sv[0]!, (1.5 - 8 + 0.2) * sv[1]!, (2.5 - 12 + 0.3) * sv[2]!,
  ];
  for (let i = 0; i < 6; i++) assert.ok(Math.abs(got[i]! - expect[i]!) <= 1e-4 * Math.abs(expect[i]!), `${i}: ${got[i]} vs ${expect[i]}`);
  await s.dispose();
  file.close();
  fs.rmSync(dir, { recursive: true });
});
