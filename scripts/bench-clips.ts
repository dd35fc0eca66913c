/**
 * Loads CLIP-L and CLIP-G from a single-file checkpoint (e.g. scripts/make-random-clips.ts's output), encodes
 * one prompt batched with its empty negative, and prints load time, encode time and peak RSS.
 *
 *   npx tsx scripts/bench-clips.ts [/tmp/sd3-clips.safetensors] [--threads N]
 */
import { SafetensorsFile } from '../src/core/safetensors.js';
import { type Tensor, tensor } from '../src/core/tensor.js';
import { SafetensorsStore, prefixed, withPrefix } from '../src/core/weights.js';
import { CLIPTextEncoder } from '../src/models/clip.js';
import { sd3Conditioning } from '../src/models/conditioning.js';

const args = process.argv.slice(2);
const file = args.find((a) => !a.startsWith('--')) ?? '/tmp/sd3-clips.safetensors';
const t = args.indexOf('--threads');
const threads = t >= 0 ? Number(args[t + 1]) : undefined;

/** Two 77-token rows: a 9-token prompt and the empty prompt, padded with `pad`. */
function ids(pad: number): Tensor<'int64'> {
  const rows = [[49406, 320, 1125, 539, 550, 18376, 530, 320, 9716, 49407], [49406, 49407]];
  const data = new BigInt64Array(2 * 77).fill(BigInt(pad));
  rows.forEach((r, b) => r.forEach((id, j) => { data[b * 77 + j] = BigInt(id); }));
  return tensor('int64', [2, 77], data);
}

const mb = () => `${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB`;
const store = new SafetensorsStore([SafetensorsFile.open(file)], withPrefix(''));
const opts = threads ? { threads } : {};
let t0 = performance.now();
const clipL = await CLIPTextEncoder.load(prefixed(store, 'text_encoders.clip_l.transformer.'), {}, { ...opts, label: 'CLIP-L' });
const clipG = await CLIPTextEncoder.load(prefixed(store, 'text_encoders.clip_g.transformer.'), {}, { ...opts, label: 'CLIP-G' });
console.log(`load: ${((performance.now() - t0) / 1000).toFixed(2)} s (peak RSS ${mb()})`);
for (let run = 0; run < 2; run++) {
  t0 = performance.now();
  const l = await clipL.encode(ids(49407));
  const g = await clipG.encode(ids(0));
  const { context, y } = sd3Conditioning({ clipL: l, clipG: g });
  console.log(`encode (batch 2, run ${run + 1}): ${((performance.now() - t0) / 1000).toFixed(2)} s; context [${context.shape}], y [${y.shape}]`);
}
console.log(`peak RSS: ${mb()}`);
await clipL.dispose();
await clipG.dispose();
store.close();
