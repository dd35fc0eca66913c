/**
 * The `demo` preset: a tiny model with SD3 Medium's exact structure and checkpoint key names, trained from
 * scratch on drawn scenes (flat circles, squares and triangles in named colours at named positions on plain
 * backgrounds; scripts/demo-model/). It ships in the package as one single-file checkpoint and is opened by
 * the same loader as `sd3_medium_incl_clips.safetensors`. Native size 64x64: its position grid holds
 * exactly 64x64 pixels, so larger sizes are refused (smaller multiples of 16 run, but were never trained).
 */
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { SD3Error } from '../core/errors.js';

export const DEMO_SIZE = 64;

/** Where the package keeps the demo checkpoint. */
export function demoCheckpointPath(): string {
  const file = fileURLToPath(new URL('../../assets/demo/sd3-demo.safetensors', import.meta.url));
  if (!fs.existsSync(file)) {
    throw new SD3Error(`the demo model's weights are missing (${file}); reinstall the package, or train them with scripts/demo-model/README.md`);
  }
  return file;
}
