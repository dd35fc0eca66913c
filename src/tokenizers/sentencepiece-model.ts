/**
 * Reads a SentencePiece unigram model, from `spiece.model` (the ModelProto of sentencepiece_model.proto) or from
 * a Hugging Face `tokenizer.json`, into one plain description.
 *
 * Hand-written on @bufbuild/protobuf's wire reader: only a dozen fields of one message are needed, which does
 * not justify generated code.
 */
import * as fs from 'node:fs';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import { FileFormatError, SD3Error } from '../core/errors.js';

/** sentencepiece_model.proto SentencePiece.Type */
export const PieceType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;
export type PieceType = (typeof PieceType)[keyof typeof PieceType];

export interface Piece {
  readonly piece: string;
  readonly score: number;
  readonly type: PieceType;
}

export interface NormalizerSpec {
  /** sentencepiece's precompiled normalisation rules (a double-array trie plus replacement strings); none = identity. */
  readonly charsmap?: Uint8Array;
  readonly addDummyPrefix: boolean;
  readonly removeExtraWhitespaces: boolean;
  readonly escapeWhitespaces: boolean;
  readonly treatWhitespaceAsSuffix: boolean;
}

export interface UnigramModel {
  readonly pieces: readonly Piece[];
  readonly unkId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly byteFallback: boolean;
  readonly normalizer: NormalizerSpec;
}

interface Trainer { modelType: number; unkId: number; eosId: number; padId: number; byteFallback: boolean; suffix: boolean }

function readMessage(bytes: Uint8Array, onField: (field: number, wire: WireType, r: BinaryReader) => boolean): void {
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (!onField(field, wire, r)) r.skip(wire);
  }
}

function readPiece(bytes: Uint8Array): Piece {
  let piece = '';
  let score = 0;
  let type: number = PieceType.NORMAL;
  readMessage(bytes, (f, w, r) => {
    if (f === 1 && w === WireType.LengthDelimited) piece = r.string();
    else if (f === 2 && w === WireType.Bit32) score = r.float();
    else if (f === 3 && w === WireType.Varint) type = r.int32();
    else return false;
    return true;
  });
  if (!Object.values(PieceType).includes(type as PieceType)) throw new SD3Error(`piece ${JSON.stringify(piece)} has unknown type ${type}`);
  return { piece, score, type: type as PieceType };
}

function readTrainer(bytes: Uint8Array): Trainer {
  // proto2 defaults of TrainerSpec
  const t: Trainer = { modelType: 1, unkId: 0, eosId: 2, padId: -1, byteFallback: false, suffix: false };
  readMessage(bytes, (f, w, r) => {
    if (w !== WireType.Varint) return false;
    if (f === 3) t.modelType = r.int32();
    else if (f === 40) t.unkId = r.int32();
    else if (f === 42) t.eosId = r.int32();
    else if (f === 43) t.padId = r.int32();
    else if (f === 35) t.byteFallback = r.bool();
    else if (f === 24) t.suffix = r.bool();
    else return false;
    return true;
  });
  return t;
}

function readNormalizer(bytes: Uint8Array, suffix: boolean): NormalizerSpec {
  let charsmap: Uint8Array | undefined;
  let addDummyPrefix = true;
  let removeExtraWhitespaces = true;
  let escapeWhitespaces = true;
  readMessage(bytes, (f, w, r) => {
    if (f === 2 && w === WireType.LengthDelimited) charsmap = r.bytes();
    else if (f === 3 && w === WireType.Varint) addDummyPrefix = r.bool();
    else if (f === 4 && w === WireType.Varint) removeExtraWhitespaces = r.bool();
    else if (f === 5 && w === WireType.Varint) escapeWhitespaces = r.bool();
    else return false;
    return true;
  });
  return { charsmap: charsmap?.length ? charsmap : undefined, addDummyPrefix, removeExtraWhitespaces, escapeWhitespaces, treatWhitespaceAsSuffix: suffix };
}

/** Parses a serialized ModelProto (`spiece.model`). */
export function parseSpieceModel(bytes: Uint8Array, source: string): UnigramModel {
  const pieces: Piece[] = [];
  let trainerBytes: Uint8Array = new Uint8Array(0);
  let normalizerBytes: Uint8Array = new Uint8Array(0);
  try {
    readMessage(bytes, (f, w, r) => {
      if (w !== WireType.LengthDelimited) return false;
      if (f === 1) pieces.push(readPiece(r.bytes()));
      else if (f === 2) trainerBytes = r.bytes();
      else if (f === 3) normalizerBytes = r.bytes();
      else return false;
      return true;
    });
  } catch (e) {
    throw new FileFormatError(source, `not a SentencePiece model (${(e as Error).message})`);
  }
  let trainer: Trainer;
  let normalizer: NormalizerSpec;
  try {
    trainer = readTrainer(trainerBytes);
    normalizer = readNormalizer(normalizerBytes, trainer.suffix);
  } catch (e) {
    throw new FileFormatError(source, `not a SentencePiece model (${(e as Error).message})`);
  }
  if (trainer.modelType !== 1) throw new FileFormatError(source, `model type ${trainer.modelType} is not supported; expected 1 (UNIGRAM), as T5 uses`);
  if (pieces.length === 0) throw new FileFormatError(source, 'the model has no pieces');
  const unkId = pieces.findIndex((p) => p.type === PieceType.UNKNOWN);
  if (unkId < 0) throw new FileFormatError(source, 'the model has no unknown piece');
  if (trainer.eosId < 0 || trainer.eosId >= pieces.length) throw new FileFormatError(source, `eos id ${trainer.eosId} is outside the ${pieces.length} pieces`);
  return {
    pieces, unkId, eosId: trainer.eosId, padId: trainer.padId < 0 ? 0 : trainer.padId, byteFallback: trainer.byteFallback,
    normalizer,
  };
}

export function readSpieceModel(file: string): UnigramModel {
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    throw new SD3Error(`cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
  return parseSpieceModel(bytes, file);
}
