/**
 * SD3's text preprocessor: one tokenizer per encoder, prompts -> int64 token-id rows
 * (CLIP-L padded with the end token, CLIP-G with 0, T5 with 0 to at least 77 and EOS appended).
 */
import { SD3Error } from '../core/errors.js';
import { type Tensor, tensor } from '../core/tensor.js';
import { CLIPTokenizer } from '../tokenizers/clip-bpe.js';
import type { T5Tokenizer } from '../tokenizers/t5-unigram.js';

export interface TokenIds {
  readonly clipL: Tensor<'int64'>;
  readonly clipG: Tensor<'int64'>;
  readonly t5?: Tensor<'int64'>;
  /** Per prompt: more than 75 CLIP content tokens, so the end was cut (as KerasHub does, silently there). */
  readonly truncated: readonly boolean[];
}

function rows(ids: readonly (readonly number[])[]): Tensor<'int64'> {
  const width = Math.max(...ids.map((r) => r.length));
  const out = new BigInt64Array(ids.length * width);
  ids.forEach((r, i) => r.forEach((v, j) => { out[i * width + j] = BigInt(v); }));
  return tensor('int64', [ids.length, width], out);
}

export class SD3Preprocessor {
  private t5Source: T5Tokenizer | (() => T5Tokenizer) | undefined;

  /**
   * `t5` may be a function that loads the tokenizer: it is called when T5 ids are first needed, so that a
   * checkpoint opened with T5 but without its tokenizer files fails only when T5 ids are asked for.
   */
  constructor(
    readonly clipL: CLIPTokenizer = CLIPTokenizer.default(),
    readonly clipG: CLIPTokenizer = CLIPTokenizer.default(),
    t5?: T5Tokenizer | (() => T5Tokenizer),
    readonly sequenceLength = 77,
  ) {
    this.t5Source = t5;
  }

  /** The T5 tokenizer (loaded now when it was given as a loader), or undefined without T5. */
  get t5(): T5Tokenizer | undefined {
    if (typeof this.t5Source === 'function') this.t5Source = this.t5Source();
    return this.t5Source;
  }

  /** Token ids for a batch of prompts (T5 ids only when a T5 tokenizer is set). */
  generatePreprocess(prompts: readonly string[]): TokenIds {
    if (!Array.isArray(prompts) || prompts.length === 0) throw new SD3Error(`prompts must be a non-empty list of strings, got ${JSON.stringify(prompts)}`);
    const length = this.sequenceLength;
    const l = prompts.map((p) => this.clipL.encodeForSD3(p, { pad: 'end', length }));
    const g = prompts.map((p) => this.clipG.encodeForSD3(p, { pad: 'zero', length }));
    const t5Tokenizer = this.t5;
    const t5 = t5Tokenizer ? prompts.map((p) => t5Tokenizer.encodeForSD3(p, { length }).ids) : undefined;
    if (t5 && t5Tokenizer) {
      // T5 rows can be longer than 77 (the reference never truncates): pad the batch to a common length.
      const width = Math.max(...t5.map((r) => r.length));
      for (const r of t5) while (r.length < width) r.push(t5Tokenizer.padId);
    }
    return {
      clipL: rows(l.map((r) => r.ids)),
      clipG: rows(g.map((r) => r.ids)),
      ...(t5 ? { t5: rows(t5) } : {}),
      truncated: l.map((r) => r.truncated),
    };
  }
}
