/**
 * Writes CLIP-L and CLIP-G with random F16 weights at the real SD3 Medium shapes and single-file key names
 * (CLIP-L without `text_projection.weight`, as in the official file).
 *
 *   npx tsx scripts/make-random-clips.ts [/tmp/sd3-clips.safetensors]
 *
 * For benchmarks only; never commit the output (about 1.6 GB).
 */
import { type TensorEntry, writeSafetensorsEntries } from '../src/core/safetensors.js';
import { f32ToF16, numel } from '../src/core/tensor.js';
import { CLIP_G_CONFIG, CLIP_L_CONFIG, clipWeightShapes } from '../src/models/clip.js';

const TABLE = 1 << 16;

/** Seeded xorshift32. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; return (x >>> 0) / 2 ** 32; };
}

/** A table of F16 normal(mean, std) values; tensors copy random windows of it (fast for a billion values). */
function normalTable(next: () => number, mean: number, std: number): Uint16Array {
  const t = new Uint16Array(TABLE);
  for (let i = 0; i < TABLE; i += 2) {
    const r = Math.sqrt(-2 * Math.log(next() || 1e-12));
    const a = 2 * Math.PI * next();
    t[i] = f32ToF16(mean + std * r * Math.cos(a));
    t[i + 1] = f32ToF16(mean + std * r * Math.sin(a));
  }
  return t;
}

function entries(prefix: string, shapes: Map<string, number[]>, next: () => number): TensorEntry[] {
  return [...shapes].map(([name, shape]) => {
    const norm = /norm\d?\.weight$|final_layer_norm\.weight$/.test(name);
    const std = name.includes('embedding') ? 0.02 : name.endsWith('.bias') ? 0.01 : 1 / Math.sqrt(shape[shape.length - 1]!);
    const table = normalTable(next, norm ? 1 : 0, norm ? 0.05 : std);
    return {
      name: prefix + name, dtype: 'float16' as const, shape,
      fill: (out: Uint8Array) => {
        const dst = new Uint16Array(out.buffer, out.byteOffset, numel(shape));
        for (let i = 0; i < dst.length; i += 1024) {
          const start = Math.floor(next() * (TABLE - 1024));
          dst.set(table.subarray(start, start + Math.min(1024, dst.length - i)), i);
        }
      },
    };
  });
}

const file = process.argv[2] ?? '/tmp/sd3-clips.safetensors';
const next = rng(1234);
writeSafetensorsEntries(file, [
  ...entries('text_encoders.clip_l.transformer.', clipWeightShapes(CLIP_L_CONFIG, false), next),
  ...entries('text_encoders.clip_g.transformer.', clipWeightShapes(CLIP_G_CONFIG, true), next),
], { format: 'pt', note: 'random weights for benchmarks' });
console.log(`wrote ${file}`);
