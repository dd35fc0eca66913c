/**
 * Weight stores: where a model's named parameters come from.
 *
 * Models ask for parameters by *their own* names (the single-file checkpoint's names without prefix). A store
 * maps each name to bytes: ranges inside safetensors files (kept on disk and handed to the runtime as external
 * data, never copied) or in-memory tensors (tiny-random preset, tests). A fused tensor that a format stores in
 * pieces (diffusers' separate q/k/v) is a list of chunks concatenated along dimension 0; a piece of a stored
 * tensor along dimension 0 is just a byte range.
 */
import * as fs from 'node:fs';
import { SD3Error } from './errors.js';
import { SafetensorsFile } from './safetensors.js';
import { BYTES_PER_ELEMENT, type DType, type Tensor, numel, toFloat32, viewBytes } from './tensor.js';

export interface WeightChunk {
  /** Absolute path of the file holding the bytes. */
  readonly file: string;
  readonly offset: number;
  readonly length: number;
}

export interface WeightRef {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** On-disk pieces, concatenated along dimension 0 (one piece in the common case). */
  readonly chunks?: readonly WeightChunk[];
  /** In-memory bytes (little-endian), when the weight is not on disk. */
  readonly data?: Uint8Array;
}

export interface WeightStore {
  /** Human-readable origin, used in error messages. */
  readonly label: string;
  has(name: string): boolean;
  get(name: string): WeightRef;
}

export function shapeOf(store: WeightStore, name: string): readonly number[] {
  return store.get(name).shape;
}

/** A part of a stored tensor: its key, and optionally a [from, to) range of rows along dimension 0. */
export interface Part { readonly key: string; readonly rows?: readonly [number, number] }

/** What a rename table returns for one of our names: a key, or parts to concatenate along dimension 0. */
export type Source = string | { readonly concat: readonly Part[]; readonly shape?: readonly number[] } | { readonly key: string; readonly shape: readonly number[] };

/** What a rename table may look at in the files: which keys exist and their shapes. */
export interface KeyIndex {
  has(key: string): boolean;
  shape(key: string): readonly number[];
  keys(): readonly string[];
}

/** A rename table: our name -> where the tensor is in a checkpoint format (undefined when absent). */
export type RenameTable = (name: string, files: KeyIndex) => Source | undefined;

/** Weights inside one or more safetensors files, looked up through a format's rename table. */
export class SafetensorsStore implements WeightStore {
  private readonly byKey = new Map<string, SafetensorsFile>();
  private readonly index: KeyIndex;
  constructor(readonly files: readonly SafetensorsFile[], private readonly renameTable: RenameTable, readonly label = files.map((f) => f.path).join(', ')) {
    for (const f of files) for (const k of f.keys()) this.byKey.set(k, f);
    const keys = [...this.byKey.keys()];
    this.index = {
      has: (k) => this.byKey.has(k),
      shape: (k) => this.byKey.get(k)?.info(k).shape ?? [],
      keys: () => keys,
    };
  }

  private rename(name: string): Source | undefined {
    return this.renameTable(name, this.index);
  }

  has(name: string): boolean {
    const src = this.rename(name);
    if (src === undefined) return false;
    if (typeof src === 'string') return this.byKey.has(src);
    if ('concat' in src) return src.concat.every((p) => this.byKey.has(p.key));
    return this.byKey.has(src.key);
  }

  get(name: string): WeightRef {
    const src = this.rename(name);
    const missing = (key: string) => new SD3Error(`${this.label}: missing weight "${key}" (needed for ${name})`);
    if (src === undefined) throw new SD3Error(`${this.label}: this checkpoint format has no weight for "${name}"`);
    const parts: Part[] = typeof src === 'string' ? [{ key: src }] : 'concat' in src ? [...src.concat] : [{ key: src.key }];
    const chunks: WeightChunk[] = [];
    let dtype: DType | undefined;
    let rowShape: readonly number[] = [];
    let rows = 0;
    for (const p of parts) {
      const file = this.byKey.get(p.key);
      if (!file) throw missing(p.key);
      const info = file.info(p.key);
      if (dtype && info.dtype !== dtype) throw new SD3Error(`${this.label}: parts of "${name}" have different dtypes`);
      dtype = info.dtype;
      const rest = info.shape.slice(1);
      const rowBytes = numel(rest) * BYTES_PER_ELEMENT[info.dtype];
      const [from, to] = p.rows ?? [0, info.shape[0] ?? 1];
      chunks.push({ file: file.path, offset: info.fileOffset + from * rowBytes, length: (to - from) * rowBytes });
      rows += to - from;
      rowShape = info.shape.length === 0 ? [] : rest;
    }
    const natural = parts.length === 1 && !parts[0]!.rows ? this.byKey.get(parts[0]!.key)!.info(parts[0]!.key).shape : [rows, ...rowShape];
    const shape = typeof src !== 'string' && 'shape' in src && src.shape ? src.shape : natural;
    if (numel(shape) !== numel(natural)) throw new SD3Error(`${this.label}: "${name}" cannot be viewed as [${shape.join(', ')}]`);
    return { name, dtype: dtype!, shape, chunks };
  }

  close(): void { for (const f of this.files) f.close(); }
}

/** Weights held in memory (generated tiny models, tests). */
export class MemoryStore implements WeightStore {
  constructor(private readonly tensors: ReadonlyMap<string, Tensor>, readonly label = 'in-memory weights') {}
  has(name: string): boolean { return this.tensors.has(name); }
  get(name: string): WeightRef {
    const t = this.tensors.get(name);
    if (!t) throw new SD3Error(`${this.label}: missing weight "${name}"`);
    return { name, dtype: t.dtype, shape: t.shape, data: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) };
  }
}

/** A store whose names are another store's names with a prefix removed (e.g. one component of a pipeline). */
export function prefixed(store: WeightStore, prefix: string): WeightStore {
  return {
    label: store.label,
    has: (n) => store.has(prefix + n),
    get: (n) => store.get(prefix + n),
  };
}

/** Single-file rename table: our names are the file's names after a prefix. */
export function withPrefix(prefix: string): RenameTable {
  return (name) => prefix + name;
}

/**
 * Reads `length` bytes at byte `offset` of a weight's data (its chunks laid end to end), e.g. some rows of a
 * large table without reading the rest.
 */
export function readWeightBytes(ref: WeightRef, offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  if (ref.data) {
    if (offset + length > ref.data.length) throw new SD3Error(`"${ref.name}": bytes ${offset}..${offset + length} are past its ${ref.data.length} bytes`);
    out.set(ref.data.subarray(offset, offset + length));
    return out;
  }
  let base = 0;
  let done = 0;
  for (const c of ref.chunks ?? []) {
    const from = Math.max(offset + done, base);
    const to = Math.min(offset + length, base + c.length);
    if (from < to) {
      const fd = fs.openSync(c.file, 'r');
      try {
        let got = 0;
        while (got < to - from) {
          const n = fs.readSync(fd, out, from - offset + got, to - from - got, c.offset + (from - base) + got);
          if (n === 0) throw new SD3Error(`${c.file}: unexpected end of file reading "${ref.name}"`);
          got += n;
        }
      } finally {
        fs.closeSync(fd);
      }
      done = to - offset;
    }
    base += c.length;
  }
  if (done !== length) throw new SD3Error(`"${ref.name}": bytes ${offset}..${offset + length} are past its data`);
  return out;
}

/** Reads a weight's values as float32 (from its file chunks or in-memory bytes). */
export function readWeightFloat32(ref: WeightRef): Float32Array {
  let bytes: Uint8Array;
  if (ref.data) {
    bytes = ref.data;
  } else {
    const total = (ref.chunks ?? []).reduce((s, c) => s + c.length, 0);
    bytes = new Uint8Array(total);
    let pos = 0;
    for (const c of ref.chunks ?? []) {
      const fd = fs.openSync(c.file, 'r');
      try {
        let done = 0;
        while (done < c.length) {
          const n = fs.readSync(fd, bytes, pos + done, c.length - done, c.offset + done);
          if (n === 0) throw new SD3Error(`${c.file}: unexpected end of file reading "${ref.name}"`);
          done += n;
        }
      } finally {
        fs.closeSync(fd);
      }
      pos += c.length;
    }
  }
  return toFloat32({ dtype: ref.dtype, shape: ref.shape, data: viewBytes(ref.dtype, bytes) } as Tensor).data;
}
