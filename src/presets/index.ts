/**
 * fromPreset: a built-in preset name, a local checkpoint (file or folder), or a Hugging Face hub id.
 *
 *   stable_diffusion_3_medium          SD3 Medium from the local Hugging Face cache (download it first: see README)
 *   stable_diffusion_3.5_medium        SD3.5 Medium, Large and Large Turbo, the same way (their repositories'
 *   stable_diffusion_3.5_large         diffusers folders, or, when only those are cached, the single file with
 *   stable_diffusion_3.5_large_turbo   text_encoders/ beside it)
 *   demo                               a tiny SD3-structured model trained on drawn shapes, shipped in the package (64x64)
 *   tiny-random                        tiny random weights made in memory (tests)
 *   ./sd3_medium_incl_clips.safetensors, ./folder, stabilityai/stable-diffusion-3-medium-diffusers, org/repo/file.safetensors
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SD3Error } from '../core/errors.js';
import { SafetensorsFile } from '../core/safetensors.js';
import { componentsIn } from '../formats/single-file.js';
import { type DownloadProgress, downloadSD3 } from '../hub/index.js';
import { openCheckpoint } from '../loaders/checkpoint.js';
import { type BackboneOptions, SD3Backbone } from '../pipelines/backbone.js';
import { type SamplingDefaults, samplingDefaults } from '../pipelines/model-defaults.js';
import type { SD3Preprocessor } from '../pipelines/preprocessor.js';
import type { ImageShape } from '../pipelines/task.js';
import { MODEL_PRESETS, type ModelPresetName, SD35_TEXT_ENCODERS } from './models.js';
import { checkTextOptions } from '../pipelines/preprocessor.js';
import type { TextOptions } from '../pipelines/text-windows.js';
import { DEMO_SIZE, demoCheckpointPath } from './demo.js';
import { tinyRandomWeights } from './tiny-random.js';

export const SD3_MEDIUM_DIFFUSERS_REPO = MODEL_PRESETS.stable_diffusion_3_medium.repo;
export const PRESETS = [...Object.keys(MODEL_PRESETS) as ModelPresetName[], 'demo', 'tiny-random'] as const;
export { MODEL_PRESETS } from './models.js';

export interface PresetOptions extends BackboneOptions, TextOptions {
  /** Output size: { width, height } or KerasHub's [height, width, 3]. Default 1024x1024 (64x64 for demo, 256x256 for tiny-random). */
  readonly imageShape?: ImageShape | readonly [number, number, number?];
  /** Use T5-XXL when available (default false, as KerasHub: 77 zero rows instead); see README "Memory". */
  readonly t5?: boolean;
  /** Hub downloads: revision, progress, cancellation. */
  readonly revision?: string;
  readonly onProgress?: (p: DownloadProgress) => void;
  readonly signal?: AbortSignal;
}

export interface LoadedPreset {
  readonly backbone: SD3Backbone;
  readonly preprocessor: SD3Preprocessor;
  readonly imageShape: ImageShape;
}

/** The largest side SD3 Medium's MMDiT position grid covers (pos_embed_max_size 192 x 16 pixels per cell). */
const SD3_MEDIUM_MAX_SIDE = 3072;

/**
 * The one default-size rule (generate, serve and fromPreset): 1024x1024 (256x256 for tiny-random); with an
 * input image, the image's size rounded to multiples of 16 and, when a side exceeds the model's position grid
 * (3072 for SD3 Medium, 1024 for tiny-random), scaled down with its aspect ratio kept so that it fits. It needs
 * no loaded model, so a size that cannot work is known before any download.
 */
export function defaultImageShape(preset: string, image?: { readonly width: number; readonly height: number }): ImageShape {
  const tiny = preset === 'tiny-random';
  if (preset === 'demo' && !image) return { width: DEMO_SIZE, height: DEMO_SIZE };
  if (!image) return tiny ? { width: 256, height: 256 } : { width: 1024, height: 1024 };
  const max = preset === 'demo' ? DEMO_SIZE : tiny ? 1024 : SD3_MEDIUM_MAX_SIDE;
  const scale = Math.min(1, max / image.width, max / image.height);
  const side = (n: number) => Math.min(max, Math.max(16, Math.round((n * scale) / 16) * 16));
  return { width: side(image.width), height: side(image.height) };
}

/**
 * A preset's sampling defaults (steps, guidance) without loading it, for a server front end whose workers hold
 * the model: the built-in names from their tables, the demo and a local file from the file's header (keys and
 * metadata). Undefined for a hub id or folder not read here (the caller's generic defaults apply).
 */
export function presetSamplingDefaults(preset: string): SamplingDefaults | undefined {
  if (preset === 'tiny-random') return samplingDefaults('sd3_medium', preset);
  if (preset in MODEL_PRESETS) return samplingDefaults(MODEL_PRESETS[preset as ModelPresetName].variant, preset);
  const file = preset === 'demo' ? demoCheckpointPath() : preset;
  if (!file.endsWith('.safetensors') || !fs.existsSync(file) || !fs.statSync(file).isFile()) return undefined;
  const { weights } = openCheckpoint(file, { t5: false });
  try {
    return new SD3Backbone(weights, { device: 'cpu' }).sampling;
  } finally {
    weights.close?.();
  }
}

function shapeOf(s: PresetOptions['imageShape'], preset: string): ImageShape {
  if (s === undefined) return defaultImageShape(preset);
  if (Array.isArray(s)) {
    if ((s.length !== 2 && s.length !== 3) || (s.length === 3 && s[2] !== 3)) {
      throw new SD3Error(`imageShape as an array must be [height, width] or [height, width, 3] (KerasHub's), got ${JSON.stringify(s)}`);
    }
    return { height: s[0] as number, width: s[1] as number };
  }
  return s as ImageShape;
}

const HUB_ID = /^(?:hf:\/\/)?([\w.-]+\/[\w.-]+)(?:\/(.+\.safetensors))?$/;

export async function loadPreset(preset: string, opts: PresetOptions = {}): Promise<LoadedPreset> {
  if (typeof preset !== 'string' || preset.length === 0) throw new SD3Error(`preset must be a name, a path or a hub id, got ${JSON.stringify(preset)}`);
  const text: TextOptions = {
    ...(opts.longPrompts !== undefined ? { longPrompts: opts.longPrompts } : {}),
    ...(opts.promptWeights !== undefined ? { promptWeights: opts.promptWeights } : {}),
  };
  checkTextOptions(text);
  const loaded = await loadPresetModels(preset, opts);
  loaded.preprocessor.textOptions = text;
  return loaded;
}

async function loadPresetModels(preset: string, opts: PresetOptions): Promise<LoadedPreset> {
  const backboneOpts: BackboneOptions = opts;
  if (preset === 'tiny-random') {
    const { weights, preprocessor } = tinyRandomWeights();
    return { backbone: new SD3Backbone(weights, backboneOpts), preprocessor, imageShape: shapeOf(opts.imageShape, preset) };
  }
  if (preset === 'demo') {
    const { weights, preprocessor } = openCheckpoint(demoCheckpointPath(), { t5: false });
    return { backbone: new SD3Backbone(weights, backboneOpts), preprocessor, imageShape: shapeOf(opts.imageShape, preset) };
  }
  let target: string;
  if (fs.existsSync(preset)) {
    target = preset;
  } else if (preset in MODEL_PRESETS) {
    target = await cachedPreset(preset as ModelPresetName, opts.t5 ?? false);
  } else {
    const m = HUB_ID.exec(preset);
    if (!m || preset.startsWith('.') || preset.startsWith('/')) {
      throw new SD3Error(`unknown preset "${preset}": not a built-in name (${PRESETS.join(', ')}), not an existing path, not a hub id (org/name)`);
    }
    const d = await downloadSD3(m[1]!, {
      t5: opts.t5 ?? false,
      ...(m[2] ? { file: m[2] } : {}),
      ...(opts.revision ? { revision: opts.revision } : {}),
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    target = m[2] ? d.files[m[2]]! : d.snapshotDir;
    if (m[2]) await fetchTextEncoders(m[1]!, target, opts);
  }
  const { weights, preprocessor } = openCheckpoint(target, { t5: opts.t5 ?? false });
  try {
    return { backbone: new SD3Backbone(weights, backboneOpts), preprocessor, imageShape: shapeOf(opts.imageShape, preset) };
  } catch (e) {
    weights.close?.(); // a bad option or shape must not leave the checkpoint's files open
    throw e;
  }
}

/** A preset from the local Hugging Face cache: its diffusers folders, else (SD3.5) its single file. */
async function cachedPreset(name: ModelPresetName, t5: boolean): Promise<string> {
  const p = MODEL_PRESETS[name];
  try {
    return (await downloadSD3(p.repo, { offline: true, t5 })).snapshotDir;
  } catch (e) {
    if ('singleFile' in p) {
      try {
        const d = await downloadSD3(p.repo, { offline: true, file: [p.singleFile, SD35_TEXT_ENCODERS.clipL, SD35_TEXT_ENCODERS.clipG] });
        return d.files[p.singleFile]!;
      } catch { /* neither layout is cached: explain below */ }
    }
    const single = 'singleFile' in p
      ? `, or its single file: npx sd3 download ${p.repo} --file ${p.singleFile} --file ${SD35_TEXT_ENCODERS.clipL} --file ${SD35_TEXT_ENCODERS.clipG}`
      : '';
    throw new SD3Error(
      `${name} is not in the local Hugging Face cache (${(e as Error).message}).\n` +
      `Get it once: accept the licence at https://huggingface.co/${p.repo}, create a token, then\n` +
      `  HF_TOKEN=hf_... npx sd3 download ${p.repo}\n` +
      `for its diffusers folders${single}; or pass the path of a checkpoint with -m.`, { cause: e });
  }
}

/**
 * A single file from a hub repository that holds no CLIP encoders (the SD3.5 files): also fetch the
 * repository's text_encoders/clip_l, clip_g (and, with t5, t5xxl_fp16 or else t5xxl_fp8_e4m3fn) into the same
 * snapshot, where the loader looks for them.
 */
async function fetchTextEncoders(repo: string, file: string, opts: PresetOptions): Promise<void> {
  const sf = SafetensorsFile.open(fs.realpathSync(file));
  let has: Set<string>;
  try { has = new Set(componentsIn(sf)); } finally { sf.close(); }
  const wanted: string[] = [];
  if (!has.has('clipL')) wanted.push(SD35_TEXT_ENCODERS.clipL);
  if (!has.has('clipG')) wanted.push(SD35_TEXT_ENCODERS.clipG);
  if (wanted.length === 0 && (!opts.t5 || has.has('t5'))) return;
  const common = {
    ...(opts.revision ? { revision: opts.revision } : {}),
    ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
  };
  const root = path.dirname(file);
  if (wanted.length) await downloadSD3(repo, { ...common, file: wanted });
  if (opts.t5 && !has.has('t5')) {
    let lastError: unknown;
    for (const t5 of SD35_TEXT_ENCODERS.t5) {
      try { await downloadSD3(repo, { ...common, file: t5 }); return; } catch (e) { lastError = e; }
    }
    throw new SD3Error(`${repo}: T5-XXL was asked for, but neither ${SD35_TEXT_ENCODERS.t5.join(' nor ')} could be fetched into ${root}`, { cause: lastError });
  }
}
