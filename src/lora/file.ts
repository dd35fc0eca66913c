/**
 * Reading a LoRA file: the format of each key from its prefix, the rename table of that format, the alpha as
 * stored, and every check the merge rule needs, before anything is applied. A file with any bad module is refused
 * whole (SD3Error naming the keys); keys of other components (text-encoder LoRAs) are counted and reported.
 */
import * as path from 'node:path';
import { SD3Error } from '../core/errors.js';
import { SafetensorsFile } from '../core/safetensors.js';
import { numel, toFloat32 } from '../core/tensor.js';
import { type FormatTable, type LoraFormat, type ModuleTarget, TEXT_ENCODER_PREFIXES, formatTables } from './formats.js';
import { COMPONENT_LABEL, type LoraComponent, type LoraTargets } from './targets.js';

/** One low-rank module of a file, checked against its target: delta = s * reshape(up @ down). */
export interface LoraModule {
  /** The file's module key, e.g. `lora_unet_joint_blocks_0_x_block_attn_qkv`. */
  readonly key: string;
  readonly format: LoraFormat;
  /** The model it changes. */
  readonly component: LoraComponent;
  readonly target: ModuleTarget;
  /** r, and the two factors row-major: down [r, k] (k = the target's row size), up [n, r] (n = target rows). */
  readonly lowRank?: { readonly rank: number; readonly down: Float32Array; readonly up: Float32Array };
  /** s: alpha / r (stored `.alpha`, or diffusers' lora_adapter_metadata), else 1. */
  readonly alphaScale: number;
  /** ComfyUI `.diff_b`: added to the target's bias times the user scale. */
  readonly diffBias?: Float32Array;
}

export interface LoraFile {
  readonly path: string;
  /** Formats whose keys the file holds (one in practice). */
  readonly formats: readonly LoraFormat[];
  readonly modules: readonly LoraModule[];
  /** Keys not applied (text-encoder LoRAs, unrelated extras), reported to the user. */
  readonly ignoredKeys: readonly string[];
}

const SUFFIX = /^(.*)\.(lora_down\.weight|lora_up\.weight|lora_A\.weight|lora_B\.weight|alpha|diff_b)$/;
const DOWN = new Set(['lora_down.weight', 'lora_A.weight']);
const UP = new Set(['lora_up.weight', 'lora_B.weight']);
const LISTED = 6;

function listKeys(keys: readonly string[]): string {
  const shown = keys.slice(0, LISTED).map((k) => `"${k}"`).join(', ');
  return keys.length > LISTED ? `${shown} and ${keys.length - LISTED} more` : shown;
}

/** PEFT's LoraConfig as diffusers stores it in `__metadata__.lora_adapter_metadata` (keys prefixed `transformer.`). */
interface PeftConfig { alpha: number; alphaPattern: Record<string, number>; rslora: boolean }

function peftConfig(file: string, metadata: Readonly<Record<string, string>>, owner: string): PeftConfig | undefined {
  const raw = metadata.lora_adapter_metadata;
  if (raw === undefined) return undefined;
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(raw) as Record<string, unknown>;
  } catch (e) {
    throw new SD3Error(`LoRA ${file}: __metadata__.lora_adapter_metadata is not JSON: ${(e as Error).message}`);
  }
  // Keys are prefixed by the model they configure (`transformer.`, `text_encoder.`, `text_encoder_2.`).
  const get = (k: string): unknown => json[`${owner}.${k}`] ?? (owner === 'transformer' ? json[k] : undefined);
  if (get('use_dora') === true) throw new SD3Error(`LoRA ${file}: DoRA adapters (use_dora in lora_adapter_metadata) are not supported`);
  const alpha = get('lora_alpha');
  if (alpha === undefined || alpha === null) return undefined;
  if (typeof alpha !== 'number' || !Number.isFinite(alpha)) throw new SD3Error(`LoRA ${file}: lora_adapter_metadata lora_alpha must be a number, got ${JSON.stringify(alpha)}`);
  const pattern = get('alpha_pattern');
  return { alpha, alphaPattern: pattern && typeof pattern === 'object' ? pattern as Record<string, number> : {}, rslora: get('use_rslora') === true };
}

/** PEFT's alpha for a module: an alpha_pattern entry whose key ends the module name, else lora_alpha. */
function peftAlpha(config: PeftConfig, moduleKey: string): number {
  const name = moduleKey.slice(moduleKey.indexOf('.') + 1);
  for (const [pattern, a] of Object.entries(config.alphaPattern)) {
    if (name === pattern || name.endsWith(`.${pattern}`)) return a;
  }
  return config.alpha;
}

interface Parts { down?: string; up?: string; alpha?: string; diffB?: string }

/**
 * Reads and checks a LoRA file against the targets of the models it may change (the MMDiT, and the CLIP
 * encoders when given). Throws an SD3Error naming the offending keys.
 */
export function readLoraFile(file: string, targets: LoraTargets | readonly LoraTargets[]): LoraFile {
  const f = SafetensorsFile.open(file);
  try {
    return readOpen(f, 'byName' in targets ? [targets as LoraTargets] : targets as readonly LoraTargets[]);
  } finally {
    f.close();
  }
}

function readOpen(f: SafetensorsFile, all: readonly LoraTargets[]): LoraFile {
  const label = path.basename(f.path);
  const tables = all.flatMap(formatTables);
  const targetsOf = new Map(all.map((t) => [t.component, t]));
  const models = all.map((t) => COMPONENT_LABEL[t.component]).join(' or ');
  const ignored: string[] = [];
  const unmatched: string[] = [];
  const unsupported: string[] = [];
  const modules = new Map<string, { table: FormatTable; target: ModuleTarget; parts: Parts }>();
  for (const key of f.keys()) {
    const table = tables.find((t) => key.startsWith(t.prefix));
    if (!table) {
      if (TEXT_ENCODER_PREFIXES.some((p) => key.startsWith(p))) ignored.push(key);
      else unmatched.push(key);
      continue;
    }
    const m = SUFFIX.exec(key);
    if (!m) { unsupported.push(key); continue; }
    const [, moduleKey, suffix] = m as unknown as [string, string, string];
    const target = table.lookup.get(moduleKey);
    if (!target) { if (!unmatched.includes(moduleKey)) unmatched.push(moduleKey); continue; }
    let entry = modules.get(moduleKey);
    if (!entry) modules.set(moduleKey, entry = { table, target, parts: {} });
    const slot: keyof Parts = DOWN.has(suffix) ? 'down' : UP.has(suffix) ? 'up' : suffix === 'alpha' ? 'alpha' : 'diffB';
    if (entry.parts[slot]) throw new SD3Error(`LoRA ${label} refused: module "${moduleKey}" has two ${slot} tensors ("${entry.parts[slot]}", "${key}")`);
    entry.parts[slot] = key;
  }
  if (unsupported.length) {
    throw new SD3Error(`LoRA ${label} refused: unsupported key(s) ${listKeys(unsupported)} (only lora_down/lora_up, lora_A/lora_B, alpha and diff_b are understood; LyCORIS, DoRA and full-weight diffs are not supported)`);
  }
  if (modules.size === 0) {
    const keys = [...unmatched, ...ignored];
    const what = ignored.length && !unmatched.length ? ' (only text-encoder keys, which are not applied)' : '';
    throw new SD3Error(`LoRA ${label} refused: its keys match no weight of this ${models}${what}: ${listKeys(keys)}`);
  }
  // A key that names no weight in an otherwise matching file means a different model or a damaged file.
  const badModel = unmatched.filter((k) => tables.some((t) => k.startsWith(t.prefix)));
  if (badModel.length) throw new SD3Error(`LoRA ${label} refused: module(s) ${listKeys(badModel)} name no weight of this ${models} (a LoRA for another model?)`);
  ignored.push(...unmatched);

  const peftOf = new Map<string, PeftConfig | undefined>();
  const peftFor = (prefix: string) => {
    const owner = prefix.slice(0, -1);
    if (!peftOf.has(owner)) peftOf.set(owner, peftConfig(label, f.metadata, owner));
    return peftOf.get(owner);
  };
  const problems: string[] = [];
  const out: LoraModule[] = [];
  for (const [moduleKey, { table, target, parts }] of modules) {
    const t = targetsOf.get(table.component)!.byName.get(target.weight)!;
    const rowsWanted = target.rows ? target.rows[1] - target.rows[0] : t.shape[0]!;
    const rowSize = numel(t.shape.slice(1));
    let lowRank: LoraModule['lowRank'];
    if (parts.down || parts.up) {
      if (!parts.down || !parts.up) { problems.push(`"${moduleKey}": ${parts.down ? 'lora_up / lora_B' : 'lora_down / lora_A'} is missing`); continue; }
      const a = f.info(parts.down).shape;
      const b = f.info(parts.up).shape;
      const rank = a[0] ?? 0;
      const k = numel(a.slice(1));
      const n = b[0] ?? 0;
      const bCols = numel(b.slice(1));
      if (a.length < 2 || b.length < 2 || rank < 1) { problems.push(`"${moduleKey}": lora_down [${a.join(', ')}] / lora_up [${b.join(', ')}] are not matrices`); continue; }
      if (bCols !== rank) { problems.push(`"${moduleKey}": ranks disagree: lora_down has ${rank} rows but lora_up [${b.join(', ')}] has ${bCols} columns`); continue; }
      if (n !== rowsWanted || k !== rowSize) {
        const where = target.rows ? `rows [${target.rows[0]}, ${target.rows[1]}) of ${target.weight} [${t.shape.join(', ')}]` : `${target.weight} [${t.shape.join(', ')}]`;
        problems.push(`"${moduleKey}": up @ down is ${n}x${k} (lora_down expects ${k} input features) but the target ${where} is ${rowsWanted}x${rowSize}`);
        continue;
      }
      const down = toFloat32(f.read(parts.down)).data;
      const up = toFloat32(f.read(parts.up)).data;
      if (!down.every(Number.isFinite) || !up.every(Number.isFinite)) { problems.push(`"${moduleKey}": non-finite values`); continue; }
      lowRank = { rank, down, up };
    }
    let alphaScale = 1;
    if (parts.alpha) {
      const a = f.read(parts.alpha);
      if (numel(a.shape) !== 1) { problems.push(`"${parts.alpha}": alpha must be one number, got shape [${a.shape.join(', ')}]`); continue; }
      // The stored value in its own dtype (F16 0.7 is 0.7001953125), never the ss_network_alpha string.
      const alpha = toFloat32(a).data[0]!;
      if (!Number.isFinite(alpha)) { problems.push(`"${parts.alpha}": alpha is ${alpha}`); continue; }
      alphaScale = lowRank ? alpha / lowRank.rank : 1;
    } else if (table.format === 'diffusers' && lowRank && peftFor(table.prefix)) {
      const peft = peftFor(table.prefix)!;
      const alpha = peftAlpha(peft, moduleKey);
      alphaScale = peft.rslora ? alpha / Math.sqrt(lowRank.rank) : alpha / lowRank.rank;
    }
    let diffBias: Float32Array | undefined;
    if (parts.diffB) {
      const shape = f.info(parts.diffB).shape;
      if (!t.bias) { problems.push(`"${parts.diffB}": ${target.weight} has no bias`); continue; }
      if (numel(shape) !== numel(t.bias.shape) || target.rows) { problems.push(`"${parts.diffB}": shape [${shape.join(', ')}] does not fit ${t.bias.name} [${t.bias.shape.join(', ')}]`); continue; }
      diffBias = toFloat32(f.read(parts.diffB)).data;
    }
    if (!lowRank && !diffBias) { problems.push(`"${moduleKey}": only an alpha, no lora_down / lora_up`); continue; }
    out.push({ key: moduleKey, format: table.format, component: table.component, target, alphaScale, ...(lowRank ? { lowRank } : {}), ...(diffBias ? { diffBias } : {}) });
  }
  if (problems.length) {
    const shown = problems.slice(0, LISTED).join('; ');
    throw new SD3Error(`LoRA ${label} refused (nothing applied): ${shown}${problems.length > LISTED ? `; and ${problems.length - LISTED} more` : ''}`);
  }
  return { path: f.path, formats: [...new Set(out.map((m) => m.format))], modules: out, ignoredKeys: ignored };
}
