/**
 * Which files of an SD3 repository to download.
 *
 * Diffusers layout (`selectSD3Components`): `model_index.json`, and per component folder its config and
 * tokenizer files (`*.json`, `*.txt`, `*.model`) plus one set of `.safetensors` weights. Variant rule, as
 * diffusers' `variant=` argument: a weight file's variant is the dot-separated word before `.safetensors`
 * (`model.fp16.safetensors`, shards `model.fp16-00001-of-00002.safetensors` or
 * `model-00001-of-00002.fp16.safetensors`, index `model.safetensors.index.fp16.json`). In each folder the
 * preferred variant (default `fp16`) is taken when the folder has it, else the files without a variant; other
 * variants are never taken. So the fp32 duplicates of the SD3 text encoders are skipped, and a folder that only
 * has plain `diffusion_pytorch_model.safetensors` (SD3's transformer and VAE, stored as fp16) gets that file.
 * A sharded set is its index plus every shard of the same variant. `.bin`, `.ckpt`, `.pt`, `.onnx`,
 * `.msgpack` and anything else are never taken.
 */
import { SD3Error } from '../core/errors.js';

export type Sibling = string | { readonly rfilename: string };

export interface SD3SelectOptions {
  /** Include `text_encoder_3/` and `tokenizer_3/` (T5-XXL, about 9.5 GB in fp16). */
  readonly t5: boolean;
  /** Preferred weight variant; `null` for the files without a variant (fp32 text encoders). Default `fp16`. */
  readonly variant?: string | null;
}

interface WeightName {
  readonly variant: string | null;
  readonly index: boolean;
  readonly shard: boolean;
}

const SHARD = /-\d{5}-of-\d{5}/;
const SIDE_FILE = /\.(json|txt|model)$/;

/** Variant and role of a weight file name, or null when it is not a safetensors weight or index. */
export function parseWeightName(name: string): WeightName | null {
  const index = /\.safetensors\.index(?:\.([A-Za-z0-9_]+))?\.json$/.exec(name);
  if (index) return { variant: index[1] ?? null, index: true, shard: false };
  if (!name.endsWith('.safetensors')) return null;
  const stem = name.slice(0, -'.safetensors'.length).replace(SHARD, '');
  const dot = stem.lastIndexOf('.');
  return { variant: dot > 0 ? stem.slice(dot + 1) : null, index: false, shard: SHARD.test(name) };
}

function names(siblings: readonly Sibling[]): string[] {
  if (!Array.isArray(siblings)) throw new SD3Error(`expected a list of repository files, got ${typeof siblings}`);
  return siblings.map((s) => (typeof s === 'string' ? s : s.rfilename));
}

/** Direct children of `folder` (file names without the folder). */
function childrenOf(files: readonly string[], folder: string): string[] {
  const prefix = folder + '/';
  return files.filter((f) => f.startsWith(prefix) && !f.slice(prefix.length).includes('/')).map((f) => f.slice(prefix.length));
}

function pickWeights(names: readonly string[], variant: string | null): string[] {
  const weights = names.map((n) => ({ n, w: parseWeightName(n) })).filter((x): x is { n: string; w: WeightName } => x.w !== null);
  const chosen = variant !== null && weights.some((x) => x.w.variant === variant) ? variant : null;
  const same = weights.filter((x) => x.w.variant === chosen);
  const sharded = same.some((x) => x.w.index) && same.some((x) => x.w.shard);
  return same.filter((x) => (sharded ? x.w.index || x.w.shard : !x.w.index && !x.w.shard)).map((x) => x.n);
}

/**
 * The files of an SD3 diffusers repository that a pipeline needs, sorted.
 *
 * @example
 * selectSD3Components(repo.files, { t5: false })
 * // ['model_index.json', 'scheduler/scheduler_config.json', 'text_encoder/config.json',
 * //  'text_encoder/model.fp16.safetensors', ..., 'vae/diffusion_pytorch_model.safetensors']
 */
export function selectSD3Components(siblings: readonly Sibling[], options: SD3SelectOptions): string[] {
  if (typeof options?.t5 !== 'boolean') throw new SD3Error(`selectSD3Components needs { t5: true | false }, got ${JSON.stringify(options)}`);
  const variant = options.variant === undefined ? 'fp16' : options.variant;
  const files = names(siblings);
  const models = ['transformer', 'vae', 'text_encoder', 'text_encoder_2', ...(options.t5 ? ['text_encoder_3'] : [])];
  const aux = ['scheduler', 'tokenizer', 'tokenizer_2'];
  const problems: string[] = [];
  const out: string[] = [];
  if (files.includes('model_index.json')) out.push('model_index.json');
  else problems.push('model_index.json is missing');

  for (const folder of models) {
    const children = childrenOf(files, folder);
    const side = children.filter((n) => SIDE_FILE.test(n) && parseWeightName(n) === null);
    const weights = pickWeights(children, variant);
    if (!side.includes('config.json')) problems.push(`${folder}/config.json is missing`);
    if (weights.length === 0) {
      const found = children.filter((n) => n !== 'config.json');
      problems.push(`${folder}/ has no usable .safetensors weights (found: ${found.length ? found.join(', ') : 'nothing'})`);
    }
    out.push(...[...side, ...weights].map((n) => `${folder}/${n}`));
  }
  for (const folder of [...aux, ...(options.t5 ? ['tokenizer_3'] : [])]) {
    const side = childrenOf(files, folder).filter((n) => SIDE_FILE.test(n) && parseWeightName(n) === null);
    // tokenizer_3 is optional: the T5 token ids can come from elsewhere
    if (side.length === 0 && folder !== 'tokenizer_3') problems.push(`${folder}/ has no config or vocabulary files`);
    out.push(...side.map((n) => `${folder}/${n}`));
  }
  if (problems.length > 0) {
    const hint = options.t5 && problems.some((p) => p.startsWith('text_encoder_3')) ? ' (pass t5: false to run without T5)' : '';
    throw new SD3Error(`not a complete SD3 diffusers file list (${files.length} files): ${problems.join('; ')}${hint}`);
  }
  return out.sort();
}

/**
 * Checks that single-file checkpoints (e.g. `sd3_medium_incl_clips.safetensors` in
 * `stabilityai/stable-diffusion-3-medium`) exist in the file list and returns them.
 */
export function selectSingleFiles(siblings: readonly Sibling[], wanted: string | readonly string[]): string[] {
  const files = names(siblings);
  const list = typeof wanted === 'string' ? [wanted] : [...wanted];
  if (list.length === 0) throw new SD3Error('selectSingleFiles needs at least one file name');
  for (const file of list) {
    if (typeof file !== 'string' || !file.endsWith('.safetensors')) {
      throw new SD3Error(`checkpoint ${JSON.stringify(file)} is not a .safetensors file; only safetensors checkpoints are read`);
    }
    if (!files.includes(file)) {
      const available = files.filter((f) => f.endsWith('.safetensors'));
      throw new SD3Error(
        `checkpoint ${JSON.stringify(file)} is not in the repository; its .safetensors files are: ${available.length ? available.join(', ') : 'none'}`,
      );
    }
  }
  return [...new Set(list)];
}
