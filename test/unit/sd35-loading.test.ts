/**
 * Loading SD3.5 checkpoints as users have them, on tiny files made here: the single file without text encoders
 * plus text_encoders/clip_l, clip_g and the fp8 T5 beside it; the diffusers transformer in shards with its index;
 * the variant and sampling defaults each gets (Turbo by its name).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SD3Error } from '../../src/core/errors.js';
import { SafetensorsFile, readAllSafetensors, writeSafetensors } from '../../src/core/safetensors.js';
import { type Tensor, f32ToBf16, numel, tensor, toFloat32 } from '../../src/core/tensor.js';
import { MemoryStore, SafetensorsStore, readWeightFloat32 } from '../../src/core/weights.js';
import { prefixTable } from '../../src/formats/single-file.js';
import { openCheckpoint } from '../../src/loaders/checkpoint.js';
import { MMDiT } from '../../src/models/mmdit.js';
import { T5Encoder } from '../../src/models/t5.js';
import { SD3Backbone } from '../../src/pipelines/backbone.js';
import { type LayoutEntry, clipLayout, mmditLayout, vaeLayout } from '../../src/presets/layout.js';
import { gaussian } from '../../src/sampler/noise.js';

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
let dir: string;

/** Random tensors of a layout in one dtype; 8-bit floats are cast from float32 by nearest E4M3 code. */
function tensors(entries: readonly LayoutEntry[], dtype: 'bfloat16' | 'float8e4m3fn' | 'float32', seed: number): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  entries.forEach((e, k) => {
    const n = numel(e.shape);
    if (dtype === 'float8e4m3fn' && n >= 4096) {
      // Large tensors (the CLIPs, only loaded here): codes below 2 in magnitude, without drawing normals.
      out[e.name] = tensor('float8e4m3fn', e.shape, Uint8Array.from({ length: n }, (_, i) => (Math.imul(i + seed, 2654435761) >>> 24) & 0xbf));
      return;
    }
    const g = gaussian(n, seed + k);
    for (let i = 0; i < n; i++) g[i] = (e.init.mean ?? 0) + e.init.std * g[i]!;
    if (dtype === 'float32') out[e.name] = tensor('float32', e.shape, g);
    else if (dtype === 'bfloat16') out[e.name] = tensor('bfloat16', e.shape, Uint16Array.from(g, f32ToBf16));
    else out[e.name] = tensor('float8e4m3fn', e.shape, Uint8Array.from(g, (v) => nearestE4M3(v)));
  });
  return out;
}

const E4M3 = toFloat32(tensor('float8e4m3fn', [256], Uint8Array.from({ length: 256 }, (_, i) => i))).data;
function nearestE4M3(v: number): number {
  let best = 0;
  for (let b = 0; b < 256; b++) if (Number.isFinite(E4M3[b]!) && Math.abs(E4M3[b]! - v) < Math.abs(E4M3[best]! - v)) best = b;
  return best;
}

/** A tiny T5 encoder (HF names, as t5xxl_fp8_e4m3fn.safetensors): d_model 16, 2 heads of 8, 1 block. */
function t5Entries(): LayoutEntry[] {
  const d = 16;
  const w = (name: string, shape: number[], std = 0.3, mean = 0): LayoutEntry => ({ name, shape, init: { std, mean } });
  const p = 'encoder.block.0.layer';
  return [
    w('shared.weight', [64, d], 1), w(`${p}.0.SelfAttention.q.weight`, [d, d]), w(`${p}.0.SelfAttention.k.weight`, [d, d]),
    w(`${p}.0.SelfAttention.v.weight`, [d, d]), w(`${p}.0.SelfAttention.o.weight`, [d, d]),
    w(`${p}.0.SelfAttention.relative_attention_bias.weight`, [32, 2]), w(`${p}.0.layer_norm.weight`, [d], 0.1, 1),
    w(`${p}.1.DenseReluDense.wi_0.weight`, [24, d]), w(`${p}.1.DenseReluDense.wi_1.weight`, [24, d]), w(`${p}.1.DenseReluDense.wo.weight`, [d, 24]),
    w(`${p}.1.layer_norm.weight`, [d], 0.1, 1), w('encoder.final_layer_norm.weight', [d], 0.1, 1),
  ];
}

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sd35-load-'));
  const vae = vaeLayout('first_stage_model.', { channels: [32, 32], resBlocks: 1 });
  const medium = mmditLayout('model.diffusion_model.', { depth: 2, posEmbedMaxSize: 8, adm: 2048, contextIn: 4096, qkNorm: true, dual: [0] });
  const large = mmditLayout('model.diffusion_model.', { depth: 2, posEmbedMaxSize: 8, adm: 2048, contextIn: 4096, qkNorm: true });
  // The SD3.5 single files: MMDiT + VAE in bf16, no text encoders.
  writeSafetensors(path.join(dir, 'sd3.5_medium.safetensors'), tensors([...medium, ...vae], 'bfloat16', 1));
  writeSafetensors(path.join(dir, 'sd3.5_large_turbo.safetensors'), tensors([...large, ...vae], 'bfloat16', 2));
  fs.mkdirSync(path.join(dir, 'text_encoders'));
  // Standalone CLIPs are recognised by their widths (768, 1280); one layer and a tiny vocabulary keep them small.
  writeSafetensors(path.join(dir, 'text_encoders', 'clip_l.safetensors'), tensors(clipLayout('', 768, 1, false, 64), 'float8e4m3fn', 3));
  writeSafetensors(path.join(dir, 'text_encoders', 'clip_g.safetensors'), tensors(clipLayout('', 1280, 1, true, 64), 'float8e4m3fn', 4));
  writeSafetensors(path.join(dir, 'text_encoders', 't5xxl_fp8_e4m3fn.safetensors'), tensors(t5Entries(), 'float8e4m3fn', 5));
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('an SD3.5 single file loads with text_encoders/ beside it, fp8 T5 included, and gets its variant and defaults', async () => {
  const { weights } = openCheckpoint(path.join(dir, 'sd3.5_medium.safetensors'));
  // T5 through the loader needs its tokenizer too (tokenizer_3/ of the diffusers folders); its weights alone here.
  const t5File = SafetensorsFile.open(path.join(dir, 'text_encoders', 't5xxl_fp8_e4m3fn.safetensors'));
  const t5 = new SafetensorsStore([t5File], prefixTable('t5', ''));
  try {
    assert.match(weights.clipL.label, /text_encoders\/clip_l\.safetensors$/);
    assert.match(weights.clipG.label, /text_encoders\/clip_g\.safetensors$/);
    assert.equal(t5.get('encoder.block.0.layer.0.SelfAttention.q.weight').dtype, 'float8e4m3fn');
    const backbone = new SD3Backbone(weights, { threads: 1 });
    assert.equal(backbone.variant, 'sd3.5_medium');
    assert.deepEqual(backbone.mmditConfig.dualAttentionLayers, [0]);
    assert.deepEqual({ ...backbone.sampling, source: undefined }, { numSteps: 40, guidanceScale: 4.5, sampler: 'euler', source: undefined });
    // The bf16 MMDiT-X runs; the fp8 T5 gives exactly what the same weights widened to float32 give.
    const mmdit = await MMDiT.load(weights.mmdit, { threads: 1 });
    const v = await mmdit.forward(tensor('float32', [1, 16, 4, 6], new Float32Array(384).fill(0.5)), tensor('float32', [1], Float32Array.of(500)),
      tensor('float32', [1, 2048], new Float32Array(2048).fill(0.1)), tensor('float32', [1, 3, 4096], new Float32Array(3 * 4096).fill(0.1)));
    await mmdit.dispose();
    assert.ok(v.data.every(Number.isFinite));
    const ids = tensor('int64', [1, 5], BigInt64Array.from([3n, 9n, 27n, 1n, 0n]));
    const fp8 = await T5Encoder.load(t5, { numHeads: 2 }, { threads: 1 });
    const widened = new MemoryStore(new Map(t5Entries().map((e) => [e.name === 'shared.weight' ? 'encoder.embed_tokens.weight' : e.name, tensor('float32', e.shape, readWeightFloat32(t5.get(e.name === 'shared.weight' ? 'encoder.embed_tokens.weight' : e.name)))])));
    const f32 = await T5Encoder.load(widened, { numHeads: 2 }, { threads: 1 });
    try {
      assert.deepEqual((await fp8.encode(ids)).data, (await f32.encode(ids)).data);
    } finally {
      await fp8.dispose();
      await f32.dispose();
    }
  } finally {
    weights.close?.();
    t5File.close();
  }
});

test('Large Turbo is told from Large by its name and defaults to few steps without guidance', () => {
  const { weights } = openCheckpoint(path.join(dir, 'sd3.5_large_turbo.safetensors'));
  try {
    const backbone = new SD3Backbone(weights, { threads: 1 });
    assert.equal(backbone.variant, 'sd3.5_large');
    assert.equal(backbone.sampling.numSteps, 4);
    assert.equal(backbone.sampling.guidanceScale, 1);
  } finally {
    weights.close?.();
  }
});

test('a missing clip_g is refused with the file it looked for', () => {
  const lone = fs.mkdtempSync(path.join(os.tmpdir(), 'sd35-lone-'));
  try {
    fs.copyFileSync(path.join(dir, 'sd3.5_medium.safetensors'), path.join(lone, 'sd3.5_medium.safetensors'));
    fs.mkdirSync(path.join(lone, 'text_encoders'));
    fs.copyFileSync(path.join(dir, 'text_encoders', 'clip_l.safetensors'), path.join(lone, 'text_encoders', 'clip_l.safetensors'));
    assert.throws(() => openCheckpoint(path.join(lone, 'sd3.5_medium.safetensors')), (e: Error) => e instanceof SD3Error && /no CLIP-G .* clip_g\.safetensors/.test(e.message));
  } finally {
    fs.rmSync(lone, { recursive: true, force: true });
  }
});

test('the diffusers transformer in two shards with its index reproduces the 3.5 Large goldens', async () => {
  const src = path.join(fixtures, 'diffusers_layout_sd35l');
  const copy = path.join(dir, 'diffusers');
  fs.cpSync(src, copy, { recursive: true });
  const tdir = path.join(copy, 'transformer');
  const whole = path.join(tdir, 'diffusion_pytorch_model.safetensors');
  const { tensors: all } = readAllSafetensors(whole);
  fs.rmSync(whole);
  const keys = Object.keys(all);
  const shards = [keys.slice(0, keys.length / 2 | 0), keys.slice(keys.length / 2 | 0)];
  const weightMap: Record<string, string> = {};
  shards.forEach((ks, i) => {
    const name = `diffusion_pytorch_model-0000${i + 1}-of-00002.safetensors`;
    writeSafetensors(path.join(tdir, name), Object.fromEntries(ks.map((k) => [k, all[k]!])));
    for (const k of ks) weightMap[k] = name;
  });
  fs.writeFileSync(path.join(tdir, 'diffusion_pytorch_model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  const { weights } = openCheckpoint(copy);
  try {
    const mmdit = await MMDiT.load(weights.mmdit, { threads: 1 });
    try {
      const c = readAllSafetensors(path.join(fixtures, 'mmdit_sd35l', 'cases', 'nonsquare_6x10_b2.safetensors')).tensors;
      const v = await mmdit.forward(c['input.x']!, c['input.t']!, c['input.y']!, c['input.context']!);
      const e = c['output.model_output']!.data as Float32Array;
      let maxAbs = 0;
      let maxDiff = 0;
      e.forEach((x, i) => { maxAbs = Math.max(maxAbs, Math.abs(x)); maxDiff = Math.max(maxDiff, Math.abs(v.data[i]! - x)); });
      assert.ok(maxDiff <= 1e-6 + 1e-5 * maxAbs, `max diff ${maxDiff} (largest ${maxAbs})`);
    } finally {
      await mmdit.dispose();
    }
  } finally {
    weights.close?.();
  }
});

test('a diffusers transformer/config.json that disagrees with the keys is refused, naming the config key', () => {
  const copy = path.join(dir, 'diffusers-bad');
  fs.cpSync(path.join(fixtures, 'diffusers_layout_sd35m'), copy, { recursive: true });
  const cfgFile = path.join(copy, 'transformer', 'config.json');
  const cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8'));
  fs.writeFileSync(cfgFile, JSON.stringify({ ...cfg, dual_attention_layers: [] }));
  assert.throws(() => openCheckpoint(copy), (e: Error) => e instanceof SD3Error && /"dual_attention_layers" is \[\] but the weights are a sd3\.5_medium-style MMDiT .*\[0\]/.test(e.message));
  fs.writeFileSync(cfgFile, JSON.stringify({ ...cfg, qk_norm: null }));
  assert.throws(() => openCheckpoint(copy), /"qk_norm" is null/);
});
