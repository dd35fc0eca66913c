/** Validation shared by the tokenizers: prompts must be well-formed strings. */
import { SD3Error, describe } from '../core/errors.js';

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Throws unless `text` is a string of whole Unicode characters (no lone UTF-16 surrogate). */
export function checkText(text: unknown, who: string): asserts text is string {
  if (typeof text !== 'string') throw new SD3Error(`${who}: the prompt must be a string, got ${describe(text)}`);
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
