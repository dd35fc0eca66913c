/**
 * 8-bit RGB images: what the tasks return and take. PNG/JPEG decoding and PNG encoding go through pngjs and
 * jpeg-js; the generation parameters travel in PNG tEXt / iTXt chunks (pngjs does not write those, so the chunks
 * are spliced in here: length, type, data, CRC-32).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { SD3Error } from '../core/errors.js';

export class RGBImage {
  constructor(
    readonly width: number,
    readonly height: number,
    /** Row-major RGB bytes, length width * height * 3. */
    readonly data: Uint8Array,
    /** Text stored with the image when saved as PNG (e.g. the generation parameters). */
    readonly metadata: Readonly<Record<string, string>> = {},
  ) {
    if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
      throw new SD3Error(`image size must be positive integers, got ${width}x${height}`);
    }
    if (data.length !== width * height * 3) throw new SD3Error(`a ${width}x${height} RGB image needs ${width * height * 3} bytes, got ${data.length}`);
  }

  withMetadata(extra: Record<string, string>): RGBImage {
    return new RGBImage(this.width, this.height, this.data, { ...this.metadata, ...extra });
  }

  /** PNG bytes, with the metadata as tEXt chunks. */
  toPNG(): Buffer {
    const png = new PNG({ width: this.width, height: this.height, colorType: 2, inputColorType: 2, inputHasAlpha: false });
    png.data = Buffer.from(this.data.buffer, this.data.byteOffset, this.data.byteLength);
    const encoded = PNG.sync.write(png, { colorType: 2, inputColorType: 2, inputHasAlpha: false });
    const chunks = Object.entries(this.metadata).map(([k, v]) => textChunk(k, v));
    // IHDR is always 8 (signature) + 25 bytes; text chunks go right after it.
    return Buffer.concat([encoded.subarray(0, 33), ...chunks, encoded.subarray(33)]);
  }

  /** Writes a PNG atomically (temporary file, then rename): never a half-written file under `file`. */
  async save(file: string): Promise<void> {
    await writeFileAtomic(file, this.toPNG());
  }
}

/**
 * A PNG text chunk: tEXt when the text is Latin-1, else iTXt with UTF-8 text (uncompressed, no language tag),
 * so a prompt in any script survives as written.
 */
function textChunk(keyword: string, text: string): Buffer {
  if (!/^[\x20-\x7e]{1,79}$/.test(keyword)) throw new SD3Error(`PNG text keyword must be 1-79 printable Latin-1 characters, got ${JSON.stringify(keyword)}`);
  const latin1 = !/[^\u0000-\u00ff]/.test(text);
  const key = Buffer.from(keyword, 'latin1');
  const data = latin1
    ? Buffer.concat([key, Buffer.from([0]), Buffer.from(text, 'latin1')])
    // keyword, NUL, compression flag 0, method 0, empty language tag + NUL, empty translated keyword + NUL, text
    : Buffer.concat([key, Buffer.from([0, 0, 0, 0, 0]), Buffer.from(text, 'utf8')]);
  const type = Buffer.from(latin1 ? 'tEXt' : 'iTXt', 'ascii');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(Buffer.concat([type, data])) >>> 0);
  return Buffer.concat([len, type, data, crc]);
}

/** The text chunks of a PNG file (tEXt, zTXt and iTXt), keyword -> text. Unreadable chunks are skipped. */
export function readPNGText(bytes: Uint8Array): Record<string, string> {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Record<string, string> = {};
  let pos = 8;
  while (pos + 8 <= b.length) {
    const len = b.readUInt32BE(pos);
    const type = b.toString('ascii', pos + 4, pos + 8);
    const data = b.subarray(pos + 8, Math.min(b.length, pos + 8 + len));
    const zero = data.indexOf(0);
    try {
      if (type === 'tEXt' && zero > 0) {
        out[data.toString('latin1', 0, zero)] = data.toString('latin1', zero + 1);
      } else if (type === 'zTXt' && zero > 0) {
        out[data.toString('latin1', 0, zero)] = zlib.inflateSync(data.subarray(zero + 2)).toString('latin1');
      } else if (type === 'iTXt' && zero > 0) {
        const compressed = data[zero + 1] === 1;
        const lang = data.indexOf(0, zero + 3);
        const translated = data.indexOf(0, lang + 1);
        const body = data.subarray(translated + 1);
        out[data.toString('latin1', 0, zero)] = (compressed ? zlib.inflateSync(body) : body).toString('utf8');
      }
    } catch {
      // A damaged compressed chunk: skip it, the image itself may still be fine.
    }
    if (type === 'IEND') break;
    pos += 12 + len;
  }
  return out;
}

export async function writeFileAtomic(file: string, bytes: Uint8Array): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  try {
    await fs.promises.writeFile(tmp, bytes);
    await fs.promises.rename(tmp, file);
  } catch (e) {
    await fs.promises.rm(tmp, { force: true });
    throw new SD3Error(`could not write ${file}: ${(e as Error).message}`, { cause: e });
  }
}

/** The largest input image side accepted (8192 pixels: 268 MB of RGBA while decoding). */
export const MAX_IMAGE_SIDE = 8192;

/**
 * A PNG's or JPEG's format and size, read from its header (PNG IHDR; the JPEG frame header SOFn) without
 * decoding anything, so that a size is checked before a decoder allocates what the file claims. Hand-written:
 * pngjs and jpeg-js only report the size after allocating the image.
 */
export function imageHeader(bytes: Uint8Array, label = 'image'): { format: 'png' | 'jpeg'; width: number; height: number } {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bad = (problem: string) => new SD3Error(`cannot read ${label}: ${problem}`);
  if (b.length >= 8 && b.readUInt32BE(0) === 0x89504e47 && b.readUInt32BE(4) === 0x0d0a1a0a) {
    if (b.length < 33 || b.toString('latin1', 12, 16) !== 'IHDR' || b.readUInt32BE(8) !== 13) throw bad('a PNG file whose first chunk is not a whole IHDR (truncated or damaged)');
    return { format: 'png', width: b.readUInt32BE(16), height: b.readUInt32BE(20) };
  }
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) {
    let pos = 2;
    while (pos + 4 <= b.length) {
      if (b[pos] !== 0xff) throw bad(`a JPEG file with a damaged marker at byte ${pos}`);
      const marker = b[pos + 1]!;
      if (marker === 0xff) { pos++; continue; } // fill byte
      if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) { pos += 2; continue; }
      if (marker === 0xd9 || marker === 0xda) break; // end of image, or scan data before any frame header
      const len = b.readUInt16BE(pos + 2);
      if (len < 2) throw bad(`a JPEG file with a segment of length ${len} at byte ${pos}`);
      // SOF0-SOF15, except DHT (C4), JPG (C8) and DAC (CC): precision, height, width.
      if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
        if (pos + 9 > b.length) break;
        return { format: 'jpeg', height: b.readUInt16BE(pos + 5), width: b.readUInt16BE(pos + 7) };
      }
      pos += 2 + len;
    }
    throw bad('a JPEG file without a frame header (truncated or damaged)');
  }
  throw bad('not a PNG or JPEG file');
}

/**
 * Decodes PNG or JPEG bytes to RGB (alpha is dropped, not composited; greyscale is expanded; 16-bit PNG
 * samples are scaled to 8 bits; palette PNGs are expanded). The size is read and checked first: a side over
 * MAX_IMAGE_SIDE or of 0 is refused before anything is allocated.
 */
export function decodeImage(bytes: Uint8Array, label = 'image'): RGBImage {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const head = imageHeader(b, label);
  if (head.width < 1 || head.height < 1 || head.width > MAX_IMAGE_SIDE || head.height > MAX_IMAGE_SIDE) {
    throw new SD3Error(`cannot read ${label}: its header says ${head.width}x${head.height} pixels; each side must be 1 to ${MAX_IMAGE_SIDE} (MAX_IMAGE_SIDE)`);
  }
  let rgba: { width: number; height: number; data: Uint8Array };
  try {
    if (head.format === 'png') {
      const png = PNG.sync.read(b);
      rgba = { width: png.width, height: png.height, data: png.data };
    } else {
      rgba = jpeg.decode(b, { useTArray: true, formatAsRGBA: true, maxResolutionInMP: (MAX_IMAGE_SIDE * MAX_IMAGE_SIDE) / 1e6, maxMemoryUsageInMB: 1024 });
    }
  } catch (e) {
    throw new SD3Error(`cannot read ${label}: a damaged or truncated ${head.format === 'png' ? 'PNG' : 'JPEG'} file (${(e as Error).message})`, { cause: e });
  }
  const n = rgba.width * rgba.height;
  if (rgba.width !== head.width || rgba.height !== head.height || rgba.data.length < n * 4) {
    throw new SD3Error(`cannot read ${label}: decoded ${rgba.width}x${rgba.height} pixels (${rgba.data.length} bytes) for a header of ${head.width}x${head.height}`);
  }
  const rgb = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    rgb[i * 3] = rgba.data[i * 4]!;
    rgb[i * 3 + 1] = rgba.data[i * 4 + 1]!;
    rgb[i * 3 + 2] = rgba.data[i * 4 + 2]!;
  }
  return new RGBImage(rgba.width, rgba.height, rgb);
}

export async function readImage(file: string): Promise<RGBImage> {
  let bytes: Buffer;
  try {
    bytes = await fs.promises.readFile(file);
  } catch (e) {
    throw new SD3Error(`cannot read image ${file}: ${(e as Error).message}`, { cause: e });
  }
  return decodeImage(bytes, file);
}

/**
 * The source index of output index `i` in a nearest-neighbour resize from `from` to `to` samples, with
 * half-pixel centres: floor((i + 0.5) * from / to), the convention of KerasHub's TF/JAX image resize (an exact
 * 8x reduction takes sample 8i + 4). Images, float tensors and masks all resize through this one rule.
 */
export function nearestSource(i: number, from: number, to: number): number {
  return Math.min(from - 1, Math.floor(((i + 0.5) * from) / to));
}

/** Nearest-neighbour resize of channels-last pixels (any element type) with `nearestSource`'s rule. */
export function resizeNearestHWC<T extends Uint8Array | Float32Array>(data: T, width: number, height: number, channels: number, toWidth: number, toHeight: number): T {
  const out = new (data.constructor as { new (n: number): T })(toWidth * toHeight * channels);
  for (let y = 0; y < toHeight; y++) {
    const sy = nearestSource(y, height, toHeight);
    for (let x = 0; x < toWidth; x++) {
      const s = (sy * width + nearestSource(x, width, toWidth)) * channels;
      const d = (y * toWidth + x) * channels;
      for (let c = 0; c < channels; c++) out[d + c] = data[s + c]!;
    }
  }
  return out;
}

/** Nearest-neighbour resize of an RGB image (see `nearestSource`). */
export function resizeNearest(img: RGBImage, width: number, height: number): RGBImage {
  if (img.width === width && img.height === height) return img;
  return new RGBImage(width, height, resizeNearestHWC(img.data, img.width, img.height, 3, width, height), img.metadata);
}
