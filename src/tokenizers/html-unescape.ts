/**
 * Python's `html.unescape`, which openai's CLIP tokenizer applies (twice) before BPE.
 *
 * Named references come from the `entities` package's HTML5 table (longest legacy prefix without ';' as the
 * standard says, which is what Python does too). Numeric references follow Python's rules, which differ from
 * the standard in one way: code points Python calls invalid (most C0/C1 controls, non-characters) vanish.
 */
import { decodeHTML } from 'entities';

/** Python's pattern: `&` + decimal, hex, or a name of up to 32 characters, with an optional ';'. */
const CHAR_REF = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/g;

/** Numeric references Python maps like windows-1252 (plus NUL and CR). */
const REPLACED: Record<number, number> = {
  0x00: 0xfffd, 0x0d: 0x0d, 0x80: 0x20ac, 0x81: 0x81, 0x82: 0x201a, 0x83: 0x0192, 0x84: 0x201e, 0x85: 0x2026,
  0x86: 0x2020, 0x87: 0x2021, 0x88: 0x02c6, 0x89: 0x2030, 0x8a: 0x0160, 0x8b: 0x2039, 0x8c: 0x0152, 0x8d: 0x8d,
  0x8e: 0x017d, 0x8f: 0x8f, 0x90: 0x90, 0x91: 0x2018, 0x92: 0x2019, 0x93: 0x201c, 0x94: 0x201d, 0x95: 0x2022,
  0x96: 0x2013, 0x97: 0x2014, 0x98: 0x02dc, 0x99: 0x2122, 0x9a: 0x0161, 0x9b: 0x203a, 0x9c: 0x0153, 0x9d: 0x9d,
  0x9e: 0x017e, 0x9f: 0x0178,
};

/** Code points that Python drops from numeric references. */
function droppedByPython(cp: number): boolean {
  return (cp >= 0x1 && cp <= 0x8) || cp === 0xb || (cp >= 0xe && cp <= 0x1f) || (cp >= 0x7f && cp <= 0x9f)
    || (cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe;
}

function numeric(ref: string): string {
  const hex = ref[1] === 'x' || ref[1] === 'X';
  const digits = ref.slice(hex ? 2 : 1).replace(/;$/, '');
  // BigInt: the digit run may be arbitrarily long; anything past U+10FFFF is replaced anyway.
  const big = BigInt(hex ? `0x${digits}` : digits);
  const cp = big > 0x10ffffn ? -1 : Number(big);
  if (cp in REPLACED) return String.fromCodePoint(REPLACED[cp]!);
  if (cp < 0 || (cp >= 0xd800 && cp <= 0xdfff)) return '\ufffd';
  if (droppedByPython(cp)) return '';
  return String.fromCodePoint(cp);
}

export function htmlUnescape(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(CHAR_REF, (whole: string, ref: string) => (ref[0] === '#' ? numeric(ref) : decodeHTML(whole)));
}
