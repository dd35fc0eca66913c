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

/** Decodes PNG or JPEG bytes to RGB (alpha is dropped, greyscale expanded). */
export function decodeImage(bytes: Uint8Array, label = 'image'): RGBImage {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let rgba: { width: number; height: number; data: Uint8Array };
  try {
    if (b.length >= 8 && b.readUInt32BE(0) === 0x89504e47) {
      const png = PNG.sync.read(b);
      rgba = { width: png.width, height: png.height, data: png.data };
    } else if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) {
      rgba = jpeg.decode(b, { useTArray: true, formatAsRGBA: true, maxMemoryUsageInMB: 2048 });
    } else {
      throw new SD3Error('not a PNG or JPEG file');
    }
  } catch (e) {
    throw new SD3Error(`cannot read ${label}: ${(e as Error).message}`, { cause: e });
  }
  const n = rgba.width * rgba.height;
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
 * Nearest-neighbour resize with half-pixel centres (source pixel floor((i + 0.5) * in / out)), the convention
 * of KerasHub's TF/JAX image resize; an exact 8x reduction takes pixel 8i + 4.
 */
export function resizeNearest(img: RGBImage, width: number, height: number): RGBImage {
  if (img.width === width && img.height === height) return img;
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const sy = Math.min(img.height - 1, Math.floor(((y + 0.5) * img.height) / height));
    for (let x = 0; x < width; x++) {
      const sx = Math.min(img.width - 1, Math.floor(((x + 0.5) * img.width) / width));
      const s = (sy * img.width + sx) * 3;
      const d = (y * width + x) * 3;
      out[d] = img.data[s]!;
      out[d + 1] = img.data[s + 1]!;
      out[d + 2] = img.data[s + 2]!;
    }
  }
  return new RGBImage(width, height, out, img.metadata);
}
