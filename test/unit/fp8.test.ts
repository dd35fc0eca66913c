/** 8-bit float weights (F8_E4M3, F8_E5M2): exact decoding on the host and through the graph's Cast. */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { SafetensorsFile, writeSafetensors } from '../../src/core/safetensors.js';
import { f8e4m3fnToF32, f8e5m2ToF32, tensor, toFloat32 } from '../../src/core/tensor.js';
import { SafetensorsStore, withPrefix } from '../../src/core/weights.js';
import { GraphBuilder } from '../../src/onnx/builder.js';
import { Session } from '../../src/runtime/ort.js';

test('E4M3fn decodes the format\'s landmarks exactly', () => {
  assert.equal(f8e4m3fnToF32(0x7e), 448);
  assert.equal(f8e4m3fnToF32(0xfe), -448);
  assert.ok(Number.isNaN(f8e4m3fnToF32(0x7f)) && Number.isNaN(f8e4m3fnToF32(0xff)));
  assert.equal(f8e4m3fnToF32(0x78), 256); // e = 15, m = 0: an ordinary number (no infinities)
  assert.equal(f8e4m3fnToF32(0x01), 2 ** -9); // smallest subnormal
  assert.equal(f8e4m3fnToF32(0x08), 2 ** -6); // smallest normal
  assert.equal(f8e4m3fnToF32(0x38), 1);
  assert.ok(Object.is(f8e4m3fnToF32(0x80), -0));
});

test('E5M2 decodes as the top byte of a binary16', () => {
  assert.equal(f8e5m2ToF32(0x7b), 57344);
  assert.equal(f8e5m2ToF32(0x7c), Infinity);
  assert.equal(f8e5m2ToF32(0xfc), -Infinity);
  assert.ok(Number.isNaN(f8e5m2ToF32(0x7d)));
  assert.equal(f8e5m2ToF32(0x01), 2 ** -16);
  assert.equal(f8e5m2ToF32(0x3c), 1);
});

test('fp8 tensors round-trip through safetensors and reach the graph as the same float32 values', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sd3-fp8-'));
  try {
    const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
    const file = path.join(dir, 't5xxl_fp8_e4m3fn.safetensors');
    writeSafetensors(file, { a: tensor('float8e4m3fn', [256], bytes), b: tensor('float8e5m2', [16, 16], bytes) });
    const header = JSON.parse(fs.readFileSync(file).subarray(8, 8 + Number(fs.readFileSync(file).readBigUInt64LE(0))).toString());
    assert.equal(header.a.dtype, 'F8_E4M3');
    assert.equal(header.b.dtype, 'F8_E5M2');
    const f = SafetensorsFile.open(file);
    const store = new SafetensorsStore([f], withPrefix(''));
    try {
      for (const name of ['a', 'b']) {
        const expected = toFloat32(f.read(name)).data;
        const g = new GraphBuilder('fp8');
        const x = g.input('x', 'float32', [256]);
        g.output(g.add(x, g.reshape(g.weight(store.get(name)), [256])), 'y');
        for (const halfWeights of [false, true]) {
          const s = await Session.create('fp8', g.build(), { threads: 1, halfWeights });
          const y = (await s.run({ x: tensor('float32', [256], new Float32Array(256)) })).y!.data as Float32Array;
          await s.dispose();
          for (let i = 0; i < 256; i++) {
            const ok = Number.isNaN(expected[i]!) ? Number.isNaN(y[i]!) : y[i] === expected[i];
            assert.ok(ok, `${name}[${i}] (${halfWeights ? 'resident' : 'folded'}): graph ${y[i]}, host ${expected[i]}`);
          }
        }
      }
    } finally {
      f.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
