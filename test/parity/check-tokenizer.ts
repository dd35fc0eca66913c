/**
 * Parity of the CLIP tokenizer (tokenizer/clip_bpe_cases.json): per case the BPE ids, the padded 77-id rows for
 * CLIP-L and CLIP-G, eos_index and truncated; where a case has `sd3ref`, the reference's first chunk and chunk
 * count. Cases flagged `ftfy_sensitive` are checked the same way (their ids are stored without ftfy, which this
 * project does not run either) and their lines start with "ftfy_sensitive(<reasons>)".
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLIPTokenizer } from '../../src/tokenizers/clip-bpe.js';
import { type Check, exact, readJson } from './lib.js';

interface ClipCase {
  text: string;
  ids: number[];
  ids77_clip_l: number[];
  ids77_clip_g: number[];
  eos_index: number;
  truncated: boolean;
  ftfy_sensitive?: string[];
  sd3ref?: { ids77_clip_l: number[]; ids77_clip_g: number[]; num_chunks?: number };
}

const DEFAULT_GZ = fileURLToPath(new URL('../../assets/vocab/bpe_simple_vocab_16e6.txt.gz', import.meta.url));

function same(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function firstDiff(a: readonly number[], b: readonly number[]): string {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return `at ${i}: got ${a.slice(i, i + 4).join(',') || 'end'}, expected ${b.slice(i, i + 4).join(',') || 'end'} (lengths ${a.length}/${b.length})`;
}

function label(i: number, c: ClipCase): string {
  const text = c.text.length > 40 ? c.text.slice(0, 37) + '...' : c.text;
  const flag = c.ftfy_sensitive ? `ftfy_sensitive(${c.ftfy_sensitive.join(',')}) ` : '';
  return `${flag}#${i} ${JSON.stringify(text)}`;
}

export async function checkTokenizer(dir: string): Promise<Check[]> {
  const data = readJson<{ meta?: { vocab_sha256?: string } }>(path.join(dir, 'clip_bpe_cases.json'));
  const checks: Check[] = [];
  const want = data.meta?.vocab_sha256;
  if (want) {
    const got = createHash('sha256').update(fs.readFileSync(DEFAULT_GZ)).digest('hex');
    checks.push(exact('vocabulary sha256', got === want, got === want ? 'default vocabulary is the fixtures\' one' : `assets has ${got}, fixtures used ${want}`));
  }
  const tok = CLIPTokenizer.default();
  checks.push(...checkTokenizerCases(dir, { clipL: tok, clipG: tok }));
  return checks;
}

/**
 * The cases of clip_bpe_cases.json in `dir`: `ids77_clip_l` (padded with the end token) from `clipL`,
 * `ids77_clip_g` (padded with 0) from `clipG`; `ids`, eos_index, truncated and `sd3ref` from both.
 */
export function checkTokenizerCases(dir: string, tokenizers: { readonly clipL: CLIPTokenizer; readonly clipG: CLIPTokenizer }): Check[] {
  const data = readJson<{ cases: ClipCase[] }>(path.join(dir, 'clip_bpe_cases.json'));
  const { clipL, clipG } = tokenizers;
  const checks: Check[] = [];
  data.cases.forEach((c, i) => {
    const name = label(i, c);
    const problems: string[] = [];
    const ids = clipL.encode(c.text);
    if (!same(ids, c.ids)) problems.push(`ids ${firstDiff(ids, c.ids)}`);
    if (clipG !== clipL) {
      const idsG = clipG.encode(c.text);
      if (!same(idsG, c.ids)) problems.push(`ids (clip_g tokenizer) ${firstDiff(idsG, c.ids)}`);
    }
    const l = clipL.encodeForSD3(c.text, { pad: 'end' });
    const g = clipG.encodeForSD3(c.text, { pad: 'zero' });
    if (!same(l.ids, c.ids77_clip_l)) problems.push(`clip_l ${firstDiff(l.ids, c.ids77_clip_l)}`);
    if (!same(g.ids, c.ids77_clip_g)) problems.push(`clip_g ${firstDiff(g.ids, c.ids77_clip_g)}`);
    if (l.eosIndex !== c.eos_index || g.eosIndex !== c.eos_index) problems.push(`eos_index ${l.eosIndex}/${g.eosIndex}, expected ${c.eos_index}`);
    if (l.truncated !== c.truncated) problems.push(`truncated ${l.truncated}, expected ${c.truncated}`);
    const check = exact(name, problems.length === 0, problems.length ? problems.join('; ') : 'ids, clip_l, clip_g, eos_index, truncated exact');
    // Golden ids of these prompts were made with ftfy disabled (as we run): the reference with ftfy installed can
    // give other ids, so a match here is a known divergence, not a pass.
    checks.push(c.ftfy_sensitive ? { ...check, known: 'ftfy-sensitive prompt; golden ids made without ftfy' } : check);
    if (c.sd3ref) {
      const ref = c.sd3ref;
      const rl = clipL.chunks(c.text, { pad: 'end' });
      const rg = clipG.chunks(c.text, { pad: 'zero' });
      const bad: string[] = [];
      if (!same(rl[0]!.ids, ref.ids77_clip_l)) bad.push(`clip_l ${firstDiff(rl[0]!.ids, ref.ids77_clip_l)}`);
      if (!same(rg[0]!.ids, ref.ids77_clip_g)) bad.push(`clip_g ${firstDiff(rg[0]!.ids, ref.ids77_clip_g)}`);
      if (ref.num_chunks !== undefined && (rl.length !== ref.num_chunks || rg.length !== ref.num_chunks)) bad.push(`${rl.length}/${rg.length} chunks, expected ${ref.num_chunks}`);
      checks.push(exact(`${name}:sd3ref`, bad.length === 0, bad.length ? bad.join('; ') : `chunks(): first chunk clip_l, clip_g${ref.num_chunks !== undefined ? ', chunk count' : ''} exact`));
    }
  });
  return checks;
}
