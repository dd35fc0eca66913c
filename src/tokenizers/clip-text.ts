/**
 * The text side of openai's CLIP tokenizer (`simple_tokenizer.py`): cleaning and the pre-token regex.
 *
 * ftfy.fix_text is not applied (the golden ids were made without it; see test/fixtures/README.md).
 * Python's two notions of whitespace are kept apart: `str.strip()` (str.isspace, which includes U+001C-U+001F)
 * and the `regex` module's `\s` (Unicode White_Space, which includes U+0085). JavaScript's `\s` is neither
 * (it has U+FEFF and lacks U+0085), so both classes are spelled out.
 */
import { htmlUnescape } from './html-unescape.js';

const WHITE_SPACE = '\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_STRIP = `[${WHITE_SPACE}\\x1c-\\x1f]`;
const STRIP = new RegExp(`^${PY_STRIP}+|${PY_STRIP}+$`, 'gu');
const WHITESPACE_RUN = new RegExp(`[${WHITE_SPACE}]+`, 'gu');

/** Special tokens, contractions, letter runs, single digits, runs of anything else but space. */
export const CLIP_PRETOKEN = new RegExp(
  `<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|\\p{L}+|\\p{N}|[^${WHITE_SPACE}\\p{L}\\p{N}]+`,
  'giu',
);

/** basic_clean (HTML-unescape twice, strip), whitespace_clean (collapse, strip), then lower-case. */
export function cleanCLIPText(text: string): string {
  let t = htmlUnescape(htmlUnescape(text)).replace(STRIP, '');
  t = t.replace(WHITESPACE_RUN, ' ').replace(STRIP, '');
  return t.toLowerCase();
}

/**
 * U+0345 (combining ypogegrammeni) is no letter but case-folds to one (iota), so under the reference's
 * case-insensitive match it belongs to neither the letter run nor the "anything else" run: it is skipped,
 * splitting the word. JavaScript's /iu puts it in the letter run, and a /iu exclusion would drop iota too, so
 * it becomes a space (which every alternative also skips) before matching.
 */
const YPOGEGRAMMENI = /\u0345/g;

/** The cleaned text split into pre-tokens, each later BPE-encoded on its own. */
export function clipPretokens(text: string): string[] {
  return cleanCLIPText(text).replace(YPOGEGRAMMENI, ' ').match(CLIP_PRETOKEN) ?? [];
}
