/**
 * `npm run eval:demo`: the demo model's semantic score on the evaluation prompts (evaluate.ts), at the default
 * guidance and at guidance 1 (no guidance), with fixed seeds.
 *
 *   npm run eval:demo -- [--count 48] [--guidance 7,1] [--steps 28] [--threads N] [--json] [--save DIR]
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { TextToImage } from '../../src/presets/tasks.js';
import { analyse, evalCases, score } from './evaluate.js';

const { values: v } = parseArgs({
  options: {
    count: { type: 'string', default: '48' },
    guidance: { type: 'string', default: '7,1' },
    steps: { type: 'string', default: '28' },
    json: { type: 'boolean', default: false },
    save: { type: 'string' },
    threads: { type: 'string' },
  },
});
const cases = evalCases(Number(v.count));
const t2i = await TextToImage.fromPreset('demo', v.threads ? { threads: Number(v.threads) } : {});
const results: Record<string, unknown>[] = [];
for (const g of v.guidance!.split(',').map(Number)) {
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
    console.log(`guidance ${g}: background ${pct(s.background)}  shape colour ${pct(s.colour)}  position ${pct(s.position)}  shape ${pct(s.shape)}  size ${pct(s.size)}  (${s.n} prompts, ${seconds.toFixed(1)} s)`);
  }
}
if (v.json) console.log(JSON.stringify(results, null, 2));
await t2i.dispose();
