/**
 * T5-XXL at full size: int8 cache build, load, encode (batch 2 x 77 tokens) and peak RSS, in its own process.
 *
 *   npm run make-random-checkpoint -- /tmp/sd3_random_t5.safetensors --t5
 *   npm run bench:t5 -- --checkpoint /tmp/sd3_random_t5.safetensors [--dtype int8|float32]
 */
import { tensor } from '../src/core/tensor.js';
import { openCheckpoint } from '../src/loaders/checkpoint.js';
import { T5Encoder, buildT5EncoderModel, inferT5Config } from '../src/models/t5.js';
import { LinearRecorder } from '../src/quant/int8.js';
import { T5_USAGE, orExit, parseT5Args, withArgs } from './args.js';

const v = withArgs(parseT5Args, T5_USAGE);
const secs = (t0: number) => (performance.now() - t0) / 1000;
const gb = (b: number) => (b / 2 ** 30).toFixed(2);
// Only the T5 store is opened as a model; the rest of the checkpoint is not loaded. The ids below are made up, so
// no T5 tokenizer is needed (the checkpoint's loads lazily, when T5 ids are first asked for).
const { weights } = orExit(() => openCheckpoint(v.checkpoint, { t5: true }));
const store = weights.t5!;
let t0 = performance.now();
let quant;
if (v.dtype === 'int8') {
  const rec = new LinearRecorder();
  buildT5EncoderModel(store, inferT5Config(store), { quant: rec });
  quant = weights.quantize!('t5', rec.names);
}
const cacheSeconds = secs(t0);
t0 = performance.now();
const t5 = await T5Encoder.load(store, {}, { label: 'T5-XXL', ...(quant ? { quant } : {}) });
const loadSeconds = secs(t0);
const L = v.tokens;
const ids = new BigInt64Array(2 * L);
for (let i = 0; i < L - 1; i++) ids[i] = BigInt(100 + ((i * 37) % 30000));
ids[L - 1] = 1n;
ids[L] = 1n;
t0 = performance.now();
const out = await t5.encode(tensor('int64', [2, L], ids));
const encodeSeconds = secs(t0);
let finite = true;
for (const a of out.data) if (!Number.isFinite(a)) { finite = false; break; }
const peak = process.resourceUsage().maxRSS * 1024;
console.log(`T5-XXL ${v.dtype}: int8 cache ${cacheSeconds.toFixed(1)} s (0 when cached), load ${loadSeconds.toFixed(1)} s, encode [2, ${L}] ${encodeSeconds.toFixed(2)} s, peak RSS ${gb(peak)} GB, finite ${finite}`);
console.log(JSON.stringify({ dtype: v.dtype, cacheSeconds, loadSeconds, encodeSeconds, tokens: L, peakRssBytes: peak, finite }));
await t5.dispose();
weights.close?.();
