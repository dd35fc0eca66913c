import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { SafetensorsFile } from '../../src/core/safetensors.js';
import { type RenameTable, SafetensorsStore, type WeightRef } from '../../src/core/weights.js';
import { diffusersCLIP, diffusersT5, diffusersTransformer, diffusersVAE } from '../../src/formats/diffusers.js';
import { SINGLE_FILE_PREFIX, prefixTable } from '../../src/formats/single-file.js';

const fixtures = new URL('../fixtures/', import.meta.url).pathname;

function bytesOf(ref: WeightRef): Buffer {
  return Buffer.concat((ref.chunks ?? []).map((c) => {
    const fd = fs.openSync(c.file, 'r');
    const b = Buffer.alloc(c.length);
    fs.readSync(fd, b, 0, c.length, c.offset);
    fs.closeSync(fd);
    return b;
  }));
}

const cases: [string, string, keyof typeof SINGLE_FILE_PREFIX, string, RenameTable][] = [
  ['mmdit', 'mmdit/weights.safetensors', 'mmdit', 'transformer/diffusion_pytorch_model.safetensors', diffusersTransformer],
  ['vae', 'vae/weights.safetensors', 'vae', 'vae/diffusion_pytorch_model.safetensors', diffusersVAE],
  ['clip_g', 'clip_g/weights.safetensors', 'clipG', 'text_encoder_2/model.safetensors', diffusersCLIP],
  ['clip_l', 'clip_l/weights.safetensors', 'clipL', 'text_encoder/model.safetensors', diffusersCLIP],
  ['t5', 't5xxl/weights.safetensors', 't5', 'text_encoder_3/model.safetensors', diffusersT5],
];

for (const [label, single, comp, diff, table] of cases) {
  test(`diffusers rename table for ${label} yields the single file's bytes and shapes for every tensor`, () => {
    const a = SafetensorsFile.open(path.join(fixtures, single));
    const b = SafetensorsFile.open(path.join(fixtures, 'diffusers_layout', diff));
    const prefix = SINGLE_FILE_PREFIX[comp];
    const sf = new SafetensorsStore([a], prefixTable(comp));
    const df = new SafetensorsStore([b], table);
    let n = 0;
    for (const key of a.keys()) {
      const name = key.slice(prefix.length);
      if (comp === 'clipL' && name === 'text_projection.weight') continue; // diffusers replaced it by the identity
      const x = sf.get(name);
      const y = df.get(name);
      assert.deepEqual(y.shape, x.shape, name);
      assert.ok(bytesOf(x).equals(bytesOf(y)), `${name}: bytes differ`);
      n++;
    }
    assert.ok(n >= a.keys().length - 1);
    a.close();
    b.close();
  });
}
