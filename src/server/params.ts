/**
 * Request fields shared by the API families, checked once: numbers (JSON numbers, or strings as multipart and
 * HTML forms send them), prompts under a length cap, sizes on the model's 16-pixel grid, seeds, and uploaded
 * or base64 images (PNG or JPEG, dimensions checked before any pixel is decoded). Every failure is a 400 that
 * names the field.
 */
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { describe } from '../core/errors.js';
import { RGBImage } from '../image/image.js';
import { randomSeed } from '../sampler/noise.js';
import { fieldError } from './errors.js';

export interface Limits {
  readonly maxSteps: number;
  readonly maxBatch: number;
  readonly maxWidth: number;
  readonly maxHeight: number;
  readonly maxPromptChars: number;
}

/** Largest input image (either side) that is decoded at all. */
export const MAX_INPUT_SIDE = 4096;

const blank = (v: unknown) => v === undefined || v === null || v === '';

/** A number field: absent, null or '' -> undefined; numeric strings are read as numbers. */
export function numberField(body: Record<string, unknown>, name: string, o: { int?: boolean; min?: number; max?: number; label?: string } = {}): number | undefined {
  const v = body[name];
  if (blank(v)) return undefined;
  const label = o.label ?? name;
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : Number.NaN;
  const range = `${o.min !== undefined ? `>= ${o.min}` : ''}${o.min !== undefined && o.max !== undefined ? ' and ' : ''}${o.max !== undefined ? `<= ${o.max}` : ''}`;
  const expected = `${o.int ? 'an integer' : 'a number'}${range ? ` ${range}` : ''}`;
  if (!Number.isFinite(n) || (o.int && !Number.isInteger(n)) || (o.min !== undefined && n < o.min) || (o.max !== undefined && n > o.max)) {
    throw fieldError(label, `${label} must be ${expected}, got ${describe(v)}`);
  }
  return n;
}

export function boolField(body: Record<string, unknown>, name: string): boolean | undefined {
  const v = body[name];
  if (blank(v)) return undefined;
  if (typeof v === 'boolean') return v;
  if (v === 'true' || v === '1' || v === 1) return true;
  if (v === 'false' || v === '0' || v === 0) return false;
  throw fieldError(name, `${name} must be true or false, got ${describe(v)}`);
}

export function stringField(body: Record<string, unknown>, name: string, o: { required?: boolean; max?: number; label?: string } = {}): string | undefined {
  const v = body[name];
  const label = o.label ?? name;
  if (v === undefined || v === null) {
    if (o.required) throw fieldError(label, `${label} is required (a string)`);
    return undefined;
  }
  if (typeof v !== 'string') throw fieldError(label, `${label} must be a string, got ${describe(v)}`);
  if (o.max !== undefined && v.length > o.max) throw fieldError(label, `${label} must be at most ${o.max} characters, got ${v.length}`);
  return v;
}

/** A prompt (required) and negative prompt (optional), under the length cap. */
export function promptFields(body: Record<string, unknown>, limits: Limits, names = { prompt: 'prompt', negative: 'negative_prompt' }, requirePrompt = true): { prompt: string; negativePrompt: string } {
  const prompt = stringField(body, names.prompt, { required: requirePrompt, max: limits.maxPromptChars }) ?? '';
  if (requirePrompt && prompt.trim() === '') throw fieldError(names.prompt, `${names.prompt} must not be empty`);
  const negativePrompt = stringField(body, names.negative, { max: limits.maxPromptChars }) ?? '';
  return { prompt, negativePrompt };
}

/** A width or height: a multiple of 16 from 16 up to the cap. */
export function checkSide(label: string, v: number, max: number): number {
  if (!Number.isInteger(v) || v < 16 || v % 16 !== 0 || v > max) {
    throw fieldError(label, `${label} must be a multiple of 16 from 16 to ${max}, got ${v}`);
  }
  return v;
}

export function sideField(body: Record<string, unknown>, name: string, max: number): number | undefined {
  const v = numberField(body, name, { int: true });
  return v === undefined ? undefined : checkSide(name, v, max);
}

/** `WxH` (OpenAI's `size`); 'auto' or absent -> undefined. */
export function sizeField(body: Record<string, unknown>, name: string, limits: Limits): { width: number; height: number } | undefined {
  const v = body[name];
  if (blank(v) || v === 'auto') return undefined;
  const m = typeof v === 'string' ? /^(\d+)x(\d+)$/.exec(v.trim()) : null;
  if (!m) throw fieldError(name, `${name} must be "WIDTHxHEIGHT" (e.g. "1024x1024") or "auto", got ${describe(v)}`);
  const [w, h] = [Number(m[1]), Number(m[2])];
  if (w % 16 || h % 16 || w < 16 || h < 16 || w > limits.maxWidth || h > limits.maxHeight) {
    throw fieldError(name, `${name} must have a width and height that are multiples of 16, at most ${limits.maxWidth}x${limits.maxHeight}, got ${describe(v)}`);
  }
  return { width: w, height: h };
}

/** A seed: absent or -1 -> random; else an integer in [0, 2^32 - 1]. */
export function seedField(body: Record<string, unknown>, name = 'seed'): number {
  const v = numberField(body, name, { int: true, min: -1, max: 0xffffffff });
  return v === undefined || v === -1 ? randomSeed() : v;
}

/** The image's own size scaled down to fit the caps, rounded down to multiples of 16. */
export function fitSize(img: { width: number; height: number }, maxWidth: number, maxHeight: number): { width: number; height: number } {
  const scale = Math.min(1, maxWidth / img.width, maxHeight / img.height);
  const side = (v: number) => Math.max(16, Math.floor((v * scale) / 16) * 16);
  return { width: side(img.width), height: side(img.height) };
}

export interface DecodedUpload {
  readonly image: RGBImage;
  /** Alpha per pixel when the image has any pixel that is not opaque. */
  readonly alpha?: Uint8Array;
}

/** Base64 (optionally a data URL) -> bytes. */
export function base64Field(value: unknown, label: string): Buffer {
  if (typeof value !== 'string' || value === '') throw fieldError(label, `${label} must be a base64 PNG or JPEG (a data: URL is fine), got ${describe(value)}`);
  const comma = value.startsWith('data:') ? value.indexOf(',') : -1;
  const b64 = (comma >= 0 ? value.slice(comma + 1) : value).replace(/\s+/g, '');
  if (/^https?:/i.test(b64)) throw fieldError(label, `${label} must be the image itself in base64; URLs are not fetched`);
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(b64)) throw fieldError(label, `${label} is not valid base64`);
  return Buffer.from(b64, 'base64');
}

/** PNG or JPEG bytes -> RGB (and alpha when not all opaque). Refuses images over MAX_INPUT_SIDE before decoding. */
export function decodeUpload(bytes: Buffer, label: string): DecodedUpload {
  const tooBig = (w: number, h: number) => fieldError(label, `${label} is ${w}x${h}; images up to ${MAX_INPUT_SIDE}x${MAX_INPUT_SIDE} are accepted`);
  let rgba: { width: number; height: number; data: Uint8Array };
  try {
    if (bytes.length >= 24 && bytes.readUInt32BE(0) === 0x89504e47) {
      const [w, h] = [bytes.readUInt32BE(16), bytes.readUInt32BE(20)];
      if (w > MAX_INPUT_SIDE || h > MAX_INPUT_SIDE) throw tooBig(w, h);
      const png = PNG.sync.read(bytes);
      rgba = { width: png.width, height: png.height, data: png.data };
    } else if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) {
      rgba = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxResolutionInMP: (MAX_INPUT_SIDE * MAX_INPUT_SIDE) / 1e6, maxMemoryUsageInMB: 512 });
      if (rgba.width > MAX_INPUT_SIDE || rgba.height > MAX_INPUT_SIDE) throw tooBig(rgba.width, rgba.height);
    } else {
      throw fieldError(label, `${label} is not a PNG or JPEG image`);
    }
  } catch (e) {
    if ((e as Error).name === 'RequestError') throw e;
    throw fieldError(label, `${label} cannot be decoded: ${(e as Error).message}`);
  }
  const n = rgba.width * rgba.height;
  if (n === 0) throw fieldError(label, `${label} has no pixels`);
  const rgb = new Uint8Array(n * 3);
  const alpha = new Uint8Array(n);
  let opaque = true;
  for (let i = 0; i < n; i++) {
    rgb[i * 3] = rgba.data[i * 4]!;
    rgb[i * 3 + 1] = rgba.data[i * 4 + 1]!;
    rgb[i * 3 + 2] = rgba.data[i * 4 + 2]!;
    alpha[i] = rgba.data[i * 4 + 3]!;
    if (alpha[i] !== 255) opaque = false;
  }
  return { image: new RGBImage(rgba.width, rgba.height, rgb), ...(opaque ? {} : { alpha }) };
}

/** A repaint map (1 = repaint per pixel) as the white-on-black RGB mask the inpainting task reads. */
export function maskImage(width: number, height: number, repaint: (i: number) => boolean): RGBImage {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) if (repaint(i)) data.fill(255, i * 3, i * 3 + 3);
  return new RGBImage(width, height, data);
}

/** Luminance of an RGB pixel (ITU-R 601), 0..255. */
export function luminance(img: RGBImage, i: number): number {
  return 0.299 * img.data[i * 3]! + 0.587 * img.data[i * 3 + 1]! + 0.114 * img.data[i * 3 + 2]!;
}

/** The mask must cover the image exactly. */
export function checkMaskSize(mask: RGBImage, image: RGBImage, label: string): void {
  if (mask.width !== image.width || mask.height !== image.height) {
    throw fieldError(label, `${label} is ${mask.width}x${mask.height} but the image is ${image.width}x${image.height}; they must be the same size`);
  }
}
