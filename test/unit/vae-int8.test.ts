/**
 * The int8 VAE decoder (VAE decoderDtype 'int8', backbone vaeDtype 'int8', `--vae-int8`): its im2col
 * convolutions and folded upsample against plain float loops, the whole decoder against the reference's golden
 * decodes at a stated int8 tolerance, and the refusals.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SD3Error } from '../../src/core/errors.js';
import { readAllSafetensors, SafetensorsFile } from '../../src/core/safetensors.js';
import { type Tensor, tensor } from '../../src/core/tensor.js';
import { SafetensorsStore, withPrefix } from '../../src/core/weights.js';
import { runtimeArgs } from '../../src/cli/args.js';
import { VAE } from '../../src/models/vae.js';
import { conv3x3Int8, foldUpsampleConv3x3, im2colIndex, upsampleConv3x3Int8 } from '../../src/nn/conv-int8.js';
import { quantizeConv3x3 } from '../../src/quant/int8.js';
import { GraphBuilder } from '../../src/onnx/builder.js';
import { SD3Backbone } from '../../src/pipelines/backbone.js';
import { Session } from '../../src/runtime/ort.js';

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'vae');

/** Per-tensor uint8 activations and int8 weights: measured about 6e-3 relative RMS per conv on random data. */
const CONV_TOLERANCE = 2e-2;
/**
 * A whole decode: measured 2.4% relative RMS on the tiny reference decoder's golden cases (32-64 channels,
 * 14 int8 convolutions in a row; the float graph: 1e-6) and 4.8% on random weights at SD3's full size; a 512²
 * demo image differs by 0.5 of 255 on average.
 */
const DECODE_TOLERANCE = 5e-2;

function relRms(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let e = 0;
  let n = 0;
  for (let i = 0; i < a.length; i++) { e += (a[i]! - b[i]!) ** 2; n += b[i]! ** 2; }
  return Math.sqrt(e / n);
}

function random(n: number, seed: number, scale = 1): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => { s = (s * 1103515245 + 12345) % 2 ** 31; return (s / 2 ** 31 * 2 - 1) * scale; });
}

/** y[b, o, i, j] = bias[o] + sum_c,dy,dx w[o, c, dy, dx] x[b, c, i + dy - 1, j + dx - 1] (zero outside). NCHW. */
function conv3x3Ref(x: Float32Array, [B, C, H, W]: number[], w: Float32Array, cout: number, bias: Float32Array): Float32Array {
  const y = new Float32Array(B * cout * H * W);
  for (let b = 0; b < B; b++) for (let o = 0; o < cout; o++) for (let i = 0; i < H; i++) for (let j = 0; j < W; j++) {
    let acc = bias[o]!;
    for (let c = 0; c < C; c++) for (let dy = 0; dy < 3; dy++) for (let dx = 0; dx < 3; dx++) {
      const r = i + dy - 1;
      const q = j + dx - 1;
      if (r >= 0 && r < H && q >= 0 && q < W) acc += w[((o * C + c) * 3 + dy) * 3 + dx]! * x[((b * C + c) * H + r) * W + q]!;
    }
    y[((b * cout + o) * H + i) * W + j] = acc;
  }
  return y;
}

function nearest2x(x: Float32Array, [B, C, H, W]: number[]): Float32Array {
  const y = new Float32Array(B * C * 4 * H * W);
  for (let p = 0; p < B * C; p++) for (let i = 0; i < 2 * H; i++) for (let j = 0; j < 2 * W; j++) {
    y[(p * 2 * H + i) * 2 * W + j] = x[(p * H + (i >> 1)) * W + (j >> 1)]!;
  }
  return y;
}

const nhwc = (x: Float32Array, [B, C, H, W]: number[]) => {
  const y = new Float32Array(x.length);
  for (let b = 0; b < B; b++) for (let c = 0; c < C; c++) for (let i = 0; i < H * W; i++) y[(b * H * W + i) * C + c] = x[(b * C + c) * H * W + i]!;
  return y;
};

async function runNHWC(build: (g: GraphBuilder, x: string) => string, x: Float32Array, shape: number[]): Promise<Float32Array> {
  const g = new GraphBuilder('t');
  const [B, C, H, W] = shape as [number, number, number, number];
  const input = g.input('x', 'float32', [B, 'H', 'W', C]);
  g.output(build(g, input), 'y');
  const s = await Session.create('t', g.build(), { threads: 1 });
  const out = await s.run({ x: tensor('float32', [B, H, W, C], nhwc(x, shape)) });
  await s.dispose();
  return out.y!.data as Float32Array;
}

test('an int8 im2col 3x3 conv matches a plain float conv within the int8 tolerance, at odd sizes and batch 2', async () => {
  const shape = [2, 8, 5, 7];
  const cout = 6;
  const x = random(2 * 8 * 5 * 7, 1);
  const w = random(cout * 8 * 9, 2, 0.3);
  const bias = random(cout, 3, 0.1);
  const ref = nhwc(conv3x3Ref(x, shape, w, cout, bias), [2, cout, 5, 7]);
  const y = await runNHWC((g, xi) => conv3x3Int8(g, xi, im2colIndex(g, xi), quantizeConv3x3(w, cout, 8), g.floats([...bias])), x, shape);
  assert.equal(y.length, ref.length);
  const err = relRms(y, ref);
  assert.ok(err < CONV_TOLERANCE && err > 0, `relative RMS ${err}`);
});

test('the folded upsample equals nearest x2 then the 3x3 conv: exactly in float, within the int8 tolerance in int8', async () => {
  const shape = [1, 4, 3, 5];
  const c = 4;
  const x = random(4 * 3 * 5, 4);
  const w = random(c * c * 9, 5, 0.3);
  const bias = random(c, 6, 0.1);
  const ref = conv3x3Ref(nearest2x(x, shape), [1, c, 6, 10], w, c, bias); // NCHW [1, c, 6, 10]
  // The folded kernel in float: phase (a, b) of output channel o is output pixel (2i + a, 2j + b).
  const folded = foldUpsampleConv3x3(w, c, c);
  const low = conv3x3Ref(x, shape, folded, 4 * c, new Float32Array(4 * c).map((_, k) => bias[k % c]!));
  let worst = 0;
  for (let a = 0; a < 2; a++) for (let b = 0; b < 2; b++) for (let o = 0; o < c; o++) for (let i = 0; i < 3; i++) for (let j = 0; j < 5; j++) {
    worst = Math.max(worst, Math.abs(low[(((2 * a + b) * c + o) * 3 + i) * 5 + j]! - ref[(o * 6 + 2 * i + a) * 10 + 2 * j + b]!));
  }
  assert.ok(worst < 1e-5, `folded float upsample differs by ${worst}`);
  const y = await runNHWC((g, xi) => upsampleConv3x3Int8(g, xi, im2colIndex(g, xi), quantizeConv3x3(folded, 4 * c, c), g.floats([...bias, ...bias, ...bias, ...bias])), x, shape);
  const err = relRms(y, nhwc(ref, [1, c, 6, 10]));
  assert.ok(err < CONV_TOLERANCE, `relative RMS ${err}`);
});

test('the int8 decoder reproduces the reference golden decodes within the int8 decode tolerance, and is not the float graph', async () => {
  const store = new SafetensorsStore([SafetensorsFile.open(path.join(fixtures, 'weights.safetensors'))], withPrefix('first_stage_model.'));
  const [exact, int8] = [await VAE.load(store, { threads: 1 }), await VAE.load(store, { threads: 1, decoderDtype: 'int8' })];
  const cases = fs.readdirSync(path.join(fixtures, 'cases')).filter((f) => f.startsWith('decode_'));
  assert.ok(cases.length >= 2, 'the decode fixture cases are there');
  for (const file of cases) {
    const t = readAllSafetensors(path.join(fixtures, 'cases', file)).tensors;
    const latent = t['input.latent'] as Tensor<'float32'>;
    const golden = t['output.image']!.data as Float32Array;
    const y = await int8.decode(latent);
    assert.deepEqual(y.shape, t['output.image']!.shape);
    const err = relRms(y.data, golden);
    const floatErr = relRms((await exact.decode(latent)).data, golden);
    assert.ok(err < DECODE_TOLERANCE, `${file}: int8 decode relative RMS ${err}`);
    assert.ok(err > 10 * floatErr, `${file}: int8 error ${err} vs float ${floatErr}: the int8 graph did not run`);
  }
  await Promise.all([exact.dispose(), int8.dispose()]);
  store.close();
});

test('int8 decoding is refused with float16, on a GPU, and for unknown names, naming the value', async () => {
  const store = new SafetensorsStore([SafetensorsFile.open(path.join(fixtures, 'weights.safetensors'))], withPrefix('first_stage_model.'));
  await assert.rejects(VAE.load(store, { decoderDtype: 'int8', dtype: 'float16' }), /decoderDtype 'int8' .* cannot be combined with dtype 'float16'/);
  await assert.rejects(VAE.load(store, { decoderDtype: 'int8', device: 'webgpu' }), /runs on the CPU only .* not on device 'webgpu'/);
  await assert.rejects(VAE.load(store, { decoderDtype: 'int4' as 'int8' }), /decoderDtype must be 'float32' or 'int8', got "int4"/);
  store.close();
  const weights = { mmdit: store, vae: store } as unknown as ConstructorParameters<typeof SD3Backbone>[0];
  assert.throws(() => new SD3Backbone(weights, { vaeDtype: 'int4' as 'int8' }), (e: unknown) => e instanceof SD3Error && /vaeDtype must be one of 'float32', 'int8'; got "int4"/.test(e.message));
  assert.throws(() => new SD3Backbone(weights, { vaeDtype: 'int8', dtype: 'float16' }), /vaeDtype 'int8' runs on the CPU only.*dtype 'float16'/);
  assert.throws(() => runtimeArgs({ 'vae-int8': true, fp16: true }), /--vae-int8 runs on the CPU only/);
  assert.deepEqual(runtimeArgs({ 'vae-int8': true }), { vaeDtype: 'int8' });
});
