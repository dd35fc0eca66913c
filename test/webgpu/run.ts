/**
 * Parity on WebGPU (`npm run test:webgpu`, not part of `npm test`): the tiny mmdit, vae and sampler fixtures with
 * every model on the GPU, in float32 at the fixtures' own tolerances, then with the MMDiT and the VAE in float16
 * at the float16 tolerance (test/parity/lib.ts). Fails, saying so, when this process finds no WebGPU adapter or
 * the adapter lacks `shader-f16`: it never passes without having run on WebGPU.
 *
 *   npm run test:webgpu                        on a machine with a GPU (Vulkan on Linux)
 *   scripts/webgpu-lavapipe.sh                 without one: Mesa's software Vulkan driver (slow; tiny fixtures)
 *   npm run test:webgpu -- mmdit               only some fixture folders (default: mmdit vae sampler)
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { webgpuAvailable, webgpuFloat16Available, webgpuHostOps } from '../../src/runtime/ort.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const folders = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const only = folders.length ? folders : ['mmdit', 'vae', 'sampler'];

if (!(await webgpuAvailable())) {
  console.error('FAIL test:webgpu: onnxruntime-node\'s WebGPU provider found no adapter in this process (no GPU, or no Vulkan driver'
    + ' that Dawn accepts); nothing was checked. Without a GPU, run scripts/webgpu-lavapipe.sh (Mesa >= 23 lavapipe).');
  process.exit(1);
}
const float16 = await webgpuFloat16Available();
const hostOps = webgpuHostOps();
if (hostOps.length) console.log(`# SD3_WEBGPU_HOST_OPS: ${hostOps.join(', ')} run on the CPU, everything else on WebGPU`);

function parity(dtype: 'float32' | 'float16'): boolean {
  console.log(`# WebGPU, ${dtype}: ${only.join(' ')}`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'test', 'parity', 'run.ts'), ...only], {
    stdio: 'inherit', env: { ...process.env, SD3_DEVICE: 'webgpu', SD3_DTYPE: dtype },
  });
  return r.status === 0;
}

const ok32 = parity('float32');
let ok16 = false;
if (float16) ok16 = parity('float16');
else console.error('FAIL test:webgpu float16: the WebGPU adapter lacks the shader-f16 feature, so dtype float16 cannot run here');
console.log(`test:webgpu: float32 ${ok32 ? 'passed' : 'FAILED'}, float16 ${ok16 ? 'passed' : float16 ? 'FAILED' : 'not run (no shader-f16)'}`);
process.exit(ok32 && ok16 ? 0 : 1);
