/**
 * Writes the demo model's training captions for the Python trainer, tokenized by our own CLIP tokenizer
 * (so the trainer needs none and the ids are exactly those the TypeScript pipeline will feed the model).
 *
 *   npx tsx scripts/demo-model/dump-data.ts OUT_DIR [--samples 120000] [--seed 16]
 *
 * OUT_DIR/meta.json: colours (RGB), positions, sizes, shapes, every scene's attributes, the empty prompt's ids
 * (the unconditional prompt for classifier-free guidance: KerasHub's default negative prompt is "").
 * OUT_DIR/captions.bin: per sample, little-endian uint16: scene index, 77 CLIP-L ids, 77 CLIP-G ids.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CLIPTokenizer } from '../../src/tokenizers/clip-bpe.js';
import { COLOURS, DEMO_SIZE, POSITIONS, SHAPES, SIZES, allScenes, caption, uniform } from './grammar.js';

const args = process.argv.slice(2);
const out = args[0];
if (!out || out.startsWith('--')) throw new Error('usage: dump-data.ts OUT_DIR [--samples N] [--seed S]');
const flag = (name: string, dflt: number) => {
  const i = args.indexOf(name);
  return i < 0 ? dflt : Number(args[i + 1]);
};
const samples = flag('--samples', 120000);
const seed = flag('--seed', 16);

const tok = CLIPTokenizer.default();
const scenes = allScenes();
const r = uniform(seed);
const row = 1 + 2 * 77;
const buf = new Uint16Array(samples * row);
const examples: string[] = [];
for (let n = 0; n < samples; n++) {
  const i = Math.floor(r() * scenes.length);
  const text = caption(scenes[i]!, r);
  if (n < 20) examples.push(text);
  const l = tok.encodeForSD3(text, { pad: 'end' });
  const g = tok.encodeForSD3(text, { pad: 'zero' });
  if (l.truncated) throw new Error(`caption too long: ${text}`);
  buf[n * row] = i;
  buf.set(l.ids, n * row + 1);
  buf.set(g.ids, n * row + 78);
}
fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(path.join(out, 'captions.bin'), Buffer.from(buf.buffer));
const meta = {
  seed, samples, size: DEMO_SIZE, colours: COLOURS, positions: POSITIONS, sizes: SIZES, shapes: SHAPES, scenes,
  empty: { clipL: tok.encodeForSD3('', { pad: 'end' }).ids, clipG: tok.encodeForSD3('', { pad: 'zero' }).ids },
  examples,
};
fs.writeFileSync(path.join(out, 'meta.json'), JSON.stringify(meta));
console.log(`${samples} captions of ${scenes.length} scenes -> ${out}`);
for (const e of examples.slice(0, 8)) console.log(`  ${e}`);
