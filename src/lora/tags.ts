/**
 * `<lora:NAME:SCALE>` tags in a prompt (A1111's and stable-diffusion.cpp's syntax) and resolving NAME inside a
 * LoRA folder so that no name can leave it: no NUL, no absolute path, no `..` segment, no drive or backslash
 * tricks, and the real path (symlinks followed) must still be inside the folder's real path.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SD3Error } from '../core/errors.js';

export interface LoraTag { readonly name: string; readonly scale: number }

const TAG = /<lora:([^:<>]+)(?::([^:<>]*))?>/g;

/** Removes every `<lora:NAME[:SCALE]>` from `prompt`; SCALE defaults to 1. Throws on a scale that is not a number. */
export function parseLoraTags(prompt: string): { readonly prompt: string; readonly loras: readonly LoraTag[] } {
  const loras: LoraTag[] = [];
  const rest = prompt.replace(TAG, (_all, name: string, scale: string | undefined) => {
    const s = scale === undefined || scale.trim() === '' ? 1 : Number(scale);
    if (!Number.isFinite(s)) throw new SD3Error(`<lora:${name}:${scale}>: the scale must be a number`);
    loras.push({ name: name.trim(), scale: s });
    return '';
  });
  return { prompt: rest.replace(/\s{2,}/g, ' ').trim(), loras };
}

/**
 * The file of LoRA `name` inside `dir`: `name` itself or `name.safetensors`, relative, within `dir` once every
 * symlink is resolved. Throws an SD3Error naming `name` otherwise.
 */
export function resolveLoraName(dir: string, name: string): string {
  const bad = (why: string) => new SD3Error(`LoRA name ${JSON.stringify(name)}: ${why}`);
  if (typeof name !== 'string' || name.length === 0) throw bad('is empty');
  if (name.includes('\0')) throw bad('contains a NUL character');
  if (path.isAbsolute(name) || path.win32.isAbsolute(name) || name.includes('\\') || /^[a-zA-Z]:/.test(name)) throw bad('must be a name inside the LoRA folder, not a path');
  if (name.split('/').some((seg) => seg === '..' || seg === '.' || seg === '')) throw bad('must not contain "..", "." or empty path segments');
  let root: string;
  try {
    root = fs.realpathSync(dir);
  } catch (e) {
    throw new SD3Error(`LoRA folder ${dir} cannot be read: ${(e as Error).message}`, { cause: e });
  }
  for (const candidate of name.endsWith('.safetensors') ? [name] : [`${name}.safetensors`, name]) {
    const full = path.join(root, candidate);
    let real: string;
    try {
      real = fs.realpathSync(full);
    } catch {
      continue;
    }
    if (real !== root && !real.startsWith(root + path.sep)) throw bad(`resolves outside the LoRA folder ${dir}`);
    if (!fs.statSync(real).isFile()) continue;
    return real;
  }
  throw bad(`no such LoRA in ${dir} (looked for ${name.endsWith('.safetensors') ? name : `${name}.safetensors`})`);
}

/**
 * A prompt's `<lora:NAME:SCALE>` tags as LoRA specs with files inside `dir`, and the prompt without them: what
 * a server passes to `backbone.setLoras` and to generation. Throws an SD3Error naming a bad or missing name.
 */
export function promptLoras(prompt: string, dir: string): { readonly prompt: string; readonly loras: readonly { path: string; scale: number }[] } {
  const { prompt: rest, loras } = parseLoraTags(prompt);
  return { prompt: rest, loras: loras.map((t) => ({ path: resolveLoraName(dir, t.name), scale: t.scale })) };
}
