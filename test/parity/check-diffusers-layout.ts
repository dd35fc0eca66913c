/**
 * Parity of the diffusers folder layout (diffusers_layout fixture). The folder is opened by our loader,
 * `openDiffusers(dir, { t5: true })` (rename tables, config.json files, tokenizer folders, scheduler shift), and
 * checked against the golden cases of the sibling single-file fixtures that its README lists, each at that
 * fixture's own tolerance and through that fixture's own case loop. The siblings are found under the fixtures
 * root by what they hold (config.json `component`, or clip_bpe_cases.json), not by name or size.
 *
 * A folder with its own config.json (the SD3.5 ones) names the siblings in `golden_siblings` (null: none
 * applies) and the outputs that do not apply in `golden_exceptions`; without one (SD3), the siblings are found
 * by what they hold and the one exception is the README's: diffusers replaced CLIP-L's text projection by the
 * identity, so `output.pooled_projected` of the clip_l cases does not apply; instead the folder's projected
 * pooled vector must equal its pooled vector exactly.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Tensor, tensor } from '../../src/core/tensor.js';
import { openDiffusers } from '../../src/loaders/checkpoint.js';
import { CLIPTextEncoder } from '../../src/models/clip.js';
import { MMDiT } from '../../src/models/mmdit.js';
import { T5Encoder } from '../../src/models/t5.js';
import { LATENT_SCALE, LATENT_SHIFT, VAE } from '../../src/models/vae.js';
import { CLIPTokenizer } from '../../src/tokenizers/clip-bpe.js';
import { checkCLIPCases } from './check-clip.js';
import { checkMMDiTCases } from './check-mmdit.js';
import { checkLoopCases } from './check-sampler.js';
import { checkT5Cases } from './check-t5.js';
import { checkTokenizerCases } from './check-tokenizer.js';
import { checkVAECases } from './check-vae.js';
import { type Check, type FixtureConfig, compare, exact, readJson } from './lib.js';

/** The sibling fixtures whose cases apply to the diffusers folder. */
const SIBLINGS = ['mmdit', 'vae', 'clip_l', 'clip_g', 't5xxl', 'sampler', 'inpaint_kerashub', 'tokenizer'] as const;
type Sibling = (typeof SIBLINGS)[number];

const TOKENIZER_CASES = 'clip_bpe_cases.json';

/** The component a fixture folder holds: its config.json `component`, or `tokenizer` for the BPE cases. */
function siblingComponent(folder: string): string | undefined {
  if (fs.existsSync(path.join(folder, TOKENIZER_CASES))) return 'tokenizer';
  const cfg = path.join(folder, 'config.json');
  if (!fs.existsSync(cfg)) return undefined;
  try {
    const c = JSON.parse(fs.readFileSync(cfg, 'utf8'));
    return typeof c?.component === 'string' ? c.component : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Each sibling's folder under `root`, or why there is none. Where several folders hold one component, the one
 * named after it wins (the README refers to `../mmdit`, `../vae`, ...); otherwise that is an error.
 */
function locateSiblings(root: string, self: string): Map<Sibling, { dir: string } | { problem: string }> {
  const found = new Map<string, string[]>();
  for (const d of fs.readdirSync(root, { withFileTypes: true })) {
    if (!d.isDirectory()) continue;
    const folder = path.join(root, d.name);
    if (path.resolve(folder) === path.resolve(self)) continue;
    const component = siblingComponent(folder);
    if (component) found.set(component, [...(found.get(component) ?? []), folder]);
  }
  const out = new Map<Sibling, { dir: string } | { problem: string }>();
  for (const s of SIBLINGS) {
    const folders = found.get(s) ?? [];
    const what = s === 'tokenizer' ? `holding ${TOKENIZER_CASES}` : `whose config.json has "component": "${s}"`;
    if (folders.length === 1) out.set(s, { dir: folders[0]! });
    else if (folders.length === 0) out.set(s, { problem: `no folder under ${root} ${what}` });
    else {
      const named = folders.find((f) => path.basename(f) === s);
      out.set(s, named ? { dir: named } : { problem: `several folders under ${root} ${what} (${folders.map((f) => path.basename(f)).join(', ')}); none is named "${s}"` });
    }
  }
  return out;
}

/** What a folder's own config.json (SD3.5 folders have one) says about which goldens apply. */
interface GoldenMap {
  /** component -> sibling folder name under the fixtures root, or null: no sibling's goldens apply. */
  readonly golden_siblings?: Partial<Record<string, string | null>>;
  /** component -> outputs of that sibling's cases that do not apply to this folder. */
  readonly golden_exceptions?: Partial<Record<string, readonly string[]>>;
}

/**
 * The siblings named by the folder's `golden_siblings` (a null entry drops that component); without that file
 * (the SD3 folder), the siblings found by what they hold.
 */
function siblingsFor(root: string, dir: string, golden: GoldenMap): Map<Sibling, { dir: string } | { problem: string }> {
  if (!golden.golden_siblings) return locateSiblings(root, dir);
  const out = new Map<Sibling, { dir: string } | { problem: string }>();
  for (const s of SIBLINGS) {
    const name = golden.golden_siblings[s];
    if (name === null) continue;
    if (name === undefined) { out.set(s, { problem: `config.json golden_siblings has no entry for "${s}" (a folder name, or null)` }); continue; }
    const folder = path.join(root, name);
    if (name.includes('/') || name.includes('\\') || !fs.existsSync(folder)) out.set(s, { problem: `golden_siblings names "${name}" for ${s}, but there is no such folder under ${root}` });
    else if (siblingComponent(folder) !== s) out.set(s, { problem: `golden_siblings names "${name}" for ${s}, but that folder holds ${siblingComponent(folder) ?? 'no known component'}` });
    else out.set(s, { dir: folder });
  }
  return out;
}

const failed = (name: string, detail: string): Check => ({ name, ok: false, ratio: Infinity, detail });

export async function checkDiffusersLayout(dir: string, root: string): Promise<Check[]> {
  const own = path.join(dir, 'config.json');
  const golden: GoldenMap = fs.existsSync(own) ? readJson<GoldenMap>(own) : {};
  const siblings = siblingsFor(root, dir, golden);
  // Without a config.json, the SD3 folder's README exception: diffusers set CLIP-L's projection to the identity.
  const exceptions = (s: Sibling): readonly string[] => golden.golden_exceptions?.[s] ?? (golden.golden_siblings ? [] : s === 'clip_l' ? ['output.pooled_projected'] : []);
  const { weights, preprocessor } = openDiffusers(dir, { t5: true });
  const checks: Check[] = [];

  /** Runs one sibling's cases; its check names get the sibling's component as prefix. */
  const group = async (s: Sibling, run: (siblingDir: string, config: FixtureConfig) => Promise<Check[]>): Promise<void> => {
    const where = siblings.get(s);
    if (!where) return; // golden_siblings: null, no goldens apply to this folder
    if (!('dir' in where)) {
      checks.push(failed(s, where.problem));
      return;
    }
    try {
      const config = s === 'tokenizer' ? { cases: [] } : readJson<FixtureConfig>(path.join(where.dir, 'config.json'));
      const skip = exceptions(s);
      const got = (await run(where.dir, config)).filter((c) => !skip.some((o) => c.name.endsWith(`:${o}`)));
      if (got.length === 0) checks.push(failed(s, `no cases checked in ${where.dir}`));
      checks.push(...got.map((c) => ({ ...c, name: `${s}/${c.name}` })));
    } catch (e) {
      checks.push(failed(s, `${(e as Error).message ?? e}`));
    }
  };

  try {
    await group('mmdit', async (d, config) => {
      const model = await MMDiT.load(weights.mmdit, { threads: 1, debug: true });
      try { return await checkMMDiTCases(d, config, model); } finally { await model.dispose(); }
    });

    await group('vae', async (d, config) => {
      // Our latent format is fixed; the folder's vae/config.json must describe the same one.
      const vaeConfig = readJson(path.join(dir, 'vae', 'config.json'));
      const scale = vaeConfig.scaling_factor ?? LATENT_SCALE;
      const shift = vaeConfig.shift_factor ?? LATENT_SHIFT;
      const format = exact('latent format (folder\'s vae/config.json scaling_factor, shift_factor)', scale === LATENT_SCALE && shift === LATENT_SHIFT,
        `folder ${scale}, ${shift}; ours ${LATENT_SCALE}, ${LATENT_SHIFT}`);
      const vae = await VAE.load(weights.vae, { threads: 1 });
      try { return [format, ...await checkVAECases(d, config, vae)]; } finally { await vae.dispose(); }
    });

    await group('clip_l', async (d, config) => {
      const encoder = await CLIPTextEncoder.load(weights.clipL, weights.clipLConfig ?? {}, { threads: 1, debug: true, label: 'CLIP-L' });
      try {
        const identity = exceptions('clip_l').includes('output.pooled_projected');
        return await checkCLIPCases(d, config, encoder, {
          skip: [...exceptions('clip_l')],
          ...(identity ? { extra: (name: string, out: { pooledProjected: Tensor; pooled: Tensor }) => [compare(`${name}:pooled_projected == pooled (identity projection)`, out.pooledProjected, out.pooled, { atol: 0, rtol: 0 })] } : {}),
        });
      } finally {
        await encoder.dispose();
      }
    });

    await group('clip_g', async (d, config) => {
      const encoder = await CLIPTextEncoder.load(weights.clipG, weights.clipGConfig ?? {}, { threads: 1, debug: true, label: 'CLIP-G' });
      try { return await checkCLIPCases(d, config, encoder); } finally { await encoder.dispose(); }
    });

    await group('t5xxl', async (d, config) => {
      if (!weights.t5) throw new Error(`${dir}: openDiffusers with t5 gave no T5 weights`);
      const encoder = await T5Encoder.load(weights.t5, weights.t5Config ?? {}, { threads: 1, debug: true, label: 'T5-XXL' });
      try { return await checkT5Cases(d, config, encoder); } finally { await encoder.dispose(); }
    });

    // The sampler and inpaint loops run with the scheduler's shift wherever a case's params.shift agrees with
    // it; a case with another shift gets its own, passed explicitly (and says so).
    const loop = (s: 'sampler' | 'inpaint_kerashub', kind: 'sampler' | 'inpaint') => group(s, async (d, config) => {
      const mmdit = await MMDiT.load(weights.mmdit, { threads: 1 });
      const vae = await VAE.load(weights.vae, { threads: 1 });
      const own = config.cases.filter((c) => c.params?.shift !== undefined && c.params.shift !== weights.shift);
      // The loader's shift must be the one scheduler_config.json holds, read here on its own.
      const fileShift = readJson<{ shift?: number }>(path.join(dir, 'scheduler', 'scheduler_config.json')).shift ?? 3.0;
      const shiftNote = exact('shift', weights.shift === fileShift, `scheduler_config.json shift ${fileShift}, loader ${weights.shift}, used for ${config.cases.length - own.length} of ${config.cases.length} cases`
        + (own.length ? `; passed explicitly: ${own.map((c) => `${c.name} ${c.params!.shift}`).join(', ')}` : ''));
      try {
        const got = await checkLoopCases(kind, d, config, { mmdit, vae }, {
          shiftOf: (p) => (p.shift === undefined || p.shift === weights.shift ? weights.shift : p.shift),
        });
        return [shiftNote, ...got];
      } finally {
        await mmdit.dispose();
        await vae.dispose();
      }
    });
    await loop('sampler', 'sampler');
    await loop('inpaint_kerashub', 'inpaint');

    await group('tokenizer', async (d) => {
      const { clipL, clipG } = preprocessor;
      const fromFolder = exact('tokenizer/, tokenizer_2/ read from the folder', clipL !== CLIPTokenizer.default() && clipG !== CLIPTokenizer.default(),
        'the preprocessor\'s CLIP tokenizers are the folder\'s vocab.json + merges.txt, not the built-in vocabulary');
      return [fromFolder, ...checkTokenizerCases(d, { clipL, clipG }), preprocessorCheck(d, preprocessor)];
    });
  } finally {
    weights.close?.();
  }
  return checks;
}

/** Every prompt through the preprocessor at once: its CLIP-L and CLIP-G rows and truncation flags. */
function preprocessorCheck(dir: string, preprocessor: ReturnType<typeof openDiffusers>['preprocessor']): Check {
  const cases = readJson<{ cases: { text: string; ids77_clip_l: number[]; ids77_clip_g: number[]; truncated: boolean }[] }>(path.join(dir, TOKENIZER_CASES)).cases;
  const ids = preprocessor.generatePreprocess(cases.map((c) => c.text));
  const rows = (key: 'ids77_clip_l' | 'ids77_clip_g'): Tensor<'int64'> => {
    const width = cases[0]![key].length;
    return tensor('int64', [cases.length, width], BigInt64Array.from(cases.flatMap((c) => c[key].map(BigInt))));
  };
  const sameIds = (a: Tensor, b: Tensor) => a.shape.join() === b.shape.join() && a.data.every((v, i) => v === b.data[i]);
  const problems: string[] = [];
  if (!sameIds(ids.clipL, rows('ids77_clip_l'))) problems.push('CLIP-L rows differ from ids77_clip_l');
  if (!sameIds(ids.clipG, rows('ids77_clip_g'))) problems.push('CLIP-G rows differ from ids77_clip_g');
  if (ids.truncated.some((t, i) => t !== cases[i]!.truncated)) problems.push('truncated flags differ');
  return exact(`preprocessor (${cases.length} prompts in one batch)`, problems.length === 0,
    problems.length ? problems.join('; ') : 'generatePreprocess: CLIP-L rows = ids77_clip_l, CLIP-G rows = ids77_clip_g, truncated flags exact');
}
