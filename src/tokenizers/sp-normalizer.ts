/**
 * SentencePiece's normaliser (normalizer.cc), on UTF-8 bytes: at each position the longest rule of the
 * precompiled charsmap replaces the matched bytes (T5's nmt_nfkc rules: NFKC plus mapping controls away and
 * unusual spaces to ' '); user-defined pieces are kept as they are; spaces become '▁', runs of them collapse,
 * leading and trailing ones go, and one '▁' is prefixed.
 *
 * The charsmap is a Darts-clone double-array trie (uint32 units) over the source bytes whose values point
 * into a block of NUL-terminated replacement strings; its layout is a uint32 trie size, the trie, the strings.
 */
import { FileFormatError } from '../core/errors.js';
import type { NormalizerSpec } from './sentencepiece-model.js';

const SPACE = 0x20;
const META = [0xe2, 0x96, 0x81]; // U+2581 '▁'
const encoder = new TextEncoder();

export class CharsMap {
  private readonly units: Uint32Array;
  private readonly strings: Uint8Array;

  constructor(blob: Uint8Array, source: string) {
    const size = blob.length >= 4 ? new DataView(blob.buffer, blob.byteOffset, 4).getUint32(0, true) : 0;
    if (blob.length <= 4 || size === 0 || size % 4 !== 0 || 4 + size >= blob.length) {
      throw new FileFormatError(source, `precompiled charsmap of ${blob.length} bytes declares a ${size}-byte trie; the blob is broken`);
    }
    this.units = new Uint32Array(size / 4);
    const view = new DataView(blob.buffer, blob.byteOffset + 4, size);
    for (let i = 0; i < this.units.length; i++) this.units[i] = view.getUint32(i * 4, true);
    this.strings = blob.subarray(4 + size);
  }

  /** Longest rule matching `input` at `pos`: its byte length and replacement, or undefined. */
  match(input: Uint8Array, pos: number): { length: number; replacement: Uint8Array } | undefined {
    const units = this.units;
    let node = offset(units[0]!);
    let length = 0;
    let value = 0;
    for (let i = pos; i < input.length; i++) {
      const b = input[i]!;
      node ^= b;
      const unit = units[node];
      if (unit === undefined || label(unit) !== b) break;
      node ^= offset(unit);
      if ((unit >>> 8) & 1) {
        length = i - pos + 1;
        value = units[node]! & 0x7fffffff;
      }
    }
    if (length === 0) return undefined;
    let end = value;
    while (end < this.strings.length && this.strings[end] !== 0) end++;
    return { length, replacement: this.strings.subarray(value, end) };
  }
}

function offset(unit: number): number {
  return (unit >>> 10) << ((unit & (1 << 9)) >>> 6);
}

function label(unit: number): number {
  return (unit & 0x800000ff) >>> 0;
}

/** Byte length of the UTF-8 character starting with byte `b`. */
export function utf8Length(b: number): number {
  return b < 0x80 ? 1 : b < 0xe0 ? 2 : b < 0xf0 ? 3 : 4;
}

export class SentencePieceNormalizer {
  private readonly charsmap?: CharsMap;

  constructor(private readonly spec: NormalizerSpec, source: string, private readonly userDefined: readonly Uint8Array[] = []) {
    if (spec.charsmap) this.charsmap = new CharsMap(spec.charsmap, source);
  }

  /** The normalised UTF-8 bytes that the unigram model segments. */
  normalize(text: string): Uint8Array {
    const input = encoder.encode(text);
    const { removeExtraWhitespaces, escapeWhitespaces, addDummyPrefix, treatWhitespaceAsSuffix } = this.spec;
    const out: number[] = [];
    const space = escapeWhitespaces ? META : [SPACE];
    let pos = 0;
    if (removeExtraWhitespaces) {
      while (pos < input.length) {
        const [len, rep] = this.prefix(input, pos);
        if (!(rep.length === 1 && rep[0] === SPACE)) break;
        pos += len;
      }
    }
    if (pos === input.length) return new Uint8Array(0);
    if (addDummyPrefix && !treatWhitespaceAsSuffix) out.push(...space);
    let prevSpace = removeExtraWhitespaces;
    while (pos < input.length) {
      const [len, rep] = this.prefix(input, pos);
      let i = 0;
      if (prevSpace) while (i < rep.length && rep[i] === SPACE) i++;
      if (i < rep.length) {
        for (; i < rep.length; i++) {
          if (rep[i] === SPACE && escapeWhitespaces) out.push(...META);
          else out.push(rep[i]!);
        }
        prevSpace = rep[rep.length - 1] === SPACE;
      }
      pos += len;
      if (!removeExtraWhitespaces) prevSpace = false;
    }
    if (removeExtraWhitespaces) {
      while (out.length >= space.length && space.every((b, k) => out[out.length - space.length + k] === b)) out.length -= space.length;
    }
    if (addDummyPrefix && treatWhitespaceAsSuffix) out.push(...space);
    return Uint8Array.from(out);
  }

  /** One normalisation step at `pos`: bytes consumed and their replacement (NormalizePrefix). */
  private prefix(input: Uint8Array, pos: number): [number, Uint8Array] {
    let user = 0;
    for (const u of this.userDefined) {
      if (u.length > user && u.every((b, k) => input[pos + k] === b)) user = u.length;
    }
    if (user > 0) return [user, input.subarray(pos, pos + user)];
    const m = this.charsmap?.match(input, pos);
    if (m) return [m.length, m.replacement];
    const len = Math.min(utf8Length(input[pos]!), input.length - pos);
    return [len, input.subarray(pos, pos + len)];
  }
}
