/**
 * Ordinary mistakes reach the user as one line, not a stack trace (review M1): an operating-system error from
 * deep inside a command (here: `sd3 serve` on a port already taken) is said plainly with exit code 1.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { runCLI } from '../helpers/cli.js';

test('sd3 serve on a busy port: one line naming the port, exit 1, no stack', { timeout: 120_000 }, async () => {
  const busy = net.createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  const port = (busy.address() as net.AddressInfo).port;
  try {
    const r = await runCLI(['serve', '-m', 'tiny-random', '--port', String(port), '--threads', '1']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`sd3 serve: .*${port}.*(in use|EADDRINUSE)`));
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'a stack trace was printed');
    assert.doesNotMatch(r.stderr, /unexpected error/);
  } finally {
    busy.close();
  }
});

test('a batch whose second file cannot be written leaves none of its files (all or none)', { timeout: 120_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sd3-cli-save-'));
  try {
    fs.mkdirSync(path.join(dir, 'out-2.png')); // a folder where the second image should go
    const r = await runCLI(['generate', '-m', 'tiny-random', '--width', '32', '--height', '32', '--steps', '1', '--seed', '1', '--threads', '1',
      '--batch', '2', '-p', 'x', '-o', path.join(dir, 'out.png')]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /sd3 generate: could not write .*out-2\.png/);
    assert.deepEqual(fs.readdirSync(dir), ['out-2.png'], 'out-1.png (or a temporary file) was left behind');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('Ctrl-C after the last step (during the decode) writes nothing and exits 130 (review H2)', { timeout: 120_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sd3-cli-h2-'));
  try {
    let sent = false;
    // 1024x1024 on tiny-random: one step, then a decode long enough for the signal to arrive during it.
    const r = await runCLI(['generate', '-m', 'tiny-random', '--width', '1024', '--height', '1024', '--steps', '1', '--cfg-scale', '1', '--seed', '1',
      '--threads', '1', '-p', 'x', '-o', path.join(dir, 'out.png')], {
      onStderr: (child, soFar) => {
        if (!sent && /^step 1\/1/m.test(soFar)) { sent = true; child.kill('SIGINT'); }
      },
    });
    assert.ok(sent, `no last-step line seen: ${r.stderr}`);
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, /stopped; nothing was written/);
    assert.deepEqual(fs.readdirSync(dir), []);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
