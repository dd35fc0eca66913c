import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FileFormatError, SD3Error } from '../../src/core/errors.js';
import { T5Tokenizer } from '../../src/tokenizers/t5-unigram.js';

// test/data/t5: small T5-like models and the real sentencepiece library's output (see its README.md).
const data = fileURLToPath(new URL('../data/t5/', import.meta.url));
interface Case { model: string; text: string; ids: number[]; normalized?: string }
const cases = (JSON.parse(fs.readFileSync(path.join(data, 'cases.json'), 'utf8')) as { cases: Case[] }).cases;
const models: Record<string, T5Tokenizer> = {
  't5-test.model': T5Tokenizer.fromSpieceModel(path.join(data, 't5-test.model')),
  't5-bytes.model': T5Tokenizer.fromSpieceModel(path.join(data, 't5-bytes.model')),
};
const t5 = models['t5-test.model']!;

test('ids match the sentencepiece library on every recorded case, EOS appended', () => {
  const main = cases.filter((c) => c.model === 't5-test.model');
  assert.ok(main.length >= 200, `${main.length} cases`);
  for (const c of cases) assert.deepEqual(models[c.model]!.encode(c.text), [...c.ids, 1], `${c.model} ${JSON.stringify(c.text)}`);
});

test('the normalised text matches sentencepiece (precompiled nmt_nfkc charsmap)', () => {
  for (const c of cases) if (c.normalized !== undefined) assert.equal(t5.normalize(c.text), c.normalized, JSON.stringify(c.text));
});

test('tokenizer.json gives the same ids as spiece.model', () => {
  const json = T5Tokenizer.fromTokenizerJson(path.join(data, 'tokenizer.json'));
  assert.equal(json.vocabSize, t5.vocabSize + 3, 'three <extra_id_N> sentinels');
  for (const c of cases) if (c.model === 't5-test.model') assert.deepEqual(json.encode(c.text), [...c.ids, 1], JSON.stringify(c.text));
  assert.deepEqual(json.encode('<extra_id_0></s>'), t5.encode('<extra_id_0></s>'), 'special tokens in text are plain text');
});

test('the T5 conventions: pad 0, EOS 1, unknown 2; unknown runs merge; byte fallback', () => {
  assert.deepEqual([t5.padId, t5.eosId, t5.unkId], [0, 1, 2]);
  assert.deepEqual(t5.encode(''), [1]);
  const unk = t5.encode('\u0e20\u0e32\u0e29\u0e32'); // Thai, absent from the training text
  assert.deepEqual(unk.slice(-2), [2, 1]);
  assert.equal(unk.filter((id) => id === 2).length, 1);
  const bytes = models['t5-bytes.model']!.encode('\u0e20');
  assert.deepEqual(bytes.slice(-4), [3 + 0xe0, 3 + 0xb8, 3 + 0xa0, 1], '<0xE0> <0xB8> <0xA0> then EOS');
});

test('encodeForSD3 pads with 0 to at least 77 and never truncates by default', () => {
  const short = t5.encodeForSD3('a photo of a cat');
  const ids = t5.encode('a photo of a cat');
  assert.deepEqual(short.ids, [...ids, ...new Array(77 - ids.length).fill(0)]);
  assert.equal(short.truncated, false);
  const longText = Array(120).fill('photo').join(' ');
  const long = t5.encodeForSD3(longText);
  assert.deepEqual(long.ids, t5.encode(longText));
  assert.ok(long.ids.length > 77);
  assert.equal(long.truncated, false);
});

test('encodeForSD3 with truncate cuts to exactly length ids, EOS last (diffusers)', () => {
  const longText = Array(300).fill('photo').join(' ');
  const r = t5.encodeForSD3(longText, { length: 256, truncate: true });
  assert.equal(r.ids.length, 256);
  assert.equal(r.ids[255], 1);
  assert.deepEqual(r.ids.slice(0, 255), t5.encode(longText).slice(0, 255));
  assert.equal(r.truncated, true);
  const fits = t5.encodeForSD3('a cat', { length: 256, truncate: true });
  assert.equal(fits.ids.length, 256);
  assert.equal(fits.truncated, false);
});

test('encodeForSD3 sd3ref: first 226 characters, prompt weights removed, words one by one', () => {
  assert.deepEqual(t5.encodeForSD3('(masterpiece:1.2) cat', { sd3ref: true }).ids, t5.encodeForSD3('masterpiece cat').ids);
  const text = '\u{1f600}'.repeat(10) + ' ' + 'x'.repeat(300);
  const cut = '\u{1f600}'.repeat(10) + ' ' + 'x'.repeat(215);
  assert.deepEqual(t5.encodeForSD3(text, { sd3ref: true }).ids, t5.encodeForSD3(cut).ids, 'cut at 226 code points');
});

test('fromFolder prefers spiece.model and falls back to tokenizer.json', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 't5-tok-'));
  try {
    assert.throws(() => T5Tokenizer.fromFolder(dir), /has neither spiece.model nor tokenizer.json/);
    fs.copyFileSync(path.join(data, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
    assert.equal(T5Tokenizer.fromFolder(dir).vocabSize, t5.vocabSize + 3);
    fs.copyFileSync(path.join(data, 't5-test.model'), path.join(dir, 'spiece.model'));
    assert.equal(T5Tokenizer.fromFolder(dir).vocabSize, t5.vocabSize);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('bad input and bad files give clear errors', () => {
  for (const bad of [7, null, undefined, Symbol.iterator]) {
    assert.throws(() => t5.encode(bad as unknown as string), (e: Error) => e instanceof SD3Error && /must be a string/.test(e.message));
  }
  assert.throws(() => t5.encode('ab\udfffc'), /lone UTF-16 surrogate U\+DFFF at index 2/);
  assert.throws(() => t5.encodeForSD3('a', { length: 0 }), /options.length must be an integer >= 1, got number 0/);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 't5-bad-'));
  try {
    const junk = path.join(dir, 'junk.model');
    fs.writeFileSync(junk, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01]));
    assert.throws(() => T5Tokenizer.fromSpieceModel(junk), (e: Error) => e instanceof FileFormatError && /junk.model: not a SentencePiece model/.test(e.message));
    const bpe = path.join(dir, 'tokenizer.json');
    fs.writeFileSync(bpe, JSON.stringify({ model: { type: 'BPE', vocab: {}, merges: [] } }));
    assert.throws(() => T5Tokenizer.fromTokenizerJson(bpe), /model type "BPE" is not supported; expected "Unigram"/);
    const json = JSON.parse(fs.readFileSync(path.join(data, 'tokenizer.json'), 'utf8'));
    json.normalizer = { type: 'Lowercase' };
    fs.writeFileSync(bpe, JSON.stringify(json));
    assert.throws(() => T5Tokenizer.fromTokenizerJson(bpe), /normalizer "Lowercase" is not supported/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
