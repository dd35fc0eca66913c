/**
 * LoRA for the MMDiT: files in the diffusers/PEFT, kohya sd-scripts and ComfyUI forms, several at once, each
 * with its scale. `LoraManager` reads and checks files (refusing bad ones whole) and produces the feeds of the
 * MMDiT's low-rank branches, so switching LoRAs never rebuilds the model.
 */
import * as fs from 'node:fs';
import { SD3Error } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';
import type { WeightStore } from '../core/weights.js';
import { loraFeeds } from './branches.js';
import { type LoraFile, readLoraFile } from './file.js';
import { type AppliedLora, checkLoraScale } from './merge.js';
import { type LoraTargets, mmditLoraTargets } from './targets.js';

export { type LoraFile, type LoraModule, readLoraFile } from './file.js';
export { type LoraFormat, formatTables } from './formats.js';
export { type AppliedLora, mergedWeights, overlayStore } from './merge.js';
export { loraFeeds } from './branches.js';
export { type LoraTarget, type LoraTargets, mmditLoraTargets } from './targets.js';
export { type LoraTag, parseLoraTags, promptLoras, resolveLoraName } from './tags.js';

/** A LoRA file to apply, and its strength (default 1). */
export interface LoraSpec { readonly path: string; readonly scale?: number }

/** What was applied, for logs and image metadata. */
export interface LoraReport {
  readonly path: string;
  readonly scale: number;
  readonly formats: readonly string[];
  readonly modules: number;
  /** Keys the file holds that were not applied (e.g. text-encoder LoRAs). */
  readonly ignoredKeys: number;
}

/** Checks `loras` from user input: an array of { path, scale? }. */
export function checkLoraSpecs(loras: unknown): readonly LoraSpec[] {
  if (!Array.isArray(loras)) throw new SD3Error(`loras must be an array of { path, scale }, got ${JSON.stringify(loras)}`);
  return loras.map((l: unknown, i) => {
    if (!l || typeof l !== 'object' || typeof (l as LoraSpec).path !== 'string' || (l as LoraSpec).path === '') {
      throw new SD3Error(`loras[${i}] must be { path: string, scale?: number }, got ${JSON.stringify(l)}`);
    }
    const { path, scale } = l as LoraSpec;
    return { path, scale: scale === undefined ? 1 : checkLoraScale(scale, path) };
  });
}

/** Reads LoRA files once per (path, size, mtime) and turns sets of them into branch feeds. */
export class LoraManager {
  readonly targets: LoraTargets;
  private readonly files = new Map<string, { stamp: string; file: LoraFile }>();
  private current: readonly AppliedLora[] = [];

  constructor(store: WeightStore) {
    this.targets = mmditLoraTargets(store);
  }

  /** Every weight that gets a branch. */
  get slots(): ReadonlySet<string> { return new Set(this.targets.byName.keys()); }

  /** Reads and checks every file first: one bad file refuses the whole set and the current set stays. */
  select(specs: readonly LoraSpec[]): readonly LoraReport[] {
    const checked = checkLoraSpecs(specs);
    const next: AppliedLora[] = checked.map((s) => ({ file: this.read(s.path), scale: s.scale ?? 1 }));
    this.current = next;
    return this.report();
  }

  report(): readonly LoraReport[] {
    return this.current.map(({ file, scale }) => ({ path: file.path, scale, formats: file.formats, modules: file.modules.length, ignoredKeys: file.ignoredKeys.length }));
  }

  get applied(): readonly AppliedLora[] { return this.current; }

  feeds(): Record<string, Tensor<'float32'>> {
    return loraFeeds(this.targets, this.targets.byName.keys(), this.current);
  }

  private read(file: string): LoraFile {
    let st: fs.Stats;
    try {
      st = fs.statSync(file);
    } catch (e) {
      throw new SD3Error(`LoRA file ${file} cannot be read: ${(e as Error).message}`, { cause: e });
    }
    if (!st.isFile()) throw new SD3Error(`LoRA ${file} is not a file`);
    const stamp = `${st.size}:${st.mtimeMs}`;
    const hit = this.files.get(file);
    if (hit && hit.stamp === stamp) return hit.file;
    const read = readLoraFile(file, this.targets);
    this.files.set(file, { stamp, file: read });
    return read;
  }
}
