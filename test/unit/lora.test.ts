/**
 * LoRA beyond the parity fixtures: the rename tables, refusals and ignored keys on hand-made files, switching on
 * a loaded backbone (tiny-random) without reloading, int8 with branches on top of an untouched base cache, and
 * `<lora:NAME:SCALE>` tags resolved inside a folder that no name may leave.
 */
import { generationParameters } from '../../src/pipelines/infotext.js';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SD3Error } from '../../src/core/errors.js';
import { SafetensorsFile, readAllSafetensors, writeSafetensors } from '../../src/core/safetensors.js';
import { type Tensor, tensor } from '../../src/core/tensor.js';
import { SafetensorsStore, withPrefix } from '../../src/core/weights.js';
import { formatTables, loraFeeds, mmditLoraTargets, parseLoraTags, promptLoras, readLoraFile, resolveLoraName } from '../../src/lora/index.js';
import { MMDiT } from '../../src/models/mmdit.js';
import { mmditInt8LinearNames } from '../../src/pipelines/backbone.js';
import { TextToImage } from '../../src/presets/tasks.js';
import { openInt8Cache } from '../../src/quant/int8.js';
import { TINY_OPTIONS, assertDifferentPixels, assertSamePixels } from '../helpers/tiny.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const FIX = path.join(here, '..', 'fixtures');
const LORAS = path.join(FIX, 'lora', 'loras');
/** Attention-only PEFT file: fits the tiny-random MMDiT (hidden 128, depth 2). */
const PEFT_ATTN = path.join(LORAS, 'peft_trainer_meta_f16.safetensors');

let tmp: string;
let base: SafetensorsFile;
let store: SafetensorsStore;
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd3-lora-test-'));
  base = SafetensorsFile.open(path.join(FIX, 'mmdit', 'weights.safetensors'));
  store = new SafetensorsStore([base], withPrefix('model.diffusion_model.'));
});
after(() => {
  base.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const f32 = (shape: number[], fill: (i: number) => number): Tensor => tensor('float32', shape, Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => fill(i)));
function writeLora(name: string, tensors: Record<string, Tensor>, metadata?: Record<string, string>): string {
  const file = path.join(tmp, name);
  writeSafetensors(file, tensors, metadata);
  return file;
}

describe('rename tables from the model\'s own weight names', () => {
  it('maps kohya names that cannot be split on "_" and the diffusers split q/k/v and swapped halves', () => {
    const targets = mmditLoraTargets(store);
    const [kohya, diffusers, comfy] = formatTables(targets);
    assert.deepEqual(kohya!.lookup.get('lora_unet_joint_blocks_0_x_block_adaLN_modulation_1'), { weight: 'joint_blocks.0.x_block.adaLN_modulation.1.weight' });
    assert.deepEqual(comfy!.lookup.get('diffusion_model.final_layer.linear'), { weight: 'final_layer.linear.weight' });
    assert.deepEqual(diffusers!.lookup.get('transformer.transformer_blocks.1.attn.add_k_proj'), { weight: 'joint_blocks.1.context_block.attn.qkv.weight', rows: [128, 256] });
    const swapped = [...diffusers!.lookup].filter(([, t]) => t.swapHalves).map(([k]) => k).sort();
    assert.deepEqual(swapped, ['transformer.norm_out.linear', 'transformer.transformer_blocks.1.norm1_context.linear']);
    assert.equal(targets.byName.has('x_embedder.proj.weight'), true);
  });
});

describe('refusals and ignored keys', () => {
  const targets = () => mmditLoraTargets(store);
  it('counts text-encoder keys as ignored and applies the rest', () => {
    const file = writeLora('mixed.safetensors', {
      'lora_unet_joint_blocks_0_x_block_attn_proj.lora_down.weight': f32([2, 128], (i) => Math.sin(i)),
      'lora_unet_joint_blocks_0_x_block_attn_proj.lora_up.weight': f32([128, 2], (i) => Math.cos(i)),
      'lora_unet_joint_blocks_0_x_block_attn_proj.alpha': f32([], () => 1),
      'lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight': f32([2, 4], () => 1),
      'lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight': f32([4, 2], () => 1),
    });
    const lora = readLoraFile(file, targets());
    assert.equal(lora.modules.length, 1);
    assert.equal(lora.modules[0]!.alphaScale, 0.5);
    assert.equal(lora.ignoredKeys.length, 2);
  });
  it('refuses a text-encoder-only file, naming its keys', () => {
    const file = writeLora('te.safetensors', { 'lora_te2_x.lora_down.weight': f32([1, 4], () => 1), 'lora_te2_x.lora_up.weight': f32([4, 1], () => 1) });
    assert.throws(() => readLoraFile(file, targets()), (e: Error) => e instanceof SD3Error && /lora_te2_x/.test(e.message) && /text-encoder/.test(e.message));
  });
  it('refuses a missing half, a layer the model lacks, and LyCORIS keys', () => {
    const half = writeLora('half.safetensors', { 'diffusion_model.joint_blocks.0.x_block.mlp.fc1.lora_down.weight': f32([2, 128], () => 0.1) });
    assert.throws(() => readLoraFile(half, targets()), /joint_blocks\.0\.x_block\.mlp\.fc1.*missing/);
    const extra = writeLora('extra.safetensors', {
      'lora_unet_joint_blocks_0_x_block_attn_proj.lora_down.weight': f32([2, 128], () => 0.1),
      'lora_unet_joint_blocks_0_x_block_attn_proj.lora_up.weight': f32([128, 2], () => 0.1),
      'lora_unet_joint_blocks_7_x_block_attn_proj.lora_down.weight': f32([2, 128], () => 0.1),
      'lora_unet_joint_blocks_7_x_block_attn_proj.lora_up.weight': f32([128, 2], () => 0.1),
    });
    assert.throws(() => readLoraFile(extra, targets()), /lora_unet_joint_blocks_7_x_block_attn_proj/);
    const loha = writeLora('loha.safetensors', { 'lora_unet_joint_blocks_0_x_block_attn_proj.hada_w1_a': f32([2, 2], () => 1) });
    assert.throws(() => readLoraFile(loha, targets()), /hada_w1_a/);
  });
  it('takes the diffusers scale from lora_adapter_metadata (alpha / r), else 1', () => {
    const t = {
      'transformer.transformer_blocks.0.attn.to_q.lora_A.weight': f32([4, 128], () => 0.01),
      'transformer.transformer_blocks.0.attn.to_q.lora_B.weight': f32([128, 4], () => 0.01),
    };
    const withMeta = writeLora('meta.safetensors', t, { lora_adapter_metadata: JSON.stringify({ 'transformer.r': 4, 'transformer.lora_alpha': 8 }) });
    assert.equal(readLoraFile(withMeta, targets()).modules[0]!.alphaScale, 2);
    assert.equal(readLoraFile(writeLora('nometa.safetensors', t), targets()).modules[0]!.alphaScale, 1);
  });
});

describe('branch feeds', () => {
  it('stack several LoRAs along the rank with their scales, and rank-1 zeros where nothing applies', () => {
    const targets = mmditLoraTargets(store);
    const lora = readLoraFile(PEFT_ATTN, targets);
    const qkv = 'joint_blocks.0.x_block.attn.qkv.weight';
    const feeds = loraFeeds(targets, [qkv, 'final_layer.linear.weight'], [{ file: lora, scale: 1 }, { file: lora, scale: -1 }]);
    assert.deepEqual(feeds[`lora:${qkv}:down`]!.shape, [128, 24]); // to_q, to_k, to_v at rank 4, twice
    assert.deepEqual(feeds['lora:final_layer.linear.weight:up']!.shape, [1, 64]);
    assert.ok((feeds['lora:final_layer.linear.weight:up']!.data as Float32Array).every((v) => v === 0));
  });
});

describe('switching LoRAs on a loaded backbone', () => {
  it('changes the image, switches back exactly, and keeps the previous set when a file is refused', async () => {
    const plain = await TextToImage.fromPreset('tiny-random', TINY_OPTIONS);
    const t2i = await TextToImage.fromPreset('tiny-random', { ...TINY_OPTIONS, loras: [{ path: PEFT_ATTN, scale: 0.8 }] });
    const none = await TextToImage.fromPreset('tiny-random', { ...TINY_OPTIONS, loras: [] });
    try {
      // No LoRA yet: the plain graph, no branch at all.
      assert.equal((await (none.backbone as unknown as { mmdit: { get(): Promise<MMDiT> } }).mmdit.get()).loraSlots.size, 0);
      const opts = { numSteps: 2, seed: 3 };
      const reference = await plain.generate('a lighthouse', opts);
      const withLora = await t2i.generate('a lighthouse', opts);
      assertDifferentPixels(withLora, reference, 'LoRA at 0.8 vs none');
      assert.deepEqual(generationParameters(withLora)!.loras, [{ file: 'peft_trainer_meta_f16.safetensors', scale: 0.8 }]);
      await t2i.backbone.setLoras([]);
      // Zero branches add exact zeros: the branch graph gives the plain graph's numbers.
      assertSamePixels(await t2i.generate('a lighthouse', opts), reference, 'no LoRA after switching');
      await t2i.backbone.setLoras([{ path: PEFT_ATTN, scale: 0.8 }]);
      assertSamePixels(await t2i.generate('a lighthouse', opts), withLora, 'LoRA again');
      await assert.rejects(t2i.backbone.setLoras([{ path: path.join(LORAS, 'neg_rank_mismatch.safetensors') }]), SD3Error);
      assert.equal(t2i.backbone.loras.length, 1);
      assertSamePixels(await t2i.generate('a lighthouse', opts), withLora, 'after a refused set');
      await assert.rejects(t2i.backbone.setLoras([{ path: PEFT_ATTN, scale: Number.NaN }]), /scale/);
      // A scale or set switch over weights that already have branches keeps the loaded MMDiT (no reload).
      const loaded = () => (t2i.backbone as unknown as { mmdit: { get(): Promise<MMDiT> } }).mmdit.get();
      const before = await loaded();
      await t2i.backbone.setLoras([{ path: PEFT_ATTN, scale: -0.3 }]);
      await t2i.backbone.setLoras([]);
      assert.equal(await loaded(), before, 'same MMDiT session after switching');
      assert.ok(before.loraSlots.size > 0 && before.loraSlots.size < 25, 'branches only on the weights the LoRA changes');
    } finally {
      await plain.dispose();
      await none.dispose();
      await t2i.dispose();
    }
  });
});

describe('int8 with LoRA branches', () => {
  it('leaves the base int8 cache as it is and moves the output by the LoRA effect', async () => {
    const dir = path.join(FIX, 'lora');
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    const c = config.cases.find((x: { name: string }) => x.name === 'kohya_s1p0');
    const t = readAllSafetensors(path.join(dir, c.file)).tensors;
    // The cache sits beside the checkpoint (one external-data folder per model): work on a copy.
    const copy = path.join(tmp, 'weights.safetensors');
    fs.copyFileSync(path.join(FIX, 'mmdit', 'weights.safetensors'), copy);
    const file = SafetensorsFile.open(copy);
    const store = new SafetensorsStore([file], withPrefix('model.diffusion_model.'));
    const cacheFile = path.join(tmp, 'mmdit.int8.safetensors');
    const quant = openInt8Cache(store, mmditInt8LinearNames(store), 'mmdit', { file: cacheFile });
    const hash = () => crypto.createHash('sha256').update(fs.readFileSync(cacheFile)).digest('hex');
    const before = hash();
    const targets = mmditLoraTargets(store);
    const slots = new Set(targets.byName.keys());
    const model = await MMDiT.load(store, { threads: 1, quant, loraSlots: slots });
    try {
      const run = () => model.forward(t['input.x']!, t['input.t']!, t['input.y']!, t['input.context']!);
      model.setBranchFeeds(loraFeeds(targets, slots, []));
      const b = (await run()).data;
      model.setBranchFeeds(loraFeeds(targets, slots, [{ file: readLoraFile(path.join(dir, c.loras[0].file), targets), scale: 1 }]));
      const l = (await run()).data;
      const eb = t['debug.base_model_output']!.data as Float32Array;
      const el = t['output.model_output']!.data as Float32Array;
      let num = 0;
      let den = 0;
      for (let i = 0; i < el.length; i++) { num += ((l[i]! - b[i]!) - (el[i]! - eb[i]!)) ** 2; den += (el[i]! - eb[i]!) ** 2; }
      const rel = Math.sqrt(num / den);
      assert.ok(rel < 0.1, `int8 LoRA effect is ${(rel * 100).toFixed(1)}% from float32's (relative RMS)`);
    } finally {
      await model.dispose();
      file.close();
    }
    assert.equal(hash(), before, 'the int8 cache was not rewritten');
  });
});

describe('<lora:NAME:SCALE> tags', () => {
  it('are parsed out of the prompt', () => {
    assert.deepEqual(parseLoraTags('a cat <lora:style:0.8> in a hat <lora:other>'), { prompt: 'a cat in a hat', loras: [{ name: 'style', scale: 0.8 }, { name: 'other', scale: 1 }] });
    assert.throws(() => parseLoraTags('<lora:x:abc>'), SD3Error);
  });
  it('resolve inside the folder and never outside it', () => {
    const dir = path.join(tmp, 'loras');
    fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'style.safetensors'), 'x');
    fs.writeFileSync(path.join(dir, 'sub', 'deep.safetensors'), 'x');
    fs.writeFileSync(path.join(tmp, 'secret.safetensors'), 'x');
    fs.symlinkSync(path.join(tmp, 'secret.safetensors'), path.join(dir, 'link.safetensors'));
    fs.symlinkSync(tmp, path.join(dir, 'up'));
    const real = fs.realpathSync(dir);
    assert.equal(resolveLoraName(dir, 'style'), path.join(real, 'style.safetensors'));
    assert.equal(resolveLoraName(dir, 'style.safetensors'), path.join(real, 'style.safetensors'));
    assert.equal(resolveLoraName(dir, 'sub/deep'), path.join(real, 'sub', 'deep.safetensors'));
    assert.deepEqual(promptLoras('a <lora:sub/deep:0.3> cat', dir), { prompt: 'a cat', loras: [{ path: path.join(real, 'sub', 'deep.safetensors'), scale: 0.3 }] });
    assert.throws(() => promptLoras('a <lora:../secret> cat', dir), /outside|\.\./);
    for (const bad of ['../secret', 'sub/../../secret', '/etc/passwd', path.join(tmp, 'secret'), 'style\0', 'C:\\x', 'a\\..\\b', 'link', 'up/secret', '', 'missing', './style']) {
      assert.throws(() => resolveLoraName(dir, bad), SD3Error, `name ${JSON.stringify(bad)}`);
    }
  });
});

describe('sd3 generate --lora', () => {
  it('parses FILE[:SCALE]', async () => {
    const { loraArg } = await import('../../src/cli/args.js');
    assert.deepEqual(loraArg('a.safetensors:0.8'), { path: 'a.safetensors', scale: 0.8 });
    assert.deepEqual(loraArg('dir:x/a.safetensors'), { path: 'dir:x/a.safetensors', scale: 1 });
    assert.deepEqual(loraArg('a.safetensors:-1.5'), { path: 'a.safetensors', scale: -1.5 });
    assert.deepEqual(loraArg('C:x.safetensors'), { path: 'C:x.safetensors', scale: 1 });
    assert.throws(() => loraArg('a.safetensors:'), SD3Error);
  });
  it('applies repeatable LoRAs, records them, and refuses a bad file before generating', async () => {
    const { runCLI } = await import('../helpers/cli.js');
    const out = path.join(tmp, 'cli.png');
    const ok = await runCLI(['generate', '-m', 'tiny-random', '-p', 'x', '--steps', '1', '--width', '64', '--height', '64', '--threads', '1',
      '--lora', `${PEFT_ATTN}:0.5`, '--lora', PEFT_ATTN, '--long-prompts', 'chunk', '-o', out, '--json']);
    assert.equal(ok.code, 0, ok.stderr);
    const meta = JSON.parse(ok.stdout).parameters[0];
    assert.deepEqual(meta.loras.map((l: { scale: number }) => l.scale), [0.5, 1]);
    assert.equal(meta.longPrompts, 'chunk');
    const bad = await runCLI(['generate', '-m', 'tiny-random', '-p', 'x', '--steps', '1', '--width', '64', '--height', '64',
      '--lora', path.join(LORAS, 'neg_no_match_sdxl.safetensors'), '-o', path.join(tmp, 'bad.png')]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q/);
    assert.equal(fs.existsSync(path.join(tmp, 'bad.png')), false);
  });
});

describe('text-encoder LoRAs (CLIP-L, CLIP-G)', () => {
  it('apply through branches as the merge rule says, and switch off exactly', async () => {
    const { tinyRandomWeights } = await import('../../src/presets/tiny-random.js');
    const { CLIPTextEncoder } = await import('../../src/models/clip.js');
    const { clipLoraTargets, mergedWeights, overlayStore } = await import('../../src/lora/index.js');
    const { weights, preprocessor } = tinyRandomWeights();
    const W = 32;
    const file = writeLora('te.safetensors', {
      'lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight': f32([2, W], (i) => Math.sin(i + 1) * 0.3),
      'lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight': f32([W, 2], (i) => Math.cos(i) * 0.3),
      'lora_te1_text_model_encoder_layers_0_self_attn_q_proj.alpha': f32([], () => 1),
      'lora_te1_text_model_encoder_layers_1_mlp_fc2.lora_down.weight': f32([3, 4 * W], (i) => Math.sin(i * 0.7) * 0.2),
      'lora_te1_text_model_encoder_layers_1_mlp_fc2.lora_up.weight': f32([W, 3], (i) => Math.cos(i * 1.3) * 0.2),
      'text_encoder_2.text_model.encoder.layers.1.self_attn.out_proj.lora_A.weight': f32([2, W], (i) => Math.sin(i * 2.1) * 0.3),
      'text_encoder_2.text_model.encoder.layers.1.self_attn.out_proj.lora_B.weight': f32([W, 2], (i) => Math.cos(i * 0.4) * 0.3),
    });
    const t2i = await TextToImage.fromPreset('tiny-random', { ...TINY_OPTIONS, loras: [] });
    try {
      const ids = preprocessor.generatePreprocess(['a red fox']);
      const base = await t2i.backbone.encodeText(ids);
      const [report] = await t2i.backbone.setLoras([{ path: file, scale: 0.7 }]);
      assert.deepEqual(report!.modulesByModel, { clipL: 2, clipG: 1 });
      const withLora = await t2i.backbone.encodeText(ids);
      assert.notDeepEqual(withLora.context.data, base.context.data);
      // CLIP-L's branch output equals a CLIP-L built from merged weights.
      const targets = clipLoraTargets(weights.clipL, weights.clipLConfig!, 'clipL');
      const lora = readLoraFile(file, [mmditLoraTargets(weights.mmdit), targets]);
      const merged = await CLIPTextEncoder.load(overlayStore(weights.clipL, mergedWeights(weights.clipL, targets, [{ file: lora, scale: 0.7 }])), weights.clipLConfig, { threads: 1 });
      const branched = await CLIPTextEncoder.load(weights.clipL, weights.clipLConfig, { threads: 1, loraSlots: new Set(targets.byName.keys()) });
      branched.setBranchFeeds(loraFeeds(targets, targets.byName.keys(), [{ file: lora, scale: 0.7 }]));
      try {
        const { compare } = await import('../parity/lib.js');
        const c = compare('CLIP-L penultimate', (await branched.encode(ids.clipL)).penultimate, (await merged.encode(ids.clipL)).penultimate, { atol: 1e-6, rtol: 1e-5 });
        assert.ok(c.ok, c.detail);
      } finally {
        await merged.dispose();
        await branched.dispose();
      }
      await t2i.backbone.setLoras([]);
      const off = await t2i.backbone.encodeText(ids);
      assert.deepEqual(off.context.data, base.context.data);
    } finally {
      await t2i.dispose();
    }
  });
});
