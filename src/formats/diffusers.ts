/**
 * Rename tables for the diffusers folder layout (`stabilityai/stable-diffusion-3-medium-diffusers`, and the
 * diffusers folders of the `stabilityai/stable-diffusion-3.5-*` repositories):
 * our names (the single file's) -> the diffusers names, one table per component. No tensor is transposed; the
 * fused q/k/v become concatenations of three tensors, the two 2-chunk adaLN projections that diffusers stores
 * as [scale; shift] are read back as [shift; scale], VAE attention 1x1 convs are 2-D Linear weights there,
 * and the decoder's level numbers are reversed.
 */
import type { KeyIndex, Part, RenameTable, Source } from '../core/weights.js';
import { prefixTable } from './single-file.js';

/** Rows [H, 2H) then [0, H) of a [2H, ...] tensor: swaps its two halves. */
function swappedHalves(key: string, files: KeyIndex): Source {
  const rows = files.shape(key)[0] ?? 0;
  const h = rows / 2;
  const parts: Part[] = [{ key, rows: [h, rows] }, { key, rows: [0, h] }];
  return { concat: parts };
}

const qkv = (base: string, names: [string, string, string], suffix: string): Source => ({
  concat: names.map((n) => ({ key: `${base}.${n}.${suffix}` })),
});

export const diffusersTransformer: RenameTable = (name, files) => {
  const direct: Record<string, string> = {
    pos_embed: 'pos_embed.pos_embed',
    'x_embedder.proj.weight': 'pos_embed.proj.weight',
    'x_embedder.proj.bias': 'pos_embed.proj.bias',
    'context_embedder.weight': 'context_embedder.weight',
    'context_embedder.bias': 'context_embedder.bias',
    'final_layer.linear.weight': 'proj_out.weight',
    'final_layer.linear.bias': 'proj_out.bias',
  };
  if (name in direct) return direct[name];
  let m = /^([ty])_embedder\.mlp\.([02])\.(weight|bias)$/.exec(name);
  if (m) return `time_text_embed.${m[1] === 't' ? 'timestep_embedder' : 'text_embedder'}.linear_${m[2] === '0' ? 1 : 2}.${m[3]}`;
  m = /^final_layer\.adaLN_modulation\.1\.(weight|bias)$/.exec(name);
  if (m) return swappedHalves(`norm_out.linear.${m[1]}`, files);
  m = /^joint_blocks\.(\d+)\.(x_block|context_block)\.(.+)\.(weight|bias)$/.exec(name);
  if (!m) return undefined;
  const [, n, branch, layer, kind] = m as unknown as [string, string, string, string, string];
  const b = `transformer_blocks.${n}`;
  const x = branch === 'x_block';
  switch (layer) {
    case 'attn.qkv': return x ? qkv(`${b}.attn`, ['to_q', 'to_k', 'to_v'], kind) : qkv(`${b}.attn`, ['add_q_proj', 'add_k_proj', 'add_v_proj'], kind);
    case 'attn.proj': return x ? `${b}.attn.to_out.0.${kind}` : `${b}.attn.to_add_out.${kind}`;
    case 'mlp.fc1': return `${b}.${x ? 'ff' : 'ff_context'}.net.0.proj.${kind}`;
    case 'mlp.fc2': return `${b}.${x ? 'ff' : 'ff_context'}.net.2.${kind}`;
    // SD3.5: q/k RMS norm weights, and MMDiT-X's image-only second attention (its q/k/v split like attn's).
    case 'attn.ln_q': return `${b}.attn.${x ? 'norm_q' : 'norm_added_q'}.${kind}`;
    case 'attn.ln_k': return `${b}.attn.${x ? 'norm_k' : 'norm_added_k'}.${kind}`;
    case 'attn2.qkv': return x ? qkv(`${b}.attn2`, ['to_q', 'to_k', 'to_v'], kind) : undefined;
    case 'attn2.proj': return x ? `${b}.attn2.to_out.0.${kind}` : undefined;
    case 'attn2.ln_q': return x ? `${b}.attn2.norm_q.${kind}` : undefined;
    case 'attn2.ln_k': return x ? `${b}.attn2.norm_k.${kind}` : undefined;
    case 'adaLN_modulation.1': {
      // The image branch's 6 (or, on dual blocks, 9) chunks are stored in the reference order.
      if (x) return `${b}.norm1.linear.${kind}`;
      const key = `${b}.norm1_context.linear.${kind}`;
      // The pre-only (last) context block has a 2-chunk AdaLayerNormContinuous stored as [scale; shift].
      const hidden = files.shape('context_embedder.weight')[0] ?? 0;
      const rows = files.shape(key)[0] ?? 0;
      return hidden > 0 && rows === 2 * hidden ? swappedHalves(key, files) : key;
    }
    default: return undefined;
  }
};

/** Number of decoder levels in a diffusers VAE file. */
function decoderLevels(files: KeyIndex): number {
  let n = 0;
  for (const k of files.keys()) {
    const m = /^decoder\.up_blocks\.(\d+)\./.exec(k);
    if (m) n = Math.max(n, Number(m[1]) + 1);
  }
  return n;
}

export const diffusersVAE: RenameTable = (name, files) => {
  let m = /^(encoder|decoder)\.(conv_in|conv_out)\.(weight|bias)$/.exec(name);
  if (m) return name;
  m = /^(encoder|decoder)\.norm_out\.(weight|bias)$/.exec(name);
  if (m) return `${m[1]}.conv_norm_out.${m[2]}`;
  const resnet = (s: string) => s.replace('nin_shortcut', 'conv_shortcut');
  m = /^encoder\.down\.(\d+)\.block\.(\d+)\.(.+)$/.exec(name);
  if (m) return `encoder.down_blocks.${m[1]}.resnets.${m[2]}.${resnet(m[3]!)}`;
  m = /^encoder\.down\.(\d+)\.downsample\.conv\.(.+)$/.exec(name);
  if (m) return `encoder.down_blocks.${m[1]}.downsamplers.0.conv.${m[2]}`;
  m = /^decoder\.up\.(\d+)\.(block\.(\d+)|upsample\.conv)\.(.+)$/.exec(name);
  if (m) {
    const level = decoderLevels(files) - 1 - Number(m[1]);
    if (m[3] !== undefined) return `decoder.up_blocks.${level}.resnets.${m[3]}.${resnet(m[4]!)}`;
    return `decoder.up_blocks.${level}.upsamplers.0.conv.${m[4]}`;
  }
  m = /^(encoder|decoder)\.mid\.block_([12])\.(.+)$/.exec(name);
  if (m) return `${m[1]}.mid_block.resnets.${Number(m[2]) - 1}.${resnet(m[3]!)}`;
  m = /^(encoder|decoder)\.mid\.attn_1\.(norm|q|k|v|proj_out)\.(weight|bias)$/.exec(name);
  if (m) {
    const target = { norm: 'group_norm', q: 'to_q', k: 'to_k', v: 'to_v', proj_out: 'to_out.0' }[m[2]!]!;
    const key = `${m[1]}.mid_block.attentions.0.${target}.${m[3]}`;
    const shape = files.shape(key);
    // 1x1 convolutions in the single file, Linear weights here: same numbers, viewed as [C, C, 1, 1].
    if (m[3] === 'weight' && m[2] !== 'norm' && shape.length === 2) return { key, shape: [...shape, 1, 1] };
    return key;
  }
  return undefined;
};

/** CLIP and T5 keep their Hugging Face names; T5's embedding may be stored as `shared.weight`. */
export const diffusersCLIP: RenameTable = prefixTable('clipL', '');
export const diffusersT5: RenameTable = prefixTable('t5', '');

/** model_index.json component folders. */
export const DIFFUSERS_FOLDERS = {
  mmdit: 'transformer',
  vae: 'vae',
  clipL: 'text_encoder',
  clipG: 'text_encoder_2',
  t5: 'text_encoder_3',
  tokenizerL: 'tokenizer',
  tokenizerG: 'tokenizer_2',
  tokenizerT5: 'tokenizer_3',
  scheduler: 'scheduler',
} as const;
