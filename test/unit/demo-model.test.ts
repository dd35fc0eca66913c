/**
 * The built-in `demo` model (assets/demo/sd3-demo.safetensors, trained by scripts/demo-model/):
 *  - parity: our ONNX graphs reproduce PyTorch's forward of the same weights (test/fixtures/demo, written by
 *    scripts/demo-model/export.py) within float32 noise, through the same single-file loader as SD3 Medium;
 *  - meaning: the semantic evaluator's scores on a fixed subset of the evaluation prompts, guidance's effect,
 *    image-to-image and inpainting.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SD3Error } from '../../src/core/errors.js';
import { readAllSafetensors, writeSafetensors } from '../../src/core/safetensors.js';
import type { Tensor } from '../../src/core/tensor.js';
import { RGBImage } from '../../src/image/image.js';
import { openCheckpoint } from '../../src/loaders/checkpoint.js';
import { CLIPTextEncoder } from '../../src/models/clip.js';
import { sd3Conditioning } from '../../src/models/conditioning.js';
import { MMDiT } from '../../src/models/mmdit.js';
import { VAE } from '../../src/models/vae.js';
import { ImageToImage } from '../../src/pipelines/image-to-image.js';
import { Inpaint } from '../../src/pipelines/inpaint.js';
import { TextToImage } from '../../src/presets/tasks.js';
import { loadPreset } from '../../src/presets/index.js';
import { demoCheckpointPath } from '../../src/presets/demo.js';
import { analyse, evalCases, score } from '../../scripts/demo-model/evaluate.js';
import { COLOUR_NAMES, type Position, caption, uniform } from '../../scripts/demo-model/grammar.js';

/** Evaluation prompts the CI runs (the first of evalCases(); npm run eval:demo scores all 48). */
const CI_SUBSET = 16;
/** Image-to-image cases (evalCases with their own seed). */
const I2I_CASES = 24;
/** One phrase of the grammar per position (grammar.ts). */
const POSITION_PHRASE: Record<Position, string> = {
  'top left': 'in the top left corner', top: 'at the top', 'top right': 'in the top right corner', left: 'on the left',
  centre: 'in the centre', right: 'on the right', 'bottom left': 'in the bottom left corner', bottom: 'at the bottom',
  'bottom right': 'in the bottom right corner',
};
const FIXTURES = fileURLToPath(new URL('../fixtures/demo/', import.meta.url));

interface GoldenConfig { tolerance: { atol: number; rtol: number }; fp32_vs_fp64_max_abs: Record<string, number> }

/** max |a - e| <= atol + rtol * max |e| (the fixtures' rule). */
function assertClose(actual: Tensor, expected: Tensor, what: string, tol: { atol: number; rtol: number }): void {
  assert.deepEqual(actual.shape, expected.shape, `${what}: shape`);
  const a = actual.data as Float32Array;
  const e = expected.data as Float32Array;
  let worst = 0, scale = 0;
  for (let i = 0; i < e.length; i++) { worst = Math.max(worst, Math.abs(a[i]! - e[i]!)); scale = Math.max(scale, Math.abs(e[i]!)); }
  const budget = tol.atol + tol.rtol * scale;
  assert.ok(worst <= budget, `${what}: max |diff| ${worst.toExponential(2)} > ${budget.toExponential(2)} (max |expected| ${scale.toFixed(3)})`);
}

describe('demo model: parity with the training framework', () => {
  const config = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'config.json'), 'utf8')) as GoldenConfig;
  const { tensors: c } = readAllSafetensors(path.join(FIXTURES, 'cases.safetensors'));
  const tol = config.tolerance;
  const opened = openCheckpoint(demoCheckpointPath());
  const w = opened.weights;
  after(() => w.close?.());

  it('loads through the single-file loader with SD3 key names, configs inferred from shapes', () => {
    assert.deepEqual(opened.weights.clipLConfig, { hiddenAct: 'quick_gelu', numAttentionHeads: 1 });
    assert.deepEqual(opened.weights.clipGConfig, { hiddenAct: 'gelu', numAttentionHeads: 1 });
    assert.equal(opened.weights.vaeGroups, 4);
    assert.ok(w.mmdit.has('joint_blocks.1.context_block.attn.qkv.weight'));
  });

  it('CLIP-L, CLIP-G and the conditioning match PyTorch', async () => {
    const clipL = await CLIPTextEncoder.load(w.clipL, w.clipLConfig, { threads: 1 });
    const clipG = await CLIPTextEncoder.load(w.clipG, w.clipGConfig, { threads: 1 });
    try {
      const l = await clipL.encode(c['input.clip_l_ids']!);
      const g = await clipG.encode(c['input.clip_g_ids']!);
      assertClose(l.penultimate, c['output.clip_l_penultimate']!, 'CLIP-L penultimate', tol);
      assertClose(l.pooled, c['output.clip_l_pooled']!, 'CLIP-L pooled', tol);
      assertClose(g.penultimate, c['output.clip_g_penultimate']!, 'CLIP-G penultimate', tol);
      assertClose(g.pooledProjected, c['output.clip_g_pooled_projected']!, 'CLIP-G pooled projected', tol);
      const cond = sd3Conditioning({ clipL: l, clipG: g }, { contextWidth: c['output.context']!.shape[2]! });
      assertClose(cond.context, c['output.context']!, 'context', tol);
      assertClose(cond.y, c['output.y']!, 'y', tol);
    } finally {
      await clipL.dispose();
      await clipG.dispose();
    }
  });

  it('the MMDiT matches PyTorch', async () => {
    const mmdit = await MMDiT.load(w.mmdit, { threads: 1 });
    try {
      const v = await mmdit.forward(c['input.mmdit_x']!, c['input.mmdit_t']!, c['output.y']!, c['output.context']!);
      assertClose(v, c['output.mmdit_v']!, 'MMDiT velocity', tol);
    } finally {
      await mmdit.dispose();
    }
  });

  it('the VAE encoder and decoder match PyTorch', async () => {
    const vae = await VAE.load(w.vae, { threads: 1, ...(w.vaeGroups ? { groups: w.vaeGroups } : {}) });
    try {
      const post = await vae.encode(c['input.vae_image']!);
      assertClose(post.mean, c['output.vae_mean']!, 'VAE mean', tol);
      assertClose(post.logvar, c['output.vae_logvar']!, 'VAE logvar', tol);
      assertClose(await vae.decode(c['input.vae_latent']!), c['output.vae_decoded']!, 'VAE decoded', tol);
    } finally {
      await vae.dispose();
    }
  });
});

describe('demo model: loading', () => {
  it('refuses sizes above its native 64x64 (the position grid), naming the limit', async () => {
    await assert.rejects(TextToImage.fromPreset('demo', { imageShape: { width: 128, height: 128 }, threads: 1 }),
      (e: unknown) => e instanceof SD3Error && /exceeds the MMDiT's position grid \(at most 64x64\)/.test(e.message));
  });

  it('reads the VAE GroupNorm groups from the metadata, and refuses a bad value naming it', () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd3-demo-'));
    try {
      const { tensors, metadata } = readAllSafetensors(demoCheckpointPath());
      assert.equal(metadata['vae.groups'], '4');
      const bad = path.join(tmp, 'bad.safetensors');
      writeSafetensors(bad, tensors, { ...metadata, 'vae.groups': 'eight' });
      assert.throws(() => openCheckpoint(bad), (e: unknown) => e instanceof SD3Error && /"vae.groups" must be a positive integer, got "eight"/.test(e.message));
      const plain = path.join(tmp, 'plain.safetensors');
      writeSafetensors(plain, tensors);
      const opened = openCheckpoint(plain);
      assert.equal(opened.weights.vaeGroups, undefined, 'no metadata: SD3\'s 32 groups');
      opened.weights.close?.();
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});

function meanAbsDiff(a: RGBImage, b: RGBImage, inRegion: (x: number, y: number) => boolean): number {
  let n = 0, sum = 0;
  for (let y = 0; y < a.height; y++) {
    for (let x = 0; x < a.width; x++) {
      if (!inRegion(x, y)) continue;
      for (let k = 0; k < 3; k++) { sum += Math.abs(a.data[(y * a.width + x) * 3 + k]! - b.data[(y * a.width + x) * 3 + k]!); n++; }
    }
  }
  return sum / n;
}

/** Columns [x0, x1) of an image, all rows. */
function crop(im: RGBImage, x0: number, x1: number): RGBImage {
  const w = x1 - x0;
  const out = new Uint8Array(w * im.height * 3);
  for (let y = 0; y < im.height; y++) out.set(im.data.subarray((y * im.width + x0) * 3, (y * im.width + x1) * 3), y * w * 3);
  return new RGBImage(w, im.height, out);
}

describe('demo model: its own sampling defaults', () => {
  it('states its default guidance in its metadata; the pipeline uses it when a generation names none', async () => {
    const { metadata } = readAllSafetensors(demoCheckpointPath());
    const stated = Number(metadata['sampling.guidance_scale']);
    assert.ok(Number.isFinite(stated) && stated >= 1 && stated < 7, `sampling.guidance_scale ${metadata['sampling.guidance_scale']}`);
    const t2i = await TextToImage.fromPreset('demo', { threads: 1 });
    try {
      assert.equal(t2i.backbone.sampling.guidanceScale, stated);
      assert.match(t2i.backbone.sampling.source, /checkpoint's own metadata/);
      const prompt = 'a small orange triangle at the bottom, on a purple background';
      const plain = await t2i.generate(prompt, { seed: 9, numSteps: 8 });
      const asStated = await t2i.generate(prompt, { seed: 9, numSteps: 8, guidanceScale: stated });
      const keras = await t2i.generate(prompt, { seed: 9, numSteps: 8, guidanceScale: 7 });
      assert.deepEqual(plain.data, asStated.data, 'no guidance given = the stated one');
      assert.notDeepEqual(plain.data, keras.data, 'and not KerasHub\'s 7');
    } finally {
      await t2i.dispose();
    }
  });

  it('refuses a bad stated default, naming the key and the value', () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd3-demo-'));
    try {
      const { tensors, metadata } = readAllSafetensors(demoCheckpointPath());
      for (const [key, value, want] of [
        ['sampling.guidance_scale', 'strong', /"sampling.guidance_scale" must be a number >= 0, got "strong"/],
        ['sampling.guidance_scale', '-1', /"sampling.guidance_scale" must be a number >= 0, got "-1"/],
        ['sampling.num_steps', '2.5', /"sampling.num_steps" must be a positive integer, got "2.5"/],
      ] as const) {
        const bad = path.join(tmp, 'bad.safetensors');
        writeSafetensors(bad, tensors, { ...metadata, [key]: value });
        assert.throws(() => openCheckpoint(bad), (e: unknown) => e instanceof SD3Error && want.test(e.message), `${key}=${value}`);
      }
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe('demo model: draws what it is asked', () => {
  let t2i: TextToImage;
  before(async () => {
    const loaded = await loadPreset('demo', { threads: 1 });
    t2i = new TextToImage(loaded.backbone, loaded.preprocessor, loaded.imageShape);
  });
  after(async () => { await t2i.dispose(); });

  const subset = evalCases().slice(0, CI_SUBSET);

  // The targets (background 95%, shape colour 90%, position 90%, shape 80%) on the CI's subset, at the
  // model's default guidance (its metadata's); scripts/demo-model/README.md, "Scores", has the full 48.
  it(`draws the asked background, shape colour, position and shape on the first ${CI_SUBSET} evaluation prompts`, async () => {
    const images = await t2i.generate({ prompts: subset.map((c) => c.prompt) }, { seeds: subset.map((c) => c.seed), numSteps: 28 });
    const s = score(subset, images.map((im) => analyse(im)));
    const report = JSON.stringify(s);
    assert.ok(s.background >= 0.95, `background ${report}`);
    assert.ok(s.colour >= 0.9, `shape colour ${report}`);
    assert.ok(s.position >= 0.9, `position ${report}`);
    assert.ok(s.shape >= 0.8, `shape ${report}`);
  });

  it('the text steers the picture: the same seeds with the prompts of other cases miss the asked scene', async () => {
    const rotated = subset.map((_, i) => subset[(i + 1) % subset.length]!.prompt);
    const images = await t2i.generate({ prompts: rotated }, { seeds: subset.map((c) => c.seed), numSteps: 28 });
    const s = score(subset, images.map((im) => analyse(im)));
    assert.ok(s.position < 0.5 && s.colour < 0.5, `scored against the original cases: ${JSON.stringify(s)}`);
  });

  // Image-to-image: inputs drawn by the model from full captions of scenes from the evaluator's grammar (their
  // own seed, not chosen by looking at outputs); the prompt asks for another colour at the same place and names
  // no size, so the size can only come from the input picture (either size fits the prompt).
  it('image-to-image at strength 0.5 keeps the input\'s composition (its size, unnamed) and takes the asked colour', async () => {
    const i2i = new ImageToImage(t2i.backbone, t2i.preprocessor, t2i.imageShape);
    const cases = evalCases(I2I_CASES, 777);
    let inputsRight = 0, colour = 0, position = 0, sizeKept = 0, sizeKeptAtFull = 0;
    const rows: string[] = [];
    for (const [i, c] of cases.entries()) {
      const input = await t2i.generate(caption(c.scene, uniform(i), false), { seed: 100 + i, numSteps: 28 });
      const read = analyse(input);
      if (read.size !== c.scene.size || read.colour !== c.scene.colour) { rows.push(`input ${i} misread`); continue; }
      inputsRight++;
      const other = COLOUR_NAMES.filter((k) => k !== c.scene.colour && k !== c.scene.background)[i % 6]!;
      const prompt = `a ${other} ${c.scene.shape} ${POSITION_PHRASE[c.scene.position]}, on a ${c.scene.background} background`;
      const half = analyse(await i2i.generate({ images: input, prompts: prompt }, { strength: 0.5, seed: 200 + i }));
      const full = analyse(await i2i.generate({ images: input, prompts: prompt }, { strength: 1, seed: 200 + i }));
      colour += +(half.colour === other);
      position += +(half.position === c.scene.position);
      sizeKept += +(half.size === c.scene.size);
      sizeKeptAtFull += +(full.size === c.scene.size);
      rows.push(`${c.scene.size} ${c.scene.colour}->${other}: 0.5 ${half.size} ${half.colour}, 1 ${full.size}`);
    }
    const report = `${JSON.stringify({ inputsRight, colour, position, sizeKept, sizeKeptAtFull })} ${rows.join('; ')}`;
    assert.ok(inputsRight >= 0.8 * I2I_CASES, `inputs drawn as asked: ${report}`);
    assert.ok(colour >= 0.9 * inputsRight && position >= 0.9 * inputsRight, `asked colour and place at strength 0.5: ${report}`);
    // at strength 1 the input is pure noise, so its size is kept only by chance (about half the time)
    assert.ok(sizeKept >= 0.6 * inputsRight && sizeKept - sizeKeptAtFull >= 0.2 * inputsRight, `input size kept at strength 0.5 vs 1: ${report}`);
  });

  it('inpainting draws inside the mask what the prompt asks and keeps the outside (KerasHub blend)', async () => {
    const input = await t2i.generate('a large green square on the left, on a black background', { seed: 5, numSteps: 28 });
    const { width: W, height: H } = input;
    const before = analyse(input);
    assert.deepEqual([before.background, before.colour, before.position], ['black', 'green', 'left'], 'input: a green shape on black at the left');
    // repaint the left half, where the shape is, with another shape in another colour
    const mask = new RGBImage(W, H, new Uint8Array(W * H * 3).map((_, i) => (Math.floor(i / 3) % W < W / 2 ? 255 : 0)));
    const prompt = 'a large yellow circle on the left, on a black background';
    const inpaint = new Inpaint(t2i.backbone, t2i.preprocessor, t2i.imageShape);
    const out = await inpaint.generate({ images: input, masks: mask, prompts: prompt }, { seed: 6 });
    const after = analyse(out);
    assert.deepEqual([after.background, after.colour, after.position, after.shape], ['black', 'yellow', 'left', 'circle'], `inpainted: ${JSON.stringify(after)}`);
    // outside the mask (a latent cell and more from its edge) the input's plain black stays: no shape there
    const outside = analyse(crop(out, W / 2 + 8, W));
    assert.equal(outside.background, 'black');
    assert.equal(outside.blob, undefined, `nothing drawn outside the mask: ${JSON.stringify(outside)}`);
    // KerasHub replaces the latents outside the mask by the (re-noised) image's after every step, ending on the
    // image's own latents: outside the mask the result is the VAE's decoding of the input's latents, which the
    // decoder's global GroupNorm statistics and middle attention let the repainted half shift a little.
    const i2i = new ImageToImage(t2i.backbone, t2i.preprocessor, t2i.imageShape);
    const roundTrip = await i2i.generate({ images: input, prompts: prompt }, { strength: 0, seed: 6 });
    const away = (x: number) => x >= W / 2 + 8;
    const inside = (x: number) => x < W / 2 - 8;
    const [dOut, dIn] = [meanAbsDiff(out, roundTrip, away), meanAbsDiff(out, roundTrip, inside)];
    assert.ok(dOut < dIn / 2, `mean |diff| from the round trip: outside ${dOut.toFixed(2)}, inside ${dIn.toFixed(2)}`);
  });
});
