/**
 * T5's SentencePiece unigram tokenizer, matching the sentencepiece library id for id, with SD3's padding.
 *
 * Hand-written: the npm SentencePiece packages are WebAssembly ports that read only `spiece.model`, and the
 * pure-JS Hugging Face tokenizers approximate the precompiled charsmap with NFKC; this reads both files and
 * applies the charsmap itself.
 *
 *   const t5 = T5Tokenizer.fromFolder('…/tokenizer_3');
 *   t5.encode('a photo of a cat');                    // piece ids then EOS (1)
 *   t5.encodeForSD3('a photo of a cat');              // { ids: [..., 1, 0, 0, ...] (77), truncated: false }
 *   t5.encodeForSD3(long, { length: 256, truncate: true }); // diffusers: exactly 256, EOS kept
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SD3Error } from '../core/errors.js';
import { firstCodePoints, referenceWords } from './prompt-words.js';
import { PieceType, type UnigramModel, readSpieceModel } from './sentencepiece-model.js';
import { SentencePieceNormalizer } from './sp-normalizer.js';
import { checkLength, checkText } from './text-input.js';
import { readTokenizerJson } from './tokenizer-json.js';
import { UnigramSegmenter } from './unigram.js';

export interface SD3T5Options {
  /** Rows are padded with 0 to at least this many ids (77 in SD3's reference and KerasHub, 256 in diffusers). */
  readonly length?: number;
  /** Cut longer prompts to exactly `length` ids, EOS last (diffusers); SD3's reference never truncates. */
  readonly truncate?: boolean;
  /**
   * Read the prompt as Stability's reference does: its first 226 characters, prompt-weight parentheses
   * removed, each space-separated word tokenized on its own.
   */
  readonly sd3ref?: boolean;
}

export interface SD3T5Tokens {
  readonly ids: number[];
  /** Content was cut to fit `length` (only with `truncate`). */
  readonly truncated: boolean;
}

/** The reference passes only the first 226 characters of the prompt to T5 (sd3.5 other_impls.py, SD3Tokenizer). */
const REFERENCE_T5_CHARS = 226;
const decoder = new TextDecoder();

export class T5Tokenizer {
  readonly eosId: number;
  readonly padId: number;
  readonly unkId: number;
  readonly vocabSize: number;
  private readonly normalizer: SentencePieceNormalizer;
  private readonly segmenter: UnigramSegmenter;

  constructor(model: UnigramModel, source: string) {
    this.eosId = model.eosId;
    this.padId = model.padId;
    this.unkId = model.unkId;
    this.vocabSize = model.pieces.length;
    const userDefined = model.pieces.filter((p) => p.type === PieceType.USER_DEFINED).map((p) => new TextEncoder().encode(p.piece));
    this.normalizer = new SentencePieceNormalizer(model.normalizer, source, userDefined);
    this.segmenter = new UnigramSegmenter(model);
  }

  static fromSpieceModel(file: string): T5Tokenizer {
    return new T5Tokenizer(readSpieceModel(file), file);
  }

  static fromTokenizerJson(file: string): T5Tokenizer {
    return new T5Tokenizer(readTokenizerJson(file), file);
  }

  /** A preset's tokenizer folder: `spiece.model` when present, else `tokenizer.json`. */
  static fromFolder(dir: string): T5Tokenizer {
    const spiece = path.join(dir, 'spiece.model');
    if (fs.existsSync(spiece)) return T5Tokenizer.fromSpieceModel(spiece);
    const json = path.join(dir, 'tokenizer.json');
    if (fs.existsSync(json)) return T5Tokenizer.fromTokenizerJson(json);
    throw new SD3Error(`T5 tokenizer folder ${dir} has neither spiece.model nor tokenizer.json`);
  }

  /** The text as the model sees it (sentencepiece normalisation, spaces as '▁'). */
  normalize(text: string): string {
    checkText(text, 'T5Tokenizer.normalize');
    return decoder.decode(this.normalizer.normalize(text));
  }

  /** Piece ids followed by EOS; never truncated or padded. */
  encode(text: string): number[] {
    checkText(text, 'T5Tokenizer.encode');
    return [...this.pieceIds(text), this.eosId];
  }

  /** SD3's T5 input: ids and EOS, padded with 0 to at least `length` (default 77); see SD3T5Options. */
  encodeForSD3(text: string, options: SD3T5Options = {}): SD3T5Tokens {
    checkText(text, 'T5Tokenizer.encodeForSD3');
    const length = checkLength(options.length ?? 77, 'T5Tokenizer.encodeForSD3: options.length', 1);
    let content: number[];
    if (options.sd3ref) {
      content = referenceWords(firstCodePoints(text, REFERENCE_T5_CHARS)).flatMap((w) => this.pieceIds(w));
    } else {
      content = this.pieceIds(text);
    }
    const truncated = options.truncate === true && content.length > length - 1;
    const ids = [...(truncated ? content.slice(0, length - 1) : content), this.eosId];
    while (ids.length < length) ids.push(this.padId);
    return { ids, truncated };
  }

  private pieceIds(text: string): number[] {
    return this.segmenter.segment(this.normalizer.normalize(text));
  }
}
