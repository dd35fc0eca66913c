/**
 * The command line around the server: `sd3 serve --help`, `sd3 serve` on tiny-random (flags reach the server,
 * Ctrl-C aborts the running job and exits 0), and `sd3 info FILE.png`.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { TextToImage } from '../../src/presets/tasks.js';
import { REPO, SOURCE_MAIN, runCLI } from '../helpers/cli.js';
import { type SSEEvent, json, postJSON, readSSE } from './helpers.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd3-serve-test-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('sd3 serve', () => {
  it('--help lists the options and how to point clients at it', async () => {
    const r = await runCLI(['serve', '--help']);
    assert.equal(r.code, 0, r.stderr);
    for (const flag of ['--max-queue', '--api-key', '--cors', '--host', '--port', '--max-steps', '--job-timeout', '--preview-vae', '--lora-dir', '--long-prompts']) assert.match(r.stdout, new RegExp(flag));
    assert.match(r.stdout, /baseURL: 'http:\/\/127\.0\.0\.1:7860\/v1'/);
    assert.match(r.stdout, /sdapi\/v1\/txt2img/);
  });

  it('refuses a --lora-dir that is not a folder and an unknown --long-prompts before loading anything', async () => {
    const noDir = await runCLI(['serve', '-m', 'tiny-random', '--port', '0', '--lora-dir', path.join(REPO, 'no-such-lora-folder')]);
    assert.notEqual(noDir.code, 0);
    assert.match(noDir.stderr, /--lora-dir ".*no-such-lora-folder" must be a readable folder/);
    const mode = await runCLI(['serve', '-m', 'tiny-random', '--port', '0', '--long-prompts', 'wrap']);
    assert.notEqual(mode.code, 0);
    assert.match(mode.stderr, /--long-prompts must be truncate or chunk, got "wrap"/);
  });

  it('serves tiny-random with the flags given; Ctrl-C stops the running job and exits 0', { timeout: 120_000 }, async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', SOURCE_MAIN, 'serve', '-m', 'tiny-random', '--port', '0', '--threads', '1', '--width', '64', '--height', '48', '--max-queue', '2', '--max-steps', '500'], {
      cwd: REPO, env: { ...process.env, HF_HUB_OFFLINE: '1' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c; });
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        child.stdout.setEncoding('utf8').on('data', (c: string) => {
          stdout += c;
          const m = /sd3 ready: (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout);
          if (m) resolve(m[1]!);
        });
        void exited.then((code) => reject(new Error(`sd3 serve exited ${code}: ${stderr}`)));
      });
      const config = await json(await fetch(`${url}/api/config`));
      assert.deepEqual([config.width, config.height], [64, 48]);
      assert.equal((config.limits as { max_queue: number; max_steps: number }).max_queue, 2);
      assert.equal((config.limits as { max_steps: number }).max_steps, 500);
      const job = await json(await postJSON(`${url}/api/jobs`, { prompt: 'long', steps: 500, batch_size: 4, width: 256, height: 256 }));
      const events: SSEEvent[] = [];
      const stream = readSSE(await fetch(`${url}${job.events_url}`), (e) => {
        if (e.event === 'progress' && (e.data as { step: number }).step === 1) child.kill('SIGINT');
        events.push(e);
      });
      await stream;
      assert.equal(events.at(-1)!.event, 'cancelled');
      assert.ok(events.filter((e) => e.event === 'progress').length < 500);
      assert.equal(await exited, 0, stderr);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('sd3 info', () => {
  it('prints the A1111 infotext and the JSON record of a generated PNG (--json too)', async () => {
    const task = await TextToImage.fromPreset('tiny-random', { imageShape: { width: 64, height: 64 }, threads: 1 });
    const file = path.join(tmp, 'out.png');
    try {
      await (await task.generate({ prompts: '富士山, at dawn', negativePrompts: 'clouds' }, { numSteps: 1, seed: 42 })).save(file);
    } finally {
      await task.dispose();
    }
    const r = await runCLI(['info', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /parameters \(A1111 infotext\):\n富士山, at dawn\nNegative prompt: clouds\nSteps: 1, Sampler: Euler/);
    assert.match(r.stdout, /sd3-ts \(JSON\):\n\{\n {2}"task": "text-to-image"/);
    const j = await runCLI(['info', file, '--json']);
    const out = JSON.parse(j.stdout) as { parsed: { prompt: string; negativePrompt: string; params: Record<string, string> }; parameters: { seed: number } };
    assert.deepEqual([out.parsed.prompt, out.parsed.negativePrompt, out.parsed.params.Seed, out.parameters.seed], ['富士山, at dawn', 'clouds', '42', 42]);
    const bad = await runCLI(['info', path.join(tmp, 'missing.png')]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /cannot read/);
  });
});
