/**
 * The library's newer features through the server (tiny-random): `<lora:NAME:SCALE>` prompt tags resolved in
 * --lora-dir (the image changes with the tag and is the base image again without it; names that would leave
 * the folder, unknown names and bad files are refused naming the LoRA), /sdapi/v1/loras, A1111's "DPM++ 2M"
 * sampler (infotext round trip through png-info, Karras refused), skip-layer guidance fields, step cache fields, and prompt
 * weights on by default in the A1111 API only.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { writeSafetensors } from '../../src/core/safetensors.js';
import { tensor } from '../../src/core/tensor.js';
import { shapeOf } from '../../src/core/weights.js';
import { type RGBImage, decodeImage } from '../../src/image/image.js';
import { Engine } from '../../src/server/engine.js';
import { JobQueue } from '../../src/server/queue.js';
import { assertDifferentPixels, assertSamePixels } from '../helpers/tiny.js';
import { type TestServer, postJSON, startTiny } from './helpers.js';

let srv: TestServer;
let tmp: string;
let loraDir: string;

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd3-server-features-'));
  loraDir = path.join(tmp, 'loras');
  fs.mkdirSync(path.join(loraDir, 'styles'), { recursive: true });
  srv = await startTiny({ loraDir });
  // A kohya-form LoRA on the tiny MMDiT's first joint block's attention output (shapes read from the model).
  const [out, inp] = shapeOf(srv.model.backbone.weights.mmdit, 'joint_blocks.0.x_block.attn.proj.weight') as [number, number];
  const f32 = (shape: number[], fill: (i: number) => number) => tensor('float32', shape, Float32Array.from({ length: shape[0]! * (shape[1] ?? 1) }, (_, i) => fill(i)));
  const key = 'lora_unet_joint_blocks_0_x_block_attn_proj';
  writeSafetensors(path.join(loraDir, 'style.safetensors'), {
    [`${key}.lora_down.weight`]: f32([4, inp], (i) => Math.sin(i * 0.37)),
    [`${key}.lora_up.weight`]: f32([out, 4], (i) => Math.cos(i * 0.53)),
    [`${key}.alpha`]: tensor('float32', [], Float32Array.of(4)),
  });
  fs.copyFileSync(path.join(loraDir, 'style.safetensors'), path.join(loraDir, 'styles', 'nested.safetensors'));
  // Refused when read: a LoRA module no weight of the model has.
  writeSafetensors(path.join(loraDir, 'broken.safetensors'), {
    'lora_unet_no_such_layer.lora_down.weight': f32([2, 8], () => 1),
    'lora_unet_no_such_layer.lora_up.weight': f32([8, 2], () => 1),
  });
  fs.writeFileSync(path.join(tmp, 'outside.safetensors'), fs.readFileSync(path.join(loraDir, 'style.safetensors')));
  fs.symlinkSync(path.join(tmp, 'outside.safetensors'), path.join(loraDir, 'link.safetensors'));
});
after(async () => {
  await srv.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function read<T = unknown>(res: Response): Promise<T> {
  return (await res.json()) as T;
}

const small = { steps: 2, width: 64, height: 64, seed: 7 };

async function native(body: Record<string, unknown>): Promise<RGBImage> {
  const res = await postJSON(`${srv.url}/api/generate`, { ...small, ...body });
  assert.equal(res.status, 200, await res.clone().text());
  return decodeImage(new Uint8Array(await res.arrayBuffer()));
}

async function a1111(body: Record<string, unknown>): Promise<{ image: RGBImage; info: Record<string, unknown>; b64: string }> {
  const res = await postJSON(`${srv.url}/sdapi/v1/txt2img`, { ...small, ...body });
  assert.equal(res.status, 200, await res.clone().text());
  const r = await read<{ images: string[]; info: string }>(res);
  return { image: decodeImage(Buffer.from(r.images[0]!, 'base64')), info: JSON.parse(r.info) as Record<string, unknown>, b64: r.images[0]! };
}

describe('LoRA tags in prompts', () => {
  it('change the image, and without the tag the image is the base one again (native, OpenAI, A1111)', async () => {
    const base = await native({ prompt: 'a red fox' });
    const tagged = await native({ prompt: 'a red fox <lora:style:0.8>' });
    assertDifferentPixels(tagged, base, 'with <lora:style:0.8>');
    assertSamePixels(await native({ prompt: 'a red fox' }), base, 'after the LoRA job');
    assertSamePixels(await native({ prompt: '<lora:style:0.8> a red fox' }), tagged, 'the tag is removed from the prompt wherever it is');
    assertDifferentPixels(await native({ prompt: 'a red fox <lora:styles/nested:0.3>' }), tagged, 'another scale');
    const oa = await postJSON(`${srv.url}/v1/images/generations`, { prompt: 'a red fox <lora:style:0.8>', size: '64x64', steps: 2, seed: 7 });
    assert.equal(oa.status, 200, await oa.clone().text());
    const oaImg = decodeImage(Buffer.from((await read<{ data: { b64_json: string }[] }>(oa)).data[0]!.b64_json, 'base64'));
    assertSamePixels(oaImg, tagged, 'OpenAI with the tag');
    const sd = await a1111({ prompt: 'a red fox <lora:style:0.8>', prompt_weights: false, long_prompts: 'truncate', cfg_scale: 7 });
    assertSamePixels(sd.image, tagged, 'A1111 with the tag');
    assertSamePixels(await native({ prompt: 'a red fox' }), base, 'base again');
  });

  it('refuses names that leave the folder, unknown names and bad files, naming the LoRA, in each family\'s shape', async () => {
    for (const name of ['../outside', '/etc/passwd', 'styles/../../outside', 'link']) {
      const res = await postJSON(`${srv.url}/api/jobs`, { prompt: `x <lora:${name}:1>`, steps: 1 });
      assert.equal(res.status, 400, name);
      const body = await read<{ error: { code: string; message: string; field: string } }>(res);
      assert.equal(body.error.field, 'prompt');
      assert.ok(body.error.message.includes(JSON.stringify(name)), body.error.message);
    }
    const oa = await postJSON(`${srv.url}/v1/images/generations`, { prompt: 'x <lora:missing:1>', steps: 1 });
    assert.equal(oa.status, 400);
    const oaBody = await read<{ error: { message: string; param: string } }>(oa);
    assert.match(oaBody.error.message, /"missing".*no such LoRA/);
    assert.equal(oaBody.error.param, 'prompt');
    const sd = await postJSON(`${srv.url}/sdapi/v1/txt2img`, { prompt: 'x <lora:../outside:1>', steps: 1 });
    assert.equal(sd.status, 422);
    const sdBody = await read<{ detail: { loc: string[]; msg: string }[] }>(sd);
    assert.deepEqual(sdBody.detail[0]!.loc, ['body', 'prompt']);
    assert.match(sdBody.detail[0]!.msg, /"\.\.\/outside"/);
    // A file inside the folder that the LoRA reader refuses: the job fails as a 400, and the next job runs.
    const broken = await postJSON(`${srv.url}/api/generate`, { ...small, prompt: 'x <lora:broken>' });
    assert.equal(broken.status, 400);
    assert.match((await read<{ error: { message: string } }>(broken)).error.message, /broken/);
    assert.equal((await postJSON(`${srv.url}/api/generate`, { ...small, prompt: 'x' })).status, 200);
  });

  it('lists the folder at /sdapi/v1/loras as A1111 does', async () => {
    const res = await fetch(`${srv.url}/sdapi/v1/loras`);
    assert.equal(res.status, 200);
    const list = await read<{ name: string; alias: string; path: string }[]>(res);
    // link.safetensors points outside the folder: not listed (and refused by name above).
    assert.deepEqual(list.map((l) => l.name), ['broken', 'style', 'styles/nested']);
    assert.equal(list.find((l) => l.name === 'style')!.path, path.join(loraDir, 'style.safetensors'));
    assert.equal(list.find((l) => l.name === 'style')!.alias, 'style');
  });

  it('the engine resolves job LoRA names in its own folder (a cluster worker\'s --lora-dir) and refuses them without one', async () => {
    const spec = { prompt: 'a red fox', negativePrompt: '', width: 64, height: 64, steps: 2, cfgScale: 7, seed: 7, batch: 1, loras: [{ name: 'style', scale: 0.8 }] };
    const bare = new JobQueue(new Engine(srv.model), {});
    try {
      const job = bare.submit(spec);
      await job.done;
      assert.equal(job.status, 'failed');
      assert.equal(job.error?.code, 'invalid_request');
      assert.match(job.error!.message, /LoRA "style".*no LoRA folder.*--lora-dir/);
    } finally {
      await bare.close();
    }
    // A worker's own folder holding the same file: the same image as the front end's.
    const own = path.join(tmp, 'worker-loras');
    fs.mkdirSync(own, { recursive: true });
    fs.copyFileSync(path.join(loraDir, 'style.safetensors'), path.join(own, 'style.safetensors'));
    const worker = new JobQueue(new Engine(srv.model, { loraDir: own }), {});
    try {
      const job = worker.submit(spec);
      await job.done;
      assert.equal(job.status, 'completed', job.error?.message);
      assertSamePixels(decodeImage(job.images[0]!.png), await native({ prompt: 'a red fox <lora:style:0.8>' }), 'worker folder vs server folder');
    } finally {
      await worker.close();
    }
  });

  it('a server without --lora-dir refuses tags clearly', async () => {
    const plain = await startTiny({ model: srv.model });
    try {
      const res = await postJSON(`${plain.url}/api/jobs`, { prompt: 'x <lora:style:1>', steps: 1 });
      assert.equal(res.status, 400);
      assert.match((await read<{ error: { message: string } }>(res)).error.message, /LoRA "style".*--lora-dir/);
      assert.deepEqual(await read(await fetch(`${plain.url}/sdapi/v1/loras`)), []);
    } finally {
      await plain.close();
    }
  });
});

describe('samplers and skip-layer guidance', () => {
  it('A1111 "DPM++ 2M" (and dpmpp_2m) runs DPM++ 2M, says so in info and infotext, and png-info reads it back', async () => {
    const samplers = await read<{ name: string }[]>(await fetch(`${srv.url}/sdapi/v1/samplers`));
    assert.deepEqual(samplers.map((s) => s.name), ['Euler', 'DPM++ 2M']);
    // 4 steps: at 2, DPM++ 2M's second-order update never runs (its first step has no history and its last one
    // lands on sigma 0), so both samplers compute the same image up to float rounding.
    const euler = await a1111({ prompt: 'a boat', sampler_name: 'Euler', steps: 4 });
    const dpm = await a1111({ prompt: 'a boat', sampler_name: 'DPM++ 2M', steps: 4 });
    assertDifferentPixels(dpm.image, euler.image, 'DPM++ 2M vs Euler');
    assert.equal(dpm.info.sampler_name, 'DPM++ 2M');
    assert.match(String((dpm.info.infotexts as string[])[0]), /Sampler: DPM\+\+ 2M,/);
    assertSamePixels((await a1111({ prompt: 'a boat', sampler_name: 'dpmpp_2m', steps: 4 })).image, dpm.image, 'k-diffusion name');
    assertSamePixels(await native({ prompt: 'a boat', sampler: 'dpmpp_2m', prompt_weights: true, long_prompts: 'chunk', steps: 4 }), dpm.image, 'native sampler field');
    const info = await read<{ parameters: Record<string, string> }>(await postJSON(`${srv.url}/sdapi/v1/png-info`, { image: dpm.b64 }));
    assert.equal(info.parameters.Sampler, 'DPM++ 2M');
    const karras = await postJSON(`${srv.url}/sdapi/v1/txt2img`, { prompt: 'a boat', sampler_name: 'DPM++ 2M Karras', steps: 1 });
    assert.equal(karras.status, 422);
    assert.match((await read<{ detail: { msg: string }[] }>(karras)).detail[0]!.msg, /"DPM\+\+ 2M Karras".*"Euler" or "DPM\+\+ 2M"/);
    const bad = await postJSON(`${srv.url}/api/jobs`, { prompt: 'x', sampler: 'heun' });
    assert.equal(bad.status, 400);
    assert.equal((await read<{ error: { field: string } }>(bad)).error.field, 'sampler');
  });

  it('slg_* fields turn skip-layer guidance on (native, OpenAI, A1111) and bad layers are a 400', async () => {
    const base = await native({ prompt: 'a hill', steps: 4 });
    const slg = { slg_scale: 3, slg_layers: [1], slg_start: 0, slg_end: 1 };
    const guided = await native({ prompt: 'a hill', steps: 4, ...slg });
    assertDifferentPixels(guided, base, 'with skip-layer guidance');
    const oa = await postJSON(`${srv.url}/v1/images/generations`, { prompt: 'a hill', size: '64x64', steps: 4, seed: 7, ...slg });
    assert.equal(oa.status, 200);
    assertSamePixels(decodeImage(Buffer.from((await read<{ data: { b64_json: string }[] }>(oa)).data[0]!.b64_json, 'base64')), guided, 'OpenAI slg');
    assertSamePixels((await a1111({ prompt: 'a hill', steps: 4, prompt_weights: false, long_prompts: 'truncate', ...slg })).image, guided, 'A1111 slg');
    const tooDeep = await postJSON(`${srv.url}/api/generate`, { ...small, prompt: 'x', slg_scale: 2, slg_layers: [99] });
    assert.equal(tooDeep.status, 400);
    assert.match((await read<{ error: { message: string } }>(tooDeep)).error.message, /99 is not a joint block/);
    const noScale = await postJSON(`${srv.url}/api/jobs`, { prompt: 'x', slg_layers: [1] });
    assert.equal(noScale.status, 400);
  });
});

describe('step cache fields', () => {
  it('step_cache turns it on in every family, the image says so (infotext, png-info), and bad values are a 400 naming the field', async () => {
    const cache = { step_cache: 1, step_cache_start: 0, step_cache_end: 1 };
    const body = { prompt: 'a tower', steps: 8, cfg_scale: 1 };
    const res = await postJSON(`${srv.url}/sdapi/v1/txt2img`, { ...small, ...body, ...cache });
    assert.equal(res.status, 200, await res.clone().text());
    const r = await read<{ images: string[]; info: string }>(res);
    const infotext = String((JSON.parse(r.info) as { infotexts: string[] }).infotexts[0]);
    assert.match(infotext, /Step cache: 1, Cached steps: \d+\/8,/);
    const cached = decodeImage(Buffer.from(r.images[0]!, 'base64'));
    assertSamePixels(await native({ ...body, ...cache, prompt_weights: true, long_prompts: 'chunk' }), cached, 'native step_cache');
    const oa = await postJSON(`${srv.url}/v1/images/generations`, { ...body, size: '64x64', seed: 7, ...cache, prompt_weights: true, long_prompts: 'chunk' });
    assert.equal(oa.status, 200);
    assertSamePixels(decodeImage(Buffer.from((await read<{ data: { b64_json: string }[] }>(oa)).data[0]!.b64_json, 'base64')), cached, 'OpenAI step_cache');
    const info = await read<{ parameters: Record<string, string> }>(await postJSON(`${srv.url}/sdapi/v1/png-info`, { image: r.images[0] }));
    assert.equal(info.parameters['Step cache'], '1');
    assert.match(info.parameters['Cached steps']!, /^\d+\/8$/);
    for (const [b, field] of [[{ step_cache: 0 }, 'step_cache'], [{ step_cache: 1.5 }, 'step_cache'], [{ step_cache: 'fast' }, 'step_cache'], [{ step_cache_end: 0.5 }, 'step_cache_end'], [{ step_cache: 0.1, step_cache_start: 0.9, step_cache_end: 0.5 }, 'step_cache']] as const) {
      const bad = await postJSON(`${srv.url}/api/jobs`, { prompt: 'x', ...b });
      assert.equal(bad.status, 400, JSON.stringify(b));
      const e = (await read<{ error: { field: string; message: string } }>(bad)).error;
      assert.equal(e.field, field, e.message);
    }
  });
});

describe('prompt weights and long prompts', () => {
  it('are on by default in A1111 only; prompt_weights / long_prompts fields choose elsewhere', async () => {
    const prompt = 'a (red:1.6) fox';
    const sd = await a1111({ prompt });
    const plain = await native({ prompt });
    assertDifferentPixels(sd.image, plain, 'A1111 weights vs native plain');
    assertSamePixels(await native({ prompt, prompt_weights: true, long_prompts: 'chunk' }), sd.image, 'native with A1111 options');
    assertSamePixels((await a1111({ prompt, prompt_weights: false, long_prompts: 'truncate' })).image, plain, 'A1111 with them off');
    const bad = await postJSON(`${srv.url}/api/jobs`, { prompt: 'x', long_prompts: 'wrap' });
    assert.equal(bad.status, 400);
    assert.equal((await read<{ error: { field: string } }>(bad)).error.field, 'long_prompts');
  });
});
