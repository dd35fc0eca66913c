/**
 * How far float16 images are from float32 ones, in 8-bit codes (max and mean per value): every sampler fixture
 * case (tiny MMDiT, 1-10 steps, CFG 2.5-7) run twice, float32 and float16 MMDiT + VAE, on one device, each final
 * latent decoded by its own VAE.
 *
 *   node --import tsx bench/gpu/float16-images.ts [--device cpu|webgpu]
 */
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { SafetensorsFile } from '../../src/core/safetensors.js';
import type { Tensor } from '../../src/core/tensor.js';
import { SafetensorsStore, withPrefix } from '../../src/core/weights.js';
import { imageToUint8 } from '../../src/image/pixels.js';
import { MMDiT } from '../../src/models/mmdit.js';
import { VAE } from '../../src/models/vae.js';
import { parseDevice } from '../../src/runtime/ort.js';
import { checkLoopCases } from '../../test/parity/check-sampler.js';
import { readJson } from '../../test/parity/lib.js';

const { values } = parseArgs({ options: { device: { type: 'string', default: 'cpu' } } });
const device = parseDevice(values.device!);
const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'test', 'fixtures', 'sampler');
const config = readJson(path.join(dir, 'config.json'));
const open = (ref: { weights_file: string; config_file: string }) => {
  const cfg = readJson(path.join(dir, ref.config_file));
  return new SafetensorsStore([SafetensorsFile.open(path.join(dir, ref.weights_file))], withPrefix(cfg.weights_prefix ?? ''));
};

async function images(dtype: 'float32' | 'float16'): Promise<Map<string, Uint8Array>> {
  const mmdit = await MMDiT.load(open(config.mmdit), { device, dtype });
  const vae = await VAE.load(open(config.vae), { device, dtype });
  const latents = new Map<string, Tensor>();
  await checkLoopCases('sampler', dir, config, { mmdit, vae }, { onCase: (name, actual) => latents.set(name, actual['output.latent_vae']!) });
  const out = new Map<string, Uint8Array>();
  for (const [name, z] of latents) out.set(name, imageToUint8(await vae.decode(z)).data as Uint8Array);
  await mmdit.dispose();
  await vae.dispose();
  return out;
}

const a = await images('float32');
const b = await images('float16');
const rows = [...a].map(([name, x]) => {
  const y = b.get(name)!;
  let max = 0;
  let sum = 0;
  for (let i = 0; i < x.length; i++) { const d = Math.abs(x[i]! - y[i]!); max = Math.max(max, d); sum += d; }
  return { case: name, maxCodes: max, meanCodes: Number((sum / x.length).toFixed(4)), values: x.length };
});
for (const r of rows) console.log(`${r.case.padEnd(34)} max ${r.maxCodes} codes, mean ${r.meanCodes}`);
console.log(JSON.stringify({ device, rows }));
