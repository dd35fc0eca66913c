/**
 * safetensors reader and writer.
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON header, then raw little-endian tensor bytes.
 * The reader validates the whole header before trusting any of it: nothing is allocated from a size the
 * file claims until that size has been checked against the real file size.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AbortError, FileFormatError, SD3Error } from './errors.js';
import { BYTES_PER_ELEMENT, type DType, type Tensor, numel, tensor, viewBytes } from './tensor.js';

/** Largest header accepted (the same bound the reference Rust implementation uses). */
export const MAX_HEADER_BYTES = 100_000_000;

const DTYPE_FROM_FILE: Record<string, DType> = {
  F16: 'float16', BF16: 'bfloat16', F8_E4M3: 'float8e4m3fn', F8_E5M2: 'float8e5m2', F32: 'float32', F64: 'float64',
  I8: 'int8', U8: 'uint8', I16: 'int16', I32: 'int32', I64: 'int64', BOOL: 'bool',
};
const DTYPE_TO_FILE: Record<DType, string> = Object.fromEntries(
  Object.entries(DTYPE_FROM_FILE).map(([k, v]) => [v, k]),
) as Record<DType, string>;

export interface TensorInfo {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** Absolute byte offset of the tensor's data in the file. */
  readonly fileOffset: number;
  readonly byteLength: number;
}

export class SafetensorsFile {
  private fd: number | null;
  private constructor(
    readonly path: string,
    fd: number,
    readonly fileSize: number,
    readonly headerLength: number,
    readonly metadata: Readonly<Record<string, string>>,
    private readonly infos: Map<string, TensorInfo>,
  ) {
    this.fd = fd;
  }

  /** Opens a file and validates its header; tensor data is read lazily. */
  static open(file: string): SafetensorsFile {
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (e) {
      throw new SD3Error(`cannot open safetensors file ${file}: ${(e as Error).message}`, { cause: e });
    }
    try {
      const size = fs.fstatSync(fd).size;
      const { headerLength, metadata, infos } = parseHeader(file, size, (buf, pos) => fs.readSync(fd, buf, 0, buf.length, pos));
      return new SafetensorsFile(file, fd, size, headerLength, metadata, infos);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  get dataStart(): number { return 8 + this.headerLength; }
  keys(): string[] { return [...this.infos.keys()]; }
  has(name: string): boolean { return this.infos.has(name); }
  shape(name: string): readonly number[] { return this.info(name).shape; }

  info(name: string): TensorInfo {
    const i = this.infos.get(name);
    if (!i) throw new SD3Error(`${this.path}: no tensor named "${name}"`);
    return i;
  }

  /** Reads one tensor's bytes (a fresh, aligned buffer). */
  readBytes(name: string): Uint8Array {
    const info = this.info(name);
    if (this.fd === null) throw new SD3Error(`${this.path}: file is closed`);
    const buf = new Uint8Array(info.byteLength);
    let done = 0;
    while (done < buf.length) {
      const n = fs.readSync(this.fd, buf, done, buf.length - done, info.fileOffset + done);
      if (n === 0) throw new FileFormatError(this.path, `unexpected end of file while reading "${name}"`);
      done += n;
    }
    return buf;
  }

  read(name: string): Tensor {
    const info = this.info(name);
    return tensor(info.dtype, info.shape, viewBytes(info.dtype, this.readBytes(name)));
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}

/**
 * Validates a safetensors header held in memory (the first bytes of a file of `fileSize` bytes; by default
 * the buffer is the whole file). The same checks as SafetensorsFile.open; for tests and fuzzing.
 */
export function parseSafetensorsHeader(bytes: Uint8Array, label = 'safetensors bytes', fileSize = bytes.length): { headerLength: number; metadata: Record<string, string>; tensors: TensorInfo[] } {
  const { headerLength, metadata, infos } = parseHeader(label, fileSize, (buf, pos) => {
    const part = bytes.subarray(Math.min(pos, bytes.length), Math.min(pos + buf.length, bytes.length));
    buf.set(part);
    return part.length;
  });
  return { headerLength, metadata, tensors: [...infos.values()] };
}

/**
 * The keys of a JSON object's top level, in order, duplicates included (JSON.parse keeps the last of a
 * duplicated key silently). `text` must already be valid JSON; hand-written because no JSON library at hand
 * reports duplicates, and it is one linear pass.
 */
export function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (depth === 1 && expectKey) keys.push(JSON.parse(text.slice(i, j + 1)) as string);
      expectKey = false;
      i = j;
    } else if (c === '{' || c === '[') {
      depth++;
      expectKey = depth === 1 && c === '{';
    } else if (c === '}' || c === ']') {
      depth--;
    } else if (c === ',' && depth === 1) {
      expectKey = true;
    }
  }
  return keys;
}

function parseHeader(
  file: string,
  size: number,
  readAt: (buf: Uint8Array, pos: number) => number,
): { headerLength: number; metadata: Record<string, string>; infos: Map<string, TensorInfo> } {
  const bad = (problem: string) => new FileFormatError(file, `not a valid safetensors file: ${problem}`);
  if (size < 8) throw bad(`file is ${size} bytes, shorter than the 8-byte header length`);
  const lenBuf = new Uint8Array(8);
  if (readAt(lenBuf, 0) !== 8) throw bad('cannot read the header length');
  const n = new DataView(lenBuf.buffer).getBigUint64(0, true);
  if (n < 2n) throw bad(`header length ${n} is too small for a JSON object`);
  if (n > BigInt(MAX_HEADER_BYTES)) throw bad(`header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  const headerLength = Number(n);
  if (8 + headerLength > size) throw bad(`header length ${headerLength} runs past the end of the ${size}-byte file (truncated?)`);
  const hbuf = new Uint8Array(headerLength);
  if (readAt(hbuf, 8) !== headerLength) throw bad('cannot read the header');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(hbuf);
  } catch {
    throw bad('header is not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw bad(`header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw bad('header is not a JSON object');
  const keys = topLevelKeys(text);
  if (keys.length !== Object.keys(json).length) {
    const seen = new Set<string>();
    const dup = keys.find((k) => (seen.has(k) ? true : (seen.add(k), false)));
    throw bad(`tensor "${dup}" is listed twice in the header`);
  }

  const dataSize = size - 8 - headerLength;
  const metadata: Record<string, string> = {};
  const infos = new Map<string, TensorInfo>();
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad('__metadata__ is not an object');
      for (const [k, v] of Object.entries(raw)) {
        if (typeof v !== 'string') throw bad(`__metadata__ value for "${k}" is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad(`entry "${name}" is not an object`);
    const e = raw as Record<string, unknown>;
    if (typeof e.dtype !== 'string') throw bad(`tensor "${name}" has no dtype string`);
    const dtype = DTYPE_FROM_FILE[e.dtype];
    if (!dtype) throw bad(`tensor "${name}" has unknown dtype "${e.dtype}" (expected one of ${Object.keys(DTYPE_FROM_FILE).join(', ')})`);
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw bad(`tensor "${name}" has an invalid shape ${JSON.stringify(e.shape)} (expected an array of non-negative integers)`);
    }
    const shape = e.shape as number[];
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw bad(`tensor "${name}" has invalid data_offsets ${JSON.stringify(off)} (expected [begin, end])`);
    }
    const [begin, end] = off as [number, number];
    if (end < begin) throw bad(`tensor "${name}" has data_offsets [${begin}, ${end}] with end before begin`);
    const expected = numel(shape) * BYTES_PER_ELEMENT[dtype];
    if (!Number.isSafeInteger(expected) || end - begin !== expected) {
      throw bad(`tensor "${name}" of ${e.dtype} shape [${shape.join(', ')}] needs ${expected} bytes but data_offsets span ${end - begin}`);
    }
    if (end > dataSize) throw bad(`tensor "${name}" data_offsets [${begin}, ${end}] run past the ${dataSize} data bytes in the file (truncated?)`);
    infos.set(name, { name, dtype, shape, fileOffset: 8 + headerLength + begin, byteLength: end - begin });
  }
  const sorted = [...infos.values()].sort((a, b) => a.fileOffset - b.fileOffset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (cur.fileOffset < prev.fileOffset + prev.byteLength) throw bad(`tensors "${prev.name}" and "${cur.name}" overlap`);
  }
  return { headerLength, metadata, infos };
}

// ---- writing ----

export interface TensorEntry {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** Writes the tensor's little-endian bytes (exactly numel * element size) into `out`. */
  readonly fill: (out: Uint8Array) => void;
}

function buildHeader(entries: readonly TensorEntry[], metadata?: Record<string, string>): Uint8Array {
  const obj: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) obj.__metadata__ = metadata;
  let offset = 0;
  for (const e of entries) {
    if (e.name === '__metadata__' || e.name in obj) throw new SD3Error(`duplicate or reserved tensor name "${e.name}"`);
    const bytes = numel(e.shape) * BYTES_PER_ELEMENT[e.dtype];
    obj[e.name] = { dtype: DTYPE_TO_FILE[e.dtype], shape: e.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(obj);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  return new TextEncoder().encode(json);
}

/** The temporary name a write of `file` by this process goes through (swept by `sweepStaleTemps` if left). */
function tempName(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
}

/**
 * Removes temporary files that an earlier write of `file` left behind when its process was killed (or ran out
 * of memory): `.<name>.<pid>.tmp` whose process no longer exists. Writes by live processes are left alone.
 * Returns the removed paths.
 */
export function sweepStaleTemps(file: string): string[] {
  const dir = path.dirname(file);
  const prefix = `.${path.basename(file)}.`;
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix) || !name.endsWith('.tmp')) continue;
    const pid = Number(name.slice(prefix.length, -'.tmp'.length));
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || isAlive(pid)) continue;
    try {
      fs.rmSync(path.join(dir, name), { force: true });
      removed.push(path.join(dir, name));
    } catch { /* another process swept it first */ }
  }
  return removed;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code === 'EPERM';
  }
}

/**
 * Writes a safetensors file through a temporary file renamed into place, so a failure never leaves a
 * half-written file under the final name. Entries are written one at a time (multi-GB files are fine).
 * Blocks the event loop until done: long writes use writeSafetensorsEntriesAsync.
 */
export function writeSafetensorsEntries(file: string, entries: readonly TensorEntry[], metadata?: Record<string, string>): void {
  const header = buildHeader(entries, metadata);
  sweepStaleTemps(file);
  const tmp = tempName(file);
  const fd = fs.openSync(tmp, 'w');
  try {
    const len = new Uint8Array(8);
    new DataView(len.buffer).setBigUint64(0, BigInt(header.length), true);
    fs.writeSync(fd, len);
    fs.writeSync(fd, header);
    for (const e of entries) {
      const bytes = new Uint8Array(numel(e.shape) * BYTES_PER_ELEMENT[e.dtype]);
      e.fill(bytes);
      let done = 0;
      while (done < bytes.length) done += fs.writeSync(fd, bytes, done, bytes.length - done);
    }
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
  } catch (err) {
    try { fs.closeSync(fd); } catch { /* already closed */ }
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

export interface AsyncWriteOptions {
  /** Checked before each entry: an abort removes the temporary file and rejects with an AbortError. */
  readonly signal?: AbortSignal;
}

/**
 * writeSafetensorsEntries without blocking: the event loop runs between entries (a Ctrl-C handler gets to run
 * during a build of minutes), the signal is checked before each entry, and the temporary file is removed on any
 * failure, on abort, and when the process exits meanwhile (process.exit); a kill leaves it to sweepStaleTemps.
 */
export async function writeSafetensorsEntriesAsync(file: string, entries: readonly TensorEntry[], metadata?: Record<string, string>, opts: AsyncWriteOptions = {}): Promise<void> {
  const header = buildHeader(entries, metadata);
  sweepStaleTemps(file);
  const tmp = tempName(file);
  const onExit = () => { try { fs.rmSync(tmp, { force: true }); } catch { /* exiting anyway */ } };
  process.on('exit', onExit);
  const handle = await fs.promises.open(tmp, 'w');
  let closed = false;
  try {
    const len = new Uint8Array(8);
    new DataView(len.buffer).setBigUint64(0, BigInt(header.length), true);
    await handle.write(len);
    await handle.write(header);
    for (const e of entries) {
      if (opts.signal?.aborted) throw new AbortError('stopped while writing ' + file);
      const bytes = new Uint8Array(numel(e.shape) * BYTES_PER_ELEMENT[e.dtype]);
      e.fill(bytes);
      let done = 0;
      while (done < bytes.length) done += (await handle.write(bytes, done, bytes.length - done)).bytesWritten;
    }
    await handle.close();
    closed = true;
    if (opts.signal?.aborted) throw new AbortError('stopped while writing ' + file);
    await fs.promises.rename(tmp, file);
  } catch (err) {
    if (!closed) await handle.close().catch(() => {});
    await fs.promises.rm(tmp, { force: true });
    throw err;
  } finally {
    process.off('exit', onExit);
  }
}

/** Writes in-memory tensors (in the given key order). */
export function writeSafetensors(file: string, tensors: Readonly<Record<string, Tensor>>, metadata?: Record<string, string>): void {
  const entries: TensorEntry[] = Object.entries(tensors).map(([name, t]) => ({
    name,
    dtype: t.dtype,
    shape: t.shape,
    fill: (out) => out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)),
  }));
  writeSafetensorsEntries(file, entries, metadata);
}

/** Reads every tensor of a (small) file into memory. */
export function readAllSafetensors(file: string): { tensors: Record<string, Tensor>; metadata: Record<string, string> } {
  const f = SafetensorsFile.open(file);
  try {
    const tensors: Record<string, Tensor> = {};
    for (const k of f.keys()) tensors[k] = f.read(k);
    return { tensors, metadata: { ...f.metadata } };
  } finally {
    f.close();
  }
}
