/**
 * SentencePiece's unigram segmentation (unigram_model.cc, the optimized Viterbi) over normalised UTF-8 bytes,
 * then its post-processing: consecutive unknown pieces merge into one, or with byte fallback an unknown piece
 * becomes one <0xXX> piece per byte. Scores are float32 and summed the way the C++ code sums them, so ties
 * resolve the same way.
 */
import { type Piece, PieceType, type UnigramModel } from './sentencepiece-model.js';
import { utf8Length } from './sp-normalizer.js';

const UNK_PENALTY = 10;
const FLT_MIN = 1.1754943508222875e-38;
const encoder = new TextEncoder();

/** Byte trie of the matchable pieces: one Map from node * 256 + byte to the child node. */
class PieceTrie {
  private readonly children = new Map<number, number>();
  private readonly ids: number[] = [-1];

  add(bytes: Uint8Array, id: number): void {
    let node = 0;
    for (const b of bytes) {
      const key = node * 256 + b;
      let next = this.children.get(key);
      if (next === undefined) {
        next = this.ids.length;
        this.ids.push(-1);
        this.children.set(key, next);
      }
      node = next;
    }
    if (this.ids[node] === -1) this.ids[node] = id; // the first piece with this text wins, as in sentencepiece
  }

  child(node: number, b: number): number | undefined {
    return this.children.get(node * 256 + b);
  }

  id(node: number): number {
    return this.ids[node]!;
  }
}

export class UnigramSegmenter {
  private readonly trie = new PieceTrie();
  private readonly types: Uint8Array;
  private readonly scores: Float32Array;
  private readonly unkScore: number;
  private readonly maxScore: number;
  private readonly byteIds: Int32Array;

  constructor(private readonly model: UnigramModel) {
    const { pieces } = model;
    this.types = Uint8Array.from(pieces, (p) => p.type);
    this.scores = Float32Array.from(pieces, (p) => p.score);
    let min = 3.4028234663852886e38;
    let max = FLT_MIN;
    pieces.forEach((p: Piece, id) => {
      if (p.type === PieceType.NORMAL || p.type === PieceType.USER_DEFINED || p.type === PieceType.UNUSED) this.trie.add(encoder.encode(p.piece), id);
      if (p.type === PieceType.NORMAL) { min = Math.min(min, this.scores[id]!); max = Math.max(max, this.scores[id]!); }
    });
    this.unkScore = Math.fround(min - UNK_PENALTY);
    this.maxScore = max;
    this.byteIds = new Int32Array(256).fill(model.unkId);
    pieces.forEach((p, id) => {
      const m = /^<0x([0-9A-F]{2})>$/.exec(p.piece);
      if (p.type === PieceType.BYTE && m) this.byteIds[parseInt(m[1]!, 16)] = id;
    });
  }

  /** Ids of the best segmentation of normalised bytes. */
  segment(text: Uint8Array): number[] {
    const n = text.length;
    const best = new Float32Array(n + 1);
    const startsAt = new Int32Array(n + 1).fill(-1);
    const ids = new Int32Array(n + 1).fill(-1);
    for (let start = 0; start < n; start += utf8Length(text[start]!)) {
      const here = best[start]!;
      const charLen = Math.min(utf8Length(text[start]!), n - start);
      let single = false;
      let node: number | undefined = 0;
      for (let end = start; end < n; ) {
        node = this.trie.child(node, text[end]!);
        end++;
        if (node === undefined) break;
        const id = this.trie.id(node);
        if (id < 0 || this.types[id] === PieceType.UNUSED) continue;
        const length = end - start;
        // double arithmetic on float32 values, as the C++ code does; the stored best is rounded to float32
        const score = this.types[id] === PieceType.USER_DEFINED ? Math.fround(length * this.maxScore) - 0.1 : this.scores[id]!;
        const candidate = score + here;
        if (startsAt[end] === -1 || candidate > best[end]!) {
          best[end] = candidate;
          startsAt[end] = start;
          ids[end] = id;
        }
        if (length === charLen) single = true;
      }
      if (!single) {
        const end = start + charLen;
        const candidate = Math.fround(this.unkScore + here);
        if (startsAt[end] === -1 || candidate > best[end]!) {
          best[end] = candidate;
          startsAt[end] = start;
          ids[end] = this.model.unkId;
        }
      }
    }
    const path: Array<[number, number, number]> = [];
    for (let end = n; end > 0; end = startsAt[end]!) path.push([startsAt[end]!, end, ids[end]!]);
    path.reverse();
    return this.postProcess(text, path);
  }

  private postProcess(text: Uint8Array, path: ReadonlyArray<[number, number, number]>): number[] {
    const out: number[] = [];
    let prevUnk = false;
    for (const [start, end, id] of path) {
      const unk = id === this.model.unkId;
      if (unk && this.model.byteFallback) {
        for (let i = start; i < end; i++) out.push(this.byteIds[text[i]!]!);
      } else if (!(unk && prevUnk)) {
        out.push(id);
      }
      prevUnk = unk;
    }
    return out;
  }
}
