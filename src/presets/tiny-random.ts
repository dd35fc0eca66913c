/**
 * The `tiny-random` preset: every SD3 component at a tiny size with deterministic random weights made in
 * memory (no file, no network), for smoke tests and demos. It produces structured noise, not pictures.
 */
import { tensor } from '../core/tensor.js';
import { MemoryStore, type WeightStore } from '../core/weights.js';
import type { SD3Weights } from '../pipelines/backbone.js';
import { SD3Preprocessor } from '../pipelines/preprocessor.js';
import { DEFAULT_SHIFT } from '../sampler/flow-match.js';
import { gaussian } from '../sampler/noise.js';
import { type LayoutEntry, clipLayout, mmditLayout, vaeLayout } from './layout.js';

const CLIP_WIDTH = 32;

function seedOf(name: string): number {
  let h = 2166136261;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619) >>> 0;
  return h;
}

function memoryStore(entries: readonly LayoutEntry[], label: string): WeightStore {
  const map = new Map(entries.map((e) => {
    const n = e.shape.reduce((a, b) => a * b, 1);
    const g = gaussian(n, seedOf(e.name));
    const mean = e.init.mean ?? 0;
    for (let i = 0; i < n; i++) g[i] = mean + e.init.std * g[i]!;
    return [e.name, tensor('float32', e.shape, g)] as const;
  }));
  return new MemoryStore(map, label);
}

export function tinyRandomWeights(): { weights: SD3Weights; preprocessor: SD3Preprocessor } {
  const label = 'tiny-random preset';
  return {
    weights: {
      label,
      mmdit: memoryStore(mmditLayout('', { depth: 2, posEmbedMaxSize: 64, adm: 2 * CLIP_WIDTH, contextIn: 2 * CLIP_WIDTH }), label),
      vae: memoryStore(vaeLayout('', { channels: [32, 32, 32, 32], resBlocks: 1 }), label),
      clipL: memoryStore(clipLayout('', CLIP_WIDTH, 2, false), label),
      clipG: memoryStore(clipLayout('', CLIP_WIDTH, 2, true), label),
      clipLConfig: { numAttentionHeads: 2, hiddenAct: 'quick_gelu' },
      clipGConfig: { numAttentionHeads: 2, hiddenAct: 'gelu' },
      shift: DEFAULT_SHIFT,
    },
    preprocessor: new SD3Preprocessor(),
  };
}
