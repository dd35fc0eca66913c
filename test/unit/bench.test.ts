// The benchmark scripts' argument parsing, profile summary and the runtime's profiling door (no heavy run).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { childRunArgs, parseRunArgs, parseT5Args } from '../../bench/args.js';
import { parsePeersArgs } from '../../bench/peers/args.js';
import { profileTable, summarizeProfile, summarizeProfileFile } from '../../bench/profile.js';
import { SD3Error } from '../../src/core/errors.js';
import { writeSafetensors } from '../../src/core/safetensors.js';
import { tensor } from '../../src/core/tensor.js';
import { openCheckpoint } from '../../src/loaders/checkpoint.js';
import { GraphBuilder } from '../../src/onnx/builder.js';
import { Session, endProfilingAll, profileSessionsInto } from '../../src/runtime/ort.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

test('bench/run.ts arguments: defaults, lists, and each bad value named', () => {
  const a = parseRunArgs(['--checkpoint', 'x.safetensors']);
  assert.deepEqual([a.modes, a.sizes.map((s) => [s.width, s.height]), a.steps, a.device, a.profile], [['fp32'], [[512, 512]], 2, 'cpu', false]);
  const b = parseRunArgs(['--checkpoint', 'x', '--size', '256,768x1344', '--mode', 'fp32,int8', '--steps', '1', '--profile', '--vae-tile', '64']);
  assert.deepEqual(parseRunArgs(['--checkpoint', 'x', '--mode', 'fp32,fp16', '--device', 'webgpu']).modes, ['fp32', 'fp16']);
  assert.deepEqual(b.sizes.map((s) => [s.width, s.height]), [[256, 256], [768, 1344]]);
  assert.deepEqual(b.vaeTile, { size: 64, overlap: 16 });
  assert.deepEqual(childRunArgs(b, 'int8', b.sizes[1]!).join(' '), '--checkpoint x --size 768x1344 --steps 1 --mode int8 --json --device cpu --vae-tile 64,16 --profile');
  const q = parseRunArgs(['--checkpoint', 'x', '--mode', 'int8', '--vae-int8']);
  assert.deepEqual([a.vaeInt8, q.vaeInt8], [false, true]);
  assert.match(childRunArgs(q, 'int8', q.sizes[0]!).join(' '), / --vae-int8$/);
  const bad: [string[], RegExp][] = [
    [[], /--checkpoint is required/],
    [['--checkpoint', 'x', '--mode', 'fp8'], /--mode must be fp32, float32, int8, resident, fp16, float16 .*"fp8"/],
    [['--checkpoint', 'x', '--mode', 'int8,bf16'], /"bf16"/],
    [['--checkpoint', 'x', '--size', '500'], /multiples of 16/],
    [['--checkpoint', 'x', '--size', 'big'], /N or WxH.*"big"/],
    [['--checkpoint', 'x', '--steps', '0'], /--steps must be an integer >= 1, got "0"/],
    [['--checkpoint', 'x', '--device', 'tpu'], /--device must be one of/],
    [['--checkpoint', 'x', '--profile-dir', '/tmp/p'], /--profile-dir needs --profile/],
    [['--checkpoint', 'x', '--vae-tile', '64,8,2'], /N\[,OVERLAP\]/],
    [['--checkpoint', 'x', '--bogus'], /Unknown option '--bogus'/],
  ];
  for (const [argv, re] of bad) assert.throws(() => parseRunArgs(argv), (e: Error) => e instanceof SD3Error && re.test(e.message), argv.join(' '));
});

test('bench/t5.ts and bench:peers arguments', () => {
  assert.deepEqual(parseT5Args(['--checkpoint', 'c']), { checkpoint: 'c', dtype: 'int8', tokens: 77 });
  assert.throws(() => parseT5Args(['--checkpoint', 'c', '--dtype', 'fp8']), /--dtype must be int8 or float32, got "fp8"/);
  assert.throws(() => parseT5Args(['--checkpoint', 'c', '--tokens', '1']), /--tokens must be an integer >= 2/);
  const p = parsePeersArgs(['--checkpoint', 'c', '--size', '256,512']);
  assert.deepEqual([p.sizes.map((s) => s.width), p.steps, p.peers], [[256, 512], 1, ['sd3ts-fp32', 'sd3ts-int8', 'torch', 'sdcpp']]);
  assert.deepEqual(parsePeersArgs(['--checkpoint', 'c', '--peers', 'torch,sdcpp']).peers, ['torch', 'sdcpp']);
  assert.throws(() => parsePeersArgs(['--checkpoint', 'c', '--peers', 'onnx']), /--peers must be .*"onnx"/);
});

test('a bad bench argument exits with 2 and the usage line, before loading anything', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'bench/run.ts'), '--checkpoint', '/nonexistent.safetensors', '--mode', 'fp8'], { encoding: 'utf8', cwd: root });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--mode must be .*"fp8"\nusage: npm run bench/);
  assert.doesNotMatch(r.stderr, /at .*\.ts:\d+/); // a message, not a stack
});

test('the runtime writes one ORT profile per session and the bench tables it by op type', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sd3-prof-test-'));
  try {
    const g = new GraphBuilder('t');
    const x = g.input('x', 'float32', [4]);
    g.output(g.add(g.mul(x, x), x), 'z');
    const unprofiled = await Session.create('plain', g.build());
    profileSessionsInto(dir);
    const s = await Session.create('prof test', g.build());
    const feeds = { x: tensor('float32', [4], new Float32Array([1, 2, 3, 4])) };
    for (let i = 0; i < 3; i++) await s.run(feeds);
    const file = s.endProfiling();
    assert.equal(s.endProfiling(), file);
    assert.ok(file.startsWith(path.join(dir, 'prof_test-')) && file.endsWith('.json'), file);
    assert.throws(() => unprofiled.endProfiling(), /loaded without profiling/);
    const sum = summarizeProfileFile(file, 'prof test');
    assert.equal(sum.runs, 3);
    assert.deepEqual(sum.ops.map((o) => [o.op, o.countPerRun]).sort(), [['Add', 1], ['Mul', 1]]);
    assert.ok(Math.abs(sum.ops.reduce((t, o) => t + o.share, 0) - 1) < 1e-9);
    assert.equal(summarizeProfileFile(file, 'prof test', 1).runs, 2);
    await s.dispose();
    await unprofiled.dispose();
    assert.deepEqual(endProfilingAll().map((p) => p.path), [file]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('profile summary: kernel time by op type, warm-up runs left out', () => {
  const run = (ts: number, dur: number) => ({ cat: 'Session', name: 'model_run', ts, dur });
  const k = (op: string, ts: number, dur: number, provider = 'CPUExecutionProvider') => ({ cat: 'Node', name: `n_${op}_kernel_time`, ts, dur, args: { op_name: op, provider } });
  const events = [run(0, 100), k('MatMul', 10, 50), run(200, 1000), k('MatMul', 210, 600), k('Softmax', 820, 200), k('MatMul', 1030, 100, 'WebGpuExecutionProvider')];
  const all = summarizeProfile(events, 'm');
  assert.equal(all.runs, 2);
  assert.deepEqual(all.ops.map((o) => [o.op, o.seconds]), [['MatMul', 650e-6], ['Softmax', 200e-6], ['MatMul (WebGpu)', 100e-6]]);
  const warm = summarizeProfile(events, 'm', 1);
  assert.deepEqual([warm.runs, warm.ops[0]!.seconds, warm.ops[0]!.share], [1, 600e-6, 600 / 900]);
  assert.match(profileTable(warm, 1), /\| MatMul \| 0\.001 \| 66\.7% \| 1 \|\n\| 2 other types \| 0\.000 \| 33\.3% \| 2 \|/);
  assert.throws(() => summarizeProfile({} as never, 'x'), /JSON array/);
});

test('a checkpoint opened with T5 but no T5 tokenizer loads; the tokenizer is asked for only when T5 ids are (M3)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sd3-t5-lazy-'));
  try {
    const one = tensor('float32', [1], new Float32Array([0]));
    const file = path.join(dir, 'ckpt.safetensors');
    writeSafetensors(file, {
      'model.diffusion_model.x': one, 'first_stage_model.x': one, 'text_encoders.clip_l.transformer.x': one,
      'text_encoders.clip_g.transformer.x': one, 'text_encoders.t5xxl.transformer.x': one,
    });
    const { weights, preprocessor } = openCheckpoint(file, { t5: true });
    try {
      assert.ok(weights.t5);
      assert.throws(() => preprocessor.generatePreprocess(['a cat']), (e: Error) => e instanceof SD3Error && /T5 needs its tokenizer/.test(e.message));
    } finally {
      weights.close?.();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
