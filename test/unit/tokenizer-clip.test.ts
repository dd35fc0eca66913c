import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SD3Error } from '../../src/core/errors.js';
import { CLIPTokenizer } from '../../src/tokenizers/clip-bpe.js';
import { clipPretokens } from '../../src/tokenizers/clip-text.js';
import { htmlUnescape } from '../../src/tokenizers/html-unescape.js';
import { isPythonFloat, referenceWords } from '../../src/tokenizers/prompt-words.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const tok = CLIPTokenizer.default();
const START = 49406;
const END = 49407;

// Expected ids from openai's simple_tokenizer.py (ftfy as identity) over the shipped vocabulary.
const ENCODE_TABLE: Array<[string, number[]]> = [
  ['a photo of a cat', [320, 1125, 539, 320, 2368]],
  ['a photo<|endoftext|>of a cat', [320, 1125, END, 539, 320, 2368]],
  ['<|startoftext|>hi', [START, 1883]],
  ['&amp;lt;3 &#1;x', [283, 274, 343]], // unescaped twice: "<3 x"
  ['Tom\u2019S CAT\'S', [2435, 728, 503, 338, 2368, 568]],
  ['\u001c hello \u0085world\ufeff ', [3306, 1002, 171, 119, 379]], // Python's strip and \s, not JavaScript's
  ['\uff21\uff22\uff23 \ufb01 \u2460', [171, 121, 223, 171, 121, 224, 171, 121, 481, 171, 105, 479, 158, 239, 510]],
  ['\u{1f600} \u00e9 e\u0301', [7334, 4166, 324, 136, 479]],
  ['\u0130stanbul \u03a3\u0391\u03a3', [328, 16384, 11231, 139, 225, 138, 109, 139, 480]],
  ['\u0663\u0664 \u07c0', [149, 352, 149, 353, 155, 478]],
  ['', []],
  [' \t\n ', []],
];

test('encode matches openai simple_tokenizer', () => {
  for (const [text, ids] of ENCODE_TABLE) assert.deepEqual(tok.encode(text), ids, JSON.stringify(text));
});

test('the Hugging Face layout and the diffusers folder give the same ids as the original merges file', () => {
  const hf = CLIPTokenizer.fromFiles(path.join(root, 'assets/vocab/vocab.json'), path.join(root, 'assets/vocab/merges.txt'));
  const folder = CLIPTokenizer.fromFolder(path.join(root, 'test/fixtures/diffusers_layout/tokenizer_2'));
  for (const [text, ids] of ENCODE_TABLE) {
    assert.deepEqual(hf.encode(text), ids, JSON.stringify(text));
    assert.deepEqual(folder.encode(text), ids, JSON.stringify(text));
  }
});

test('encodeForSD3 pads CLIP-L with the end token and CLIP-G with 0', () => {
  const l = tok.encodeForSD3('a photo of a cat', { pad: 'end' });
  const g = tok.encodeForSD3('a photo of a cat', { pad: 'zero' });
  const content = [START, 320, 1125, 539, 320, 2368, END];
  assert.deepEqual(l.ids, [...content, ...new Array(70).fill(END)]);
  assert.deepEqual(g.ids, [...content, ...new Array(70).fill(0)]);
  assert.equal(l.eosIndex, 6);
  assert.equal(g.eosIndex, 6);
  assert.equal(l.truncated, false);
});

test('encodeForSD3 truncates to 75 content tokens and keeps the end token', () => {
  const r = tok.encodeForSD3(Array(100).fill('cat').join(' '), { pad: 'zero' });
  assert.equal(r.ids.length, 77);
  assert.equal(r.ids[0], START);
  assert.deepEqual(r.ids.slice(1, 76), new Array(75).fill(2368));
  assert.equal(r.ids[76], END);
  assert.equal(r.eosIndex, 76);
  assert.equal(r.truncated, true);
  const exact = tok.encodeForSD3(Array(75).fill('cat').join(' '), { pad: 'zero' });
  assert.equal(exact.truncated, false);
  assert.equal(exact.eosIndex, 76);
});

test('encodeForSD3 reports the first end token as the pooled position', () => {
  const r = tok.encodeForSD3('a <|endoftext|> cat', { pad: 'zero' });
  assert.deepEqual(r.ids.slice(0, 5), [START, 320, END, 2368, END]);
  assert.equal(r.eosIndex, 2);
});

test('encodeForSD3 honours another row length', () => {
  const r = tok.encodeForSD3('a photo of a cat', { pad: 'end', length: 5 });
  assert.deepEqual(r.ids, [START, 320, 1125, 539, END]);
  assert.equal(r.truncated, true);
});

test('chunks follows the reference: weights removed, words moved whole, long words split', () => {
  const [w] = tok.chunks('(masterpiece:1.2) cat', { pad: 'zero' });
  assert.deepEqual(w!.ids.slice(0, 5), [START, 12066, 2368, END, 0]);
  const lit = tok.chunks('\\(literal\\) (cat:dog) (a:1_0)', { pad: 'end' });
  assert.deepEqual(lit[0]!.ids.slice(0, 10), [START, 263, 24269, 264, 2368, 281, 1929, 320, END, END]);
  // 80 one-token words: 75 fit, the rest start a second chunk
  const words = tok.chunks(Array(80).fill('word').join(' '), { pad: 'end' });
  assert.equal(words.length, 2);
  assert.deepEqual(words[1]!.ids.slice(0, 7), [START, 2653, 2653, 2653, 2653, 2653, END]);
  // a word of 8+ tokens is split where the chunk ends
  const big = 'pneumonoultramicroscopicsilicovolcanoconiosis';
  const bigIds = tok.encode(big);
  assert.equal(bigIds.length >= 8, true);
  const whole = Math.floor(75 / bigIds.length);
  const room = 75 - whole * bigIds.length;
  const split = tok.chunks(Array(whole + 1).fill(big).join(' '), { pad: 'end' });
  assert.equal(split.length, 2);
  assert.deepEqual(split[0]!.ids.slice(76 - room), [...bigIds.slice(0, room), END]);
  assert.deepEqual(split[1]!.ids.slice(0, 1 + bigIds.length - room + 1), [START, ...bigIds.slice(room), END]);
  // a 3-token word that would straddle moves whole: the first chunk keeps 74 tokens
  const moved = tok.chunks(Array(74).fill('cat').join(' ') + ' ' + 'antidisestablishment', { pad: 'zero' });
  assert.equal(tok.encode('antidisestablishment').length < 8, true);
  assert.equal(moved[0]!.eosIndex, 75);
  assert.equal(moved[0]!.ids[76], 0);
  assert.equal(moved.length, 2);
});

test('chunks of an empty prompt is one row', () => {
  const rows = tok.chunks('', { pad: 'end' });
  assert.equal(rows.length, 1);
  assert.deepEqual(rows[0]!.ids, [START, ...new Array(76).fill(END)]);
  assert.equal(rows[0]!.eosIndex, 1);
});

// Python html.unescape results.
const UNESCAPE_TABLE: Array<[string, string]> = [
  ['&amp;', '&'], ['&amp', '&'], ['&ampxyz', '&xyz'], ['&notit;', '\u00acit;'], ['&#38;amp;', '&amp;'], ['&#x26;', '&'],
  ['&#0;', '\ufffd'], ['&#1;', ''], ['&#128;', '\u20ac'], ['&#xD800;', '\ufffd'], ['&#1114112;', '\ufffd'], ['&#xfffe;', ''],
  ['&AElig', '\u00c6'], ['&nosuch;', '&nosuch;'], ['&#;', '&#;'], ['&lt&gt;', '<>'], ['no entity', 'no entity'],
];

test('htmlUnescape matches Python html.unescape', () => {
  for (const [text, want] of UNESCAPE_TABLE) assert.equal(htmlUnescape(text), want, JSON.stringify(text));
});

test('isPythonFloat accepts what Python float() accepts', () => {
  const yes = ['1.2', ' 1.2 ', '1_000', '.5', '5.', '1e3', '-inf', 'Infinity', 'nan', '+1', '\u0661\u0662', '\u20031\u2003'];
  const no = ['1__0', 'e3', 'abc', '', '1.2.3', '0x10', '1_'];
  for (const s of yes) assert.equal(isPythonFloat(s), true, JSON.stringify(s));
  for (const s of no) assert.equal(isPythonFloat(s), false, JSON.stringify(s));
});

test('referenceWords strips weight syntax and splits at spaces and newlines', () => {
  assert.deepEqual(referenceWords('(masterpiece:1.2), best  quality,\n((cat)) [dog]'), ['masterpiece', ',', 'best', 'quality,', 'cat', '[dog]']);
  assert.deepEqual(referenceWords('\\(a\\) (b:c) (d:1.5e1) x)y('), ['(a)', 'b:c', 'd', 'x)y(']);
});

test('bad input gives a clear SD3Error', () => {
  for (const bad of [42, undefined, null, ['a'], { text: 'a' }]) {
    assert.throws(() => tok.encode(bad as unknown as string), (e: Error) => e instanceof SD3Error && /must be a string/.test(e.message));
  }
  assert.throws(() => tok.encode('a\ud800b'), (e: Error) => e instanceof SD3Error && /lone UTF-16 surrogate U\+D800 at index 1/.test(e.message));
  assert.throws(() => tok.encodeForSD3('a\udc00', { pad: 'end' }), /U\+DC00/);
  assert.throws(() => tok.chunks('\ud83d', { pad: 'end' }), /lone UTF-16 surrogate/);
  assert.throws(() => tok.encodeForSD3('a', { pad: 'pad' as 'end' }), /options.pad must be 'end' \(CLIP-L\) or 'zero' \(CLIP-G\), got "pad"/);
  assert.throws(() => tok.encodeForSD3('a', { pad: 'end', length: 1 }), /options.length must be an integer >= 2, got number 1/);
  assert.deepEqual(tok.encode('\u{1f600}'), [7334], 'a surrogate pair is a whole character');
});

test('broken vocabulary files are reported with the file and the problem', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clip-tok-'));
  try {
    const vocab = path.join(dir, 'vocab.json');
    const merges = path.join(dir, 'merges.txt');
    fs.writeFileSync(vocab, JSON.stringify({ a: 0, '<|startoftext|>': 1, '<|endoftext|>': 2 }));
    fs.writeFileSync(merges, '#version: 0.2\na b\nbroken\n');
    assert.throws(() => CLIPTokenizer.fromFiles(vocab, merges), /merges.txt: line 3 is "broken"; expected a merge "a b"/);
    fs.writeFileSync(merges, '#version: 0.2\n');
    fs.writeFileSync(vocab, JSON.stringify({ a: 0 }));
    assert.throws(() => CLIPTokenizer.fromFiles(vocab, merges), /lacks <\|startoftext\|> or <\|endoftext\|>/);
    fs.writeFileSync(vocab, '[1, 2]');
    assert.throws(() => CLIPTokenizer.fromFiles(vocab, merges), /expected a JSON object of token -> id/);
    fs.writeFileSync(path.join(dir, 'x.gz'), 'not gzip');
    assert.throws(() => CLIPTokenizer.fromBpeGz(path.join(dir, 'x.gz')), /x.gz: cannot read as a gzip text file/);
    assert.throws(() => CLIPTokenizer.fromFolder(path.join(dir, 'missing')), (e: Error) => e instanceof SD3Error && /missing/.test(e.message));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('U+0345 is dropped and splits the word, as under the reference\'s case-insensitive pattern; iota stays', () => {
  assert.deepEqual(clipPretokens('\u0391\u0399\u0345'), ['\u03b1\u03b9']);
  assert.deepEqual(clipPretokens('\u03b1\u0345\u03b2 1\u03452'), ['\u03b1', '\u03b2', '1', '2']);
  assert.deepEqual(clipPretokens('\u0345'), []);
});

test('a prompt weight is a number only as Python\'s float() reads it: not around U+001C-U+001F', () => {
  assert.equal(isPythonFloat(' 1.5\n'), true);
  assert.equal(isPythonFloat('\u00a01.5\u3000'), true);
  assert.equal(isPythonFloat('\u001c1.5'), false);
  assert.equal(isPythonFloat('1.5\u001f'), false);
});
