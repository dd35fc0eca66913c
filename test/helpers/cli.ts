/** Runs the `sd3` command in a child process (from source through tsx, or a built main.js) and collects what it did. */
import { type ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SOURCE_MAIN = path.join(REPO, 'src', 'cli', 'main.ts');

export interface CLIResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface CLIOptions {
  /** A built main.js to run with plain node instead of src/cli/main.ts through tsx. */
  readonly main?: string;
  /** Called with the child and the stderr seen so far, on every stderr chunk. */
  readonly onStderr?: (child: ChildProcess, stderrSoFar: string) => void;
  /** A hung child is killed after this long (a guard against a test that never ends, not a timing check). */
  readonly killAfterMs?: number;
  /** Extra environment for the child, over the defaults below (undefined removes a variable). */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

export function runCLI(args: readonly string[], opts: CLIOptions = {}): Promise<CLIResult> {
  const nodeArgs = opts.main ? [opts.main, ...args] : ['--import', 'tsx', SOURCE_MAIN, ...args];
  const child = spawn(process.execPath, nodeArgs, {
    cwd: REPO,
    // Never the network; no colours or TTY progress bars in what we parse.
    env: withoutUndefined({ ...process.env, HF_HUB_OFFLINE: '1', NO_COLOR: '1', FORCE_COLOR: '0', ...opts.env }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c; });
  child.stderr.setEncoding('utf8').on('data', (c: string) => {
    stderr += c;
    opts.onStderr?.(child, stderr);
  });
  const guard = setTimeout(() => child.kill('SIGKILL'), opts.killAfterMs ?? 120_000);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

function withoutUndefined(env: Record<string, string | undefined>): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined));
}
