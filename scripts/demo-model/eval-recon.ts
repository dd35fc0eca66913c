/**
 * Development aid: the semantic evaluator (evaluate.ts) on the VAE's reconstructions of every scene
 * (recon.py's output), per attribute and per size: the ceiling on what the MMDiT can be seen to draw.
 *
 *   npx tsx scripts/demo-model/eval-recon.ts DIR
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RGBImage } from '../../src/image/image.js';
import { DEMO_SIZE, type Scene } from './grammar.js';
import { analyse } from './evaluate.js';

const dir = process.argv[2];
if (!dir) throw new Error('usage: eval-recon.ts DIR (what recon.py wrote)');
const scenes = JSON.parse(fs.readFileSync(path.join(dir, 'scenes.json'), 'utf8')) as Scene[];
const bytes = fs.readFileSync(path.join(dir, 'recon.bin'));
const side = DEMO_SIZE, n = side * side * 3;
if (bytes.length !== scenes.length * n) throw new Error(`recon.bin holds ${bytes.length} bytes, expected ${scenes.length} x ${n}`);
const tally = new Map<string, [number, number]>();
const count = (key: string, ok: boolean) => {
  const t = tally.get(key) ?? [0, 0];
  t[0] += ok ? 1 : 0; t[1] += 1;
  tally.set(key, t);
};
scenes.forEach((s, i) => {
  const a = analyse(new RGBImage(side, side, new Uint8Array(bytes.buffer, bytes.byteOffset + i * n, n)));
  for (const attr of ['background', 'colour', 'position', 'shape', 'size'] as const) {
    count(attr, a[attr] === s[attr]);
    count(`${attr} (${s.size})`, a[attr] === s[attr]);
  }
  count(`shape ${s.size} ${s.shape}`, a.shape === s.shape);
});
for (const [k, [ok, all]] of [...tally].sort()) console.log(`${k.padEnd(26)} ${(100 * ok / all).toFixed(1).padStart(5)}%  (${ok}/${all})`);
