/** `sd3 devices`: what this machine offers sd3 (CPU, a GPU through WebGPU, the default device, the model cache). */
import * as os from 'node:os';
import { parseArgs } from 'node:util';
import { hubCacheDir } from '../hub/index.js';
import { defaultDevice, defaultThreads, resolveDevice, runtimeVersion, webgpuAvailable, webgpuFloat16Available } from '../runtime/ort.js';

export async function runDevices(argv: string[]): Promise<number> {
  const { values: v } = parseArgs({ args: argv, options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  if (v.help) {
    console.log('Usage: sd3 devices [--json]\n\nLists the CPU, whether a GPU is usable through WebGPU (--device webgpu), and what\n--device auto would pick.');
    return 0;
  }
  const webgpu = await webgpuAvailable();
  const float16 = await webgpuFloat16Available();
  const info = {
    onnxruntime: runtimeVersion(),
    cpu: { model: os.cpus()[0]?.model ?? 'unknown', threads: defaultThreads() },
    webgpu,
    webgpuFloat16: float16,
    defaultDevice: defaultDevice(),
    autoDevice: await resolveDevice('auto'),
    modelCache: hubCacheDir(),
  };
  if (v.json) {
    console.log(JSON.stringify(info));
    return 0;
  }
  console.log(`onnxruntime-node ${info.onnxruntime}`);
  console.log(`cpu     ${info.cpu.model}, ${info.cpu.threads} threads`);
  console.log(`webgpu  ${webgpu ? 'a GPU adapter was found: --device webgpu works' : 'no GPU adapter (no GPU, no driver, or on Linux no Vulkan loader libvulkan.so.1)'}`);
  if (webgpu) console.log(`fp16    ${float16 ? 'the adapter has shader-f16: --fp16 works' : 'the adapter lacks shader-f16: --fp16 is refused'}`);
  console.log(`default device ${info.defaultDevice}${process.env.SD3_DEVICE ? ' (from $SD3_DEVICE)' : ''}; --device auto picks ${info.autoDevice}`);
  console.log(`model cache ${info.modelCache}`);
  return 0;
}
