/**
 * LoRA switching on a full-size MMDiT: the two ways to change LoRAs between generations, measured.
 *
 *   npm run bench:lora -- --checkpoint /tmp/sd3_random.safetensors [--mode fp32|int8] [--rank 16] [--size 256] [--json]
 *
 * - reload: load the MMDiT session from the checkpoint (what any change costs when weights are baked in);
 * - branches (what sd3.ts does): the MMDiT built once with low-rank branch inputs; a switch reads the LoRA
 *   file(s) and feeds new factors; also the per-step cost of the branches (zeros and a rank-R LoRA) vs plain;
 * - merge: merging every targeted weight (W + s * B @ A, src/lora/merge.ts) and, in int8 mode, re-quantizing
 *   it; a merged model must then be rebuilt, which costs at least a reload on top.
 *
 * Two random LoRA files (kohya form, every Linear and the patch conv, ranks R and R/2) are written next to the
 * checkpoint's folder and deleted at the end. Timings in seconds, memory as resident set sizes in GB.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { SafetensorsFile, writeSafetensors } from '../src/core/safetensors.js';
import { type Tensor, float32ToHalf, tensor } from '../src/core/tensor.js';
import { SafetensorsStore, withPrefix } from '../src/core/weights.js';
import { LoraManager, mergedWeights, readLoraFile } from '../src/lora/index.js';
import { MMDiT } from '../src/models/mmdit.js';
import { mmditInt8LinearNames } from '../src/pipelines/backbone.js';
import { openInt8Cache, quantizePerChannel } from '../src/quant/int8.js';
import { gaussian } from '../src/sampler/noise.js';

const { values: v } = parseArgs({
  options: {
    checkpoint: { type: 'string' },
    mode: { type: 'string', default: 'fp32' },
    rank: { type: 'string', default: '16' },
    size: { type: 'string', default: '256' },
    threads: { type: 'string' },
    json: { type: 'boolean' },
    'skip-merge': { type: 'boolean' },
  },
});
if (!v.checkpoint || !['fp32', 'int8'].includes(v.mode!)) {
  console.error('usage: npm run bench:lora -- --checkpoint <sd3.safetensors> [--mode fp32|int8] [--rank 16] [--size 256] [--json]');
  process.exit(2);
}
const rank = Number(v.rank);
const size = Number(v.size);
const threads = v.threads ? Number(v.threads) : undefined;
const gb = (b: number) => Number((b / 2 ** 30).toFixed(2));
const rss = () => gb(process.memoryUsage().rss);
const peak = () => gb(process.resourceUsage().maxRSS * 1024);
const timed = async <T>(f: () => Promise<T> | T): Promise<[T, number]> => {
  const t0 = performance.now();
  const r = await f();
  return [r, Number(((performance.now() - t0) / 1000).toFixed(3))];
};
const log = (s: string) => process.stderr.write(`${s}\n`);

const file = SafetensorsFile.open(v.checkpoint);
const store = new SafetensorsStore([file], withPrefix('model.diffusion_model.'));
const manager = new LoraManager(store);
const targets = manager.targets;
const result: Record<string, unknown> = { mode: v.mode, rank, size, targets: targets.byName.size, cpu: os.cpus()[0]?.model, threads: threads ?? os.availableParallelism() };

/** A random kohya LoRA on every target (fp16, alpha = rank). */
function writeRandomLora(out: string, r: number, seed: number): number {
  const tensors: Record<string, Tensor> = {};
  let k = 0;
  let params = 0;
  for (const t of targets.byName.values()) {
    const name = `lora_unet_${t.name.replace(/\.weight$/, '').replaceAll('.', '_')}`;
    const inner = t.shape.slice(1).reduce((a, b) => a * b, 1);
    const down = gaussian(r * inner, seed + k++).map((x) => x / Math.sqrt(inner));
    const up = gaussian(t.shape[0]! * r, seed + k++).map((x) => x * 1e-3);
    tensors[`${name}.lora_down.weight`] = float32ToHalf(tensor('float32', [r, ...t.shape.slice(1)], down), 'float16');
    tensors[`${name}.lora_up.weight`] = float32ToHalf(tensor('float32', t.shape.length === 4 ? [t.shape[0]!, r, 1, 1] : [t.shape[0]!, r], up), 'float16');
    tensors[`${name}.alpha`] = float32ToHalf(tensor('float32', [], new Float32Array([r])), 'float16');
    params += down.length + up.length;
  }
  writeSafetensors(out, tensors);
  return params;
}

const dir = fs.mkdtempSync(path.join(path.dirname(path.resolve(v.checkpoint)), 'sd3-lora-bench-'));
const loraA = path.join(dir, 'a.safetensors');
const loraB = path.join(dir, 'b.safetensors');
try {
  result.loraParams = writeRandomLora(loraA, rank, 1000);
  writeRandomLora(loraB, Math.max(1, rank / 2), 5000);
  result.loraFileMB = Number((fs.statSync(loraA).size / 2 ** 20).toFixed(1));

  const quant = v.mode === 'int8' ? openInt8Cache(store, mmditInt8LinearNames(store), 'mmdit', { onProgress: (d, n) => { if (d % 50 === 0) log(`int8 cache ${d}/${n}`); } }) : undefined;
  const latent = size / 8;
  const x = tensor('float32', [2, 16, latent, latent], gaussian(2 * 16 * latent * latent, 1));
  const t = tensor('float32', [2], new Float32Array([1000, 1000]));
  const adm = store.get('y_embedder.mlp.0.weight').shape[1]!;
  const ctxIn = store.get('context_embedder.weight').shape[1]!;
  const y = tensor('float32', [2, adm], gaussian(2 * adm, 2));
  const ctx = tensor('float32', [2, 154, ctxIn], gaussian(2 * 154 * ctxIn, 3));
  // The fastest of three runs (the first run of a session also warms its buffers; on a shared machine the
  // minimum is the least disturbed).
  const step = async (m: MMDiT) => {
    let best = Infinity;
    for (let i = 0; i < 3; i++) best = Math.min(best, (await timed(() => m.forward(x, t, y, ctx)))[1]);
    return best;
  };
  const opts = { ...(threads ? { threads } : {}), ...(quant ? { quant } : {}) };

  // 1. Reload: the plain MMDiT from the checkpoint.
  log('reload (plain MMDiT)...');
  const [plain, reloadS] = await timed(() => MMDiT.load(store, opts));
  result.reload = { seconds: reloadS, rssGB: rss() };
  result.stepPlainS = await step(plain);
  await plain.dispose();
  result.rssAfterPlainDisposeGB = rss();

  // 2. Branches: build once, switch by feeds.
  log('branch model...');
  const [branched, loadBranchesS] = await timed(() => MMDiT.load(store, { ...opts, loraSlots: manager.allSlotsOf('mmdit') }));
  branched.setBranchFeeds(manager.feeds('mmdit', manager.allSlotsOf('mmdit')));
  result.loadWithBranches = { seconds: loadBranchesS, rssGB: rss() };
  result.stepBranchesZeroS = await step(branched);
  const switchTo = async (specs: { path: string; scale: number }[]) => {
    const before = rss();
    const [, s] = await timed(() => { manager.select(specs); branched.setBranchFeeds(manager.feeds('mmdit', manager.allSlotsOf('mmdit'))); });
    return { seconds: s, rssBeforeGB: before, rssAfterGB: rss() };
  };
  result.switchFirst = await switchTo([{ path: loraA, scale: 1 }]);
  result.stepBranchesLoraS = await step(branched);
  result.switchScale = await switchTo([{ path: loraA, scale: 0.5 }]);
  result.switchSet = await switchTo([{ path: loraA, scale: 0.7 }, { path: loraB, scale: 0.5 }]);
  result.stepBranchesTwoLorasS = await step(branched);
  result.switchOff = await switchTo([]);
  await branched.dispose();

  // 3. Merge: every targeted weight merged (one at a time, so memory stays low), re-quantized in int8 mode.
  if (!v['skip-merge']) {
    log('merge...');
    const a = readLoraFile(loraA, targets);
    let mergeS = 0;
    let quantS = 0;
    for (const m of a.modules) {
      const [merged, s] = await timed(() => mergedWeights(store, targets, [{ file: { ...a, modules: [m] }, scale: 1 }]));
      mergeS += s;
      if (quant) {
        for (const w of merged.values()) {
          if (w.shape.length !== 2) continue;
          quantS += (await timed(() => quantizePerChannel(w.data, w.shape[0]!, w.shape[1]!)))[1];
        }
      }
    }
    result.merge = { seconds: Number(mergeS.toFixed(1)), ...(quant ? { requantizeSeconds: Number(quantS.toFixed(1)) } : {}), plusRebuildAtLeastReloadS: reloadS };
  }
  result.peakRssGB = peak();
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
  file.close();
}
if (v.json) console.log(JSON.stringify(result));
else console.log(JSON.stringify(result, null, 2));
