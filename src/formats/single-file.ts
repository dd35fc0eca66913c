/**
 * Rename tables for Stability's single-file checkpoints (`sd3_medium_incl_clips*.safetensors`) and for the
 * separate encoder files users download beside them (`clip_l.safetensors`, `clip_g.safetensors`,
 * `t5xxl_fp16.safetensors`, keys without a prefix). Our model names are the single file's names after the
 * component prefix, so these tables only strip prefixes, plus T5's tied embedding.
 */
import type { KeyIndex, RenameTable } from '../core/weights.js';

export const SINGLE_FILE_PREFIX = {
  mmdit: 'model.diffusion_model.',
  vae: 'first_stage_model.',
  clipL: 'text_encoders.clip_l.transformer.',
  clipG: 'text_encoders.clip_g.transformer.',
  t5: 'text_encoders.t5xxl.transformer.',
} as const;

export type ComponentName = keyof typeof SINGLE_FILE_PREFIX;

/** T5 files written by transformers keep the embedding as `shared.weight` (tied to `encoder.embed_tokens`). */
function t5Embedding(prefix: string, files: KeyIndex): string {
  const own = `${prefix}encoder.embed_tokens.weight`;
  return files.has(own) ? own : `${prefix}shared.weight`;
}

/** Our names -> keys under `prefix` ('' for a standalone component file). */
export function prefixTable(component: ComponentName, prefix: string = SINGLE_FILE_PREFIX[component]): RenameTable {
  if (component === 't5') {
    return (name, files) => (name === 'encoder.embed_tokens.weight' ? t5Embedding(prefix, files) : prefix + name);
  }
  return (name) => prefix + name;
}

/** Which components a single file holds, judged by its keys. */
export function componentsIn(files: KeyIndex): ComponentName[] {
  const keys = files.keys();
  return (Object.keys(SINGLE_FILE_PREFIX) as ComponentName[]).filter((c) => keys.some((k) => k.startsWith(SINGLE_FILE_PREFIX[c])));
}

/** The component a standalone (prefix-less) encoder file holds, judged by its keys and widths. */
export function standaloneEncoderKind(files: KeyIndex): 'clipL' | 'clipG' | 't5' | undefined {
  if (files.has('encoder.block.0.layer.0.SelfAttention.q.weight')) return 't5';
  const emb = 'text_model.embeddings.token_embedding.weight';
  if (!files.has(emb)) return undefined;
  const width = files.shape(emb)[1];
  if (width === 768) return 'clipL';
  if (width === 1280) return 'clipG';
  return undefined;
}
