/**
 * LoRA for the MMDiT (and the CLIP encoders): files in the diffusers/PEFT, kohya sd-scripts and ComfyUI forms,
 * several at once, each with its scale. `LoraManager` reads and checks files (refusing bad ones whole) and
 * produces the feeds of the models' low-rank branches, so switching LoRAs never rebuilds a model.
 */
import * as fs from 'node:fs';
import { SD3Error } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';
import type { WeightStore } from '../core/weights.js';
import { loraFeeds } from './branches.js';
import { type LoraFile, readLoraFile } from './file.js';
import { type AppliedLora, checkLoraScale } from './merge.js';
import type { CLIPTextConfig } from '../models/clip.js';
import { COMPONENT_LABEL as COMPONENT_LABEL_OF, type LoraComponent, type LoraTargets, clipLoraTargets, mmditLoraTargets } from './targets.js';

export { type LoraFile, type LoraModule, readLoraFile } from './file.js';
export { type LoraFormat, formatTables } from './formats.js';
export { type AppliedLora, mergedWeights, overlayStore } from './merge.js';
export { loraFeeds } from './branches.js';
export { type LoraComponent, type LoraTarget, type LoraTargets, clipLoraTargets, mmditLoraTargets } from './targets.js';
export { type LoraTag, parseLoraTags, promptLoras, resolveLoraName } from './tags.js';

/** A LoRA file to apply, and its strength (default 1). */
export interface LoraSpec { readonly path: string; readonly scale?: number }

/** What was applied, for logs and image metadata. */
export interface LoraReport {
  readonly path: string;
  readonly scale: number;
  readonly formats: readonly string[];
  readonly modules: number;
  /** Keys the file holds that were not applied (e.g. text-encoder keys for a model without them). */
  readonly ignoredKeys: number;
  /** Modules per model, e.g. { mmdit: 240, clipL: 72 }. */
  readonly modulesByModel: Readonly<Partial<Record<LoraComponent, number>>>;
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

/** A CLIP encoder's weights (and what its shapes cannot tell), for text-encoder LoRAs. */
export interface LoraTextEncoder { readonly store: WeightStore; readonly config?: Partial<CLIPTextConfig> }

/** Reads LoRA files once per (path, size, mtime) and turns sets of them into branch feeds. */
export class LoraManager {
  /** The MMDiT's targets. */
  readonly targets: LoraTargets;
  private readonly all: readonly LoraTargets[];
  private readonly files = new Map<string, { stamp: string; file: LoraFile }>();
  private current: readonly AppliedLora[] = [];
  private readonly used = new Map<LoraComponent, Set<string>>();

  /** `clip`: also apply `lora_te1_` / `text_encoder.` (CLIP-L) and `lora_te2_` / `text_encoder_2.` (CLIP-G) keys. */
  constructor(store: WeightStore, clip: { readonly clipL?: LoraTextEncoder; readonly clipG?: LoraTextEncoder } = {}) {
    this.targets = mmditLoraTargets(store);
    this.all = [
      this.targets,
      ...(clip.clipL ? [clipLoraTargets(clip.clipL.store, clip.clipL.config ?? {}, 'clipL')] : []),
      ...(clip.clipG ? [clipLoraTargets(clip.clipG.store, clip.clipG.config ?? {}, 'clipG')] : []),
    ];
  }

  /**
   * The weights of a model that need a branch: every weight any selected set has touched so far (it only grows,
   * so switching back and forth among LoRAs never needs a rebuild; with no LoRA yet, none: the plain graph).
   */
  slotsOf(component: LoraComponent): ReadonlySet<string> { return new Set(this.used.get(component) ?? []); }

  /** Every weight of a model that a LoRA could change (a graph with all branches, e.g. for parity checks). */
  allSlotsOf(component: LoraComponent): ReadonlySet<string> { return new Set(this.targetsOf(component)?.byName.keys() ?? []); }

  /** Whether the applied LoRAs change this model. */
  touches(component: LoraComponent): boolean { return this.current.some((a) => a.file.modules.some((m) => m.component === component)); }

  /** Reads and checks every file first: one bad file refuses the whole set and the current set stays. */
  select(specs: readonly LoraSpec[]): readonly LoraReport[] {
    const checked = checkLoraSpecs(specs);
    const next: AppliedLora[] = checked.map((s) => ({ file: this.read(s.path), scale: s.scale ?? 1 }));
    this.current = next;
    for (const { file } of next) {
      for (const m of file.modules) {
        let set = this.used.get(m.component);
        if (!set) this.used.set(m.component, set = new Set());
        set.add(m.target.weight);
      }
    }
    return this.report();
  }

  report(): readonly LoraReport[] {
    return this.current.map(({ file, scale }) => {
      const byModel: Partial<Record<LoraComponent, number>> = {};
      for (const m of file.modules) byModel[m.component] = (byModel[m.component] ?? 0) + 1;
      return { path: file.path, scale, formats: file.formats, modules: file.modules.length, ignoredKeys: file.ignoredKeys.length, modulesByModel: byModel };
    });
  }

  get applied(): readonly AppliedLora[] { return this.current; }

  /**
   * The inputs of a model's branches (default the MMDiT; `slots`: the branches its graph has, default
   * `slotsOf`) for the applied LoRAs. Throws if a LoRA changes a weight without a branch there.
   */
  feeds(component: LoraComponent = 'mmdit', slots: ReadonlySet<string> = this.slotsOf(component)): Record<string, Tensor<'float32'>> {
    const t = this.targetsOf(component);
    if (!t) return {};
    const missing = [...this.used.get(component) ?? []].filter((w) => !slots.has(w) && this.touchesWeight(component, w));
    if (missing.length) throw new SD3Error(`LoRA: ${COMPONENT_LABEL_OF[component]} was built without a branch for ${missing.slice(0, 3).join(', ')}; reload it`);
    return loraFeeds(t, slots, this.current);
  }

  private touchesWeight(component: LoraComponent, weight: string): boolean {
    return this.current.some((a) => a.file.modules.some((m) => m.component === component && m.target.weight === weight));
  }

  private targetsOf(component: LoraComponent): LoraTargets | undefined { return this.all.find((t) => t.component === component); }

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
    const read = readLoraFile(file, this.all);
    this.files.set(file, { stamp, file: read });
    return read;
  }
}
