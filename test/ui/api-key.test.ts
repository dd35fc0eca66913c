/**
 * The web page against `sd3 serve --api-key`: the page offers the key field (the server's /api/config says a key
 * is needed), a Generate without the key is refused in words, and with the key typed in the job runs, its events
 * arrive and its image loads (the key goes as a bearer token, and as ?api_key= where a browser sends no headers).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { type RunningServer, collectProblems, launchChromium, startServe } from './harness.js';

const KEY = 'correct-horse-battery-staple';

let server: RunningServer;
let browser: Browser;
let page: Page;
let problems: string[];

before(async () => {
  browser = await launchChromium();
  server = await startServe(['--api-key', KEY]);
  page = await browser.newPage({ viewport: { width: 1100, height: 800 } });
  page.setDefaultTimeout(60_000);
  // The refusal this test provokes (401 on /api/jobs) is logged by Chromium as a failed load.
  problems = collectProblems(page, new URL(server.url).origin, (m) => /status of 401/.test(m.text()) && m.location().url.endsWith('/api/jobs'));
  await page.goto(server.url);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

describe('the web page with an API key', () => {
  it('asks for the key, says when it is missing, and works once it is given', async () => {
    const keyField = page.getByLabel('API key');
    await keyField.waitFor();
    await page.getByRole('textbox', { name: 'Prompt', exact: true }).fill('a paper boat');
    await page.getByLabel('Steps', { exact: true }).fill('2');
    await page.getByLabel('Width', { exact: true }).fill('64');
    await page.getByLabel('Height', { exact: true }).fill('64');

    const refused = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/jobs');
    await page.getByRole('button', { name: 'Generate' }).click();
    assert.equal((await refused).status(), 401);
    await page.getByRole('alert').filter({ hasText: /API key/ }).waitFor();
    assert.equal(await keyField.getAttribute('aria-invalid'), 'true');

    await keyField.fill(KEY);
    const accepted = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/jobs');
    await page.getByRole('button', { name: 'Generate' }).click();
    const res = await accepted;
    assert.equal(res.status(), 202);
    assert.equal(res.request().headers().authorization, `Bearer ${KEY}`);
    const item = page.getByRole('list', { name: 'Results' }).getByRole('listitem').first();
    await item.waitFor();
    await page.getByRole('status').filter({ hasText: /^Done: 1 image/ }).waitFor();
    // The image itself loaded (an <img> cannot send the bearer token: the page put the key in its URL).
    const loaded = await item.getByRole('img').evaluate(async (el: { decode(): Promise<void>; naturalWidth: number }) => { await el.decode(); return el.naturalWidth; });
    assert.equal(loaded, 64);
    assert.deepEqual(problems, []);
  });
});
