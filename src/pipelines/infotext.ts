/**
 * Generation parameters as PNG text: AUTOMATIC1111's "infotext" under the keyword `parameters` (what A1111's
 * png-info, stable-diffusion.cpp and image galleries read), and our full JSON record under `sd3-ts`.
 *
 *   a lighthouse at dusk
 *   Negative prompt: fog
 *   Steps: 28, Sampler: Euler, CFG scale: 7, Seed: 42, Size: 512x512, Model: sd3_medium, Version: sd3-ts 0.1.0
 *
 * The keys follow A1111's order; a value holding `,`, `:` or a line break is JSON-quoted, as A1111 does.
 */
import * as path from 'node:path';
import type { RGBImage } from '../image/image.js';
import { readPNGText } from '../image/image.js';
import { startIndex } from '../sampler/flow-match.js';

/** PNG keyword of our JSON record. */
export const JSON_KEYWORD = 'sd3-ts';
/** PNG keyword of the A1111 infotext. */
export const INFOTEXT_KEYWORD = 'parameters';

/** A short model name from a weights label: a file or folder's base name without `.safetensors` (a hub snapshot: its repository). */
export function modelName(label: string): string {
  // A Hugging Face cache snapshot (models--org--name/snapshots/<commit>): the repository's name.
  const hub = /models--[^\\/]+--([^\\/]+)[\\/]snapshots[\\/][^\\/]+[\\/]?$/.exec(label);
  if (hub) return hub[1]!;
  const base = path.basename(label.replace(/[\\/]+$/, ''));
  return base.replace(/\.safetensors$/i, '').replace(/ preset$/, '');
}

function quote(v: string): string {
  return /[,:\n]/.test(v) ? JSON.stringify(v) : v;
}

function stepCacheThreshold(c: unknown): number | undefined {
  return c !== null && typeof c === 'object' && typeof (c as { threshold?: unknown }).threshold === 'number' ? (c as { threshold: number }).threshold : undefined;
}

/** The steps a run took: all of them, or from int(steps * (1 - strength)) for the image tasks. */
function stepsRun(p: Record<string, unknown>): number | string {
  const steps = p.numSteps;
  if (typeof steps !== 'number') return '?';
  const s = p.strength;
  return p.task !== 'text-to-image' && typeof s === 'number' && s >= 0 && s <= 1 ? steps - startIndex(steps, s) : steps;
}

/** The A1111 infotext of one image's parameters (our JSON record's field names). */
export function toInfotext(p: Record<string, unknown>, version?: string): string {
  const lines = [String(p.prompt ?? '')];
  if (typeof p.negativePrompt === 'string' && p.negativePrompt !== '') lines.push(`Negative prompt: ${p.negativePrompt}`);
  const sampler = p.sampler === 'euler' || p.sampler === undefined ? 'Euler' : p.sampler === 'dpmpp_2m' ? 'DPM++ 2M' : String(p.sampler);
  const pairs: [string, unknown][] = [
    ['Steps', p.numSteps],
    ['Sampler', sampler],
    ['Schedule type', p.shift !== undefined ? `Flow shift ${p.shift}` : undefined],
    ['CFG scale', p.guidanceScale],
    ['Seed', p.seed],
    ['Size', p.width !== undefined && p.height !== undefined ? `${p.width}x${p.height}` : undefined],
    ['Model', p.model],
    ['Denoising strength', p.task === 'text-to-image' ? undefined : p.strength],
    // Ours (A1111 has no step cache): the threshold, and how many steps reused the model's output.
    ['Step cache', stepCacheThreshold(p.stepCache)],
    ['Cached steps', Array.isArray(p.cachedSteps) ? `${p.cachedSteps.length}/${stepsRun(p)}` : undefined],
    ['Interrupted', p.interrupted === true ? 'True' : undefined],
    ['Version', version],
  ];
  lines.push(pairs.filter(([, v]) => v !== undefined && v !== null && v !== '').map(([k, v]) => `${k}: ${quote(String(v))}`).join(', '));
  return lines.join('\n');
}

export interface ParsedInfotext {
  readonly prompt: string;
  readonly negativePrompt: string;
  /** The last line's `Key: value` pairs, unquoted, in order. */
  readonly params: Record<string, string>;
}

/** One `Key: value` pair at a time; a value is a JSON string or runs to the next comma. */
const PAIR = /\s*([\w][\w \-/]*):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)/y;

function parsePairs(line: string): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  PAIR.lastIndex = 0;
  let n = 0;
  while (PAIR.lastIndex < line.length) {
    const at = PAIR.lastIndex;
    const m = PAIR.exec(line);
    if (!m || m[0].length === 0) {
      if (line.slice(at).trim() === '') break;
      return undefined;
    }
    let v = m[2]!.trim();
    if (v.startsWith('"')) {
      try { v = JSON.parse(v) as string; } catch { /* keep it quoted */ }
    }
    out[m[1]!.trim()] = v;
    n++;
  }
  return n >= 2 ? out : undefined;
}

/** Reads an infotext back (A1111's parse_generation_parameters, in outline). */
export function parseInfotext(text: string): ParsedInfotext {
  const lines = text.replace(/\r\n/g, '\n').split('\n');
  let params: Record<string, string> = {};
  if (lines.length > 1 || /^\s*Steps:/.test(lines[0] ?? '')) {
    const last = parsePairs(lines[lines.length - 1]!);
    if (last) {
      params = last;
      lines.pop();
    }
  }
  const neg = lines.findIndex((l) => l.startsWith('Negative prompt:'));
  const prompt = (neg < 0 ? lines : lines.slice(0, neg)).join('\n');
  const negativePrompt = neg < 0 ? '' : [lines[neg]!.slice('Negative prompt:'.length).trimStart(), ...lines.slice(neg + 1)].join('\n');
  return { prompt, negativePrompt, params };
}

/** The PNG text chunks of a generated image: infotext, JSON record, software. */
export function pngMetadata(p: Record<string, unknown>, version: string): Record<string, string> {
  return { [INFOTEXT_KEYWORD]: toInfotext(p, `sd3-ts ${version}`), [JSON_KEYWORD]: JSON.stringify(p), Software: `sd3-ts ${version}` };
}

/**
 * The JSON parameters of a generated image (from an RGBImage's metadata or PNG bytes); undefined when it has
 * none. Images written before the infotext change kept the JSON under `parameters`: that is read too.
 */
export function generationParameters(image: RGBImage | Uint8Array): Record<string, unknown> | undefined {
  const text = image instanceof Uint8Array ? readPNGText(image) : image.metadata;
  for (const key of [JSON_KEYWORD, INFOTEXT_KEYWORD]) {
    const v = text[key];
    if (v === undefined) continue;
    try {
      const parsed = JSON.parse(v) as unknown;
      if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Record<string, unknown>;
    } catch { /* not JSON: an infotext */ }
  }
  return undefined;
}
