/** The tokenizers: CLIP byte-level BPE and T5 SentencePiece unigram, with SD3's padding rules. */
export { CLIPTokenizer, type CLIPPad, type CLIPRow, type SD3CLIPOptions, type SD3CLIPTokens } from './clip-bpe.js';
export { T5Tokenizer, type SD3T5Options, type SD3T5Tokens } from './t5-unigram.js';
export { referenceWords } from './prompt-words.js';
