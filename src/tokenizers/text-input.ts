/** Validation shared by the tokenizers: prompts must be well-formed strings. */
import { SD3Error, describe } from '../core/errors.js';

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * The longest prompt accepted, in UTF-16 code units: about 2500 T5 tokens, 30 times what CLIP reads, more than
 * the longest prompt in the T5 test cases (4295). CLIP's BPE cost grows faster than linearly with a word's
 * length (one 10,000-letter word takes about 3 s on a 2-core CPU; ordinary text of that length about 0.1 s), so
 * a megabyte of text is refused up front instead of stalling the process. Servers set their own, lower cap.
 */
export const MAX_PROMPT_LENGTH = 10_000;

/** Throws unless `text` is a string of whole Unicode characters (no lone UTF-16 surrogate) of at most MAX_PROMPT_LENGTH. */
export function checkText(text: unknown, who: string): asserts text is string {
  if (typeof text !== 'string') throw new SD3Error(`${who}: the prompt must be a string, got ${describe(text)}`);
  if (text.length > MAX_PROMPT_LENGTH) throw new SD3Error(`${who}: the prompt is ${text.length} characters long; at most ${MAX_PROMPT_LENGTH} are accepted (MAX_PROMPT_LENGTH)`);
  const m = LONE_SURROGATE.exec(text);
  if (m) {
    const code = m[0].charCodeAt(0).toString(16).toUpperCase();
    throw new SD3Error(`${who}: the prompt has a lone UTF-16 surrogate U+${code} at index ${m.index}; expected well-formed Unicode text`);
  }
}

/** Checks an integer option (e.g. a sequence length) against a lower bound. */
export function checkLength(value: unknown, name: string, min: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new SD3Error(`${name} must be an integer >= ${min}, got ${describe(value)}`);
  }
  return value;
}
