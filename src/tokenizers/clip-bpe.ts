/**
 * CLIP's byte-level BPE tokenizer (openai `simple_tokenizer.py`, exact) with SD3's 77-token rules.
 *
 * Hand-written: the npm BPE tokenizers follow GPT-2/tiktoken or Hugging Face's tokenizer.json, and none
 * reproduces openai's cleaning (HTML unescaping, Python whitespace rules) or reads the original merges file.
 *
 *   const tok = CLIPTokenizer.default();
 *   tok.encode('a photo of a cat');                      // [320, 1125, 539, 320, 2368]
 *   tok.encodeForSD3('a photo of a cat', { pad: 'zero' }); // { ids: [49406, 320, ..., 49407, 0, ...], eosIndex: 6, truncated: false }
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { FileFormatError, SD3Error } from '../core/errors.js';
import { clipPretokens } from './clip-text.js';
import { referenceWords } from './prompt-words.js';
import { checkLength, checkText } from './text-input.js';

/** Padding after the end token: CLIP-L pads with the end token, CLIP-G with 0. */
export type CLIPPad = 'end' | 'zero';

export interface CLIPRow {
  /** `length` ids: start token, content, end token, padding. */
  readonly ids: number[];
  /** Position of the first end token (argmax of the ids): where the pooled vector is read. */
  readonly eosIndex: number;
}

export interface SD3CLIPTokens extends CLIPRow {
  /** The prompt had more content tokens than fit (length - 2); the end token is kept regardless. */
  readonly truncated: boolean;
}

export interface SD3CLIPOptions {
  readonly pad: CLIPPad;
  /** Row length; SD3's CLIP encoders have 77 positions. */
  readonly length?: number;
}

const START = '<|startoftext|>';
const END = '<|endoftext|>';
/** Merges openai's tokenizer reads from bpe_simple_vocab_16e6.txt.gz: 49152 - 256 - 2. */
const OPENAI_MERGES = 48894;
/** Words of this many tokens or more are split across chunks rather than moved (reference max_word_length). */
const MAX_WORD_TOKENS = 8;
const CACHE_LIMIT = 100_000;

/** GPT-2's reversible map from bytes to printable characters (openai bytes_to_unicode). */
function byteSymbols(): string[] {
  const symbols: string[] = new Array(256);
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    symbols[b] = String.fromCharCode(printable ? b : next++);
  }
  return symbols;
}

const BYTE_SYMBOLS = byteSymbols();
/** Byte symbols in vocabulary order: the printable bytes first, then the remapped ones. */
const BYTE_SYMBOLS_IN_ORDER = [...BYTE_SYMBOLS].sort((a, b) => a.charCodeAt(0) - b.charCodeAt(0));
const utf8 = new TextEncoder();

let defaultTokenizer: CLIPTokenizer | undefined;

export class CLIPTokenizer {
  readonly startId: number;
  readonly endId: number;
  private readonly cache = new Map<string, number[]>();

  private constructor(
    private readonly vocab: ReadonlyMap<string, number>,
    private readonly ranks: ReadonlyMap<string, number>,
    source: string,
  ) {
    const start = vocab.get(START);
    const end = vocab.get(END);
    if (start === undefined || end === undefined) throw new FileFormatError(source, `the vocabulary lacks ${START} or ${END}`);
    this.startId = start;
    this.endId = end;
  }

  /** Hugging Face layout: vocab.json (token -> id) and merges.txt ("#version" header, then one "a b" merge per line). */
  static fromFiles(vocabJson: string, mergesTxt: string): CLIPTokenizer {
    let parsed: unknown;
    try {
      parsed = JSON.parse(fs.readFileSync(vocabJson, 'utf8'));
    } catch (e) {
      throw new FileFormatError(vocabJson, `cannot read the vocabulary as JSON: ${(e as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new FileFormatError(vocabJson, 'expected a JSON object of token -> id');
    const vocab = new Map<string, number>();
    for (const [token, id] of Object.entries(parsed)) {
      if (!Number.isInteger(id) || id < 0) throw new FileFormatError(vocabJson, `token ${JSON.stringify(token)} has id ${JSON.stringify(id)}; expected a non-negative integer`);
      vocab.set(token, id);
    }
    const lines = readText(mergesTxt).split('\n');
    const first = lines[0]?.startsWith('#version') ? 1 : 0;
    return new CLIPTokenizer(vocab, mergeRanks(lines.slice(first), mergesTxt, first), vocabJson);
  }

  /** A Hugging Face / diffusers tokenizer folder (vocab.json + merges.txt). */
  static fromFolder(dir: string): CLIPTokenizer {
    return CLIPTokenizer.fromFiles(path.join(dir, 'vocab.json'), path.join(dir, 'merges.txt'));
  }

  /** openai's original bpe_simple_vocab_16e6.txt.gz; the vocabulary is derived from the merges as openai does. */
  static fromBpeGz(file: string): CLIPTokenizer {
    let text: string;
    try {
      text = gunzipSync(fs.readFileSync(file)).toString('utf8');
    } catch (e) {
      throw new FileFormatError(file, `cannot read as a gzip text file: ${(e as Error).message}`);
    }
    const lines = firstLines(text, 1 + OPENAI_MERGES).slice(1);
    if (lines.length < OPENAI_MERGES) throw new FileFormatError(file, `has ${lines.length} merges; expected ${OPENAI_MERGES}`);
    const ranks = mergeRanks(lines, file, 1);
    const tokens = [...BYTE_SYMBOLS_IN_ORDER, ...BYTE_SYMBOLS_IN_ORDER.map((s) => s + '</w>')];
    for (const line of lines) tokens.push(line.split(' ').join(''));
    tokens.push(START, END);
    const vocab = new Map<string, number>();
    tokens.forEach((t, id) => vocab.set(t, id));
    return new CLIPTokenizer(vocab, ranks, file);
  }

  /** The vocabulary shipped in assets/vocab (the official single-file checkpoints carry none). */
  static default(): CLIPTokenizer {
    defaultTokenizer ??= CLIPTokenizer.fromBpeGz(fileURLToPath(new URL('../../assets/vocab/bpe_simple_vocab_16e6.txt.gz', import.meta.url)));
    return defaultTokenizer;
  }

  /** BPE ids of the whole prompt, without start/end tokens and never truncated. */
  encode(text: string): number[] {
    checkText(text, 'CLIPTokenizer.encode');
    const ids: number[] = [];
    for (const piece of clipPretokens(text)) {
      for (const id of this.pieceIds(piece)) ids.push(id);
    }
    return ids;
  }

  /** SD3's row: start, the first length-2 content tokens, end, then padding (KerasHub-style truncation). */
  encodeForSD3(text: string, options: SD3CLIPOptions): SD3CLIPTokens {
    const { pad, length } = this.rowOptions(options, 'CLIPTokenizer.encodeForSD3');
    const content = this.encode(text);
    const ids = [this.startId, ...content.slice(0, length - 2), this.endId];
    while (ids.length < length) ids.push(pad);
    return { ids, eosIndex: argmax(ids), truncated: content.length > length - 2 };
  }

  /**
   * The reference's chunking for long prompts: prompt-weight syntax removed, words tokenized one by one, and a
   * word that would straddle the end of a chunk moved whole to the next one (words of 8+ tokens are split).
   * SD3's reference encodes only the first chunk. Always returns at least one row.
   */
  chunks(text: string, options: SD3CLIPOptions): CLIPRow[] {
    checkText(text, 'CLIPTokenizer.chunks');
    const { pad, length } = this.rowOptions(options, 'CLIPTokenizer.chunks');
    const rows: number[][] = [];
    let row = [this.startId];
    rows.push(row);
    for (const word of referenceWords(text)) {
      let group = this.encode(word);
      const large = group.length >= MAX_WORD_TOKENS;
      while (group.length > 0) {
        if (group.length + row.length <= length - 1) {
          row.push(...group);
          break;
        }
        const room = length - row.length - 1;
        if (large) {
          row.push(...group.slice(0, room), this.endId);
          group = group.slice(room);
        } else {
          row.push(this.endId, ...new Array<number>(room).fill(pad));
        }
        row = [this.startId];
        rows.push(row);
      }
    }
    row.push(this.endId);
    while (row.length < length) row.push(pad);
    return rows.map((ids) => ({ ids, eosIndex: argmax(ids) }));
  }

  private rowOptions(options: SD3CLIPOptions, who: string): { pad: number; length: number } {
    if (typeof options !== 'object' || options === null || (options.pad !== 'end' && options.pad !== 'zero')) {
      throw new SD3Error(`${who}: options.pad must be 'end' (CLIP-L) or 'zero' (CLIP-G), got ${JSON.stringify(options?.pad)}`);
    }
    const length = checkLength(options.length ?? 77, `${who}: options.length`, 2);
    return { pad: options.pad === 'end' ? this.endId : 0, length };
  }

  private pieceIds(piece: string): number[] {
    const cached = this.cache.get(piece);
    if (cached) return cached;
    let ids: number[];
    if (piece === START || piece === END) {
      ids = [this.vocab.get(piece)!];
    } else {
      ids = this.bpe(toByteSymbols(piece)).map((s) => {
        const id = this.vocab.get(s);
        if (id === undefined) throw new SD3Error(`CLIP vocabulary has no entry for the BPE symbol ${JSON.stringify(s)}; the vocabulary and merges files do not match`);
        return id;
      });
    }
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(piece, ids);
    return ids;
  }

  /** Merges adjacent symbols, lowest-ranked pair first, every non-overlapping occurrence left to right. */
  private bpe(token: string): string[] {
    let word = [...token];
    word[word.length - 1] += '</w>';
    while (word.length > 1) {
      let best = Infinity;
      let first = '';
      let second = '';
      for (let i = 0; i + 1 < word.length; i++) {
        const r = this.ranks.get(word[i] + ' ' + word[i + 1]);
        if (r !== undefined && r < best) { best = r; first = word[i]!; second = word[i + 1]!; }
      }
      if (best === Infinity) break;
      const merged: string[] = [];
      for (let i = 0; i < word.length; i++) {
        if (word[i] === first && word[i + 1] === second) { merged.push(first + second); i++; } else merged.push(word[i]!);
      }
      word = merged;
    }
    return word;
  }
}

function readText(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new SD3Error(`cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
}

/** Rank of each merge "a b" = its position; a repeated merge keeps its last rank (as Python's dict does). */
function mergeRanks(lines: string[], file: string, firstLine: number): Map<string, number> {
  const ranks = new Map<string, number>();
  let rank = 0;
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i]!;
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line === '') continue;
    const space = line.indexOf(' ');
    if (space <= 0 || space === line.length - 1 || line.indexOf(' ', space + 1) >= 0) {
      throw new FileFormatError(file, `line ${firstLine + i + 1} is ${JSON.stringify(line)}; expected a merge "a b"`);
    }
    ranks.set(line, rank++);
  }
  return ranks;
}

/** The first `n` lines of `text` (the merges file has five times more lines than openai reads). */
function firstLines(text: string, n: number): string[] {
  let end = 0;
  for (let i = 0; i < n && end >= 0; i++) end = text.indexOf('\n', end + 1);
  return (end < 0 ? text : text.slice(0, end)).split('\n');
}

function toByteSymbols(piece: string): string {
  if (/^[!-~]*$/.test(piece)) return piece; // printable ASCII maps to itself
  let out = '';
  for (const b of utf8.encode(piece)) out += BYTE_SYMBOLS[b];
  return out;
}

function argmax(ids: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < ids.length; i++) if (ids[i]! > ids[best]!) best = i;
  return best;
}
