/**
 * The pieces of a cluster for the tests and the cluster benchmark: a real redis-server on a free loopback port
 * with a temp dir and no persistence, `sd3 worker` and `sd3 serve --redis` child processes (the CLI as users
 * run it), and cleanup that ends every process started here.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = path.join(ROOT, 'src/cli/main.ts');

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export interface Proc {
  readonly child: ChildProcess;
  /** stdout and stderr so far. */
  output(): string;
  /** Resolves with the exit code (or the signal's name). */
  readonly exited: Promise<number | string>;
  alive(): boolean;
}

const started = new Set<Proc>();

function launch(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Proc {
  const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
  child.stderr!.on('data', (c: Buffer) => { out += c.toString(); });
  let done = false;
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => { done = true; resolve(code ?? signal ?? -1); });
    // A missing program (e.g. no redis-server installed) fails the test in words, not with a crash.
    child.once('error', (e: NodeJS.ErrnoException) => {
      out += e.code === 'ENOENT' ? `${cmd} is not installed (on Debian: apt-get install -y ${cmd === 'redis-server' ? 'redis-server' : cmd})\n` : `${cmd}: ${e.message}\n`;
      done = true;
      resolve(-1);
    });
  });
  const p: Proc = { child, output: () => out, exited, alive: () => !done };
  started.add(p);
  void exited.then(() => started.delete(p));
  return p;
}

/** Waits until the process prints a line matching `re` (its match), or fails with its output. */
export async function waitFor(p: Proc, re: RegExp, ms = 60_000): Promise<RegExpMatchArray> {
  const t0 = Date.now();
  for (;;) {
    const m = re.exec(p.output());
    if (m) return m;
    if (!p.alive()) throw new Error(`the process exited before printing ${re}:\n${p.output()}`);
    if (Date.now() - t0 > ms) throw new Error(`no ${re} within ${ms} ms:\n${p.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface RedisServer {
  readonly url: string;
  readonly port: number;
  proc: Proc;
  /** Stops it (its data is gone: no persistence). */
  stop(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
}

export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sd3-redis-'));
  const run = async () => {
    const p = launch('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--protected-mode', 'yes']);
    await waitFor(p, /Ready to accept connections/, 10_000);
    return p;
  };
  const r: RedisServer = {
    url: `redis://127.0.0.1:${port}`,
    port,
    proc: await run(),
    async stop() {
      if (r.proc.alive()) r.proc.child.kill('SIGTERM');
      await r.proc.exited;
    },
    async start() {
      r.proc = await run();
    },
  };
  return r;
}

export interface WorkerProc extends Proc {
  readonly id: string;
}

/** `sd3 worker -m tiny-random` on one thread with short lock and stall checks. */
export async function startWorkerProc(redisUrl: string, extra: string[] = []): Promise<WorkerProc> {
  const p = launch(process.execPath, ['--import', 'tsx', CLI, 'worker', '-m', 'tiny-random', '--redis', redisUrl, '--threads', '1',
    '--width', '64', '--height', '64', '--lock-ms', '3000', '--stalled-interval-ms', '1000', ...extra]);
  const m = await waitFor(p, /sd3 worker (\S+) ready/);
  return Object.assign(p, { id: m[1]! });
}

export interface FrontEnd extends Proc {
  readonly url: string;
}

/** `sd3 serve --redis URL --no-local-worker` on a free port: the thin front end (with `localWorker`, one that runs jobs too). */
export async function startFrontEnd(redisUrl: string, extra: string[] = [], localWorker = false): Promise<FrontEnd> {
  const p = launch(process.execPath, ['--import', 'tsx', CLI, 'serve', '-m', 'tiny-random', '--redis', redisUrl,
    ...(localWorker ? ['--threads', '1', '--lock-ms', '3000', '--stalled-interval-ms', '1000'] : ['--no-local-worker']),
    '--port', '0', '--width', '64', '--height', '64', ...extra]);
  const m = await waitFor(p, /sd3 ready: (http:\/\/\S+)/);
  return Object.assign(p, { url: m[1]! });
}

/** Ends every process these helpers started that is still running (SIGKILL after a grace period). */
export async function stopAll(): Promise<void> {
  const live = [...started];
  for (const p of live) p.child.kill('SIGTERM');
  await Promise.race([Promise.all(live.map((p) => p.exited)), new Promise((r) => setTimeout(r, 5000).unref())]);
  for (const p of live) if (p.alive()) p.child.kill('SIGKILL');
  await Promise.all(live.map((p) => p.exited));
}

export async function getJSON(url: string): Promise<Record<string, unknown>> {
  const res = await fetch(url);
  return (await res.json()) as Record<string, unknown>;
}

export async function until<T>(what: string, f: () => Promise<T | undefined | false>, ms = 30_000, every = 50): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}
