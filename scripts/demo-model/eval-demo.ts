/**
 * `npm run eval:demo`: the demo model's semantic score on the evaluation prompts (evaluate.ts), at the model's
 * default guidance (the checkpoint's own, "default"), at KerasHub's 7 and at guidance 1 (no guidance), with
 * fixed seeds.
 *
 *   npm run eval:demo -- [--count 48] [--guidance default,7,1] [--steps 28] [--threads N] [--json] [--save DIR]
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { TextToImage } from '../../src/presets/tasks.js';
import { analyse, evalCases, score } from './evaluate.js';

const { values: v } = parseArgs({
  options: {
    count: { type: 'string', default: '48' },
    guidance: { type: 'string', default: 'default,7,1' },
    steps: { type: 'string', default: '28' },
    json: { type: 'boolean', default: false },
    save: { type: 'string' },
    threads: { type: 'string' },
  },
});
const cases = evalCases(Number(v.count));
const t2i = await TextToImage.fromPreset('demo', v.threads ? { threads: Number(v.threads) } : {});
const results: Record<string, unknown>[] = [];
const modelDefault = t2i.backbone.sampling.guidanceScale ?? TextToImage.defaults.guidanceScale;
const scales = [...new Set(v.guidance!.split(',').map((g) => (g === 'default' ? modelDefault : Number(g))))];
const bad = scales.find((g) => !Number.isFinite(g) || g < 0);
if (bad !== undefined) throw new Error(`--guidance takes numbers >= 0 or "default", got ${v.guidance}`);
for (const g of scales) {
  const t0 = performance.now();
  const images = await t2i.generate({ prompts: cases.map((c) => c.prompt) }, { seeds: cases.map((c) => c.seed), guidanceScale: g, numSteps: Number(v.steps) });
  const seconds = (performance.now() - t0) / 1000;
  const analyses = images.map((im) => analyse(im));
  const s = score(cases, analyses);
  results.push({ guidance: g, steps: Number(v.steps), seconds, ...s });
  if (v.save) {
    fs.mkdirSync(v.save, { recursive: true });
    await Promise.all(images.map((im, i) => im.save(path.join(v.save!, `g${g}-${String(i).padStart(2, '0')}.png`))));
  }
  if (!v.json) {
    const pct = (x: number) => `${(100 * x).toFixed(1)}%`.padStart(6);
    console.log(`guidance ${g}${g === modelDefault ? ' (default)' : ''}: background ${pct(s.background)}  shape colour ${pct(s.colour)}  position ${pct(s.position)}  shape ${pct(s.shape)}  size ${pct(s.size)}  (${s.n} prompts, ${seconds.toFixed(1)} s)`);
  }
}
if (v.json) console.log(JSON.stringify(results, null, 2));
await t2i.dispose();
