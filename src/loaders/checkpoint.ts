/**
 * Opening SD3 weights as users have them:
 *  - a single-file checkpoint (`sd3_medium_incl_clips*.safetensors`), with or without its text encoders
 *    (separate `clip_l.safetensors`, `clip_g.safetensors`, `t5xxl*.safetensors` are looked for beside it or
 *    in a `text_encoders/` folder next to it);
 *  - a diffusers folder (`model_index.json`, transformer, vae, text_encoder, tokenizer and scheduler folders);
 *  - a folder holding one single-file checkpoint and/or component files.
 * Files are opened through their real paths (the Hugging Face cache links snapshot names to blobs, and the
 * runtime refuses external data behind links).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SD3Error } from '../core/errors.js';
import { SafetensorsFile } from '../core/safetensors.js';
import { type RenameTable, SafetensorsStore } from '../core/weights.js';
import { clipConfigFromHF, sd3SlotConfig } from '../models/clip.js';
import { t5ConfigFromHF } from '../models/t5.js';
import { DIFFUSERS_FOLDERS, diffusersCLIP, diffusersT5, diffusersTransformer, diffusersVAE } from '../formats/diffusers.js';
import { type ComponentName, SINGLE_FILE_PREFIX, componentsIn, prefixTable, standaloneEncoderKind } from '../formats/single-file.js';
import { openInt8Cache } from '../quant/int8.js';
import { DEFAULT_SHIFT } from '../sampler/flow-match.js';
import { CLIPTokenizer } from '../tokenizers/clip-bpe.js';
import { T5Tokenizer } from '../tokenizers/t5-unigram.js';
import type { SD3Weights } from '../pipelines/backbone.js';
import { SD3Preprocessor } from '../pipelines/preprocessor.js';

export interface OpenOptions {
  /** Use T5-XXL when the weights include it (default false: 77 zero rows, as KerasHub). */
  readonly t5?: boolean;
}

export interface OpenedCheckpoint {
  readonly weights: SD3Weights;
  readonly preprocessor: SD3Preprocessor;
}

function open(file: string): SafetensorsFile {
  return SafetensorsFile.open(fs.realpathSync(file));
}

function store(files: SafetensorsFile[], table: RenameTable, label: string): SafetensorsStore {
  return new SafetensorsStore(files, table, label);
}

function int8For(stores: Partial<Record<string, SafetensorsStore | undefined>>) {
  return (model: 'mmdit' | 't5' | 'clipL' | 'clipG', names: readonly string[]) => {
    const s = stores[model];
    if (!s) throw new SD3Error(`no ${model} weights to quantize`);
    return openInt8Cache(s, names, model);
  };
}

/** Opens a checkpoint file or folder. */
export function openCheckpoint(target: string, opts: OpenOptions = {}): OpenedCheckpoint {
  if (!fs.existsSync(target)) throw new SD3Error(`no checkpoint at ${target}: expected a .safetensors file or a folder`);
  if (fs.statSync(target).isDirectory()) {
    if (fs.existsSync(path.join(target, 'model_index.json'))) return openDiffusers(target, opts);
    return openFolder(target, opts);
  }
  if (!target.endsWith('.safetensors')) throw new SD3Error(`${target}: expected a .safetensors checkpoint (other formats such as .ckpt/.pt are not read, for safety)`);
  return openSingleFile(target, opts);
}

function safetensorsIn(dir: string): string[] {
  return fs.readdirSync(dir).filter((f) => f.endsWith('.safetensors') && !f.endsWith('.int8.safetensors') && !f.startsWith('.')).map((f) => path.join(dir, f));
}

/** A single file, completed by standalone encoder files next to it. */
function openSingleFile(file: string, opts: OpenOptions): OpenedCheckpoint {
  const main = open(file);
  const has = new Set(componentsIn(main));
  if (!has.has('mmdit') || !has.has('vae')) {
    main.close();
    throw new SD3Error(`${file}: not an SD3 single-file checkpoint (needs keys under "${SINGLE_FILE_PREFIX.mmdit}" and "${SINGLE_FILE_PREFIX.vae}")`);
  }
  const dir = path.dirname(file);
  const extra = [dir, path.join(dir, 'text_encoders'), path.join(dir, 'clip')].filter((d) => fs.existsSync(d) && fs.statSync(d).isDirectory());
  const parts: Partial<Record<ComponentName, SafetensorsStore>> = {};
  for (const c of ['mmdit', 'vae', 'clipL', 'clipG', 't5'] as const) {
    if (has.has(c)) parts[c] = store([main], prefixTable(c), `${file} (${c})`);
  }
  const opened: SafetensorsFile[] = [main];
  for (const d of extra) {
    for (const f of safetensorsIn(d)) {
      if (path.resolve(f) === path.resolve(file)) continue;
      const kindGuess = /clip_l/i.test(path.basename(f)) ? 'clipL' : /clip_g/i.test(path.basename(f)) ? 'clipG' : /t5/i.test(path.basename(f)) ? 't5' : undefined;
      if (!kindGuess || parts[kindGuess] || (kindGuess === 't5' && !opts.t5)) continue;
      const sf = open(f);
      const kind = standaloneEncoderKind(sf);
      if (kind !== kindGuess) { sf.close(); continue; }
      opened.push(sf);
      parts[kind] = store([sf], prefixTable(kind, ''), f);
    }
  }
  for (const c of ['clipL', 'clipG'] as const) {
    if (!parts[c]) {
      for (const f of opened) f.close();
      const name = c === 'clipL' ? 'clip_l.safetensors' : 'clip_g.safetensors';
      throw new SD3Error(`${file} has no ${c === 'clipL' ? 'CLIP-L' : 'CLIP-G'} text encoder and no ${name} was found beside it (or in text_encoders/); use sd3_medium_incl_clips.safetensors or put ${name} next to the checkpoint`);
    }
  }
  return {
    weights: {
      label: file,
      mmdit: parts.mmdit!, vae: parts.vae!, clipL: parts.clipL!, clipG: parts.clipG!,
      ...vaeGroupsOf(main),
      clipLConfig: sd3SlotConfig(parts.clipL!, 'clipL'),
      clipGConfig: sd3SlotConfig(parts.clipG!, 'clipG'),
      t5: opts.t5 ? requireT5(parts.t5, file) : undefined,
      shift: DEFAULT_SHIFT,
      quantize: int8For(parts),
      close: () => { for (const f of opened) f.close(); },
    },
    preprocessor: new SD3Preprocessor(CLIPTokenizer.default(), CLIPTokenizer.default(), opts.t5 ? t5TokenizerNear(dir) : undefined),
  };
}

/**
 * The VAE's GroupNorm groups recorded in the file's metadata ("vae.groups"), which SD3 Medium's files do not
 * carry (their VAE has the reference's 32); the built-in demo checkpoint records its 8.
 */
function vaeGroupsOf(file: SafetensorsFile): { vaeGroups?: number } {
  const raw = file.metadata['vae.groups'];
  if (raw === undefined) return {};
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new SD3Error(`${file.path}: metadata "vae.groups" must be a positive integer, got ${JSON.stringify(raw)}`);
  return { vaeGroups: n };
}

function requireT5(s: SafetensorsStore | undefined, where: string): SafetensorsStore {
  if (!s) throw new SD3Error(`${where}: T5-XXL was asked for but no T5 weights were found (use sd3_medium_incl_clips_t5xxlfp16.safetensors or put t5xxl_fp16.safetensors next to it)`);
  return s;
}

function t5TokenizerNear(dir: string): T5Tokenizer {
  for (const d of [dir, path.join(dir, 'tokenizer_3'), path.join(dir, 't5'), path.join(dir, 'text_encoders')]) {
    if (fs.existsSync(path.join(d, 'spiece.model')) || fs.existsSync(path.join(d, 'tokenizer.json'))) return T5Tokenizer.fromFolder(d);
  }
  throw new SD3Error(`T5 needs its tokenizer (spiece.model or tokenizer.json) next to the checkpoint or in tokenizer_3/; none found in ${dir}`);
}

/** A folder: one single-file checkpoint inside, or component files. */
function openFolder(dir: string, opts: OpenOptions): OpenedCheckpoint {
  const candidates = safetensorsIn(dir).filter((f) => {
    const sf = open(f);
    try { return sf.keys().some((k) => k.startsWith(SINGLE_FILE_PREFIX.mmdit)); } finally { sf.close(); }
  });
  if (candidates.length === 0) throw new SD3Error(`${dir}: no SD3 checkpoint found (expected model_index.json for the diffusers layout, or a .safetensors file with "${SINGLE_FILE_PREFIX.mmdit}" keys)`);
  if (candidates.length > 1) throw new SD3Error(`${dir}: several SD3 checkpoints (${candidates.map((f) => path.basename(f)).join(', ')}); name one file`);
  return openSingleFile(candidates[0]!, opts);
}

function readJson(file: string): Record<string, unknown> {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new SD3Error(`cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
}

/** Weight files of a diffusers component folder (single file or shards listed by an index). */
function componentFiles(dir: string): SafetensorsFile[] {
  if (!fs.existsSync(dir)) throw new SD3Error(`diffusers folder is missing ${dir}`);
  const files = fs.readdirSync(dir);
  const index = files.find((f) => /\.safetensors\.index(\.[\w-]+)?\.json$/.test(f) && !/fp32/.test(f));
  if (index) {
    const map = (readJson(path.join(dir, index)).weight_map ?? {}) as Record<string, string>;
    return [...new Set(Object.values(map))].map((f) => open(path.join(dir, f)));
  }
  const weights = files.filter((f) => f.endsWith('.safetensors'));
  const preferred = weights.find((f) => /\.fp16\.safetensors$/.test(f)) ?? weights.find((f) => !/\.(fp32|bf16|fp16)\.safetensors$/.test(f)) ?? weights[0];
  if (!preferred) throw new SD3Error(`${dir}: no .safetensors weights`);
  return [open(path.join(dir, preferred))];
}

/**
 * The T5 tokenizer of a diffusers folder (`tokenizer_3/`). None when model_index.json declares it absent
 * (`"tokenizer_3": [null, null]`, diffusers' way of writing a missing component) and the folder is not there:
 * the T5 token ids must then be supplied by the caller.
 */
function diffusersT5Tokenizer(dir: string): T5Tokenizer | undefined {
  const folder = path.join(dir, DIFFUSERS_FOLDERS.tokenizerT5);
  const entry = readJson(path.join(dir, 'model_index.json'))[DIFFUSERS_FOLDERS.tokenizerT5];
  const declaredAbsent = Array.isArray(entry) && entry.length > 0 && entry.every((v) => v === null);
  if (declaredAbsent && !fs.existsSync(folder)) return undefined;
  return T5Tokenizer.fromFolder(folder);
}

/** The diffusers folder layout (`stabilityai/stable-diffusion-3-medium-diffusers`). */
export function openDiffusers(dir: string, opts: OpenOptions = {}): OpenedCheckpoint {
  const sub = (k: keyof typeof DIFFUSERS_FOLDERS) => path.join(dir, DIFFUSERS_FOLDERS[k]);
  const opened: SafetensorsFile[] = [];
  const comp = (k: 'mmdit' | 'vae' | 'clipL' | 'clipG' | 't5', table: RenameTable) => {
    const files = componentFiles(sub(k));
    opened.push(...files);
    return store(files, table, sub(k));
  };
  try {
    const mmdit = comp('mmdit', diffusersTransformer);
    const vae = comp('vae', diffusersVAE);
    const clipL = comp('clipL', diffusersCLIP);
    const clipG = comp('clipG', diffusersCLIP);
    const t5 = opts.t5 ? comp('t5', diffusersT5) : undefined;
    const cfg = (k: keyof typeof DIFFUSERS_FOLDERS) => {
      const f = path.join(sub(k), k === 'scheduler' ? 'scheduler_config.json' : 'config.json');
      return fs.existsSync(f) ? readJson(f) : {};
    };
    const shift = Number(cfg('scheduler').shift ?? DEFAULT_SHIFT);
    if (!(shift > 0)) throw new SD3Error(`${sub('scheduler')}: shift must be a positive number`);
    const tok = (k: 'tokenizerL' | 'tokenizerG') => (fs.existsSync(path.join(sub(k), 'vocab.json')) ? CLIPTokenizer.fromFolder(sub(k)) : CLIPTokenizer.default());
    return {
      weights: {
        label: dir, mmdit, vae, clipL, clipG, t5, shift,
        clipLConfig: clipConfigFromHF(cfg('clipL')),
        clipGConfig: clipConfigFromHF(cfg('clipG')),
        ...(opts.t5 ? { t5Config: t5ConfigFromHF(cfg('t5')) } : {}),
        quantize: int8For({ mmdit, t5, clipL, clipG }),
        close: () => { for (const f of opened) f.close(); },
      },
      preprocessor: new SD3Preprocessor(tok('tokenizerL'), tok('tokenizerG'), opts.t5 ? diffusersT5Tokenizer(dir) : undefined),
    };
  } catch (e) {
    for (const f of opened) f.close();
    throw e;
  }
}
