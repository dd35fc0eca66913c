/**
 * The web page (src/server/web) in headless Chromium against the real `sd3 serve` with the tiny-random model:
 * text to image with the progress bar advancing and the images arriving in the gallery, inpainting with a mask
 * painted by mouse on the canvas (the mask the page sends is checked pixel by pixel), Cancel on a running job,
 * and errors in words. The page may fetch nothing from anywhere but the server and must run under its CSP
 * without a console error. A screenshot of the finished page is saved outside the repository.
 */
import assert from 'node:assert/strict';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page, Request } from 'playwright-core';
import { PNG } from 'pngjs';
import { type RunningServer, collectProblems, launchChromium, startServe } from './harness.js';

interface Config {
  model: string;
  status: string;
  width: number;
  height: number;
  limits: { max_steps: number; max_batch: number; max_width: number; max_height: number; max_prompt_chars: number };
}

/** Where the screenshots go: $TMPDIR (or the system's temporary folder), never the repository. */
const SHOTS = process.env.TMPDIR ?? os.tmpdir();
const SCREENSHOT = path.join(SHOTS, 'sd3-ui-page.png');
const RUNNING_SCREENSHOT = path.join(SHOTS, 'sd3-ui-running.png');

let server: RunningServer;
let browser: Browser;
let page: Page;
let config: Config;
/** Problems the page had: console errors (CSP violations among them), uncaught errors, requests off the server. */
let problems: string[] = [];
/** Every POST /api/jobs the page made, with the body it sent. */
const submitted: Array<Record<string, unknown>> = [];

function decodePNGDataURL(v: unknown): PNG {
  assert.equal(typeof v, 'string');
  const b64 = (v as string).replace(/^data:image\/png;base64,/, '');
  return PNG.sync.read(Buffer.from(b64, 'base64'));
}

/** A deterministic RGB picture with a clear square in it, as the upload. */
function uploadPNG(width: number, height: number): Buffer {
  const png = new PNG({ width, height });
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 4;
      const inSquare = x > width / 4 && x < width / 2 && y > height / 4 && y < (3 * height) / 4;
      png.data[i] = Math.round((255 * x) / (width - 1));
      png.data[i + 1] = inSquare ? 240 : Math.round((255 * y) / (height - 1));
      png.data[i + 2] = inSquare ? 30 : 128;
      png.data[i + 3] = 255;
    }
  }
  return PNG.sync.write(png);
}

/*
 * In-page code is written as strings or with the small structural types below: the project's typecheck has no
 * DOM library (adding it would let DOM globals leak into the Node sources unnoticed).
 */
interface ImageElement { decode(): Promise<void>; naturalWidth: number; naturalHeight: number }
interface AttributeElement { removeAttribute(name: string): void }

/** Records every value the progress bar's aria-valuenow takes from now on (window.__progress). */
const RECORD_PROGRESS = `(() => {
  const bar = document.querySelector('[role="progressbar"]');
  window.__progressObserver?.disconnect();
  window.__progress = [];
  window.__progressObserver = new MutationObserver(() => { window.__progress.push(Number(bar.getAttribute('aria-valuenow'))); });
  window.__progressObserver.observe(bar, { attributes: true, attributeFilter: ['aria-valuenow'] });
})()`;
const recordProgress = (): Promise<void> => page.evaluate(RECORD_PROGRESS);
const recorded = (): Promise<number[]> => page.evaluate('window.__progress');
const naturalSize = async (el: ImageElement): Promise<number[]> => { await el.decode(); return [el.naturalWidth, el.naturalHeight]; };
/** Polls from here (page.waitForFunction would need eval, which the page's policy forbids). */
async function waitForProgress(atLeast: number): Promise<void> {
  const bar = page.getByRole('progressbar');
  for (const deadline = Date.now() + 60_000; Number(await bar.getAttribute('aria-valuenow')) < atLeast;) {
    assert.ok(Date.now() < deadline, `the progress bar did not reach ${atLeast} within 60 s`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
const galleryItems = () => page.getByRole('list', { name: 'Results' }).getByRole('listitem');
const status = () => page.getByRole('status');

before(async () => {
  // The browser first: without one the test fails at once, saying how to install it.
  browser = await launchChromium();
  server = await startServe();
  // The server listens while the model loads; the page is tested on a loaded one.
  for (let i = 0; ; i++) {
    config = (await (await fetch(`${server.url}/api/config`)).json()) as Config;
    if (config.status === 'ready') break;
    assert.ok(config.status === 'loading' && i < 600, `the model did not load: /api/config says ${JSON.stringify(config)}; server output:\n${server.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(60_000);
  // The one refusal the test asks for on purpose (too many steps) is logged by Chromium as a failed load.
  problems = collectProblems(page, new URL(server.url).origin, (m) => /status of 400/.test(m.text()) && m.location().url.endsWith('/api/jobs'));
  page.on('request', (r: Request) => {
    if (r.method() === 'POST' && new URL(r.url()).pathname === '/api/jobs') {
      assert.match(r.headers()['content-type'] ?? '', /^application\/json/);
      submitted.push(r.postDataJSON() as Record<string, unknown>);
    }
  });
  await page.goto(server.url);
  // The configuration arrived: the header names the model.
  await page.getByText(config.model, { exact: false }).first().waitFor();
});

after(async () => {
  await browser?.close();
  const code = await server?.stop();
  // Ctrl-C stops the server cleanly (exit 0 or 130, as the CLI documents), not by a crash.
  if (server) assert.ok(code === 0 || code === 130, `sd3 serve exited with ${code} after SIGINT; its output:\n${server.output()}`);
});

describe('the web page in headless Chromium', () => {
  it('has the controls a screen reader or a test can find by name', async () => {
    await page.getByRole('textbox', { name: 'Prompt', exact: true }).waitFor();
    await page.getByRole('textbox', { name: 'Negative prompt' }).waitFor();
    await page.getByRole('button', { name: 'Generate' }).waitFor();
    assert.equal(await page.getByRole('button', { name: 'Cancel' }).isDisabled(), true, 'Cancel is off while nothing runs');
    await page.getByRole('progressbar', { name: 'Progress' }).waitFor();
    for (const name of ['Steps', 'Guidance', 'Seed', 'Width', 'Height', 'Batch']) await page.getByRole('spinbutton', { name, exact: true }).waitFor();
    await page.getByRole('button', { name: 'Random seed' }).waitFor();
    // A strict content security policy is in force (so the no-console-error check below also means no violation).
    const csp = await page.locator('meta[http-equiv="Content-Security-Policy"]').getAttribute('content');
    assert.match(csp ?? '', /default-src 'none'; script-src 'self'; style-src 'self'/);
    // The limits from /api/config reach the inputs.
    assert.equal(await page.getByLabel('Steps', { exact: true }).getAttribute('max'), String(config.limits.max_steps));
    assert.equal(await page.getByLabel('Width', { exact: true }).inputValue(), String(config.width));
  });

  it('text to image: Generate, the progress bar advances step by step, two images arrive in the gallery', async () => {
    const steps = 6;
    await page.getByRole('textbox', { name: 'Prompt', exact: true }).fill('a lighthouse on a cliff at dusk');
    await page.getByRole('textbox', { name: 'Negative prompt' }).fill('blurry');
    await page.getByLabel('Steps', { exact: true }).fill(String(steps));
    await page.getByLabel('Width', { exact: true }).fill('96');
    await page.getByLabel('Height', { exact: true }).fill('64');
    await page.getByLabel('Seed', { exact: true }).fill('42');
    await page.getByLabel('Batch', { exact: true }).fill('2');
    await recordProgress();
    await page.getByRole('button', { name: 'Generate' }).click();
    await galleryItems().nth(1).waitFor();
    await status().filter({ hasText: /^Done: 2 images/ }).waitFor();

    const body = submitted.at(-1)!;
    assert.deepEqual(
      { prompt: body.prompt, negative_prompt: body.negative_prompt, steps: body.steps, width: body.width, height: body.height, seed: body.seed, batch_size: body.batch_size, image: body.image },
      { prompt: 'a lighthouse on a cliff at dusk', negative_prompt: 'blurry', steps, width: 96, height: 64, seed: 42, batch_size: 2, image: undefined },
    );
    // One value per step, in order, ending full.
    const values = (await recorded()).filter((v) => v > 0);
    assert.deepEqual(values, Array.from({ length: steps }, (_, i) => i + 1), `progress values seen: ${values}`);
    const bar = page.getByRole('progressbar');
    assert.equal(await bar.getAttribute('aria-valuenow'), String(steps));
    assert.equal(await bar.getAttribute('aria-valuemax'), String(steps));

    // Both images, loaded, at the asked size, with their seeds (image i = seed + i) in words and a download link.
    for (const [i, seed] of [[0, 42], [1, 43]] as const) {
      const item = galleryItems().nth(i);
      const img = item.getByRole('img');
      await img.waitFor();
      const size = await img.evaluate(naturalSize);
      assert.deepEqual(size, [96, 64]);
      assert.match(await item.textContent() ?? '', new RegExp(`seed ${seed} · ${steps} steps · guidance 7 · 96×64`));
      const href = await item.getByRole('link', { name: /^Download/ }).getAttribute('href');
      const res = await page.request.get(new URL(href!, server.url).href);
      assert.equal(res.status(), 200);
      assert.deepEqual([...(await res.body()).subarray(0, 8)], [137, 80, 78, 71, 13, 10, 26, 10], 'the download is a PNG');
    }
  });

  it('image to image from a gallery result: "Use as input", Generate, the result arrives', async () => {
    const before = await galleryItems().count();
    await galleryItems().first().getByRole('button', { name: /^Use .* as input$/ }).click();
    // Loaded: the hint names the result's file and size.
    await page.getByText('sd3-42-0.png: 96×64.', { exact: true }).waitFor();
    await page.locator('#mask-canvas').waitFor();
    assert.equal(await page.getByLabel('Image to image').isChecked(), true);
    // The first result was 96x64: that is the input's size, and so the output's.
    assert.equal(await page.getByLabel('Width', { exact: true }).inputValue(), '96');
    assert.equal(await page.getByLabel('Height', { exact: true }).inputValue(), '64');
    await page.getByLabel('Batch', { exact: true }).fill('1');
    await page.getByRole('button', { name: 'Generate' }).click();
    await galleryItems().nth(before).waitFor();
    await status().filter({ hasText: /^Done: 1 image/ }).waitFor();
    const body = submitted.at(-1)!;
    assert.equal(body.mask, undefined);
    const image = decodePNGDataURL(body.image);
    assert.deepEqual([image.width, image.height], [96, 64]);
    assert.match(await galleryItems().first().textContent() ?? '', /96×64 · image to image · strength/);
    await page.getByLabel('Batch', { exact: true }).fill('2');
  });

  it('inpainting: upload an image, paint the mask with the mouse, the page sends it and the result arrives', async () => {
    const before = await galleryItems().count();
    await page.getByLabel('Inpaint').check();
    await page.getByLabel('Image', { exact: true }).setInputFiles({ name: 'square.png', mimeType: 'image/png', buffer: uploadPNG(128, 96) });
    const canvas = page.locator('#mask-canvas');
    await canvas.waitFor();
    // The output size follows the image.
    assert.equal(await page.getByLabel('Width', { exact: true }).inputValue(), '128');
    assert.equal(await page.getByLabel('Height', { exact: true }).inputValue(), '96');
    // Generate before painting: the page asks for a mask in words.
    await page.getByRole('button', { name: 'Generate' }).click();
    await page.getByRole('alert').filter({ hasText: 'Paint over the part of the image to repaint.' }).waitFor();

    // A stroke across the right half of the image, in image pixels y = 48, x from 80 to 112, brush 16.
    await page.getByLabel('Brush size').fill('16');
    const box = (await canvas.boundingBox())!;
    const at = (x: number, y: number) => [box.x + (x / 128) * box.width, box.y + (y / 96) * box.height] as const;
    await page.mouse.move(...at(80, 48));
    await page.mouse.down();
    for (let x = 84; x <= 112; x += 4) await page.mouse.move(...at(x, 48), { steps: 2 });
    await page.mouse.up();
    // Erase the stroke's right end again (a dab at x = 112 clears x 104-120).
    const erase = page.getByRole('button', { name: 'Erase' });
    await erase.click();
    assert.equal(await erase.getAttribute('aria-pressed'), 'true');
    await page.mouse.move(...at(112, 48));
    await page.mouse.down();
    await page.mouse.up();
    await erase.click();

    await page.getByLabel('Steps', { exact: true }).fill('4');
    await recordProgress();
    await page.getByRole('button', { name: 'Generate' }).click();
    await galleryItems().nth(before + 1).waitFor();
    await status().filter({ hasText: /^Done: 2 images/ }).waitFor();

    const body = submitted.at(-1)!;
    const image = decodePNGDataURL(body.image);
    const mask = decodePNGDataURL(body.mask);
    assert.deepEqual([image.width, image.height, mask.width, mask.height], [128, 96, 128, 96]);
    // The upload arrived unchanged (no rescale at 128x96): a pixel inside the square.
    const p = (48 * 128 + 40) * 4;
    assert.deepEqual([...image.data.subarray(p, p + 3)], [80, 240, 30]);
    // White along the stroke, black far from it and where it was erased.
    const lum = (x: number, y: number) => mask.data[(y * 128 + x) * 4]!;
    for (const x of [82, 90, 98]) assert.ok(lum(x, 48) > 200, `mask at (${x}, 48) is ${lum(x, 48)}, expected painted`);
    for (const [x, y] of [[10, 10], [40, 48], [96, 20], [96, 80], [125, 90], [108, 48], [112, 48]] as const) assert.equal(lum(x, y), 0, `mask at (${x}, ${y}) should be unpainted`);
    assert.ok(Number(body.strength) > 0 && Number(body.strength) <= 1);

    // Image-to-image and inpainting run the last strength x steps of the schedule: one progress value for each.
    const total = Number(await page.getByRole('progressbar').getAttribute('aria-valuemax'));
    assert.ok(total >= 1 && total <= 4, `${total} steps run of 4`);
    assert.deepEqual((await recorded()).filter((v) => v > 0), Array.from({ length: total }, (_, i) => i + 1));
    const newest = galleryItems().first();
    assert.match(await newest.textContent() ?? '', /128×96 · inpaint/);
    const size = await newest.getByRole('img').evaluate(naturalSize);
    assert.deepEqual(size, [128, 96]);
  });

  it('queue position while another client\'s job runs, then Cancel stops the page\'s running job', async () => {
    const before = await galleryItems().count();
    await page.getByLabel('Text to image').check();
    const side = (max: number) => String(Math.min(max, 512) - (Math.min(max, 512) % 16));
    await page.getByLabel('Width', { exact: true }).fill(side(config.limits.max_width));
    await page.getByLabel('Height', { exact: true }).fill(side(config.limits.max_height));
    await page.getByLabel('Batch', { exact: true }).fill('1');
    await page.getByLabel('Steps', { exact: true }).fill(String(config.limits.max_steps));

    // Another client's long job (the largest the test uses, some seconds) holds the worker: the page's job waits.
    const big = Number(side(Math.min(config.limits.max_width, config.limits.max_height)));
    const other = (await (await fetch(`${server.url}/api/jobs`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'someone else', steps: config.limits.max_steps, width: big, height: big }),
    })).json()) as { id: string };
    const created = page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/api/jobs');
    await page.getByRole('button', { name: 'Generate' }).click();
    const job = (await (await created).json()) as { id: string; queue_position: number };
    assert.equal(job.queue_position, 1);
    await status().filter({ hasText: 'Queued: 1 job ahead.' }).waitFor();
    assert.equal(await page.getByRole('progressbar').getAttribute('aria-valuenow'), '0');
    const freed = await fetch(`${server.url}/api/jobs/${other.id}/cancel`, { method: 'POST' });
    assert.equal(freed.status, 200);

    // The page's job starts: the bar moves and the preview shows; then Cancel.
    await waitForProgress(2);
    await page.getByRole('img', { name: 'Live preview of the running job' }).waitFor();
    await page.screenshot({ path: RUNNING_SCREENSHOT, fullPage: true });
    await page.getByRole('button', { name: 'Cancel' }).click();
    await status().filter({ hasText: /^Cancelled/ }).waitFor();

    const state = (await (await fetch(`${server.url}/api/jobs/${job.id}`)).json()) as { status: string; progress: { step: number; total: number } };
    assert.equal(state.status, 'cancelled');
    assert.ok(state.progress.step < state.progress.total, `cancelled at step ${state.progress.step} of ${state.progress.total}`);
    assert.equal(await galleryItems().count(), before, 'a cancelled job adds nothing to the gallery');
    assert.equal(await page.getByRole('button', { name: 'Generate' }).isEnabled(), true);
    assert.equal(await page.getByRole('button', { name: 'Cancel' }).isDisabled(), true);
  });

  it('errors are shown in words: a file that is no image, a missing prompt, a request the server refuses naming the field', async () => {
    // A file that is no image.
    await page.getByLabel('Image to image').check();
    await page.getByLabel('Image', { exact: true }).setInputFiles({ name: 'notes.png', mimeType: 'image/png', buffer: Buffer.from('not a picture') });
    await page.getByRole('alert').filter({ hasText: '"notes.png" is not an image this browser can read' }).waitFor();
    await page.getByLabel('Text to image').check();

    const prompt = page.getByRole('textbox', { name: 'Prompt', exact: true });
    const saved = await prompt.inputValue();
    await prompt.fill('   ');
    await page.getByRole('button', { name: 'Generate' }).click();
    await page.getByRole('alert').filter({ hasText: 'Write a prompt first.' }).waitFor();
    assert.equal(await prompt.getAttribute('aria-invalid'), 'true');

    // A page whose limits are stale (no max on Steps any more) sends too many steps; the server's 400 is shown.
    await prompt.fill(saved);
    const steps = page.getByLabel('Steps', { exact: true });
    await steps.evaluate((el: AttributeElement) => el.removeAttribute('max'));
    await steps.fill(String(config.limits.max_steps + 1));
    const refused = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/jobs');
    await page.getByRole('button', { name: 'Generate' }).click();
    assert.equal((await refused).status(), 400);
    const alert = page.getByRole('alert');
    await alert.filter({ hasText: /steps/ }).waitFor();
    assert.match(await alert.textContent() ?? '', new RegExp(String(config.limits.max_steps)));
    assert.equal(await steps.getAttribute('aria-invalid'), 'true');
    await status().filter({ hasText: 'Not started.' }).waitFor();

    // The same page goes on working after the errors.
    await steps.fill('2');
    const count = await galleryItems().count();
    await page.getByRole('button', { name: 'Generate' }).click();
    await galleryItems().nth(count).waitFor();
    assert.equal(await page.getByRole('alert').isHidden(), true);
  });

  it('ran with no console error, no uncaught error and no request off the server; saves a screenshot', async () => {
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    console.log(`# screenshots: ${SCREENSHOT} (the finished page), ${RUNNING_SCREENSHOT} (a job running)`);
    assert.deepEqual(problems, []);
  });
});
