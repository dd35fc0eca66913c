/**
 * AUTOMATIC1111's API with the bodies Open WebUI and modelfusion send: txt2img, img2img with a mask (latents
 * outside the mask are the image's, as the inpaint fixtures define it), progress polled during a job, interrupt
 * (the job stops within a step and returns its images), png-info round trip, and A1111's error shapes.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeImage } from '../../src/image/image.js';
import { Inpaint } from '../../src/pipelines/inpaint.js';
import { imagesToTensor } from '../../src/pipelines/inputs.js';
import { TextToImage } from '../../src/pipelines/text-to-image.js';
import { assertLeftHalfRepainted, assertSamePixels, maskImage } from '../helpers/tiny.js';
import { type TestServer, json, maskB64, picture, pictureB64, postJSON, startTiny } from './helpers.js';

let srv: TestServer;
before(async () => { srv = await startTiny(); });
after(async () => { await srv.stop(); });

const api = (p: string) => `${srv.url}/sdapi/v1/${p}`;

interface A1111Response {
  images: string[];
  parameters: Record<string, unknown>;
  info: string;
}

async function generate(route: 'txt2img' | 'img2img', body: unknown): Promise<A1111Response> {
  const res = await postJSON(api(route), body);
  assert.equal(res.status, 200, await res.clone().text());
  const r = (await res.json()) as A1111Response;
  // modelfusion's response schema: {images: string[], parameters: object, info: string}
  assert.ok(Array.isArray(r.images) && r.images.every((i) => typeof i === 'string'));
  assert.equal(typeof r.parameters, 'object');
  assert.equal(typeof r.info, 'string');
  return r;
}

describe('A1111 /sdapi/v1', () => {
  it('Open WebUI: sd-models, options, then txt2img {prompt, batch_size, width, height, steps, negative_prompt}', async () => {
    const models = (await (await fetch(api('sd-models'))).json()) as { title: string; model_name: string }[];
    assert.equal(models.length, 1);
    const options = await json(await fetch(api('options')));
    assert.equal(options.sd_model_checkpoint, models[0]!.title);
    const set = await postJSON(api('options'), { sd_model_checkpoint: models[0]!.title });
    assert.equal(set.status, 200);
    assert.equal(await set.json(), null);
    const r = await generate('txt2img', { prompt: 'a hill', batch_size: 2, width: 64, height: 48, steps: 3, negative_prompt: 'snow', cfg_scale: 5, sampler_name: 'Euler', scheduler: 'Automatic' });
    assert.equal(r.images.length, 2);
    const info = JSON.parse(r.info) as { seed: number; all_seeds: number[]; infotexts: string[]; width: number; height: number; steps: number };
    assert.deepEqual(info.all_seeds, [info.seed, info.seed + 1]);
    assert.deepEqual([info.width, info.height, info.steps], [64, 48, 3]);
    assert.equal(info.infotexts.length, 2);
    assert.match(info.infotexts[1]!, new RegExp(`^a hill\\nNegative prompt: snow\\nSteps: 3, Sampler: Euler, .*Seed: ${info.seed + 1}, Size: 64x48`));
    const expected = await new TextToImage(srv.model.backbone, srv.model.preprocessor, { width: 64, height: 48 })
      .generate({ prompts: ['a hill', 'a hill'], negativePrompts: 'snow' }, { numSteps: 3, guidanceScale: 5, seed: info.seed });
    r.images.forEach((b64, i) => assertSamePixels(decodeImage(Buffer.from(b64, 'base64')), expected[i]!, `image ${i}`));
    assert.equal(r.parameters.prompt, 'a hill');
  });

  it('modelfusion: {prompt, negative_prompt, seed, batch_size, height, width, cfg_scale, sampler_index, steps, override_settings}', async () => {
    const models = (await (await fetch(api('sd-models'))).json()) as { title: string }[];
    const r = await generate('txt2img', {
      prompt: 'a fox', negative_prompt: '', seed: 123, batch_size: 1, height: 64, width: 64, cfg_scale: 7, sampler_index: 'Euler', steps: 2,
      override_settings: { sd_model_checkpoint: models[0]!.title },
    });
    const info = JSON.parse(r.info) as { seed: number; all_seeds: number[] };
    assert.deepEqual([info.seed, info.all_seeds], [123, [123]]);
    const expected = await new TextToImage(srv.model.backbone, srv.model.preprocessor, { width: 64, height: 64 }).generate('a fox', { numSteps: 2, seed: 123 });
    assertSamePixels(decodeImage(Buffer.from(r.images[0]!, 'base64')), expected, 'modelfusion request vs library');
  });

  it('img2img with a mask repaints inside the mask only: latents outside are the image\'s', async (t) => {
    const input = picture(64, 64, 7);
    const left = (x: number) => x < 32;
    const finals: Float32Array[] = [];
    const denoise = srv.model.backbone.denoise.bind(srv.model.backbone);
    t.mock.method(srv.model.backbone, 'denoise', async (o: Parameters<typeof denoise>[0]) => {
      const out = await denoise(o);
      finals.push(out);
      return out;
    });
    const r = await generate('img2img', {
      prompt: 'a window', init_images: [`data:image/png;base64,${pictureB64(64, 64, 7)}`], mask: maskB64(64, 64, left), mask_blur: 0,
      denoising_strength: 1, steps: 4, seed: 21, width: 64, height: 64, inpainting_fill: 1, inpaint_full_res: true, resize_mode: 0,
    });
    assert.equal(JSON.parse(r.info).denoising_strength, 1);
    const expected = await new Inpaint(srv.model.backbone, srv.model.preprocessor, { width: 64, height: 64 })
      .generate({ images: input, masks: maskImage(64, 64, left), prompts: 'a window' }, { numSteps: 4, seed: 21, strength: 1 });
    assertSamePixels(decodeImage(Buffer.from(r.images[0]!, 'base64')), expected, 'img2img with mask vs Inpaint');
    const init = await srv.model.backbone.encodeImage(imagesToTensor([input]), [21]);
    const last = finals[0]!;
    assertLeftHalfRepainted(last, init, 8);
    // inpainting_mask_invert swaps the halves.
    const inverted = await generate('img2img', {
      prompt: 'a window', init_images: [pictureB64(64, 64, 7)], mask: maskB64(64, 64, left), mask_blur: 0, inpainting_mask_invert: 1,
      denoising_strength: 1, steps: 4, seed: 21, width: 64, height: 64,
    });
    const expectedInv = await new Inpaint(srv.model.backbone, srv.model.preprocessor, { width: 64, height: 64 })
      .generate({ images: input, masks: maskImage(64, 64, (x) => !left(x)), prompts: 'a window' }, { numSteps: 4, seed: 21, strength: 1 });
    assertSamePixels(decodeImage(Buffer.from(inverted.images[0]!, 'base64')), expectedInv, 'inverted mask');
  });

  it('progress polled during a job shows increasing steps and a current_image; idle afterwards', async () => {
    const running = generate('txt2img', { prompt: 'a tower', steps: 40, seed: 3, width: 64, height: 64 });
    const seen: number[] = [];
    let image: string | null = null;
    let done = false;
    running.finally(() => { done = true; }).catch(() => undefined);
    while (!done) {
      const p = (await (await fetch(api('progress?skip_current_image=false'))).json()) as { progress: number; state: { sampling_step: number; sampling_steps: number }; current_image: string | null };
      if (p.state.sampling_steps === 40) {
        seen.push(p.state.sampling_step);
        assert.ok(p.progress > 0 && p.progress <= 1);
        image ??= p.current_image;
      }
      await sleep(2);
    }
    await running;
    const distinct = [...new Set(seen)];
    assert.ok(distinct.length >= 3, `saw steps ${distinct}`);
    assert.deepEqual(seen, [...seen].sort((a, b) => a - b), 'steps never go back');
    assert.ok(image, 'a current_image preview was shown');
    assert.deepEqual([decodeImage(Buffer.from(image, 'base64')).width], [8]);
    const idle = await json(await fetch(api('progress')));
    assert.deepEqual([idle.progress, idle.eta_relative, idle.current_image], [0, 0, null]);
  });

  it('interrupt stops the running job within one step and it returns the images it has', async () => {
    const running = generate('txt2img', { prompt: 'a bridge', steps: 150, seed: 4, width: 64, height: 64 });
    let step = 0;
    let id = '';
    while (step < 2) {
      const p = await json(await fetch(api('progress')));
      step = (p.state as { sampling_step: number }).sampling_step;
      id = String(p.current_task);
      await sleep(2);
    }
    const res = await postJSON(api('interrupt'), '');
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {});
    const r = await running;
    assert.equal(r.images.length, 1);
    const info = JSON.parse(r.info) as { interrupted: boolean; infotexts: string[] };
    assert.equal(info.interrupted, true);
    assert.match(info.infotexts[0]!, /Interrupted: True/);
    assert.deepEqual([decodeImage(Buffer.from(r.images[0]!, 'base64')).width], [64]);
    const job = await json(await fetch(`${srv.url}/api/jobs/${id}`));
    const ran = (job.progress as { step: number }).step;
    const atInterrupt = job.stop_requested_at_step as number;
    assert.ok(ran <= atInterrupt + 1 && ran < 150, `ran ${ran} steps, ${atInterrupt} at the interrupt`);
    assert.equal(job.interrupted, true);
    // The next request runs normally.
    assert.equal((await generate('txt2img', { prompt: 'after', steps: 1, width: 64, height: 64 })).images.length, 1);
  });

  it('png-info reads our own images back (round trip)', async () => {
    const r = await generate('txt2img', { prompt: 'a quiet lake, at night: stars', negative_prompt: 'boats', steps: 2, seed: 99, cfg_scale: 6.5, width: 64, height: 48 });
    const res = await postJSON(api('png-info'), { image: `data:image/png;base64,${r.images[0]}` });
    assert.equal(res.status, 200);
    const p = (await res.json()) as { info: string; items: Record<string, string>; parameters: Record<string, string> };
    assert.equal(p.info, JSON.parse(r.info).infotexts[0]);
    assert.equal(p.parameters.Prompt, 'a quiet lake, at night: stars');
    assert.equal(p.parameters['Negative prompt'], 'boats');
    assert.deepEqual([p.parameters.Steps, p.parameters.Seed, p.parameters['CFG scale'], p.parameters.Sampler], ['2', '99', '6.5', 'Euler']);
    assert.deepEqual([p.parameters['Size-1'], p.parameters['Size-2']], ['64', '48']);
    assert.equal(JSON.parse(p.items['sd3-ts']!).seed, 99);
  });

  it('samplers and schedulers list what the model does', async () => {
    const samplers = (await (await fetch(api('samplers'))).json()) as { name: string; aliases: string[] }[];
    assert.deepEqual(samplers.map((s) => s.name), ['Euler', 'DPM++ 2M']);
    assert.equal((await fetch(api('schedulers'))).status, 200);
  });

  it('answers bad bodies in A1111\'s shapes (422 detail with loc, 404 for a missing init image), never 500', async () => {
    const cases: [string, unknown, number, string[] | null, RegExp][] = [
      ['txt2img', { steps: 2 }, 422, ['body', 'prompt'], /prompt is required/],
      ['txt2img', { prompt: 'x', steps: 'a' }, 422, ['body', 'steps'], /steps must be an integer/],
      ['txt2img', { prompt: 'x', width: 50 }, 422, ['body', 'width'], /multiple of 16/],
      ['txt2img', { prompt: 'x', batch_size: 3, n_iter: 3 }, 422, ['body', 'batch_size'], /at most 4/],
      ['txt2img', { prompt: 'x', sampler_name: 'DPM++ 2M Karras' }, 422, ['body', 'sampler_name'], /Sampler not found/],
      ['txt2img', { prompt: 'x', override_settings: { sd_model_checkpoint: 'other.safetensors' } }, 422, ['body', 'override_settings', 'sd_model_checkpoint'], /cannot switch models/],
      ['txt2img', '{"prompt": ', 422, ['body'], /not valid JSON/],
      ['img2img', { prompt: 'x' }, 404, null, /Init image not found/],
      ['img2img', { prompt: 'x', init_images: [pictureB64(64, 64)], denoising_strength: 2 }, 422, ['body', 'denoising_strength'], /<= 1/],
      ['img2img', { prompt: 'x', init_images: ['bm90IGFuIGltYWdl'] }, 422, ['body', 'init_images', '0'], /not a PNG or JPEG/],
      ['img2img', { prompt: 'x', init_images: [pictureB64(64, 64)], mask: maskB64(32, 32, () => true) }, 422, ['body', 'mask'], /same size/],
      ['options', { sd_model_checkpoint: 'nope' }, 422, ['body', 'sd_model_checkpoint'], /cannot switch models/],
      ['png-info', { image: 42 }, 422, ['body', 'image'], /base64/],
    ];
    for (const [route, body, status, loc, message] of cases) {
      const res = await postJSON(api(route), body);
      assert.equal(res.status, status, `${route} ${JSON.stringify(body).slice(0, 80)}`);
      const b = (await res.json()) as { detail: { loc: string[]; msg: string }[] | string; error?: string };
      if (loc) {
        assert.ok(Array.isArray(b.detail));
        assert.deepEqual(b.detail[0]!.loc, loc);
        assert.match(b.detail[0]!.msg, message);
      } else {
        assert.equal(b.error, 'HTTPException');
        assert.match(String(b.detail), message);
      }
    }
    assert.equal((await generate('txt2img', { prompt: 'still serving', steps: 1, width: 64, height: 64 })).images.length, 1);
  });
});
