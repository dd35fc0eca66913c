/**
 * The `sd3` command as a user runs it, in child processes: outputs, exit codes (0 ok, 2 bad usage or input,
 * 130 interrupted), messages on stderr, and no output file whenever a run does not succeed.
 *
 * Runs that generate go through src/cli/main.ts with tsx. The source is also compiled (tsconfig.build.json,
 * into a temporary package laid out like the published one) while those run; the compiled dist/cli/main.js
 * then answers the table of usage errors, since a plain-node start takes ~0.4 s where tsx takes ~1.3 s.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeImage, readPNGText } from '../../src/image/image.js';
import { TextToImage } from '../../src/presets/tasks.js';
import { webgpuAvailable, webgpuFloat16Available } from '../../src/runtime/ort.js';
import { REPO, runCLI } from '../helpers/cli.js';
import { assertSamePixels, testImage } from '../helpers/tiny.js';

const VERSION = (JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
const TINY_ARGS = ['-m', 'tiny-random', '--width', '64', '--height', '48', '--steps', '2', '--seed', '3', '--threads', '1'];

let tmp: string;
let n = 0;
/** A fresh empty folder per test, so "no file written" is checkable with readdir. */
function freshDir(): string {
  const dir = path.join(tmp, `run-${++n}`);
  fs.mkdirSync(dir);
  return dir;
}

function parametersOf(file: string): Record<string, unknown> {
  return JSON.parse(readPNGText(fs.readFileSync(file))['sd3-ts']!) as Record<string, unknown>;
}

interface Build {
  readonly main: string;
  /** tsc's exit status and output: type errors still emit, so the usage table runs; the dist test checks this. */
  readonly code: number | null;
  readonly log: string;
}

/** Compiles src with the project's build config into a temporary package laid out like the published one. */
function buildPackage(): Promise<Build> {
  const pkg = path.join(tmp, 'package');
  fs.mkdirSync(pkg);
  fs.copyFileSync(path.join(REPO, 'package.json'), path.join(pkg, 'package.json'));
  fs.symlinkSync(path.join(REPO, 'node_modules'), path.join(pkg, 'node_modules'));
  fs.symlinkSync(path.join(REPO, 'assets'), path.join(pkg, 'assets'));
  const main = path.join(pkg, 'dist', 'cli', 'main.js');
  const tsc = path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
  const child = spawn(process.execPath, [tsc, '-p', path.join(REPO, 'tsconfig.build.json'), '--outDir', path.join(pkg, 'dist')], {
    cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout.on('data', (c: Buffer) => { log += c.toString(); });
  child.stderr.on('data', (c: Buffer) => { log += c.toString(); });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => (fs.existsSync(main) ? resolve({ main, code, log }) : reject(new Error(`tsc exited ${code} without dist/cli/main.js:\n${log}`))));
  });
}

let built: Promise<Build>;

before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd3-cli-test-'));
  // Started now, awaited by the dist test: the build overlaps the runs from source.
  built = buildPackage();
  built.catch(() => undefined);
});

after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('sd3 generate, from source', () => {
  it('writes a PNG of --width x --height whose metadata has the prompt, seed and steps', async () => {
    const dir = freshDir();
    const out = path.join(dir, 'out.png');
    const r = await runCLI(['generate', ...TINY_ARGS, '-p', 'a small red boat', '-o', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), out);
    assert.match(r.stderr, /^step 1\/2 .*\nstep 2\/2 /m);
    const bytes = fs.readFileSync(out);
    const img = decodeImage(bytes);
    assert.deepEqual([img.width, img.height], [64, 48]);
    const p = parametersOf(out);
    assert.deepEqual([p.prompt, p.seed, p.numSteps, p.guidanceScale, p.task], ['a small red boat', 3, 2, 7, 'text-to-image']);
    assert.deepEqual(fs.readdirSync(dir), ['out.png'], 'only the output, no temporary file');
  });

  it('prints a JSON result with --json; --batch 2 writes out-1.png and out-2.png with seeds s and s+1', async () => {
    const dir = freshDir();
    const r = await runCLI(['generate', ...TINY_ARGS, '-p', 'a lantern', '-n', 'fog', '--cfg-scale', '4', '-o', path.join(dir, 'out.png'), '--batch', '2', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const result = JSON.parse(r.stdout) as { outputs: string[]; parameters: Record<string, unknown>[]; seconds: number };
    assert.deepEqual(result.outputs, [path.join(dir, 'out-1.png'), path.join(dir, 'out-2.png')]);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['out-1.png', 'out-2.png']);
    assert.deepEqual(result.parameters.map((p) => p.seed), [3, 4]);
    assert.deepEqual(result.parameters.map((p) => [p.prompt, p.negativePrompt, p.guidanceScale]), [['a lantern', 'fog', 4], ['a lantern', 'fog', 4]]);
    assert.equal(typeof result.seconds, 'number');
    assert.deepEqual(parametersOf(result.outputs[1]!), result.parameters[1]);
    // The CLI's second image is the library's image for seed 4: the options went through unchanged.
    const task = await TextToImage.fromPreset('tiny-random', { imageShape: { width: 64, height: 48 }, threads: 1 });
    try {
      const expected = await task.generate({ prompts: 'a lantern', negativePrompts: 'fog' }, { numSteps: 2, seed: 4, guidanceScale: 4 });
      assertSamePixels(decodeImage(fs.readFileSync(result.outputs[1]!)), expected, 'out-2.png vs library, seed 4');
    } finally {
      await task.dispose();
    }
  });

  it('--step-cache X reuses steps, marks them "(cached)" on the step lines, and the PNG records them', async () => {
    const dir = freshDir();
    const out = path.join(dir, 'out.png');
    const r = await runCLI(['generate', ...TINY_ARGS, '--steps', '8', '--step-cache', '1', '--step-cache-start', '0', '-p', 'a red kite', '-o', out, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const p = parametersOf(out);
    assert.deepEqual(p.stepCache, { threshold: 1, start: 0, end: 0.95 });
    const cached = [...r.stderr.matchAll(/^step (\d+)\/8 .* \(cached\)$/gm)].map((m) => Number(m[1]));
    assert.deepEqual(p.cachedSteps, cached);
    assert.ok(cached.length > 0, r.stderr);
    const plain = await runCLI(['generate', ...TINY_ARGS, '--steps', '8', '-p', 'a red kite', '-o', path.join(dir, 'plain.png')]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.doesNotMatch(plain.stderr, /cached/);
    assert.equal('stepCache' in parametersOf(path.join(dir, 'plain.png')), false);
  });

  it('stops on SIGINT during the steps: exit 130, a message, and no file', async () => {
    const dir = freshDir();
    let sent = false;
    const r = await runCLI(['generate', '-m', 'tiny-random', '--width', '64', '--height', '64', '--steps', '1000', '--threads', '1', '-p', 'x', '-o', path.join(dir, 'out.png')], {
      onStderr: (child, soFar) => {
        if (!sent && /^step 1\//m.test(soFar)) { sent = true; child.kill('SIGINT'); }
      },
    });
    assert.ok(sent, `no step line seen: ${r.stderr}`);
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, /interrupted/);
    assert.match(r.stderr, /stopped; nothing was written/);
    assert.doesNotMatch(r.stderr, /step 1000\/1000/);
    assert.deepEqual(fs.readdirSync(dir), []);
  });
});

describe('sd3 bad usage: exit 2, a message on stderr, no output file (compiled command)', { concurrency: 2 }, () => {
  // Each case: its name, the arguments after `generate` (a prompt and an output in `dir` are added unless
  // the case names its own), and the message expected on stderr.
  const cases: [string, (dir: string) => string[], RegExp][] = [
    ['--steps 0', () => ['--steps', '0'], /--steps must be an integer >= 1, got "0"/],
    ['--steps 2.5', () => ['--steps', '2.5'], /--steps must be an integer >= 1, got "2.5"/],
    ['--steps 99999999999', () => ['--steps', '99999999999'], /--steps must be at most 1000000, got "99999999999"/],
    ['--batch 1000', () => ['--batch', '1000'], /--batch must be at most 64, got "1000"/],
    ['--width 100', () => ['--width', '100'], /--width must be a multiple of 16, got 100/],
    ['--seed=-1', () => ['--seed=-1'], /--seed must be an integer >= 0, got "-1"/],
    ['missing --prompt', (dir) => ['-o', path.join(dir, 'out.png')], /--prompt is required/],
    ['an unknown option', () => ['--colour', 'red'], /Unknown option '--colour'/],
    ['--mask without --image', (dir) => ['--mask', path.join(dir, 'mask.png')], /--mask needs --image/],
    ['--strength without --image', () => ['--strength', '0.5'], /--strength applies to --image/],
    ['an --image that does not exist', (dir) => ['--image', path.join(dir, 'missing.png')], /--image: cannot read image .*missing\.png/],
    ['an --image that is not a picture', (dir) => {
      fs.writeFileSync(path.join(dir, 'notes.png'), 'hello');
      return ['--image', path.join(dir, 'notes.png')];
    }, /--image: cannot read .*notes\.png: not a PNG or JPEG file/],
    ['--strength 1.5 with --image', (dir) => {
      fs.writeFileSync(path.join(dir, 'in.png'), testImage(16, 16).toPNG());
      return ['--image', path.join(dir, 'in.png'), '--strength', '1.5'];
    }, /--strength must be a number in \[0, 1\], got "1.5"/],
    ['--device gpu', () => ['--device', 'gpu'], /--device must be one of cpu, webgpu, auto; got "gpu"/],
    ['--device webgpu with --int8', () => ['--device', 'webgpu', '--int8'], /--int8 runs on the CPU only/],
    ['--fp16 with --device cpu', () => ['--device', 'cpu', '--fp16'], /--fp16 runs on the GPU only .*use --device webgpu/],
    ['--fp16 with --int8', () => ['--fp16', '--int8'], /--int8 \(CPU\) and --fp16 \(GPU\) exclude each other/],
    ['--vae-tile 64,64', () => ['--vae-tile', '64,64'], /--vae-tile must be N or N,OVERLAP with N >= 8 latent cells and OVERLAP < N, got "64,64"/],
    ['--step-cache 0', () => ['--step-cache', '0'], /--step-cache must be a threshold in \(0, 1\] \(e\.g\. 0\.1\), got "0"/],
    ['--step-cache-end without --step-cache', () => ['--step-cache-end', '0.5'], /--step-cache-start and --step-cache-end need --step-cache X/],
    ['--output not .png', (dir) => ['-p', 'x', '-o', path.join(dir, 'out.jpg')], /--output must end in \.png/],
    ['--output in a missing folder', (dir) => ['-p', 'x', '-o', path.join(dir, 'nope', 'out.png')], /output folder .*nope does not exist/],
  ];
  for (const [name, extra, message] of cases) {
    it(name, async () => {
      const dir = freshDir();
      const own = extra(dir);
      const defaults = own.includes('-o') ? [] : ['-p', 'x', '-o', path.join(dir, 'out.png')];
      const before = fs.readdirSync(dir);
      const r = await runCLI(['generate', ...TINY_ARGS, ...defaults, ...own], { main: (await built).main });
      assert.equal(r.code, 2, `exit ${r.code}\n${r.stderr}`);
      assert.match(r.stderr, /^sd3 generate: /);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'a stack trace is not a usage message');
      assert.equal(r.stdout, '');
      assert.deepEqual(fs.readdirSync(dir), before, 'no output file');
    });
  }

  it('an unknown command, or none', async () => {
    const { main } = await built;
    const r = await runCLI(['paint'], { main });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command "paint"/);
    const none = await runCLI([], { main });
    assert.equal(none.code, 2);
    assert.match(none.stderr, /Usage:/);
    assert.equal(none.stdout, '');
  });
});

describe('sd3, compiled (dist/cli/main.js)', () => {
  it('builds with tsconfig.build.json, starts with a node shebang and generates under plain node', async () => {
    const { main, code, log } = await built;
    assert.equal(code, 0, `npm run build's tsc failed:\n${log}`);
    assert.match(fs.readFileSync(main, 'utf8'), /^#!\/usr\/bin\/env node\n/);
    const dir = freshDir();
    const out = path.join(dir, 'out.png');
    const r = await runCLI(['generate', ...TINY_ARGS, '-p', 'built', '-o', out], { main });
    assert.equal(r.code, 0, r.stderr);
    const img = decodeImage(fs.readFileSync(out));
    assert.deepEqual([img.width, img.height], [64, 48]);
    assert.equal(parametersOf(out).prompt, 'built');
  });

  it('runs image-to-image with --image and inpainting with --mask', async () => {
    const dir = freshDir();
    const input = path.join(dir, 'in.png');
    const mask = path.join(dir, 'mask.png');
    fs.writeFileSync(input, testImage(64, 48).toPNG());
    fs.writeFileSync(mask, testImage(64, 48, 7).toPNG());
    const common = ['-m', 'tiny-random', '--steps', '4', '--seed', '1', '--threads', '1', '--image', input, '-p', 'a map'];
    const { main } = await built;
    const a = await runCLI(['generate', ...common, '--strength', '0.5', '-o', path.join(dir, 'i2i.png')], { main });
    assert.equal(a.code, 0, a.stderr);
    assert.match(a.stderr, /step 2\/2/);
    const p = parametersOf(path.join(dir, 'i2i.png'));
    assert.deepEqual([p.task, p.strength, p.width, p.height], ['image-to-image', 0.5, 64, 48]);
    const b = await runCLI(['generate', ...common, '--mask', mask, '-o', path.join(dir, 'inpaint.png')], { main });
    assert.equal(b.code, 0, b.stderr);
    const q = parametersOf(path.join(dir, 'inpaint.png'));
    assert.deepEqual([q.task, q.strength, q.numSteps], ['inpaint', 0.6, 4]);
  });

  it('--help and generate --help print usage and exit 0', async () => {
    const { main } = await built;
    const top = await runCLI(['--help'], { main });
    assert.equal(top.code, 0);
    assert.match(top.stdout, /Usage:\n\s+sd3 generate/);
    const gen = await runCLI(['generate', '--help'], { main });
    assert.equal(gen.code, 0);
    assert.match(gen.stdout, /Usage: sd3 generate -p PROMPT/);
    assert.equal(gen.stderr, '');
  });

  // Every field is checked against a fact found without the CLI's code path: ORT's package.json, node:os, the
  // environment given to the child, and a WebGPU probe of this test process (another process, so a CLI that
  // printed a fixed answer or mapped the probe wrongly fails). SD3_EXPECT_WEBGPU (scripts/gpu-check.sh) pins it.
  it('devices --json reports the runtime, the CPU, the GPU probe and what auto picks', async () => {
    const cache = path.join(tmp, 'devices-cache');
    const env = { SD3_DEVICE: 'auto', HF_HUB_CACHE: cache, HF_HOME: undefined };
    const r = await runCLI(['devices', '--json'], { main: (await built).main, env });
    assert.equal(r.code, 0, r.stderr);
    const info = JSON.parse(r.stdout) as Record<string, unknown>;
    const ortVersion = (JSON.parse(fs.readFileSync(path.join(REPO, 'node_modules', 'onnxruntime-node', 'package.json'), 'utf8')) as { version: string }).version;
    assert.equal(info.onnxruntime, ortVersion);
    assert.deepEqual(info.cpu, { model: os.cpus()[0]!.model, threads: os.availableParallelism() });
    const gpu = await webgpuAvailable();
    if (process.env.SD3_EXPECT_WEBGPU !== undefined) assert.equal(gpu, process.env.SD3_EXPECT_WEBGPU === '1', 'this process finds a GPU where SD3_EXPECT_WEBGPU says');
    assert.equal(info.webgpu, gpu, 'the CLI finds what this process finds');
    assert.equal(info.webgpuFloat16, await webgpuFloat16Available(), 'shader-f16 as this process finds it');
    if (!gpu) assert.equal(info.webgpuFloat16, false, 'no float16 without an adapter');
    assert.equal(info.autoDevice, gpu ? 'webgpu' : 'cpu');
    assert.equal(info.defaultDevice, 'auto', 'from SD3_DEVICE');
    assert.equal(info.modelCache, cache, 'from HF_HUB_CACHE');

    const text = await runCLI(['devices'], { main: (await built).main, env: { ...env, SD3_DEVICE: 'webgpu' } });
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`^onnxruntime-node ${ortVersion.replace(/\./g, '\\.')}$`, 'm'));
    assert.match(text.stdout, new RegExp(`^webgpu  ${gpu ? 'a GPU adapter was found' : 'no GPU adapter'}`, 'm'));
    assert.match(text.stdout, new RegExp(`^default device webgpu \\(from \\$SD3_DEVICE\\); --device auto picks ${gpu ? 'webgpu' : 'cpu'}$`, 'm'));
    assert.match(text.stdout, new RegExp(`^model cache ${cache.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
  });

  it('--version prints the package version', async () => {
    const r = await runCLI(['--version'], { main: (await built).main });
    assert.equal(r.code, 0);
    assert.equal(r.stdout.trim(), VERSION);
  });
});
