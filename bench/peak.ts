/**
 * CPU hardware peak (run: npm run bench:peak [-- SECONDS_PER_RUN]): compiles bench/peak/peak.c with the
 * system C compiler (`cc`, or $CC) into a temp dir and runs it. It measures AVX2 fp32 FMA GFLOP/s and
 * int8 maddubs/madd GOP/s (ORT's AVX2 u8s8 sequence) on 1 thread and on all online CPUs, best of 3,
 * and prints one human line per measurement and a final JSON line. Needs x86-64 with AVX2 + FMA.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

function fail(message: string): never {
  console.error(`bench:peak: ${message}`);
  process.exit(1);
}

if (process.arch !== 'x64') fail(`needs an x86-64 CPU with AVX2 and FMA; this is ${process.arch}`);

const source = fileURLToPath(new URL('./peak/peak.c', import.meta.url));
const cc = process.env.CC || 'cc';
const dir = mkdtempSync(join(tmpdir(), 'sd3-peak-'));
try {
  const exe = join(dir, 'peak');
  const args = ['-O2', '-mavx2', '-mfma', '-pthread', source, '-o', exe];
  console.log(`$ ${cc} ${args.join(' ')}`);
  const build = spawnSync(cc, args, { stdio: 'inherit' });
  if (build.error && (build.error as NodeJS.ErrnoException).code === 'ENOENT') {
    fail(`no C compiler: \`${cc}\` was not found on PATH. Install one (e.g. apt-get install gcc, or clang) or set CC.`);
  }
  if (build.error) fail(`could not run ${cc}: ${build.error.message}`);
  if (build.status !== 0) fail(`${cc} failed to compile ${source} (exit ${build.status ?? build.signal})`);
  const run = spawnSync(exe, process.argv.slice(2), { stdio: 'inherit' });
  if (run.error) fail(`could not run ${exe}: ${run.error.message}`);
  if (run.status !== 0) fail(`peak exited with ${run.status ?? run.signal}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
