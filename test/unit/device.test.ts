/**
 * Device placement: the choices, the $SD3_DEVICE default, the provider list handed to ORT, the nodes a graph
 * keeps on the CPU, and the int8-on-GPU refusal. (Running on a GPU is checked by scripts/gpu-check.sh on a
 * machine that has one; CI machines have none.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SD3Error } from '../../src/core/errors.js';
import { GraphBuilder } from '../../src/onnx/builder.js';
import { SD3Backbone } from '../../src/pipelines/backbone.js';
import { tinyRandomWeights } from '../../src/presets/tiny-random.js';
import { runtimeArgs } from '../../src/cli/args.js';
import { tensor } from '../../src/core/tensor.js';
import { defaultDevice, executionProviders, gpuMemoryHint, parseDevice, resolveDevice, webgpuAvailable, webgpuHostOps } from '../../src/runtime/ort.js';

test('parseDevice accepts cpu, webgpu and auto and names a bad value and the choices', () => {
  assert.equal(parseDevice('cpu'), 'cpu');
  assert.equal(parseDevice('webgpu'), 'webgpu');
  assert.equal(parseDevice('auto'), 'auto');
  assert.throws(() => parseDevice('cuda'), (e: Error) => e instanceof SD3Error && /device must be one of cpu, webgpu, auto; got "cuda"/.test(e.message));
});

test("'auto' is the GPU exactly when the WebGPU probe finds an adapter; the probe runs once", async () => {
  assert.equal(await resolveDevice('auto', async () => true), 'webgpu');
  assert.equal(await resolveDevice('auto', async () => false), 'cpu');
  assert.equal(await resolveDevice('cpu', async () => true), 'cpu');
  // The real probe answers a boolean, once per process; SD3_EXPECT_WEBGPU=1/0 (scripts/gpu-check.sh) says what it must find.
  const found = await webgpuAvailable();
  assert.equal(typeof found, 'boolean');
  if (process.env.SD3_EXPECT_WEBGPU !== undefined) assert.equal(found, process.env.SD3_EXPECT_WEBGPU === '1', 'the WebGPU probe disagrees with SD3_EXPECT_WEBGPU');
  assert.equal(webgpuAvailable(), webgpuAvailable(), 'the probe runs once per process');
  assert.equal(await resolveDevice('cpu'), 'cpu');
  assert.equal(await resolveDevice('webgpu'), 'webgpu');
});

test('the default device is $SD3_DEVICE when set, else cpu; a bad $SD3_DEVICE is an error naming it', () => {
  assert.equal(defaultDevice({}), 'cpu');
  assert.equal(defaultDevice({ SD3_DEVICE: '' }), 'cpu');
  assert.equal(defaultDevice({ SD3_DEVICE: 'webgpu' }), 'webgpu');
  assert.equal(defaultDevice({ SD3_DEVICE: 'auto' }), 'auto');
  assert.throws(() => defaultDevice({ SD3_DEVICE: 'gpu' }), /SD3_DEVICE must be one of cpu, webgpu, auto; got "gpu"/);
});

test('webgpu sessions list the CPU provider second, pass the host-only nodes to WebGPU, and reuse buffers of the same size by default', () => {
  assert.deepEqual(executionProviders('cpu', ['Sin_1']), ['cpu']);
  assert.deepEqual(executionProviders('webgpu'), [{ name: 'webgpu', storageBufferCacheMode: 'simple' }, 'cpu']);
  assert.deepEqual(executionProviders('webgpu', ['Sin_1', 'Cos_2'], 'bucket'), [{ name: 'webgpu', forceCpuNodeNames: ['Sin_1', 'Cos_2'], storageBufferCacheMode: 'bucket' }, 'cpu']);
});

test('sine and cosine nodes are host-only (kept on the CPU under a GPU provider)', () => {
  const g = new GraphBuilder('t');
  const x = g.input('x', 'float32', [4]);
  g.output(g.add(g.sin(x), g.cos(g.exp(x))), 'y');
  const built = g.build();
  assert.equal(built.hostNodes.length, 2);
  assert.ok(built.hostNodes.some((n) => n.startsWith('Sin')) && built.hostNodes.some((n) => n.startsWith('Cos')), built.hostNodes.join());
  assert.throws(() => g.hostOnly('nothing'), /no node produces nothing/);

});

test('int8 with device webgpu is refused up front, naming both', () => {
  const { weights } = tinyRandomWeights();
  assert.throws(() => new SD3Backbone(weights, { device: 'webgpu', dtype: 'int8' }), /dtype 'int8' runs on the CPU only; with device 'webgpu' use dtype 'float32'/);
  assert.throws(() => new SD3Backbone(weights, { device: 'webgpu', clipDtype: 'int8' }), /int8/);
  assert.equal(new SD3Backbone(weights, { device: 'webgpu' }).device, 'webgpu');
  assert.equal(new SD3Backbone(weights, { device: 'auto', dtype: 'int8' }).device, 'cpu', "'auto' with int8 is the CPU");
  assert.equal(new SD3Backbone(weights, { device: 'auto' }).device, 'auto');
});

test("float16 is refused on the CPU up front, and on 'auto' at load when no GPU is found; kept on webgpu", async () => {
  const { weights } = tinyRandomWeights();
  assert.throws(() => new SD3Backbone(weights, { device: 'cpu', dtype: 'float16' }), /dtype 'float16' runs on a GPU only \(device 'webgpu'\), and device 'cpu': ORT's CPU provider .* use 'float32' or 'int8'/);
  assert.throws(() => new SD3Backbone(weights, { dtype: 'float16' }), /dtype 'float16' runs on a GPU only/, 'the default device is the CPU');
  assert.equal(new SD3Backbone(weights, { device: 'webgpu', dtype: 'float16' }).device, 'webgpu');
  if (!(await webgpuAvailable())) {
    const auto = new SD3Backbone(weights, { device: 'auto', dtype: 'float16' });
    await assert.rejects(auto.decode(tensor('float32', [1, 16, 2, 2], new Float32Array(64))), /dtype 'float16' runs on a GPU only \(device 'webgpu'\), and device 'auto' found no GPU here/);
  }
});

test('the CLI flags: --fp16 means dtype float16 on webgpu unless a device is named', () => {
  assert.deepEqual(runtimeArgs({ fp16: true }), { device: 'webgpu', dtype: 'float16' });
  assert.deepEqual(runtimeArgs({ fp16: true, device: 'auto' }), { device: 'auto', dtype: 'float16' });
  assert.deepEqual(runtimeArgs({ device: 'webgpu' }), { device: 'webgpu' });
});

test('$SD3_WEBGPU_HOST_OPS lists operator types for the CPU (for software Vulkan), empty when unset', () => {
  assert.deepEqual(webgpuHostOps({}), []);
  assert.deepEqual(webgpuHostOps({ SD3_WEBGPU_HOST_OPS: 'MultiHeadAttention, Conv,' }), ['MultiHeadAttention', 'Conv']);
  const g = new GraphBuilder('ops');
  const x = g.input('x', 'float32', [1]);
  g.output(g.add(g.add(x, x), x), 'y');
  assert.equal(g.build().nodesByOp.Add?.length, 2);
});

test('a GPU run that fails for memory says what to do; other failures get no hint', () => {
  assert.match(gpuMemoryHint('WebGPU device error(1): Out of memory while creating buffer'), /--vae-tile 64.*--low-memory/);
  assert.match(gpuMemoryHint('failed to allocate buffer of 2147483648 bytes'), /ran out of memory/);
  assert.equal(gpuMemoryHint('shape mismatch at node Add_3'), '');
});

test('backbone options outside their choices are refused, naming the value', () => {
  const { weights } = tinyRandomWeights();
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ dtype: 'bfloat16' }, /dtype must be one of 'float32', 'int8', 'float16'; got "bfloat16" \('float16' is the half-precision mode, on a GPU/],
    [{ dtype: 'fp8' }, /dtype must be one of 'float32', 'int8', 'float16'; got "fp8"$/],
    [{ clipDtype: 'fp8' }, /clipDtype must be one of/],
    [{ t5Dtype: 'int4' }, /t5Dtype must be one of/],
    [{ device: 'cuda' }, /device must be one of cpu, webgpu, auto; got "cuda"/],
    [{ threads: 0 }, /threads must be a positive integer, got 0/],
    [{ lowMemory: 'yes' }, /lowMemory must be true or false, got "yes"/],
    [{ vaeTile: { size: 8, overlap: 8 } }, /tile overlap must be an integer in \[0, 7\]/],
  ];
  for (const [opts, message] of bad) assert.throws(() => new SD3Backbone(weights, opts as never), message, JSON.stringify(opts));
});
