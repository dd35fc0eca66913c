/**
 * Long prompts ('chunk': 77-token CLIP windows) and A1111 prompt weights (ComfyUI's interpolation from the
 * empty prompt), on the tiny-random encoders. Expected numbers are computed here from separate encodings.
 */
import { generationParameters } from '../../src/pipelines/infotext.js';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SD3Error } from '../../src/core/errors.js';
import { type Tensor, tensor } from '../../src/core/tensor.js';
import type { SD3Backbone } from '../../src/pipelines/backbone.js';
import { SD3Preprocessor, type TokenIds } from '../../src/pipelines/preprocessor.js';
import { TextToImage } from '../../src/presets/tasks.js';
import { promptAttention } from '../../src/tokenizers/prompt-words.js';
import { T5Tokenizer } from '../../src/tokenizers/t5-unigram.js';
import { compare } from '../parity/lib.js';
import { TINY_OPTIONS } from '../helpers/tiny.js';

const STRICT = { atol: 1e-6, rtol: 1e-5 };
let t2i: TextToImage;
let backbone: SD3Backbone;
let pre: SD3Preprocessor;
before(async () => {
  t2i = await TextToImage.fromPreset('tiny-random', TINY_OPTIONS);
  backbone = t2i.backbone;
  pre = t2i.preprocessor;
});
after(async () => { await t2i.dispose(); });

/** Rows [from, to) of a [1, N, D] tensor. */
function rows(t: Tensor<'float32'>, from: number, to: number): Float32Array {
  const D = t.shape[2]!;
  return t.data.slice(from * D, to * D);
}

describe('A1111 emphasis syntax', () => {
  it('weights runs as A1111 does', () => {
    assert.deepEqual(promptAttention('a (cat) b'), [{ text: 'a ', weight: 1 }, { text: 'cat', weight: 1.1 }, { text: ' b', weight: 1 }]);
    assert.deepEqual(promptAttention('((cat))'), [{ text: 'cat', weight: 1.1 * 1.1 }]);
    assert.deepEqual(promptAttention('(cat:1.5) dog'), [{ text: 'cat', weight: 1.5 }, { text: ' dog', weight: 1 }]);
    assert.deepEqual(promptAttention('[cat]'), [{ text: 'cat', weight: 1 / 1.1 }]);
    assert.deepEqual(promptAttention('(a (b:1.5))'), [{ text: 'a ', weight: 1.1 }, { text: 'b', weight: 1.5 * 1.1 }]);
    assert.deepEqual(promptAttention('\\(cat\\) \\[x\\]'), [{ text: '(cat) [x]', weight: 1 }]);
    assert.deepEqual(promptAttention('a) b] (c'), [{ text: 'a) b] ', weight: 1 }, { text: 'c', weight: 1.1 }]);
    assert.deepEqual(promptAttention('(cat:x)'), [{ text: 'cat:x', weight: 1.1 }]);
    assert.deepEqual(promptAttention('(cat:1.0)'), [{ text: 'cat', weight: 1 }]);
  });
});

describe('prompt weights on the embeddings', () => {
  it('(cat:1.0) with weights on equals cat without them, exactly', async () => {
    const plain = await backbone.encodeText(pre.generatePreprocess(['cat']));
    const weighted = await backbone.encodeText(pre.generatePreprocess(['(cat:1.0)'], { promptWeights: true }));
    assert.deepEqual(weighted.context.data, plain.context.data);
    assert.deepEqual(weighted.y.data, plain.y.data);
    const on = await backbone.encodeText(pre.generatePreprocess(['a red cat'], { promptWeights: true }));
    assert.deepEqual(on.context.data, (await backbone.encodeText(pre.generatePreprocess(['a red cat']))).context.data);
  });

  it('moves each weighted token along the line from the empty prompt: e + w (z - e)', async () => {
    const z = await backbone.encodeText(pre.generatePreprocess(['a cat dog']));
    const e = await backbone.encodeText(pre.generatePreprocess(['']));
    const w = await backbone.encodeText(pre.generatePreprocess(['a (cat:1.5) [dog]'], { promptWeights: true }));
    const D = z.context.shape[2]!;
    // Tokens: start, a, cat, dog, end, padding (one BPE token per word).
    const weightOf = (p: number) => (p === 2 ? 1.5 : p === 3 ? 1 / 1.1 : 1);
    for (let p = 0; p < 77; p++) {
      const k = weightOf(p);
      for (let d = 0; d < D; d++) {
        const i = p * D + d;
        const expected = k === 1 ? z.context.data[i]! : e.context.data[i]! + k * (z.context.data[i]! - e.context.data[i]!);
        const got = w.context.data[i]!;
        if (k === 1) assert.equal(got, expected, `token ${p} feature ${d} (weight 1) must be unchanged`);
        else assert.ok(Math.abs(got - expected) <= 1e-6 + 1e-6 * Math.abs(expected), `token ${p} feature ${d}: ${got} vs ${expected}`);
      }
    }
    // The weighted tokens did move, the pooled vector did not (ComfyUI keeps it).
    assert.notDeepEqual(rows(w.context, 2, 3), rows(z.context, 2, 3));
    assert.deepEqual(w.y.data, z.y.data);
  });

  it('rejects bad text options naming them', () => {
    assert.throws(() => pre.generatePreprocess(['x'], { longPrompts: 'wrap' as 'chunk' }), (err: Error) => err instanceof SD3Error && /longPrompts.*wrap/.test(err.message));
    assert.throws(() => pre.generatePreprocess(['x'], { promptWeights: 'yes' as unknown as boolean }), /promptWeights/);
  });
});

describe("longPrompts: 'chunk'", () => {
  const WORDS = ['cat', 'dog', 'red', 'blue', 'tree', 'house', 'sun', 'moon'];
  const long = Array.from({ length: 200 }, (_, i) => WORDS[i % WORDS.length]).join(' ');

  it('a 200-token prompt: 3 CLIP windows + T5 rows, each window as if encoded alone; pooled from the first', async () => {
    const tokens = pre.clipL.encode(long);
    assert.equal(tokens.length, 200);
    const ids = pre.generatePreprocess([long], { longPrompts: 'chunk' });
    assert.equal(ids.windows, 3);
    assert.deepEqual(ids.truncated, [false]);
    const chunked = await backbone.encodeText(ids);
    assert.deepEqual(chunked.context.shape.slice(0, 2), [1, 3 * 77 + 77]);
    // Each window alone: start, its 75 (or 50) tokens, end, padding (CLIP-L pads with end, CLIP-G with 0).
    const alone = async (w: number) => {
      const content = tokens.slice(75 * w, 75 * (w + 1));
      const row = (pad: number) => { const r = [pre.clipL.startId, ...content, pre.clipL.endId]; while (r.length < 77) r.push(pad); return r; };
      const one: TokenIds = {
        clipL: tensor('int64', [1, 77], BigInt64Array.from(row(pre.clipL.endId), BigInt)),
        clipG: tensor('int64', [1, 77], BigInt64Array.from(row(0), BigInt)),
        truncated: [false],
      };
      return backbone.encodeText(one);
    };
    const windows = [await alone(0), await alone(1), await alone(2)];
    const D = chunked.context.shape[2]!;
    const expected = new Float32Array((3 * 77 + 77) * D);
    windows.forEach((w, i) => expected.set(rows(w.context, 0, 77), i * 77 * D));
    const c = compare('chunked context', chunked.context, tensor('float32', chunked.context.shape, expected), STRICT);
    assert.ok(c.ok, c.detail);
    assert.ok(rows(chunked.context, 231, 308).every((v) => v === 0), 'no T5: 77 zero rows after the CLIP windows');
    const p = compare('pooled', chunked.y, windows[0]!.y, STRICT);
    assert.ok(p.ok, p.detail);
  });

  it('truncate (default) keeps one window and flags the cut; short prompts read the same in both modes', async () => {
    const ids = pre.generatePreprocess([long]);
    assert.deepEqual(ids.clipL.shape, [1, 77]);
    assert.deepEqual(ids.truncated, [true]);
    const a = pre.generatePreprocess(['a lighthouse at dusk']);
    const b = pre.generatePreprocess(['a lighthouse at dusk'], { longPrompts: 'chunk' });
    assert.deepEqual(b.clipL.data, a.clipL.data);
    assert.deepEqual(b.clipG.data, a.clipG.data);
  });

  it('pads shorter prompts of a batch with empty windows', () => {
    const ids = pre.generatePreprocess([long, ''], { longPrompts: 'chunk' });
    assert.deepEqual(ids.clipL.shape, [6, 77]);
    const empty = pre.generatePreprocess(['']).clipL.data;
    for (const r of [3, 4, 5]) assert.deepEqual(ids.clipL.data.slice(r * 77, (r + 1) * 77), empty);
  });

  it('reads T5 up to 256 tokens, end token last', () => {
    const data = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'data', 't5');
    const t5 = T5Tokenizer.fromSpieceModel(path.join(data, 't5-test.model'));
    const p = new SD3Preprocessor(undefined, undefined, t5);
    const veryLong = Array.from({ length: 400 }, (_, i) => WORDS[i % WORDS.length]).join(' ');
    const chunk = p.generatePreprocess([veryLong], { longPrompts: 'chunk' }).t5!;
    assert.equal(chunk.shape[1], 256);
    assert.equal(chunk.data[255], BigInt(t5.eosId));
    assert.ok(p.generatePreprocess([veryLong]).t5!.shape[1]! > 256, 'truncate mode keeps the reference\'s whole T5 row');
  });

  it('records the mode in the image metadata', async () => {
    const img = await t2i.generate('a cat', { numSteps: 1, seed: 1, longPrompts: 'chunk', promptWeights: true });
    const meta = generationParameters(img)!;
    assert.equal(meta.longPrompts, 'chunk');
    assert.equal(meta.clipWindows, 1);
    assert.equal(meta.promptWeights, true);
  });
});
