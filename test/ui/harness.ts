/**
 * What the browser test runs on: the real `sd3 serve` (src/cli/main.ts through tsx, the tiny-random model, a
 * free 127.0.0.1 port) and Debian's Chromium driven headless by playwright-core, which downloads no browser.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { type Browser, type ConsoleMessage, type Page, chromium } from 'playwright-core';
import { REPO, SOURCE_MAIN } from '../helpers/cli.js';

/** Debian's package puts the browser here; CHROMIUM_PATH names another. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Launches Chromium headless; a missing browser is an error that says how to install it, never a skip. */
export async function launchChromium(): Promise<Browser> {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`the browser test needs Chromium at ${CHROMIUM}, which does not exist: install Debian's package `
      + '(apt-get update && apt-get install -y chromium, as .ci/run does) or set CHROMIUM_PATH to a Chromium binary');
  }
  // As root (CI, containers) Chromium refuses to start with its sandbox on.
  return chromium.launch({ executablePath: CHROMIUM, headless: true, chromiumSandbox: false, timeout: 60_000 });
}

export interface RunningServer {
  readonly url: string;
  readonly child: ChildProcess;
  /** Everything the server printed, for failure messages. */
  output(): string;
  /** SIGINT (as Ctrl-C), then waits for the process to exit; SIGKILL if it has not within 15 s. */
  stop(): Promise<number | null>;
}

/** `sd3 serve -m tiny-random --port 0 ...args`, resolved once it prints the address it listens on. */
export function startServe(args: readonly string[] = []): Promise<RunningServer> {
  const child = spawn(process.execPath, ['--import', 'tsx', SOURCE_MAIN, 'serve', '-m', 'tiny-random', '--port', '0', '--threads', '1', ...args], {
    cwd: REPO,
    env: { ...process.env, HF_HUB_OFFLINE: '1', NO_COLOR: '1', FORCE_COLOR: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
    child.kill('SIGINT');
    const guard = setTimeout(() => child.kill('SIGKILL'), 15_000);
    const code = await exited;
    clearTimeout(guard);
    return code;
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      void stop();
      reject(new Error(`sd3 serve printed no address within 60 s; its output:\n${out}`));
    }, 60_000);
    const onData = (c: string) => {
      out += c;
      const m = /http:\/\/127\.0\.0\.1:\d+/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ url: m[0], child, output: () => out, stop });
      }
    };
    child.stdout.setEncoding('utf8').on('data', onData);
    child.stderr.setEncoding('utf8').on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`sd3 serve exited (${code}) before listening; its output:\n${out}`));
    });
  });
}

/**
 * Collects what went wrong in `page`: console errors (CSP violations among them), uncaught errors, and requests
 * to anywhere but `origin`. `expected` lets through console errors a test provokes on purpose (a refused request
 * is logged by Chromium as a failed load).
 */
export function collectProblems(page: Page, origin: string, expected: (m: ConsoleMessage) => boolean = () => false): string[] {
  const problems: string[] = [];
  page.on('console', (m) => { if (m.type() === 'error' && !expected(m)) problems.push(`console: ${m.text()} (${m.location().url})`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith('data:') && !u.startsWith('blob:') && new URL(u).origin !== origin) problems.push(`request off the server: ${u}`);
  });
  return problems;
}
