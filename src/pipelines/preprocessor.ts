/**
 * SD3's text preprocessor: one tokenizer per encoder, prompts -> int64 token-id rows
 * (CLIP-L padded with the end token, CLIP-G with 0, T5 with 0 to at least 77 and EOS appended).
 */
import { SD3Error } from '../core/errors.js';
import { type Tensor, tensor } from '../core/tensor.js';
import { CLIPTokenizer } from '../tokenizers/clip-bpe.js';
import type { T5Tokenizer } from '../tokenizers/t5-unigram.js';
import { LONG_PROMPTS, type TextOptions, idRows, plainText, promptRuns, tokenWindows, windowRows } from './text-windows.js';

/** T5's length limit with `longPrompts: 'chunk'` (diffusers' max_sequence_length default). */
export const T5_CHUNK_TOKENS = 256;

export interface TokenIds {
  readonly clipL: Tensor<'int64'>;
  readonly clipG: Tensor<'int64'>;
  readonly t5?: Tensor<'int64'>;
  /** Per prompt: more than 75 CLIP content tokens, so the end was cut (as KerasHub does, silently there). */
  readonly truncated: readonly boolean[];
  /**
   * `longPrompts: 'chunk'`: CLIP windows per prompt (the CLIP rows are then [B * windows, 77], each prompt's
   * windows in a row; prompts with fewer windows are padded with empty-prompt windows).
   */
  readonly windows?: number;
  /** Prompt weights: one per CLIP token [rows, 77], and the empty prompt's rows [1, 77] they interpolate from. */
  readonly weights?: { readonly tokens: Tensor<'float32'>; readonly emptyClipL: Tensor<'int64'>; readonly emptyClipG: Tensor<'int64'> };
}

function rows(ids: readonly (readonly number[])[]): Tensor<'int64'> {
  const width = Math.max(...ids.map((r) => r.length));
  const out = new BigInt64Array(ids.length * width);
  ids.forEach((r, i) => r.forEach((v, j) => { out[i * width + j] = BigInt(v); }));
  return tensor('int64', [ids.length, width], out);
}

export class SD3Preprocessor {
  /** Defaults of the tasks' text options (per-call options override them); e.g. a server's A1111 endpoints. */
  textOptions: TextOptions = {};

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

  /**
   * Token ids for a batch of prompts (T5 ids only when a T5 tokenizer is set). Without `text` options this is
   * KerasHub's tokenization exactly; see TextOptions for long prompts and weights.
   */
  generatePreprocess(prompts: readonly string[], text: TextOptions = {}): TokenIds {
    if (!Array.isArray(prompts) || prompts.length === 0) throw new SD3Error(`prompts must be a non-empty list of strings, got ${JSON.stringify(prompts)}`);
    checkTextOptions(text);
    if (text.longPrompts === 'chunk' || text.promptWeights) return this.windowed(prompts, text);
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

  /** The 'chunk' and prompt-weight path: CLIP windows with per-token weights. */
  private windowed(prompts: readonly string[], text: TextOptions): TokenIds {
    const length = this.sequenceLength;
    const chunk = text.longPrompts === 'chunk';
    const weights = text.promptWeights === true;
    const runs = prompts.map((p) => promptRuns(p, weights));
    // CLIP-L and CLIP-G share one BPE vocabulary in SD3; each tokenizer still tokenizes for itself.
    const perPrompt = (tok: CLIPTokenizer) => runs.map((r) => tokenWindows(tok, r, length - 2));
    const wl = perPrompt(this.clipL);
    const wg = perPrompt(this.clipG);
    const truncated = wl.map((w) => !chunk && w.length > 1);
    const count = chunk ? Math.max(...wl.map((w) => w.length), ...wg.map((w) => w.length)) : 1;
    const fit = (w: readonly { ids: readonly number[]; weights: readonly number[] }[]) => {
      const out = w.slice(0, count);
      while (out.length < count) out.push({ ids: [], weights: [] });
      return out;
    };
    const rowsL = windowRows(wl.flatMap(fit), this.clipL.startId, this.clipL.endId, this.clipL.endId, length);
    const rowsG = windowRows(wg.flatMap(fit), this.clipG.startId, this.clipG.endId, 0, length);
    let t5: number[][] | undefined;
    if (this.t5) {
      const t5tok = this.t5;
      t5 = runs.map((r, i) => {
        const ids = t5tok.encodeForSD3(weights ? plainText(r) : prompts[i]!, { length }).ids;
        return chunk && ids.length > T5_CHUNK_TOKENS ? [...ids.slice(0, T5_CHUNK_TOKENS - 1), t5tok.eosId] : ids;
      });
      const width = Math.max(...t5.map((r) => r.length));
      for (const r of t5) while (r.length < width) r.push(t5tok.padId);
    }
    const w = rowsL.weights.flat();
    return {
      clipL: idRows(rowsL.ids),
      clipG: idRows(rowsG.ids),
      ...(t5 ? { t5: rows(t5) } : {}),
      truncated,
      ...(chunk ? { windows: count } : {}),
      ...(weights && w.some((v) => v !== 1) ? {
        weights: {
          tokens: tensor('float32', [rowsL.ids.length, length], Float32Array.from(w)),
          emptyClipL: idRows(windowRows([{ ids: [], weights: [] }], this.clipL.startId, this.clipL.endId, this.clipL.endId, length).ids),
          emptyClipG: idRows(windowRows([{ ids: [], weights: [] }], this.clipG.startId, this.clipG.endId, 0, length).ids),
        },
      } : {}),
    };
  }
}

/** Throws an SD3Error naming a text option that is not one of its choices. */
export function checkTextOptions(o: TextOptions): void {
  if (o === null || typeof o !== 'object') throw new SD3Error(`text options must be an object, got ${JSON.stringify(o)}`);
  if (o.longPrompts !== undefined && !LONG_PROMPTS.includes(o.longPrompts)) {
    throw new SD3Error(`longPrompts must be one of ${LONG_PROMPTS.map((c) => `'${c}'`).join(', ')}; got ${JSON.stringify(o.longPrompts)}`);
  }
  if (o.promptWeights !== undefined && typeof o.promptWeights !== 'boolean') throw new SD3Error(`promptWeights must be true or false, got ${JSON.stringify(o.promptWeights)}`);
}
