/**
 * MMDiT hyper-parameters, read from weight shapes the way Stability's reference (`mmditx.py`, built by
 * `sd3_impls.BaseModel`) derives them: hidden = 64 * depth, heads = depth (head width 64).
 */
import { SD3Error } from '../core/errors.js';
import { type WeightStore, shapeOf } from '../core/weights.js';

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
}

/** SD3 Medium. */
export const SD3_MEDIUM_MMDIT: MMDiTConfig = {
  depth: 24, hiddenSize: 1536, numHeads: 24, patchSize: 2, inChannels: 16, outChannels: 16, posEmbedMaxSize: 192,
  admInChannels: 2048, contextInFeatures: 4096, mlpHidden: 6144, frequencyEmbeddingSize: 256,
};

const HEAD_WIDTH = 64;

/** Features of later MMDiT variants (SD3.5) that this port does not implement, by a key that reveals each. */
function unsupportedFeature(store: WeightStore, depth: number): string | undefined {
  if (store.has('register')) return 'register tokens ("register")';
  for (let i = 0; i < depth; i++) {
    for (const branch of ['context_block', 'x_block']) {
      const p = `joint_blocks.${i}.${branch}`;
      for (const k of [`${p}.attn.ln_q.weight`, `${p}.attn.ln_k.weight`]) {
        if (store.has(k)) return `q/k normalisation ("${k}", SD3.5)`;
      }
      if (store.has(`${p}.attn2.qkv.weight`)) return `dual attention ("${p}.attn2.qkv.weight", SD3.5)`;
      if (store.has(`${p}.mlp.w1.weight`)) return `SwiGLU MLP ("${p}.mlp.w1.weight")`;
    }
  }
  return undefined;
}

function need(ok: boolean, store: WeightStore, what: string): void {
  if (!ok) throw new SD3Error(`${store.label}: not an SD3 MMDiT: ${what}`);
}

/** Reads the configuration from tensor shapes (never data); throws on shapes or features it cannot run. */
export function inferMMDiTConfig(store: WeightStore): MMDiTConfig {
  const patch = shapeOf(store, 'x_embedder.proj.weight');
  need(patch.length === 4 && patch[2] === patch[3], store, `x_embedder.proj.weight is [${patch.join(', ')}], expected [hidden, channels, p, p]`);
  const [hiddenSize, inChannels, patchSize] = patch as [number, number, number];
  need(hiddenSize % HEAD_WIDTH === 0, store, `hidden size ${hiddenSize} is not a multiple of the head width ${HEAD_WIDTH}`);
  const depth = hiddenSize / HEAD_WIDTH;

  const present = (i: number) => store.has(`joint_blocks.${i}.x_block.attn.qkv.weight`);
  let blocks = 0;
  while (present(blocks)) blocks++;
  need(blocks === depth, store, `found ${blocks} joint blocks, but hidden size ${hiddenSize} means depth ${depth}`);

  const unsupported = unsupportedFeature(store, depth);
  if (unsupported) throw new SD3Error(`${store.label}: this MMDiT uses ${unsupported}, which is not supported (SD3 Medium only)`);

  const pos = shapeOf(store, 'pos_embed');
  const posEmbedMaxSize = Math.round(Math.sqrt(pos[1] ?? 0));
  need(pos.length === 3 && pos[0] === 1 && posEmbedMaxSize ** 2 === pos[1] && pos[2] === hiddenSize, store,
    `pos_embed is [${pos.join(', ')}], expected [1, M*M, ${hiddenSize}]`);

  const final = shapeOf(store, 'final_layer.linear.weight');
  const outChannels = final[0]! / (patchSize * patchSize);
  need(Number.isInteger(outChannels), store, `final_layer.linear.weight is [${final.join(', ')}], expected [${patchSize}*${patchSize}*channels, ${hiddenSize}]`);

  return {
    depth,
    hiddenSize,
    numHeads: depth,
    patchSize,
    inChannels,
    outChannels,
    posEmbedMaxSize,
    admInChannels: shapeOf(store, 'y_embedder.mlp.0.weight')[1]!,
    contextInFeatures: shapeOf(store, 'context_embedder.weight')[1]!,
    mlpHidden: shapeOf(store, 'joint_blocks.0.x_block.mlp.fc1.weight')[0]!,
    frequencyEmbeddingSize: shapeOf(store, 't_embedder.mlp.0.weight')[1]!,
  };
}
