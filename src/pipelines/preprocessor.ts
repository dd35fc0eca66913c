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
  constructor(
    readonly clipL: CLIPTokenizer = CLIPTokenizer.default(),
    readonly clipG: CLIPTokenizer = CLIPTokenizer.default(),
    readonly t5?: T5Tokenizer,
    readonly sequenceLength = 77,
  ) {}

  /** Token ids for a batch of prompts (T5 ids only when a T5 tokenizer is set). */
  generatePreprocess(prompts: readonly string[]): TokenIds {
    if (!Array.isArray(prompts) || prompts.length === 0) throw new SD3Error(`prompts must be a non-empty list of strings, got ${JSON.stringify(prompts)}`);
    const length = this.sequenceLength;
    const l = prompts.map((p) => this.clipL.encodeForSD3(p, { pad: 'end', length }));
    const g = prompts.map((p) => this.clipG.encodeForSD3(p, { pad: 'zero', length }));
    const t5 = this.t5 ? prompts.map((p) => this.t5!.encodeForSD3(p, { length }).ids) : undefined;
    if (t5) {
      // T5 rows can be longer than 77 (the reference never truncates): pad the batch to a common length.
      const width = Math.max(...t5.map((r) => r.length));
      for (const r of t5) while (r.length < width) r.push(this.t5!.padId);
    }
    return {
      clipL: rows(l.map((r) => r.ids)),
      clipG: rows(g.map((r) => r.ids)),
      ...(t5 ? { t5: rows(t5) } : {}),
      truncated: l.map((r) => r.truncated),
    };
  }
}
