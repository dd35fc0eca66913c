/**
 * The server's defaults for what a request leaves out are the served model's own (SD3.5's 40 / 4.5, Turbo's
 * 4 / 1, a checkpoint's metadata), not KerasHub's 28 / 7 for every model: checked with the demo checkpoint,
 * which states its guidance in its metadata.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { readAllSafetensors } from '../../src/core/safetensors.js';
import { loadPreset } from '../../src/presets/index.js';
import { demoCheckpointPath } from '../../src/presets/demo.js';
import type { LoadedModel } from '../../src/server/engine.js';
import { type TestServer, postJSON, startTiny } from './helpers.js';

describe('server defaults follow the model', () => {
  let model: LoadedModel;
  let srv: TestServer;
  const stated = Number(readAllSafetensors(demoCheckpointPath()).metadata['sampling.guidance_scale']);
  before(async () => {
    model = { name: 'demo', ...(await loadPreset('demo', { threads: 1 })) };
    srv = await startTiny({ model, modelName: 'demo' });
  });
  after(async () => {
    await srv.stop();
    await model.backbone.dispose();
  });

  it('/api/config shows the checkpoint\'s own guidance for every mode', async () => {
    assert.ok(Number.isFinite(stated) && stated !== 7, `the demo states ${stated}`);
    const config = await (await fetch(`${srv.url}/api/config`)).json() as { defaults: { cfg_scale: number; steps: number }; defaults_by_mode: Record<string, { cfg_scale: number; steps: number }> };
    assert.equal(config.defaults.cfg_scale, stated);
    assert.deepEqual(Object.values(config.defaults_by_mode).map((d) => d.cfg_scale), [stated, stated, stated]);
    assert.deepEqual(Object.values(config.defaults_by_mode).map((d) => d.steps), [28, 50, 50], 'no stated steps: KerasHub\'s per task');
  });

  it('an A1111 txt2img without cfg_scale runs at the stated guidance, and gives what the library gives', async () => {
    const body = { prompt: 'a large white square in the top right corner, on a blue background', steps: 6, seed: 12, width: 64, height: 64 };
    const r = await (await postJSON(`${srv.url}/sdapi/v1/txt2img`, body)).json() as { images: string[]; info: string };
    assert.equal((JSON.parse(r.info) as { cfg_scale: number }).cfg_scale, stated);
    const explicit = await (await postJSON(`${srv.url}/sdapi/v1/txt2img`, { ...body, cfg_scale: stated })).json() as { images: string[] };
    const keras = await (await postJSON(`${srv.url}/sdapi/v1/txt2img`, { ...body, cfg_scale: 7 })).json() as { images: string[] };
    assert.equal(r.images[0], explicit.images[0], 'the same image as naming the stated guidance');
    assert.notEqual(r.images[0], keras.images[0], 'and not the image at 7');
  });
});
