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
import { SD3Error, describe } from '../core/errors.js';
import { SafetensorsFile } from '../core/safetensors.js';
import { type RenameTable, SafetensorsStore } from '../core/weights.js';
import { clipConfigFromHF, sd3SlotConfig } from '../models/clip.js';
import { describeMMDiT, inferMMDiTConfig } from '../models/mmdit-config.js';
import { t5ConfigFromHF } from '../models/t5.js';
import { DIFFUSERS_FOLDERS, diffusersCLIP, diffusersT5, diffusersTransformer, diffusersVAE } from '../formats/diffusers.js';
import { type ComponentName, SINGLE_FILE_PREFIX, componentsIn, prefixTable, standaloneEncoderKind } from '../formats/single-file.js';
import { hfHome, hubCacheDir } from '../hub/index.js';
import { openInt8Cache, openInt8CacheAsync } from '../quant/int8.js';
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

/**
 * Where the int8 cache of a component goes: next to its first weight file, except for files in the Hugging
 * Face hub cache (blobs named by their hash, which belong to huggingface_hub): those get
 * `$HF_HOME/sd3-ts/int8/<blob>.<component>.int8.safetensors`.
 */
export function int8CacheFile(firstWeightFile: string, component: string, env: NodeJS.ProcessEnv = process.env): string {
  const hub = path.resolve(hubCacheDir(env));
  const real = path.resolve(firstWeightFile);
  const base = `${path.basename(real).replace(/\.safetensors$/, '')}.${component}.int8.safetensors`;
  if (real.startsWith(hub + path.sep)) return path.join(hfHome(env), 'sd3-ts', 'int8', base);
  return path.join(path.dirname(real), base);
}

function int8For(stores: Partial<Record<string, SafetensorsStore | undefined>>): Pick<SD3Weights, 'quantize' | 'quantizeAsync'> {
  const storeOf = (model: string) => {
    const s = stores[model];
    if (!s) throw new SD3Error(`no ${model} weights to quantize`);
    return s;
  };
  const file = (s: SafetensorsStore, model: string) => ({ file: int8CacheFile(s.files[0]!.path, model) });
  return {
    quantize: (model, names) => {
      const s = storeOf(model);
      return openInt8Cache(s, names, model, file(s, model));
    },
    quantizeAsync: (model, names, opts = {}) => {
      const s = storeOf(model);
      return openInt8CacheAsync(s, names, model, { ...file(s, model), ...(opts.signal ? { signal: opts.signal } : {}) });
    },
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
  // Every file opened here is closed again when any check below fails (no descriptor leaks on errors).
  try {
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
        const name = c === 'clipL' ? 'clip_l.safetensors' : 'clip_g.safetensors';
        throw new SD3Error(`${file} has no ${c === 'clipL' ? 'CLIP-L' : 'CLIP-G'} text encoder and no ${name} was found beside it (or in text_encoders/); use sd3_medium_incl_clips.safetensors or put ${name} next to the checkpoint`);
      }
    }
    return {
      weights: {
        label: file,
        mmdit: parts.mmdit!, vae: parts.vae!, clipL: parts.clipL!, clipG: parts.clipG!,
        ...vaeGroupsOf(main),
        ...samplingOf(main),
        clipLConfig: sd3SlotConfig(parts.clipL!, 'clipL'),
        clipGConfig: sd3SlotConfig(parts.clipG!, 'clipG'),
        t5: opts.t5 ? requireT5(parts.t5, file) : undefined,
        shift: DEFAULT_SHIFT,
        ...int8For(parts),
        close: () => { for (const f of opened) f.close(); },
      },
      preprocessor: new SD3Preprocessor(CLIPTokenizer.default(), CLIPTokenizer.default(), opts.t5 ? () => t5TokenizerNear(dir) : undefined),
    };
  } catch (e) {
    for (const f of opened) f.close();
    throw e;
  }
}

/**
 * The VAE's GroupNorm groups recorded in the file's metadata ("vae.groups"), which SD3 Medium's files do not
 * carry (their VAE has the reference's 32); the built-in demo checkpoint records its 4.
 */
function vaeGroupsOf(file: SafetensorsFile): { vaeGroups?: number } {
  const raw = file.metadata['vae.groups'];
  if (raw === undefined) return {};
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new SD3Error(`${file.path}: metadata "vae.groups" must be a positive integer, got ${JSON.stringify(raw)}`);
  return { vaeGroups: n };
}

/**
 * Sampling defaults a checkpoint states for itself in its metadata ("sampling.guidance_scale",
 * "sampling.num_steps"): the built-in demo checkpoint records the guidance its scores were measured best at.
 * SD3's and SD3.5's files carry none (their defaults come from the variant, model-defaults.ts).
 */
function samplingOf(file: SafetensorsFile): { sampling?: { guidanceScale?: number; numSteps?: number } } {
  const g = file.metadata['sampling.guidance_scale'];
  const n = file.metadata['sampling.num_steps'];
  if (g === undefined && n === undefined) return {};
  const sampling: { guidanceScale?: number; numSteps?: number } = {};
  if (g !== undefined) {
    const v = Number(g);
    if (!Number.isFinite(v) || v < 0) throw new SD3Error(`${file.path}: metadata "sampling.guidance_scale" must be a number >= 0, got ${JSON.stringify(g)}`);
    sampling.guidanceScale = v;
  }
  if (n !== undefined) {
    const v = Number(n);
    if (!Number.isInteger(v) || v < 1) throw new SD3Error(`${file.path}: metadata "sampling.num_steps" must be a positive integer, got ${JSON.stringify(n)}`);
    sampling.numSteps = v;
  }
  return { sampling };
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

/** The largest JSON file read (model_index.json, config.json, shard indexes: a few kB to a few MB in practice). */
export const MAX_JSON_BYTES = 64 * 1024 * 1024;

/** A JSON document that must be an object (a config, an index). */
export function parseJsonObject(text: string, file: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new SD3Error(`cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new SD3Error(`cannot read ${file}: expected a JSON object, got ${Array.isArray(v) ? 'an array' : JSON.stringify(v)?.slice(0, 40)}`);
  return v as Record<string, unknown>;
}

function readJson(file: string): Record<string, unknown> {
  let text: string;
  try {
    const size = fs.statSync(file).size;
    if (size > MAX_JSON_BYTES) throw new SD3Error(`${file} is ${size} bytes; a JSON file may be at most ${MAX_JSON_BYTES} (MAX_JSON_BYTES)`);
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if (e instanceof SD3Error) throw e;
    throw new SD3Error(`cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
  return parseJsonObject(text, file);
}

/**
 * The shard file names a sharded-weights index (`*.safetensors.index.json`) lists: its `weight_map` must map
 * tensor names to plain `.safetensors` file names in the index's own folder. A name with a folder part,
 * `..`, or an absolute path is refused (an index from the internet must not open files elsewhere).
 */
export function shardFileNames(index: Readonly<Record<string, unknown>>, indexFile: string): string[] {
  const map = index.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new SD3Error(`${indexFile}: weight_map must be an object of tensor name -> file name, got ${describe(map)}`);
  const names = new Set<string>();
  for (const [tensor, f] of Object.entries(map)) {
    if (typeof f !== 'string') throw new SD3Error(`${indexFile}: weight_map["${tensor}"] must be a file name, got ${describe(f)}`);
    if (f !== path.posix.basename(f) || f !== path.win32.basename(f) || f === '..' || f === '.' || !f.endsWith('.safetensors') || f.includes('\0')) {
      throw new SD3Error(`${indexFile}: weight_map["${tensor}"] names ${JSON.stringify(f)}; shards must be .safetensors files in the index's own folder`);
    }
    names.add(f);
  }
  if (names.size === 0) throw new SD3Error(`${indexFile}: weight_map lists no shard`);
  return [...names];
}

/** The flow-matching shift of a diffusers scheduler config (default 3.0); must be a positive finite number. */
export function schedulerShift(cfg: Readonly<Record<string, unknown>>, where: string): number {
  const v = cfg.shift ?? DEFAULT_SHIFT;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new SD3Error(`${where}: shift must be a positive number, got ${describe(v)}`);
  return v;
}

/** Weight files of a diffusers component folder (single file or shards listed by an index). */
function componentFiles(dir: string): SafetensorsFile[] {
  if (!fs.existsSync(dir)) throw new SD3Error(`diffusers folder is missing ${dir}`);
  const files = fs.readdirSync(dir);
  const index = files.find((f) => /\.safetensors\.index(\.[\w-]+)?\.json$/.test(f) && !/fp32/.test(f));
  if (index) {
    const names = shardFileNames(readJson(path.join(dir, index)), path.join(dir, index));
    const opened: SafetensorsFile[] = [];
    try {
      for (const f of names) opened.push(open(path.join(dir, f)));
    } catch (e) {
      for (const f of opened) f.close();
      throw e;
    }
    return opened;
  }
  const weights = files.filter((f) => f.endsWith('.safetensors'));
  const preferred = weights.find((f) => /\.fp16\.safetensors$/.test(f)) ?? weights.find((f) => !/\.(fp32|bf16|fp16)\.safetensors$/.test(f)) ?? weights[0];
  if (!preferred) throw new SD3Error(`${dir}: no .safetensors weights`);
  return [open(path.join(dir, preferred))];
}

/** Whether model_index.json declares a component absent (`"name": [null, null]`, diffusers' way of writing it). */
export function declaredAbsent(modelIndex: Readonly<Record<string, unknown>>, component: string): boolean {
  const entry = modelIndex[component];
  return Array.isArray(entry) && entry.length > 0 && entry.every((v) => v === null);
}

/**
 * The T5 tokenizer of a diffusers folder (`tokenizer_3/`). None when model_index.json declares it absent
 * (`"tokenizer_3": [null, null]`, diffusers' way of writing a missing component) and the folder is not there:
 * the T5 token ids must then be supplied by the caller.
 */
function diffusersT5Tokenizer(dir: string): T5Tokenizer | undefined {
  const folder = path.join(dir, DIFFUSERS_FOLDERS.tokenizerT5);
  if (declaredAbsent(readJson(path.join(dir, 'model_index.json')), DIFFUSERS_FOLDERS.tokenizerT5) && !fs.existsSync(folder)) return undefined;
  return T5Tokenizer.fromFolder(folder);
}

/**
 * diffusers builds the transformer from transformer/config.json and loads the weights strictly, so the two must
 * agree; we read the variant from the keys and refuse a config that says otherwise (naming the config key).
 */
function checkTransformerConfig(store: SafetensorsStore, file: string): void {
  if (!fs.existsSync(file)) return;
  const cfg = readJson(file);
  const c = inferMMDiTConfig(store);
  const mismatch = (key: string, said: unknown, found: unknown) =>
    new SD3Error(`${file}: "${key}" is ${JSON.stringify(said)} but the weights are a ${describeMMDiT(c)} (${key} ${JSON.stringify(found)})`);
  if (cfg.num_layers !== undefined && cfg.num_layers !== c.depth) throw mismatch('num_layers', cfg.num_layers, c.depth);
  if (cfg.pos_embed_max_size !== undefined && cfg.pos_embed_max_size !== c.posEmbedMaxSize) throw mismatch('pos_embed_max_size', cfg.pos_embed_max_size, c.posEmbedMaxSize);
  const qk = cfg.qk_norm ?? null;
  if (qk !== (c.qkNorm === 'rms' ? 'rms_norm' : null)) throw mismatch('qk_norm', qk, c.qkNorm === 'rms' ? 'rms_norm' : null);
  const dual = Array.isArray(cfg.dual_attention_layers) ? [...(cfg.dual_attention_layers as number[])].sort((a, b) => a - b) : [];
  if (dual.join() !== c.dualAttentionLayers.join()) throw mismatch('dual_attention_layers', cfg.dual_attention_layers ?? [], c.dualAttentionLayers);
}

/** The diffusers folder layout (`stabilityai/stable-diffusion-3-medium-diffusers`, and the SD3.5 repositories'). */
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
    checkTransformerConfig(mmdit, path.join(sub('mmdit'), 'config.json'));
    const vae = comp('vae', diffusersVAE);
    const clipL = comp('clipL', diffusersCLIP);
    const clipG = comp('clipG', diffusersCLIP);
    const t5 = opts.t5 ? comp('t5', diffusersT5) : undefined;
    const cfg = (k: keyof typeof DIFFUSERS_FOLDERS) => {
      const f = path.join(sub(k), k === 'scheduler' ? 'scheduler_config.json' : 'config.json');
      return fs.existsSync(f) ? readJson(f) : {};
    };
    const shift = schedulerShift(cfg('scheduler'), sub('scheduler'));
    const tok = (k: 'tokenizerL' | 'tokenizerG') => (fs.existsSync(path.join(sub(k), 'vocab.json')) ? CLIPTokenizer.fromFolder(sub(k)) : CLIPTokenizer.default());
    return {
      weights: {
        label: dir, mmdit, vae, clipL, clipG, t5, shift,
        clipLConfig: clipConfigFromHF(cfg('clipL')),
        clipGConfig: clipConfigFromHF(cfg('clipG')),
        ...(opts.t5 ? { t5Config: t5ConfigFromHF(cfg('t5')) } : {}),
        ...int8For({ mmdit, t5, clipL, clipG }),
        close: () => { for (const f of opened) f.close(); },
      },
      preprocessor: new SD3Preprocessor(tok('tokenizerL'), tok('tokenizerG'), opts.t5 ? diffusersT5Tokenizer(dir) : undefined),
    };
  } catch (e) {
    for (const f of opened) f.close();
    throw e;
  }
}
