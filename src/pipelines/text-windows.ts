/**
 * Long prompts and prompt weights on the token side (pure functions, no model):
 *
 * - `'chunk'` (ComfyUI's SD3 behaviour): the prompt's CLIP tokens are cut into windows of 75, each encoded as its
 *   own 77-token row (start, content, end, padding); a word that would straddle a window's end moves whole to
 *   the next one (words of 8+ tokens are split), as ComfyUI's and Stability's tokenizers do.
 * - prompt weights (A1111 syntax, tokenizers/prompt-words.ts `promptAttention`): every token carries the weight
 *   of its run; start, end and padding tokens weigh 1.
 */
import { type Tensor, tensor } from '../core/tensor.js';
import { type CLIPTokenizer } from '../tokenizers/clip-bpe.js';
import { type WeightedText, promptAttention } from '../tokenizers/prompt-words.js';

/** How prompts longer than CLIP's 75 content tokens are read. */
export type LongPrompts = 'truncate' | 'chunk';
export const LONG_PROMPTS: readonly LongPrompts[] = ['truncate', 'chunk'];

/** What text options a generation takes (library default: truncate, no weights: KerasHub's exact tokenization). */
export interface TextOptions {
  /** 'truncate' (default; KerasHub) or 'chunk' (77-token CLIP windows concatenated, T5 up to 256 tokens). */
  readonly longPrompts?: LongPrompts;
  /**
   * A1111 emphasis syntax `(word)`, `((word))`, `(word:1.5)`, `[word]`, `\(`: applied to the CLIP token
   * embeddings by ComfyUI's method (interpolation from the empty prompt, see pipelines/prompt-weights.ts).
   * Default false: parentheses are plain text, as KerasHub reads them.
   */
  readonly promptWeights?: boolean;
}

/**
 * The text options for A1111-style endpoints (a server's A1111 API): prompt weights on, long prompts chunked as
 * A1111 and ComfyUI do. Pass them as generate options, or set them as `preprocessor.textOptions`.
 */
export const A1111_TEXT_OPTIONS: TextOptions = { promptWeights: true, longPrompts: 'chunk' };

/** Tokens of one window (content only) with their weights. */
export interface TokenWindow { readonly ids: readonly number[]; readonly weights: readonly number[] }

/** Words longer than this many tokens are split across windows rather than moved (reference max_word_length). */
const MAX_WORD_TOKENS = 8;

/** The prompt's weighted runs: the A1111 syntax when `weights`, else the whole text at weight 1. */
export function promptRuns(text: string, weights: boolean): readonly WeightedText[] {
  return weights ? promptAttention(text) : [{ text, weight: 1 }];
}

/** The text without weight syntax (what T5 reads when weights are on). */
export function plainText(runs: readonly WeightedText[]): string {
  return runs.map((r) => r.text).join('');
}

/** Content tokens of a prompt in windows of `room` (75): one window when it fits, never zero windows. */
export function tokenWindows(tok: CLIPTokenizer, runs: readonly WeightedText[], room = 75): TokenWindow[] {
  const windows: { ids: number[]; weights: number[] }[] = [{ ids: [], weights: [] }];
  for (const run of runs) {
    for (const word of run.text.replaceAll('\n', ' ').split(' ')) {
      if (word === '') continue;
      let group = tok.encode(word);
      const large = group.length >= MAX_WORD_TOKENS;
      while (group.length > 0) {
        const w = windows[windows.length - 1]!;
        const free = room - w.ids.length;
        if (group.length <= free) {
          w.ids.push(...group);
          w.weights.push(...group.map(() => run.weight));
          break;
        }
        if (large && free > 0) {
          w.ids.push(...group.slice(0, free));
          w.weights.push(...group.slice(0, free).map(() => run.weight));
          group = group.slice(free);
        }
        windows.push({ ids: [], weights: [] });
      }
    }
  }
  return windows;
}

/** Rows [count, length] of windows: start, content, end, then `pad`; and their weights (1 outside content). */
export function windowRows(windows: readonly TokenWindow[], start: number, end: number, pad: number, length = 77): { ids: number[][]; weights: number[][] } {
  const ids: number[][] = [];
  const weights: number[][] = [];
  for (const w of windows) {
    const row = [start, ...w.ids.slice(0, length - 2), end];
    const wr = [1, ...w.weights.slice(0, length - 2), 1];
    while (row.length < length) { row.push(pad); wr.push(1); }
    ids.push(row);
    weights.push(wr);
  }
  return { ids, weights };
}

/** int64 rows of equal length. */
export function idRows(rows: readonly (readonly number[])[]): Tensor<'int64'> {
  const width = Math.max(...rows.map((r) => r.length));
  const out = new BigInt64Array(rows.length * width);
  rows.forEach((r, i) => r.forEach((v, j) => { out[i * width + j] = BigInt(v); }));
  return tensor('int64', [rows.length, width], out);
}
