/**
 * SD3's autoencoder (KL, 16 latent channels): its configuration, read from the weights' shapes.
 *
 * The structure is the reference's (Stability AI `sd3_impls.py`, VAEEncoder / VAEDecoder): encoder levels
 * `encoder.down.N` with `numResBlocks` ResNet blocks each and a downsample on every level but the last; decoder
 * levels `decoder.up.N` with `numResBlocks + 1` blocks each and an upsample on every level but level 0.
 */
import { SD3Error } from '../core/errors.js';
import { type WeightStore, shapeOf } from '../core/weights.js';

export interface VAEConfig {
  /** Base channel count (128 in SD3). */
  readonly ch: number;
  /** Channels of level i are ch * chMult[i] (SD3: 1, 2, 4, 4). */
  readonly chMult: readonly number[];
  /** ResNet blocks per encoder level (SD3: 2); the decoder has one more per level. */
  readonly numResBlocks: number;
  readonly inChannels: number;
  readonly outChannels: number;
  /** Latent channels (SD3: 16); the encoder emits twice as many (mean and log-variance). */
  readonly zChannels: number;
  /** GroupNorm groups and epsilon: not visible in the weights; the reference's are 32 and 1e-6 (the groups can be given). */
  readonly groups: number;
  readonly eps: number;
  /** Pixels per latent cell along each axis: 2^(levels - 1) (SD3: 8). */
  readonly downsampleFactor: number;
  readonly hasEncoder: boolean;
  readonly hasDecoder: boolean;
}

/** SD3 Medium's VAE (the real checkpoint's shapes give exactly this). */
export const SD3_VAE_CONFIG: VAEConfig = {
  ch: 128, chMult: [1, 2, 4, 4], numResBlocks: 2, inChannels: 3, outChannels: 3, zChannels: 16,
  groups: 32, eps: 1e-6, downsampleFactor: 8, hasEncoder: true, hasDecoder: true,
};

const GROUPS = 32;
const EPS = 1e-6;

/** How many of name(0), name(1), ... the store holds, counting from 0 until the first gap. */
function count(store: WeightStore, name: (i: number) => string): number {
  let n = 0;
  while (store.has(name(n))) n++;
  return n;
}

function fail(store: WeightStore, problem: string): never {
  throw new SD3Error(`${store.label}: not an SD3 VAE: ${problem}`);
}

/** What one half of the autoencoder says: base channels, channels per level, blocks per level, latent and image channels. */
interface Part { ch: number; levels: number[]; blocks: number; z: number; io: number }

function inferEncoder(store: WeightStore): Part {
  const [ch, io] = shapeOf(store, 'encoder.conv_in.weight') as [number, number];
  const levels = count(store, (i) => `encoder.down.${i}.block.0.conv1.weight`);
  if (levels === 0) fail(store, 'no encoder.down.0.block.0.conv1.weight');
  const blocks = count(store, (j) => `encoder.down.0.block.${j}.conv1.weight`);
  const channels: number[] = [];
  for (let i = 0; i < levels; i++) {
    const n = count(store, (j) => `encoder.down.${i}.block.${j}.conv1.weight`);
    if (n !== blocks) fail(store, `encoder level ${i} has ${n} ResNet blocks, level 0 has ${blocks}`);
    const hasDown = store.has(`encoder.down.${i}.downsample.conv.weight`);
    if (hasDown !== (i < levels - 1)) fail(store, `encoder level ${i} of ${levels} ${hasDown ? 'has' : 'lacks'} a downsample`);
    channels.push(shapeOf(store, `encoder.down.${i}.block.0.conv1.weight`)[0]!);
  }
  const out = shapeOf(store, 'encoder.conv_out.weight')[0]!;
  if (out % 2 !== 0) fail(store, `encoder.conv_out has ${out} output channels; expected 2 * latent channels (mean, log-variance)`);
  return { ch, levels: channels, blocks, z: out / 2, io };
}

function inferDecoder(store: WeightStore): Part {
  // the decoder alone cannot tell the base from level 0's channels: take them as equal (multiplier 1, as in SD3)
  const [io, ch] = shapeOf(store, 'decoder.conv_out.weight') as [number, number];
  const z = shapeOf(store, 'decoder.conv_in.weight')[1]!;
  const levels = count(store, (i) => `decoder.up.${i}.block.0.conv1.weight`);
  if (levels === 0) fail(store, 'no decoder.up.0.block.0.conv1.weight');
  const blocks = count(store, (j) => `decoder.up.0.block.${j}.conv1.weight`);
  const channels: number[] = [];
  for (let i = 0; i < levels; i++) {
    const n = count(store, (j) => `decoder.up.${i}.block.${j}.conv1.weight`);
    if (n !== blocks) fail(store, `decoder level ${i} has ${n} ResNet blocks, level 0 has ${blocks}`);
    const hasUp = store.has(`decoder.up.${i}.upsample.conv.weight`);
    if (hasUp !== (i > 0)) fail(store, `decoder level ${i} ${hasUp ? 'has' : 'lacks'} an upsample`);
    channels.push(shapeOf(store, `decoder.up.${i}.block.0.conv2.weight`)[0]!);
  }
  return { ch, levels: channels, blocks: blocks - 1, z, io };
}

/**
 * Reads the VAE's configuration from the weights' shapes (names without the `first_stage_model.` prefix).
 * A store may hold only the encoder or only the decoder.
 *
 * @example inferVAEConfig(store).downsampleFactor  // 8 for SD3 Medium
 */
export function inferVAEConfig(store: WeightStore, given: { readonly groups?: number } = {}): VAEConfig {
  const groups = given.groups ?? GROUPS;
  if (!Number.isInteger(groups) || groups < 1) fail(store, `GroupNorm groups must be a positive integer, got ${JSON.stringify(given.groups)}`);
  const hasEncoder = store.has('encoder.conv_in.weight');
  const hasDecoder = store.has('decoder.conv_in.weight');
  if (!hasEncoder && !hasDecoder) fail(store, 'found neither encoder.conv_in.weight nor decoder.conv_in.weight');
  const enc = hasEncoder ? inferEncoder(store) : undefined;
  const dec = hasDecoder ? inferDecoder(store) : undefined;
  if (enc && dec) {
    const say = (p: Part) => `level channels [${p.levels}], ${p.blocks} ResNet blocks per level (decoder: +1), ${p.z} latent channels`;
    if (say(enc) !== say(dec)) fail(store, `encoder (${say(enc)}) and decoder (${say(dec)}) do not match`);
  }
  const p = (enc ?? dec)!;
  const chMult = p.levels.map((c) => c / p.ch);
  if (!chMult.every(Number.isInteger)) fail(store, `level channels [${p.levels}] are not multiples of the base ${p.ch}`);
  if (p.blocks < 1) fail(store, `levels have ${p.blocks} ResNet blocks`);
  return {
    ch: p.ch, chMult, numResBlocks: p.blocks,
    inChannels: enc?.io ?? 3, outChannels: dec?.io ?? 3, zChannels: p.z,
    groups, eps: EPS, downsampleFactor: 2 ** (chMult.length - 1), hasEncoder, hasDecoder,
  };
}
