/**
 * sd3.ts beside its peers on one random checkpoint, one run each, one table:
 *
 *   nice -n 10 npm run bench:peers -- --checkpoint /tmp/sd3_random.safetensors --size 256,512 --steps 1
 *
 * - sd3.ts float32 and int8: bench/run.ts (through SD3Backbone), CFG batch 2; the int8 row decodes with the int8 VAE
 *   decoder (--vae-int8) and notes its time and difference against the exact decode, which the fp32 row uses.
 * - PyTorch (Debian's python3-torch, /usr/bin/python3 or $TORCH_PYTHON): bench/peers/torch_sd3.py, a minimal MMDiT
 *   and VAE decoder of our own, first checked against the tiny fixtures (test/fixtures/mmdit, vae); float32 and
 *   bfloat16. $TORCH_BLAS_DIR may name a folder holding an optimised libblas.so.3 (e.g. Debian's
 *   libopenblas0-pthread unpacked with dpkg -x): Debian's default reference BLAS runs float32 Linear layers at about
 *   2 GFLOP/s. bfloat16 matrix products go through oneDNN either way.
 * - stable-diffusion.cpp: $SDCPP_BIN (an sd-cli binary), or built from the checkout $SDCPP_SRC by
 *   bench/peers/build-sdcpp.sh; without either it is skipped, and the table says so.
 *
 * Every engine runs with the same threads (default 2), the same size and step count, guidance 7 (batch 2).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { withArgs } from './args.js';
import { type Peer, PEERS_USAGE, parsePeersArgs } from './peers/args.js';

const a = withArgs(parsePeersArgs, PEERS_USAGE);
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const python = process.env.TORCH_PYTHON ?? '/usr/bin/python3';

interface Row {
  readonly engine: string;
  readonly size: string;
  readonly secondsPerStep?: number;
  readonly decodeSeconds?: number;
  readonly peakRssBytes?: number;
  readonly note?: string;
}

/** CPU model, the SIMD flags that matter for these kernels, and the load when the run started. */
function cpuInfo(): string {
  let model = os.cpus()[0]?.model ?? 'unknown CPU';
  let flags: string[] = [];
  try {
    const info = fs.readFileSync('/proc/cpuinfo', 'utf8');
    const family = /^cpu family\s*:\s*(\d+)/m.exec(info)?.[1];
    const modelNo = /^model\s*:\s*(\d+)/m.exec(info)?.[1];
    if (family) model += ` (family ${family}, model ${modelNo})`;
    const all = new Set((/^flags\s*:\s*(.*)$/m.exec(info)?.[1] ?? '').split(/\s+/));
    flags = ['avx2', 'fma', 'f16c', 'avx512f', 'avx512bw', 'avx512_vnni', 'avx512_bf16', 'avx512_fp16', 'avx_vnni', 'amx_tile', 'amx_bf16', 'amx_int8'].filter((f) => all.has(f));
  } catch { /* not Linux: the model name alone */ }
  const load = os.loadavg().map((x) => x.toFixed(1)).join(' ');
  return `${model}, ${os.cpus().length} logical CPUs, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB; flags: ${flags.join(' ') || 'none of the SIMD flags looked for'}; load average ${load}`;
}

function lastJson(stdout: string): Record<string, unknown> | undefined {
  const line = stdout.trim().split('\n').reverse().find((l) => l.startsWith('{'));
  try { return line ? JSON.parse(line) as Record<string, unknown> : undefined; } catch { return undefined; }
}

function warm(r: Record<string, unknown>): number | undefined {
  const steps = r.stepSeconds as number[] | undefined;
  if (steps && steps.length > 1) return steps.slice(1).reduce((x, y) => x + y, 0) / (steps.length - 1);
  return r.secondsPerStep as number | undefined;
}

function runSd3ts(mode: 'fp32' | 'int8', size: string): Row {
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(here, 'run.ts'), '--checkpoint', a.checkpoint, '--size', size,
    '--steps', String(a.steps), '--mode', mode, '--threads', String(a.threads), '--json', ...(mode === 'int8' ? ['--vae-int8'] : [])],
  { encoding: 'utf8', cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
  const j = lastJson(r.stdout);
  if (!j) return { engine: `sd3.ts ${mode}`, size, note: `failed (exit ${r.status})` };
  const q = j.vaeInt8 as { exactDecodeSeconds: number; relativeRms: number; meanCodeDiff: number; maxCodeDiff: number } | undefined;
  const note = q ? `int8 VAE decoder (exact decoder ${q.exactDecodeSeconds.toFixed(2)} s; difference relative RMS ${q.relativeRms.toExponential(2)}, `
    + `8-bit codes mean ${q.meanCodeDiff.toFixed(2)} / max ${q.maxCodeDiff})` : undefined;
  return { engine: `sd3.ts ${mode}`, size, secondsPerStep: warm(j), decodeSeconds: j.decodeSeconds as number, peakRssBytes: j.peakRssBytes as number, ...(note ? { note } : {}) };
}

let torchChecked: string | undefined | null = null;
/** The fixture check, once: undefined when it passed, else why not. */
function torchCheck(): string | undefined {
  if (torchChecked !== null) return torchChecked;
  const r = spawnSync(python, [path.join(here, 'peers/torch_sd3.py'), 'check', path.join(root, 'test/fixtures')], { encoding: 'utf8', env: torchEnv() });
  const j = lastJson(r.stdout ?? '');
  console.log(`PyTorch model vs the tiny fixtures: ${j ? JSON.stringify(j.check) : (r.error?.message ?? r.stderr.trim().split('\n').pop())}`);
  torchChecked = j?.pass === true ? undefined : `skipped: the PyTorch model failed the fixture check (${r.error ? `no ${python}` : `exit ${r.status}`})`;
  return torchChecked;
}

function torchEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  const blas = process.env.TORCH_BLAS_DIR;
  if (blas) {
    env.LD_LIBRARY_PATH = [blas, env.LD_LIBRARY_PATH].filter(Boolean).join(':');
    // OpenBLAS 0.3.21 (Debian 12) does not recognise newer CPUs and falls back to generic kernels: name an AVX-512 core.
    if (!env.OPENBLAS_CORETYPE && fs.readFileSync('/proc/cpuinfo', 'utf8').includes(' avx512f')) env.OPENBLAS_CORETYPE = 'SkylakeX';
  }
  return env;
}

function runTorch(dtype: 'float32' | 'bfloat16', size: string): Row {
  const engine = `PyTorch ${dtype}`;
  const skip = torchCheck();
  if (skip) return { engine, size, note: skip };
  if (dtype === 'float32' && !process.env.TORCH_BLAS_DIR) {
    // Debian's default libblas is the reference BLAS (about 2 GFLOP/s here): a 256² step would take most of an hour.
    return { engine, size, note: 'skipped: float32 needs an optimised BLAS; set TORCH_BLAS_DIR (e.g. libopenblas0-pthread unpacked with dpkg -x)' };
  }
  const px = size.split('x')[0]!;
  const r = spawnSync(python, [path.join(here, 'peers/torch_sd3.py'), 'bench', a.checkpoint, '--size', px, '--steps', String(a.steps), '--dtype', dtype,
    '--threads', String(a.threads)], { encoding: 'utf8', env: torchEnv(), stdio: ['ignore', 'pipe', 'inherit'] });
  const j = lastJson(r.stdout);
  if (!j) return { engine, size, note: `failed (exit ${r.status})` };
  const blas = process.env.TORCH_BLAS_DIR ? 'BLAS from $TORCH_BLAS_DIR' : 'Debian default BLAS';
  return { engine, size, secondsPerStep: warm(j), decodeSeconds: j.decodeSeconds as number, peakRssBytes: j.peakRssBytes as number, note: `torch ${j.torch}, ${blas}` };
}

let sdcpp: { bin?: string; why?: string } | undefined;
function sdcppBinary(): { bin?: string; why?: string } {
  if (sdcpp) return sdcpp;
  if (process.env.SDCPP_BIN) {
    sdcpp = fs.existsSync(process.env.SDCPP_BIN) ? { bin: process.env.SDCPP_BIN } : { why: `SDCPP_BIN=${process.env.SDCPP_BIN} does not exist` };
    return sdcpp;
  }
  if (!process.env.SDCPP_SRC) {
    sdcpp = { why: 'skipped: set SDCPP_SRC to a stable-diffusion.cpp checkout (with its ggml submodule) or SDCPP_BIN to an sd-cli' };
    console.log(`stable-diffusion.cpp: ${sdcpp.why}`);
    return sdcpp;
  }
  console.log(`building stable-diffusion.cpp from ${process.env.SDCPP_SRC} (bench/peers/build-sdcpp.sh)...`);
  const r = spawnSync('bash', [path.join(here, 'peers/build-sdcpp.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const bin = r.stdout.trim().split('\n').pop();
  sdcpp = r.status === 0 && bin ? { bin } : { why: `skipped: the build failed (exit ${r.status})` };
  return sdcpp;
}

function sdcppVersion(src: string | undefined): string {
  if (!src) return '';
  const head = spawnSync('git', ['-C', src, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout.trim();
  const ggml = spawnSync('git', ['-C', path.join(src, 'ggml'), 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout.trim();
  return head ? `commit ${head}${ggml ? `, ggml ${ggml}` : ''}, ` : '';
}

function runSdcpp(size: string): Row {
  const engine = 'stable-diffusion.cpp f16';
  const { bin, why } = sdcppBinary();
  if (!bin) return { engine, size, note: why };
  const [w, h] = size.includes('x') ? size.split('x') : [size, size];
  const out = path.join(os.tmpdir(), `sd3-peers-${process.pid}.png`);
  const args = ['-m', a.checkpoint, '-W', w!, '-H', h!, '--steps', String(a.steps), '--cfg-scale', '7', '--sampling-method', 'euler', '-t', String(a.threads),
    '--diffusion-fa', '--eager-load', '--seed', '42', '-p', 'a photograph of an astronaut riding a horse on the moon, detailed, 8k', '-o', out];
  const t0 = performance.now();
  const r = spawnSync(bin, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  const wall = (performance.now() - t0) / 1000;
  fs.rmSync(out, { force: true });
  const log = `${r.stdout}\n${r.stderr}`;
  const sampling = /sampling completed, taking ([\d.]+)s/.exec(log);
  const decode = /latent 1 decoded, taking ([\d.]+)s/.exec(log);
  if (r.status !== 0 || !sampling) return { engine, size, note: `failed (exit ${r.status}): ${log.trim().split('\n').slice(-2).join(' ')}` };
  return {
    engine, size, secondsPerStep: Number(sampling[1]) / a.steps, ...(decode ? { decodeSeconds: Number(decode[1]) } : {}),
    note: `${sdcppVersion(process.env.SDCPP_SRC)}--diffusion-fa --eager-load, CFG as two batch-1 passes; whole run ${wall.toFixed(1)} s`,
  };
}

const cpu = cpuInfo();
console.log(`CPU: ${cpu}`);
const rows: Row[] = [];
for (const s of a.sizes) {
  const size = s.text;
  for (const p of a.peers as readonly Peer[]) {
    if (p === 'sd3ts-fp32') rows.push(runSd3ts('fp32', size));
    else if (p === 'sd3ts-int8') rows.push(runSd3ts('int8', size));
    else if (p === 'torch') for (const d of a.torchDtypes) rows.push(runTorch(d, size));
    else rows.push(runSdcpp(size));
    const last = rows[rows.length - 1]!;
    console.log(`  ${last.engine} ${size}: ${last.secondsPerStep?.toFixed(2) ?? '-'} s/step, decode ${last.decodeSeconds?.toFixed(2) ?? '-'} s${last.note ? ` (${last.note})` : ''}`);
  }
}

const f = (x: number | undefined, d = 2) => (x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(d));
const ratio = (x: number | undefined, base: number | undefined) => (x === undefined || base === undefined ? '-' : `${(x / base).toFixed(2)}x`);
console.log(`\nCPU: ${cpu}\nthreads ${a.threads}, ${a.steps} step(s), guidance 7 (batch 2), ${new Date().toISOString()}\n`);
console.log('| engine | size | s/step | vs sd3.ts int8 | vs sd3.ts fp32 | VAE decode s | vs sd3.ts int8 decode | vs sd3.ts exact decode | peak RSS GB | notes |');
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const r of rows) {
  const mine = (mode: string) => rows.find((x) => x.size === r.size && x.engine === `sd3.ts ${mode}`);
  console.log(`| ${r.engine} | ${r.size} | ${f(r.secondsPerStep)} | ${ratio(r.secondsPerStep, mine('int8')?.secondsPerStep)} | ${ratio(r.secondsPerStep, mine('fp32')?.secondsPerStep)} `
    + `| ${f(r.decodeSeconds)} | ${ratio(r.decodeSeconds, mine('int8')?.decodeSeconds)} | ${ratio(r.decodeSeconds, mine('fp32')?.decodeSeconds)} | ${f(r.peakRssBytes === undefined ? undefined : r.peakRssBytes / 2 ** 30)} | ${r.note ?? ''} |`);
}
console.log('\n(ratios: the engine\'s time over sd3.ts\'s on the same size; above 1 means sd3.ts is faster)');
if (a.json) console.log(JSON.stringify({ cpu, threads: a.threads, steps: a.steps, rows }));
