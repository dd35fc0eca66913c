/**
 * Per-pixel difference of two PNG images of the same size, in 8-bit codes over every channel:
 *
 *   node --import tsx bench/gpu/compare-png.ts a.png b.png     ->  {"max": 3, "mean": 0.41, "values": 12288}
 *
 * Used by bench/gpu/check.sh to report how far a float16 image is from the float32 one.
 */
import * as fs from 'node:fs';
import { PNG } from 'pngjs';

const [a, b] = process.argv.slice(2);
if (!a || !b) {
  console.error('usage: node --import tsx bench/gpu/compare-png.ts A.png B.png');
  process.exit(2);
}
const pa = PNG.sync.read(fs.readFileSync(a));
const pb = PNG.sync.read(fs.readFileSync(b));
if (pa.width !== pb.width || pa.height !== pb.height) {
  console.error(`${a} is ${pa.width}x${pa.height}, ${b} is ${pb.width}x${pb.height}; expected the same size`);
  process.exit(1);
}
let max = 0;
let sum = 0;
let n = 0;
for (let i = 0; i < pa.data.length; i++) {
  if (i % 4 === 3) continue; // alpha
  const d = Math.abs(pa.data[i]! - pb.data[i]!);
  max = Math.max(max, d);
  sum += d;
  n++;
}
console.log(JSON.stringify({ max, mean: Number((sum / n).toFixed(4)), values: n }));
