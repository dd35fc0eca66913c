/**
 * fromPreset: a built-in preset name, a local checkpoint (file or folder), or a Hugging Face hub id.
 *
 *   stable_diffusion_3_medium   SD3 Medium from the local Hugging Face cache (download it first: see README)
 *   demo                        a tiny SD3-structured model trained on drawn shapes, shipped in the package (64x64)
 *   tiny-random                 tiny random weights made in memory (tests)
 *   ./sd3_medium_incl_clips.safetensors, ./folder, stabilityai/stable-diffusion-3-medium-diffusers, org/repo/file.safetensors
 */
import * as fs from 'node:fs';
import { SD3Error } from '../core/errors.js';
import { type DownloadProgress, downloadSD3 } from '../hub/index.js';
import { openCheckpoint } from '../loaders/checkpoint.js';
import { type BackboneOptions, SD3Backbone } from '../pipelines/backbone.js';
import type { SD3Preprocessor } from '../pipelines/preprocessor.js';
import type { ImageShape } from '../pipelines/task.js';
import { DEMO_SIZE, demoCheckpointPath } from './demo.js';
import { tinyRandomWeights } from './tiny-random.js';

export const SD3_MEDIUM_DIFFUSERS_REPO = 'stabilityai/stable-diffusion-3-medium-diffusers';
export const PRESETS = ['stable_diffusion_3_medium', 'demo', 'tiny-random'] as const;

/** The size a preset draws at when none is asked for: 64 for demo, 256 for tiny-random, else 1024. */
export function defaultImageSize(preset: string): number {
  return preset === 'demo' ? DEMO_SIZE : preset === 'tiny-random' ? 256 : 1024;
}

export interface PresetOptions extends BackboneOptions {
  /** Output size: { width, height } or KerasHub's [height, width, 3]. Default 1024x1024 (64x64 for demo, 256x256 for tiny-random). */
  readonly imageShape?: ImageShape | readonly [number, number, number?];
  /** Use T5-XXL when available (default false, as KerasHub: 77 zero rows instead). Needs ~19 GB in float32. */
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

function shapeOf(s: PresetOptions['imageShape'], fallback: number): ImageShape {
  if (s === undefined) return { width: fallback, height: fallback };
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
  const backboneOpts: BackboneOptions = opts;
  if (preset === 'tiny-random') {
    const { weights, preprocessor } = tinyRandomWeights();
    return { backbone: new SD3Backbone(weights, backboneOpts), preprocessor, imageShape: shapeOf(opts.imageShape, 256) };
  }
  if (preset === 'demo') {
    const { weights, preprocessor } = openCheckpoint(demoCheckpointPath(), { t5: false });
    return { backbone: new SD3Backbone(weights, backboneOpts), preprocessor, imageShape: shapeOf(opts.imageShape, DEMO_SIZE) };
  }
  let target: string;
  if (fs.existsSync(preset)) {
    target = preset;
  } else if (preset === 'stable_diffusion_3_medium') {
    try {
      const d = await downloadSD3(SD3_MEDIUM_DIFFUSERS_REPO, { offline: true, t5: opts.t5 ?? false });
      target = d.snapshotDir;
    } catch (e) {
      throw new SD3Error(
        `stable_diffusion_3_medium is not in the local Hugging Face cache (${(e as Error).message}).\n` +
        `Get it once: accept the licence at https://huggingface.co/${SD3_MEDIUM_DIFFUSERS_REPO}, create a token, then\n` +
        `  HF_TOKEN=hf_... npx sd3 download ${SD3_MEDIUM_DIFFUSERS_REPO}\n` +
        'or pass the path of sd3_medium_incl_clips.safetensors with -m.', { cause: e });
    }
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
  }
  const { weights, preprocessor } = openCheckpoint(target, { t5: opts.t5 ?? false });
  return { backbone: new SD3Backbone(weights, backboneOpts), preprocessor, imageShape: shapeOf(opts.imageShape, 1024) };
}
