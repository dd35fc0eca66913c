/**
 * How Stability's SD3 reference tokenizer (`other_impls.py`, SDTokenizer) reads a prompt before tokenizing:
 * `(text)` and `(text:1.3)` are prompt-weight syntax whose parentheses and `:weight` are removed (`\(` and `\)`
 * stay literal parentheses), then the text is split into words at spaces (newlines count as spaces) and each
 * word is tokenized on its own. The weights themselves are unused by SD3, so only the words are returned.
 */

const ESC_CLOSE = '\0\u0001';
const ESC_OPEN = '\0\u0002';

/**
 * The whitespace Python's float() ignores around a number: ASCII space, \t \n \v \f \r, and the non-ASCII
 * characters str.isspace() accepts. Not U+001C-U+001F: str.isspace() counts them, but float() only turns
 * non-ASCII spaces into ' ' and then skips C's ASCII isspace(), so '\x1c1.5' is no number to it.
 */
const PY_SPACE = '[\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const DIGITS = '\\p{Nd}(?:_?\\p{Nd})*';
const PY_FLOAT = new RegExp(
  `^${PY_SPACE}*[+-]?(?:(?:${DIGITS}(?:\\.(?:${DIGITS})?)?|\\.${DIGITS})(?:[eE][+-]?${DIGITS})?|inf(?:inity)?|nan)${PY_SPACE}*$`,
  'iu',
);

/** Whether Python's float() accepts `s` (the reference drops `:weight` only then). */
export function isPythonFloat(s: string): boolean {
  return PY_FLOAT.test(s);
}

/** Splits at top-level parentheses, keeping them on the parenthesised items (reference parse_parentheses). */
function parseParentheses(text: string): string[] {
  const out: string[] = [];
  let item = '';
  let depth = 0;
  for (const ch of text) {
    if (ch === '(') {
      if (depth === 0) {
        if (item) out.push(item);
        item = '(';
      } else {
        item += ch;
      }
      depth++;
    } else if (ch === ')') {
      depth--;
      if (depth === 0) {
        out.push(item + ')');
        item = '';
      } else {
        item += ch;
      }
    } else {
      item += ch;
    }
  }
  if (item) out.push(item);
  return out;
}

/** The text segments left once weight syntax is removed (reference token_weights, weights dropped). */
function weightedSegments(text: string): string[] {
  const out: string[] = [];
  for (let x of parseParentheses(text)) {
    if (x.length >= 2 && x.startsWith('(') && x.endsWith(')')) {
      x = x.slice(1, -1);
      const colon = x.lastIndexOf(':');
      if (colon > 0 && isPythonFloat(x.slice(colon + 1))) x = x.slice(0, colon);
      out.push(...weightedSegments(x));
    } else {
      out.push(x);
    }
  }
  return out;
}

/** The words the reference tokenizes one by one, in order. */
export function referenceWords(text: string): string[] {
  const escaped = text.replaceAll('\\)', ESC_CLOSE).replaceAll('\\(', ESC_OPEN);
  const words: string[] = [];
  for (const segment of weightedSegments(escaped)) {
    const plain = segment.replaceAll(ESC_CLOSE, ')').replaceAll(ESC_OPEN, '(').replaceAll('\n', ' ');
    for (const w of plain.split(' ')) if (w !== '') words.push(w);
  }
  return words;
}

/** Python's `text[:n]`: the first n code points (not UTF-16 units). */
export function firstCodePoints(text: string, n: number): string {
  let units = 0;
  let count = 0;
  for (const ch of text) {
    if (count === n) break;
    units += ch.length;
    count++;
  }
  return text.slice(0, units);
}

/** A run of prompt text and its emphasis weight (A1111 syntax, `promptAttention`). */
export interface WeightedText { readonly text: string; readonly weight: number }

/** `(`…`)` multiplies by this, `[`…`]` divides by it (A1111). */
export const EMPHASIS = 1.1;

/**
 * A1111's emphasis syntax: `(text)` x1.1 (nested: x1.21, ...), `[text]` /1.1, `(text:1.5)` x1.5 (multiplying any
 * enclosing weight), `\(` `\)` `\[` `\]` `\\` literal. An unclosed bracket weights to the end of the prompt;
 * a stray closing one is text. The number after `:` must be one Python's float() reads (as the reference
 * syntax above); otherwise `:` is text. Adjacent runs of equal weight are merged.
 */
export function promptAttention(text: string): WeightedText[] {
  const runs: { text: string; weight: number }[] = [];
  const round: number[] = [];
  const square: number[] = [];
  const scale = (from: number, by: number) => { for (let k = from; k < runs.length; k++) runs[k]!.weight *= by; };
  const push = (t: string) => { if (t) runs.push({ text: t, weight: 1 }); };
  let i = 0;
  let plain = '';
  const flush = () => { push(plain); plain = ''; };
  while (i < text.length) {
    const ch = text[i]!;
    if (ch === '\\' && i + 1 < text.length && '()[]\\'.includes(text[i + 1]!)) {
      plain += text[i + 1];
      i += 2;
      continue;
    }
    if (ch === '(' || ch === '[') {
      flush();
      (ch === '(' ? round : square).push(runs.length);
      i++;
      continue;
    }
    if (ch === ':' && round.length) {
      const close = text.indexOf(')', i);
      const num = close > 0 ? text.slice(i + 1, close) : '';
      if (close > 0 && isPythonFloat(num) && /^\s*[+-]?[\d.]+\s*$/.test(num)) {
        flush();
        scale(round.pop()!, Number(num));
        i = close + 1;
        continue;
      }
    }
    if (ch === ')' && round.length) { flush(); scale(round.pop()!, EMPHASIS); i++; continue; }
    if (ch === ']' && square.length) { flush(); scale(square.pop()!, 1 / EMPHASIS); i++; continue; }
    plain += ch;
    i++;
  }
  flush();
  for (const from of round) scale(from, EMPHASIS);
  for (const from of square) scale(from, 1 / EMPHASIS);
  const merged: WeightedText[] = [];
  for (const r of runs) {
    const last = merged[merged.length - 1];
    if (last && last.weight === r.weight) merged[merged.length - 1] = { text: last.text + r.text, weight: r.weight };
    else merged.push({ ...r });
  }
  return merged.length ? merged : [{ text: '', weight: 1 }];
}
