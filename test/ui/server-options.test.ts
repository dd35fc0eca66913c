/**
 * The web page against `sd3 serve --api-key KEY --job-timeout 1`: the page offers the key field (the server's
 * /api/config says a key is needed), a Generate without the key is refused in words, and with the key typed in
 * the job runs, its events arrive and its image loads (the key goes as a bearer token, and as ?api_key= where a
 * browser sends no headers). A job past the deadline is reported as failed, with the server's reason. With the
 * event stream blocked, the page follows its job by polling.
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
  server = await startServe(['--api-key', KEY, '--job-timeout', '1']);
  page = await browser.newPage({ viewport: { width: 1100, height: 800 } });
  page.setDefaultTimeout(60_000);
  // The refusal this test provokes (401 on /api/jobs) and the event stream it blocks are logged by Chromium.
  problems = collectProblems(page, new URL(server.url).origin, (m) => (/status of 401/.test(m.text()) && m.location().url.endsWith('/api/jobs'))
    || (/net::ERR_FAILED/.test(m.text()) && /\/events/.test(m.location().url)));
  await page.goto(server.url);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

describe('the web page with an API key and a job deadline', () => {
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
  });

  it('follows the job by polling when the event stream cannot be opened', async () => {
    const count = await page.getByRole('list', { name: 'Results' }).getByRole('listitem').count();
    await page.route('**/api/jobs/*/events*', (route) => route.abort());
    await page.getByLabel('Steps', { exact: true }).fill('3');
    await page.getByRole('button', { name: 'Generate' }).click();
    await page.getByRole('list', { name: 'Results' }).getByRole('listitem').nth(count).waitFor();
    await page.getByRole('status').filter({ hasText: /^Done: 1 image/ }).waitFor();
    await page.unroute('**/api/jobs/*/events*');
  });

  it('a job that runs past the server deadline is reported as failed, with the reason in words', async () => {
    await page.getByLabel('Steps', { exact: true }).fill('150');
    await page.getByLabel('Width', { exact: true }).fill('512');
    await page.getByLabel('Height', { exact: true }).fill('512');
    await page.getByRole('button', { name: 'Generate' }).click();
    await page.getByRole('alert').filter({ hasText: /^The job failed: .*deadline/ }).waitFor();
    await page.getByRole('status').filter({ hasText: 'Failed.' }).waitFor();
    assert.equal(await page.getByRole('button', { name: 'Generate' }).isEnabled(), true);
  });

  it('had no console error, uncaught error or request off the server', () => {
    assert.deepEqual(problems, []);
  });
});
