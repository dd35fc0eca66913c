/**
 * Tokenizer timings on a 10,000-word prompt (run: npm run bench:tokenizer). Prints, asserts nothing.
 * T5 uses the small test model in test/data/t5 (no real T5 vocabulary ships with the project).
 */
import { fileURLToPath } from 'node:url';
import { CLIPTokenizer } from '../src/tokenizers/clip-bpe.js';
import { T5Tokenizer } from '../src/tokenizers/t5-unigram.js';

const WORDS = ['a', 'breathtaking', 'panoramic', 'view', 'of', 'an', 'ancient', 'city', 'built', 'into', 'the', 'cliff,',
  'waterfalls', 'cascading', 'turquoise', 'pools,', 'café', 'crêpes', '東京', '8k', '(masterpiece:1.2)', 'it’s', '&amp;', '42'];

function prompt(n: number, seed: number): string {
  const out: string[] = [];
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    out.push(WORDS[s % WORDS.length]!);
  }
  return out.join(' ');
}

function time<T>(label: string, fn: () => T): T {
  const t0 = performance.now();
  const r = fn();
  console.log(`${label.padEnd(44)} ${(performance.now() - t0).toFixed(1).padStart(8)} ms`);
  return r;
}

const text = prompt(10_000, 1);
const fresh = prompt(10_000, 2);
console.log(`prompt: 10,000 words, ${text.length} characters`);
const clip = time('CLIP load (assets/vocab, merges .gz)', () => CLIPTokenizer.default());
const ids = time('CLIP encode (cold cache)', () => clip.encode(text));
time('CLIP encode (warm cache)', () => clip.encode(text));
time('CLIP encodeForSD3 (other prompt)', () => clip.encodeForSD3(fresh, { pad: 'end' }));
const rows = time('CLIP chunks (reference, word by word)', () => clip.chunks(text, { pad: 'zero' }));
const t5 = time('T5 load (test spiece.model)', () => T5Tokenizer.fromSpieceModel(fileURLToPath(new URL('../test/data/t5/t5-test.model', import.meta.url))));
const t5ids = time('T5 encode', () => t5.encode(text));
time('T5 encodeForSD3 sd3ref (first 226 chars)', () => t5.encodeForSD3(text, { sd3ref: true }));
console.log(`CLIP: ${ids.length} ids, ${rows.length} chunks; T5: ${t5ids.length} ids`);
