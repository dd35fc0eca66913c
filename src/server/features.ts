/**
 * Request fields for the library's newer generation features, shared by the three API families:
 *
 * - `<lora:NAME:SCALE>` tags in the prompt (A1111 syntax): NAME is resolved inside the server's `--lora-dir`
 *   (src/lora `promptLoras`, so no name leaves the folder) and the tags are removed from the prompt the model
 *   sees. The job carries the names; the engine that runs it resolves them again in its own folder (a cluster
 *   worker has its own --lora-dir) and switches the backbone's LoRA set in the one worker loop.
 * - `sampler` ('euler' | 'dpmpp_2m'; A1111's `sampler_name` maps onto it in sdapi.ts) and skip-layer guidance
 *   (`slg_scale`, `slg_layers`, `slg_start`, `slg_end`).
 * - step caching (`step_cache`: the threshold, which turns it on; `step_cache_start`, `step_cache_end`).
 * - `prompt_weights` (A1111 emphasis syntax) and `long_prompts` ('truncate' | 'chunk'), with per-family defaults.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe } from '../core/errors.js';
import { parseLoraTags, resolveLoraName } from '../lora/index.js';
import { LONG_PROMPTS, type LongPrompts } from '../pipelines/text-windows.js';
import { type SkipLayerGuidance, checkSkipLayerGuidance } from '../sampler/skip-layer-guidance.js';
import { STEP_CACHE_DEFAULTS, type StepCache, checkStepCache } from '../sampler/step-cache.js';
import { SAMPLERS, type SamplerName } from '../sampler/steppers.js';
import { RequestError, fieldError } from './errors.js';
import { boolField, numberField, stringField } from './params.js';

/** A LoRA a job applies: the name inside the LoRA folder and its scale. */
export interface JobLora { readonly name: string; readonly scale: number }

/** The text options a family uses when the request names none. */
export interface TextDefaults { readonly promptWeights: boolean; readonly longPrompts: LongPrompts }

/** The feature fields of a job spec. */
export interface FeatureSpec {
  readonly prompt: string;
  readonly loras?: readonly JobLora[];
  readonly sampler?: SamplerName;
  readonly skipLayerGuidance?: SkipLayerGuidance;
  readonly stepCache?: StepCache;
  readonly promptWeights?: boolean;
  readonly longPrompts?: LongPrompts;
}

/**
 * The prompt without its LoRA tags and the LoRAs it names, each checked inside `loraDir`. A tag without a
 * LoRA folder, an unknown name or a name that would leave the folder is a 400 naming the LoRA.
 */
export function loraFields(prompt: string, loraDir: string | undefined, field = 'prompt'): { prompt: string; loras?: readonly JobLora[] } {
  if (!/<lora:/i.test(prompt)) return { prompt };
  if (loraDir === undefined) {
    const name = /<lora:([^:<>]*)/i.exec(prompt)?.[1] ?? '';
    throw new RequestError(400, `${field} names LoRA ${JSON.stringify(name)} but this server has no LoRA folder (start it with --lora-dir DIR)`, 'invalid_request', field);
  }
  try {
    // Each name is checked inside the folder here; the job keeps the names (the engine resolves them in its own folder).
    const { prompt: rest, loras } = parseLoraTags(prompt);
    for (const l of loras) resolveLoraName(loraDir, l.name);
    return { prompt: rest, loras: loras.map((l) => ({ name: l.name, scale: l.scale })) };
  } catch (e) {
    if (e instanceof RequestError) throw e;
    throw new RequestError(400, `${field}: ${(e as Error).message}`, 'invalid_request', field);
  }
}

/** The sampler a request names ('euler' or 'dpmpp_2m'), or undefined. */
export function samplerField(b: Record<string, unknown>, name = 'sampler'): SamplerName | undefined {
  const v = stringField(b, name);
  if (v === undefined || v === '') return undefined;
  if (!(SAMPLERS as readonly string[]).includes(v)) throw fieldError(name, `${name} must be one of ${SAMPLERS.map((s) => `"${s}"`).join(', ')}, got ${describe(v)}`);
  return v as SamplerName;
}

/** Skip-layer guidance from `slg_scale` (required to turn it on), `slg_layers`, `slg_start`, `slg_end`. */
export function slgFields(b: Record<string, unknown>): SkipLayerGuidance | undefined {
  const scale = numberField(b, 'slg_scale', { min: 0, max: 30 });
  const others = ['slg_layers', 'slg_start', 'slg_end'].filter((k) => b[k] !== undefined && b[k] !== null && b[k] !== '');
  if (scale === undefined) {
    if (others.length) throw fieldError(others[0]!, `${others[0]} needs slg_scale (skip-layer guidance is off without it)`);
    return undefined;
  }
  let layers: unknown = b.slg_layers ?? [7, 8, 9];
  if (typeof layers === 'string') layers = layers.split(',').map((s) => (s.trim() === '' ? Number.NaN : Number(s)));
  if (!Array.isArray(layers) || !layers.every((l) => Number.isInteger(l) && l >= 0)) {
    throw fieldError('slg_layers', `slg_layers must be a list of joint block indices (integers >= 0), got ${describe(b.slg_layers)}`);
  }
  const start = numberField(b, 'slg_start', { min: 0, max: 1 }) ?? 0.01;
  const end = numberField(b, 'slg_end', { min: 0, max: 1 }) ?? 0.2;
  try {
    return checkSkipLayerGuidance({ layers, scale, start, end });
  } catch (e) {
    throw fieldError('slg_scale', (e as Error).message);
  }
}

/** Step caching from `step_cache` (the threshold, required to turn it on), `step_cache_start`, `step_cache_end`. */
export function stepCacheFields(b: Record<string, unknown>): StepCache | undefined {
  const threshold = numberField(b, 'step_cache', { min: 0, max: 1 });
  const others = ['step_cache_start', 'step_cache_end'].filter((k) => b[k] !== undefined && b[k] !== null && b[k] !== '');
  if (threshold === undefined) {
    if (others.length) throw fieldError(others[0]!, `${others[0]} needs step_cache (the step cache is off without it)`);
    return undefined;
  }
  if (threshold === 0) throw fieldError('step_cache', 'step_cache must be a threshold in (0, 1] (e.g. 0.1); leave it out to turn the cache off, got 0');
  const start = numberField(b, 'step_cache_start', { min: 0, max: 1 }) ?? STEP_CACHE_DEFAULTS.start;
  const end = numberField(b, 'step_cache_end', { min: 0, max: 1 }) ?? STEP_CACHE_DEFAULTS.end;
  try {
    return checkStepCache({ threshold, start, end });
  } catch (e) {
    throw fieldError('step_cache', (e as Error).message);
  }
}

/** `prompt_weights` and `long_prompts`, falling back to the family's defaults. */
export function textFields(b: Record<string, unknown>, defaults: TextDefaults): { promptWeights: boolean; longPrompts: LongPrompts } {
  const lp = stringField(b, 'long_prompts');
  if (lp !== undefined && lp !== '' && !(LONG_PROMPTS as readonly string[]).includes(lp)) {
    throw fieldError('long_prompts', `long_prompts must be ${LONG_PROMPTS.map((s) => `"${s}"`).join(' or ')}, got ${describe(lp)}`);
  }
  return { promptWeights: boolField(b, 'prompt_weights') ?? defaults.promptWeights, longPrompts: (lp || defaults.longPrompts) as LongPrompts };
}

/** Every feature field of a request; `sampler` is given by sdapi.ts (A1111 names), else read from `sampler`. */
export function featureFields(b: Record<string, unknown>, prompt: string, ctx: { loraDir?: string | undefined }, text: TextDefaults, sampler?: SamplerName): FeatureSpec {
  const lora = loraFields(prompt, ctx.loraDir);
  const s = sampler ?? samplerField(b);
  const slg = slgFields(b);
  const cache = stepCacheFields(b);
  return { ...lora, ...(s ? { sampler: s } : {}), ...(slg ? { skipLayerGuidance: slg } : {}), ...(cache ? { stepCache: cache } : {}), ...textFields(b, text) };
}

/** The LoRA files of a folder as A1111's /sdapi/v1/loras lists them: {name, alias, path, metadata}. */
export function listLoras(dir: string): { name: string; alias: string; path: string; metadata: Record<string, never> }[] {
  const out: { name: string; alias: string; path: string; metadata: Record<string, never> }[] = [];
  const walk = (sub: string, depth: number) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(path.join(dir, sub), { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      const rel = sub ? `${sub}/${e.name}` : e.name;
      if (e.isDirectory() && depth < 4) walk(rel, depth + 1);
      else if ((e.isFile() || e.isSymbolicLink()) && e.name.endsWith('.safetensors')) {
        const name = rel.slice(0, -'.safetensors'.length);
        // Only what a tag could use: a link is listed when it resolves to a file inside the folder.
        let file: string;
        try {
          file = e.isFile() ? path.resolve(dir, rel) : resolveLoraName(dir, name);
        } catch {
          continue;
        }
        out.push({ name, alias: name, path: file, metadata: {} });
      }
    }
  };
  walk('', 0);
  return out;
}
