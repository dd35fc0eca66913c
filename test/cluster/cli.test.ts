/** `sd3 worker` and `sd3 serve --redis` on the command line: help, and usage errors (exit 2, in words) before any model loads. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runCLI } from '../helpers/cli.js';

describe('sd3 worker / serve --redis (command line)', () => {
  it('worker --help lists its options; serve --help the scale-out ones', async () => {
    const w = await runCLI(['worker', '--help']);
    assert.equal(w.code, 0, w.stderr);
    for (const flag of ['--redis', '--concurrency', '--lock-ms', '--stalled-interval-ms', '--max-attempts', '--result-ttl', '--device', '--int8']) assert.match(w.stdout, new RegExp(flag));
    const s = await runCLI(['serve', '--help']);
    assert.match(s.stdout, /--redis URL/);
    assert.match(s.stdout, /--no-local-worker/);
  });

  it('bad usage exits 2 with a message naming the flag', async () => {
    const cases: [string[], RegExp][] = [
      [['worker', '-m', 'tiny-random'], /--redis URL is required/],
      [['worker', '--redis', 'localhost:6379'], /--redis must start with redis:\/\/ or rediss:\/\/, got "localhost:6379"/],
      [['worker', '--redis', 'redis://127.0.0.1:1', '--concurrency', '0'], /--concurrency must be an integer >= 1, got "0"/],
      [['worker', '--redis', 'redis://127.0.0.1:1', '--max-attempts', 'x'], /--max-attempts must be an integer >= 1/],
      [['serve', '--no-local-worker'], /--no-local-worker needs --redis URL/],
      [['serve', '--redis', 'http://h:1', '--no-local-worker'], /--redis must start with redis:\/\//],
    ];
    for (const [args, re] of cases) {
      const r = await runCLI(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re);
    }
  });
});
