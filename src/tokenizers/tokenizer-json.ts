/**
 * A Hugging Face `tokenizer.json` holding a SentencePiece unigram model (T5's layout), read as the same model
 * `spiece.model` describes: the Precompiled normaliser's charsmap, Metaspace's dummy prefix, the Unigram
 * vocabulary and scores. Special added tokens become control pieces, which (as in sentencepiece) text never
 * produces; Hugging Face's fast tokenizer would instead map a literal "</s>" in a prompt to its id.
 */
import * as fs from 'node:fs';
import { FileFormatError } from '../core/errors.js';
import { type NormalizerSpec, type Piece, PieceType, type UnigramModel } from './sentencepiece-model.js';

interface Component { type?: unknown; [k: string]: unknown }

const BYTE_PIECE = /^<0x[0-9A-F]{2}>$/;

function parts(c: unknown, key: 'normalizers' | 'pretokenizers'): Component[] {
  if (c === null || c === undefined) return [];
  const comp = c as Component;
  if (comp.type === 'Sequence' && Array.isArray(comp[key])) return (comp[key] as unknown[]).flatMap((x) => parts(x, key));
  return [comp];
}

function normalizerSpec(json: Record<string, unknown>, file: string): NormalizerSpec {
  let charsmap: Uint8Array | undefined;
  for (const n of parts(json.normalizer, 'normalizers')) {
    if (n.type === 'Precompiled') {
      if (typeof n.precompiled_charsmap === 'string' && n.precompiled_charsmap !== '') charsmap = Buffer.from(n.precompiled_charsmap, 'base64');
    } else if (n.type === 'Replace' && JSON.stringify(n.pattern) === '{"Regex":" {2,}"}' && n.content === ' ') {
      // collapsing runs of spaces: what remove_extra_whitespaces does anyway
    } else {
      throw new FileFormatError(file, `normalizer ${JSON.stringify(n.type)} is not supported; expected Precompiled (SentencePiece's charsmap)`);
    }
  }
  let addDummyPrefix = true;
  let metaspace = false;
  for (const p of parts(json.pre_tokenizer, 'pretokenizers')) {
    if (p.type === 'Metaspace') {
      metaspace = true;
      if (p.replacement !== undefined && p.replacement !== '\u2581') throw new FileFormatError(file, `Metaspace replacement ${JSON.stringify(p.replacement)} is not supported; expected "\u2581"`);
      if (p.add_prefix_space === false || p.prepend_scheme === 'never') addDummyPrefix = false;
    } else if (p.type !== 'WhitespaceSplit') {
      throw new FileFormatError(file, `pre-tokenizer ${JSON.stringify(p.type)} is not supported; expected WhitespaceSplit and Metaspace`);
    }
  }
  if (!metaspace) throw new FileFormatError(file, 'no Metaspace pre-tokenizer; expected the SentencePiece whitespace convention');
  return { charsmap, addDummyPrefix, removeExtraWhitespaces: true, escapeWhitespaces: true, treatWhitespaceAsSuffix: false };
}

export function parseTokenizerJson(text: string, file: string): UnigramModel {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new FileFormatError(file, `not valid JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new FileFormatError(file, 'expected a JSON object (a Hugging Face tokenizer.json)');
  const model = json.model as Component | undefined;
  if (!model || model.type !== 'Unigram') throw new FileFormatError(file, `model type ${JSON.stringify(model?.type)} is not supported; expected "Unigram"`);
  const vocab = model.vocab;
  if (!Array.isArray(vocab) || vocab.length === 0) throw new FileFormatError(file, 'model.vocab must be a non-empty array of [piece, score]');
  const unkId = model.unk_id;
  if (typeof unkId !== 'number' || !Number.isInteger(unkId) || unkId < 0 || unkId >= vocab.length) {
    throw new FileFormatError(file, `model.unk_id ${JSON.stringify(unkId)} is not an index into the ${vocab.length} pieces`);
  }
  const byteFallback = model.byte_fallback === true;
  const special = new Set<number>();
  for (const t of Array.isArray(json.added_tokens) ? json.added_tokens : []) {
    if (t && t.special === true && Number.isInteger(t.id)) special.add(t.id);
  }
  const pieces: Piece[] = vocab.map((entry: unknown, id: number) => {
    if (!Array.isArray(entry) || typeof entry[0] !== 'string' || typeof entry[1] !== 'number') {
      throw new FileFormatError(file, `model.vocab[${id}] is ${JSON.stringify(entry)}; expected [piece, score]`);
    }
    const [piece, score] = entry as [string, number];
    const type = id === unkId ? PieceType.UNKNOWN
      : special.has(id) ? PieceType.CONTROL
        : byteFallback && BYTE_PIECE.test(piece) ? PieceType.BYTE : PieceType.NORMAL;
    return { piece, score: Math.fround(score), type };
  });
  const idOf = (piece: string) => pieces.findIndex((p) => p.piece === piece);
  const eosId = idOf('</s>');
  if (eosId < 0) throw new FileFormatError(file, 'the vocabulary has no "</s>" (end of sequence) piece');
  const padId = idOf('<pad>');
  return { pieces, unkId, eosId, padId: padId < 0 ? 0 : padId, byteFallback, normalizer: normalizerSpec(json, file) };
}

export function readTokenizerJson(file: string): UnigramModel {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new FileFormatError(file, `cannot read: ${(e as Error).message}`);
  }
  return parseTokenizerJson(text, file);
}
