/**
 * MMDiT hyper-parameters, read from weight shapes the way Stability's reference (`mmditx.py`, built by
 * `sd3_impls.BaseModel`) derives them: hidden = 64 * depth, heads = depth (head width 64). Covers SD3 Medium
 * and the SD3.5 MMDiT-X (q/k RMS norm, image-only second attention on some blocks). The variant comes from
 * the checkpoint's keys alone and every block's keys and shapes are checked before a graph is built, so a
 * broken or unsupported file is refused with the key at fault rather than failing inside the runtime.
 */
import { SD3Error } from '../core/errors.js';
import type { WeightStore } from '../core/weights.js';

export interface MMDiTConfig {
  readonly depth: number;
  readonly hiddenSize: number;
  readonly numHeads: number;
  readonly patchSize: number;
  readonly inChannels: number;
  readonly outChannels: number;
  /** Side of the learned position grid (`pos_embed` is [1, M*M, hidden]). */
  readonly posEmbedMaxSize: number;
  /** Width of the pooled text vector y. */
  readonly admInChannels: number;
  /** Width of the text sequence before `context_embedder`. */
  readonly contextInFeatures: number;
  readonly mlpHidden: number;
  readonly frequencyEmbeddingSize: number;
  /** q/k normalisation inside every attention: RMS per head (SD3.5) or none (SD3). */
  readonly qkNorm: 'rms' | null;
  /** Blocks whose image stream has the second, image-only attention `attn2` (MMDiT-X; SD3.5 Medium: 0-12). */
  readonly dualAttentionLayers: readonly number[];
}

const COMMON = { patchSize: 2, inChannels: 16, outChannels: 16, admInChannels: 2048, contextInFeatures: 4096, frequencyEmbeddingSize: 256 } as const;

/** SD3 Medium. */
export const SD3_MEDIUM_MMDIT: MMDiTConfig = {
  ...COMMON, depth: 24, hiddenSize: 1536, numHeads: 24, posEmbedMaxSize: 192, mlpHidden: 6144, qkNorm: null, dualAttentionLayers: [],
};

/** SD3.5 Medium: q/k RMS norm, dual attention on blocks 0-12, a 384 x 384 position grid. */
export const SD3_5_MEDIUM_MMDIT: MMDiTConfig = {
  ...COMMON, depth: 24, hiddenSize: 1536, numHeads: 24, posEmbedMaxSize: 384, mlpHidden: 6144, qkNorm: 'rms',
  dualAttentionLayers: Array.from({ length: 13 }, (_, i) => i),
};

/** SD3.5 Large and Large Turbo (the same architecture; only the weights and sampling settings differ). */
export const SD3_5_LARGE_MMDIT: MMDiTConfig = {
  ...COMMON, depth: 38, hiddenSize: 2432, numHeads: 38, posEmbedMaxSize: 192, mlpHidden: 9728, qkNorm: 'rms', dualAttentionLayers: [],
};

/** Width of one attention head (the reference's "magic": hidden = 64 * depth). */
export const HEAD_WIDTH = 64;

/**
 * The family a configuration belongs to, from its features (not its size, so a tiny test model of the same
 * build is named like the real one): 'sd3_medium' (no q/k norm, no dual attention), 'sd3.5_medium' (q/k RMS
 * norm and dual attention), 'sd3.5_large' (q/k RMS norm only); anything else is described.
 */
export function mmditVariant(c: MMDiTConfig): string {
  const dual = c.dualAttentionLayers.length > 0;
  if (c.qkNorm === null && !dual) return 'sd3_medium';
  if (c.qkNorm === 'rms' && dual) return 'sd3.5_medium';
  if (c.qkNorm === 'rms' && !dual) return 'sd3.5_large';
  return `mmdit-x (q/k norm ${c.qkNorm ?? 'none'}, dual attention on blocks ${c.dualAttentionLayers.join(',')})`;
}

/** A one-line description for messages: variant, depth, grid, and the dual blocks. */
export function describeMMDiT(c: MMDiTConfig): string {
  const dual = c.dualAttentionLayers.length ? `, dual attention on blocks ${rangeText(c.dualAttentionLayers)}` : '';
  return `${mmditVariant(c)}-style MMDiT (depth ${c.depth}, hidden ${c.hiddenSize}, q/k norm ${c.qkNorm ?? 'none'}${dual}, position grid ${c.posEmbedMaxSize})`;
}

function rangeText(xs: readonly number[]): string {
  const contiguous = xs.every((x, i) => x === xs[0]! + i);
  return contiguous && xs.length > 2 ? `${xs[0]}-${xs[xs.length - 1]}` : xs.join(', ');
}

/** Features of other MMDiT builds that this port does not implement, by a key that reveals each. */
function unsupportedFeature(store: WeightStore, depth: number): string | undefined {
  if (store.has('register')) return 'register tokens ("register")';
  for (let i = 0; i < depth; i++) {
    for (const branch of ['context_block', 'x_block']) {
      const p = `joint_blocks.${i}.${branch}`;
      for (const a of ['attn', 'attn2']) {
        for (const k of [`${p}.${a}.ln_q.bias`, `${p}.${a}.ln_k.bias`]) {
          if (store.has(k)) return `LayerNorm q/k normalisation ("${k}"; only RMS q/k norm is supported)`;
        }
      }
      if (store.has(`${p}.mlp.w1.weight`)) return `SwiGLU MLP ("${p}.mlp.w1.weight")`;
      if (store.has(`${p}.norm1.weight`)) return `affine or RMS block norms ("${p}.norm1.weight")`;
    }
    if (store.has(`joint_blocks.${i}.context_block.attn2.qkv.weight`)) return `a second attention on the context stream ("joint_blocks.${i}.context_block.attn2.qkv.weight")`;
  }
  return undefined;
}

/** Reads the configuration from tensor shapes (never data); throws on keys, shapes or features it cannot run. */
export function inferMMDiTConfig(store: WeightStore): MMDiTConfig {
  const fail = (what: string): never => { throw new SD3Error(`${store.label}: not a usable SD3/SD3.5 MMDiT: ${what}`); };
  const shape = (key: string): readonly number[] => {
    if (!store.has(key)) fail(`missing weight "${key}"`);
    return store.get(key).shape;
  };
  const patch = shape('x_embedder.proj.weight');
  if (!(patch.length === 4 && patch[2] === patch[3])) fail(`x_embedder.proj.weight is [${patch.join(', ')}], expected [hidden, channels, p, p]`);
  const [hiddenSize, inChannels, patchSize] = patch as [number, number, number];
  if (hiddenSize % HEAD_WIDTH !== 0) fail(`hidden size ${hiddenSize} is not a multiple of the head width ${HEAD_WIDTH}`);
  const depth = hiddenSize / HEAD_WIDTH;

  const present = (i: number) => store.has(`joint_blocks.${i}.x_block.attn.qkv.weight`);
  let blocks = 0;
  while (present(blocks)) blocks++;
  if (blocks !== depth) fail(`found ${blocks} joint blocks, but hidden size ${hiddenSize} means depth ${depth}`);
  if (store.has(`joint_blocks.${depth}.context_block.attn.qkv.weight`)) fail(`"joint_blocks.${depth}.context_block.attn.qkv.weight" has no x_block beside it (depth ${depth})`);

  const unsupported = unsupportedFeature(store, depth);
  if (unsupported) fail(`it uses ${unsupported}, which is not supported`);

  const pos = shape('pos_embed');
  const posEmbedMaxSize = Math.round(Math.sqrt(pos[1] ?? 0));
  if (!(pos.length === 3 && pos[0] === 1 && posEmbedMaxSize ** 2 === pos[1] && pos[2] === hiddenSize)) {
    fail(`pos_embed is [${pos.join(', ')}], expected [1, M*M, ${hiddenSize}]`);
  }
  const final = shape('final_layer.linear.weight');
  const outChannels = final[0]! / (patchSize * patchSize);
  if (!Number.isInteger(outChannels)) fail(`final_layer.linear.weight is [${final.join(', ')}], expected [${patchSize}*${patchSize}*channels, ${hiddenSize}]`);

  // Any q/k norm weight in block 0 means q/k norm everywhere (checkMMDiTWeights then names a missing one).
  const qkNorm = ['x_block', 'context_block'].some((b) => ['ln_q', 'ln_k'].some((n) => store.has(`joint_blocks.0.${b}.attn.${n}.weight`))) ? 'rms' as const : null;
  const dualAttentionLayers = Array.from({ length: depth }, (_, i) => i).filter((i) => store.has(`joint_blocks.${i}.x_block.attn2.qkv.weight`));

  const config: MMDiTConfig = {
    depth,
    hiddenSize,
    numHeads: depth,
    patchSize,
    inChannels,
    outChannels,
    posEmbedMaxSize,
    admInChannels: shape('y_embedder.mlp.0.weight')[1]!,
    contextInFeatures: shape('context_embedder.weight')[1]!,
    mlpHidden: shape('joint_blocks.0.x_block.mlp.fc1.weight')[0]!,
    frequencyEmbeddingSize: shape('t_embedder.mlp.0.weight')[1]!,
    qkNorm,
    dualAttentionLayers,
  };
  checkMMDiTWeights(store, config);
  return config;
}

/**
 * Every tensor the graph will read, with its shape, and the consistency of the variant: q/k norm weights in
 * every attention or in none, `attn2` complete on exactly the blocks whose image adaLN has 9 chunks.
 */
export function checkMMDiTWeights(store: WeightStore, c: MMDiTConfig): void {
  const H = c.hiddenSize;
  const what = describeMMDiT(c);
  const fail = (msg: string): never => { throw new SD3Error(`${store.label}: ${msg} (checkpoint read as ${what})`); };
  const expect = (key: string, want: readonly number[]) => {
    if (!store.has(key)) fail(`missing weight "${key}" [${want.join(', ')}]`);
    const got = store.get(key).shape;
    if (got.join() !== want.join()) fail(`weight "${key}" is [${got.join(', ')}], expected [${want.join(', ')}]`);
  };
  const lin = (p: string, out: number, inp: number) => { expect(`${p}.weight`, [out, inp]); expect(`${p}.bias`, [out]); };
  const absent = (key: string, why: string) => { if (store.has(key)) fail(`unexpected weight "${key}": ${why}`); };

  expect('x_embedder.proj.weight', [H, c.inChannels, c.patchSize, c.patchSize]);
  expect('x_embedder.proj.bias', [H]);
  expect('pos_embed', [1, c.posEmbedMaxSize ** 2, H]);
  lin('t_embedder.mlp.0', H, c.frequencyEmbeddingSize);
  lin('t_embedder.mlp.2', H, H);
  lin('y_embedder.mlp.0', H, c.admInChannels);
  lin('y_embedder.mlp.2', H, H);
  lin('context_embedder', H, c.contextInFeatures);
  lin('final_layer.adaLN_modulation.1', 2 * H, H);
  lin('final_layer.linear', c.patchSize * c.patchSize * c.outChannels, H);

  const qk = (p: string) => {
    for (const n of ['ln_q', 'ln_k']) {
      if (c.qkNorm === 'rms') expect(`${p}.${n}.weight`, [HEAD_WIDTH]);
      else absent(`${p}.${n}.weight`, 'q/k norm weights in some attentions but none in joint block 0');
    }
  };
  const dual = new Set(c.dualAttentionLayers);
  for (let i = 0; i < c.depth; i++) {
    for (const branch of ['context_block', 'x_block'] as const) {
      const p = `joint_blocks.${i}.${branch}`;
      const preOnly = branch === 'context_block' && i === c.depth - 1;
      const chunks = preOnly ? 2 : branch === 'x_block' && dual.has(i) ? 9 : 6;
      const ada = `${p}.adaLN_modulation.1.weight`;
      if (store.has(ada) && store.get(ada).shape[0] === 9 * H && chunks === 6 && branch === 'x_block') {
        fail(`"${ada}" has 9 modulation chunks (dual attention) but "${p}.attn2.qkv.weight" is missing`);
      }
      lin(`${p}.adaLN_modulation.1`, chunks * H, H);
      lin(`${p}.attn.qkv`, 3 * H, H);
      qk(`${p}.attn`);
      if (preOnly) {
        absent(`${p}.attn.proj.weight`, 'the last block\'s context branch is pre-only (no output projection)');
        absent(`${p}.mlp.fc1.weight`, 'the last block\'s context branch is pre-only (no MLP)');
      } else {
        lin(`${p}.attn.proj`, H, H);
        lin(`${p}.mlp.fc1`, c.mlpHidden, H);
        lin(`${p}.mlp.fc2`, H, c.mlpHidden);
      }
      if (branch === 'x_block') {
        if (dual.has(i)) {
          lin(`${p}.attn2.qkv`, 3 * H, H);
          lin(`${p}.attn2.proj`, H, H);
          qk(`${p}.attn2`);
        } else {
          for (const k of ['attn2.proj.weight', 'attn2.ln_q.weight', 'attn2.ln_k.weight']) absent(`${p}.${k}`, `block ${i} has no "${p}.attn2.qkv.weight"`);
        }
      }
    }
  }
}
