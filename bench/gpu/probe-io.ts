/**
 * Is there a WebGPU adapter, with shader-f16? And can onnxruntime-node keep WebGPU outputs on the GPU (`preferredOutputLocation: 'gpu-buffer'`), read them back
 * (`getData()`), and feed them to the next run? That is what keeping the latents and the text conditioning on the
 * GPU across the denoising loop would need. Each step runs in a child process, because a failure here aborts the
 * process (measured on Mesa's lavapipe with onnxruntime-node 1.30: "terminate called after throwing an instance
 * of 'char const*'", exit 134, on both getData() and feeding the output back).
 *
 *   node --import tsx bench/gpu/probe-io.ts
 *   ->  {"ort": "1.30.0", "webgpu": true, "shaderF16": true, "gpuOutput": true, "download": false, "feedBack": false, ...}
 *
 * This is a probe for bench/gpu/check.sh, not the product (the steps are `webgpuOutputProbe` in src/runtime/ort.ts;
 * the runtime reads every output to the host today).
 */
import { spawnSync } from 'node:child_process';
import { runtimeVersion, webgpuAvailable, webgpuFloat16Available, webgpuOutputProbe } from '../../src/runtime/ort.js';

const step = process.argv[2];
if (step === 'output' || step === 'download' || step === 'feed') {
  console.log(await webgpuOutputProbe(step));
  process.exit(0);
}

const run = (name: string) => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', new URL(import.meta.url).pathname, name], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, signal: r.signal, out: r.stdout.trim().split('\n').pop() ?? '', err: r.stderr.trim().split('\n').filter((l) => !/W:onnxruntime|XDG_RUNTIME/.test(l)).slice(-2).join(' | ') };
};
const output = run('output');
const download = run('download');
const feed = run('feed');
console.log(JSON.stringify({
  ort: runtimeVersion(),
  webgpu: await webgpuAvailable(),
  shaderF16: await webgpuFloat16Available(),
  gpuOutput: output.status === 0 && output.out === 'gpu-buffer',
  download: download.status === 0 && download.out === '2,3,4,5',
  feedBack: feed.status === 0 && feed.out === '3,4,5,6',
  details: { output, download, feed },
}));
