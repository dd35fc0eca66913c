/** `sd3 generate`: text-to-image, image-to-image (--image) and inpainting (--mask). */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { createProgressBar } from '../hub/index.js';
import { type RGBImage, readImage } from '../image/image.js';
import type { StepInfo } from '../pipelines/denoise.js';
import { ImageToImage } from '../pipelines/image-to-image.js';
import { Inpaint } from '../pipelines/inpaint.js';
import { TextToImage } from '../pipelines/text-to-image.js';
import { defaultImageSize, loadPreset } from '../presets/index.js';
import { MODEL_FLAGS, UsageError, intArg, numArg, runtimeArgs, tileArg } from './args.js';

const HELP = `Usage: sd3 generate -p PROMPT [options]

  -p, --prompt TEXT            the prompt (required)
  -n, --negative-prompt TEXT   what to steer away from (default "")
  -m, --model MODEL            preset, .safetensors file, folder or hub id (default stable_diffusion_3_medium)
  -o, --output FILE.png        output file (default out.png; with --batch N: out-1.png ... out-N.png)
      --width N, --height N    image size, multiples of 16 (default 1024; 64 for demo, 256 for tiny-random; the input image's size with --image)
      --steps N                denoising steps (default 28; 50 with --image)
      --cfg-scale X            guidance scale (default 7.0; <= 1 disables the negative prompt)
      --strength X             with --image: how much to repaint, 0..1 (default 0.8; 0.6 with --mask)
      --seed N                 seed (default random); image i of a batch uses seed + i
      --batch N                images per prompt (default 1)
      --image FILE             input image (PNG or JPEG) for image-to-image
      --mask FILE              inpainting mask (PNG or JPEG; white = repaint), needs --image
      --threads N              CPU threads (default: all cores)
      --device cpu|webgpu|auto where to run (default cpu, or $SD3_DEVICE); webgpu: the GPU, float32 only;
                               auto: the GPU when one is found
      --int8                   int8 Linear weights (faster on CPUs with AMX/VNNI; cached next to the checkpoint)
      --t5                     use T5-XXL when the checkpoint has it (needs much more memory)
      --low-memory             release each model once it is no longer needed
      --vae-tile N[,OVERLAP]   decode in tiles of N latent cells (default overlap N/4): far less memory for
                               large images, not exactly the untiled result
      --json                   print a JSON result on stdout
  -h, --help`;

function outputNames(output: string, n: number): string[] {
  if (!output.toLowerCase().endsWith('.png')) throw new UsageError(`--output must end in .png, got "${output}"`);
  const dir = path.dirname(path.resolve(output));
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new UsageError(`the output folder ${dir} does not exist`);
  if (n === 1) return [output];
  const base = output.slice(0, -4);
  return Array.from({ length: n }, (_, i) => `${base}-${i + 1}.png`);
}

/** An input picture; a missing or unreadable file is bad usage (exit 2), not a failure of the run. */
async function readInput(flag: string, file: string): Promise<RGBImage> {
  try {
    return await readImage(file);
  } catch (e) {
    throw new UsageError(`--${flag}: ${(e as Error).message}`);
  }
}

function stepReporter(json: boolean): (s: StepInfo) => void {
  const tty = process.stderr.isTTY && !json;
  return (s) => {
    if (tty) {
      const width = 30;
      const done = Math.round((s.step / s.total) * width);
      const eta = s.step > 0 ? (s.elapsed / s.step) * (s.total - s.step) : 0;
      process.stderr.write(`\r[${'#'.repeat(done)}${'.'.repeat(width - done)}] step ${s.step}/${s.total}  ${s.elapsed.toFixed(1)} s  eta ${eta.toFixed(0)} s `);
      if (s.step === s.total) process.stderr.write('\n');
    } else {
      process.stderr.write(`step ${s.step}/${s.total} ${s.elapsed.toFixed(2)} s\n`);
    }
  };
}

export async function runGenerate(argv: string[], signal: AbortSignal): Promise<number> {
  const { values: v } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      prompt: { type: 'string', short: 'p' },
      'negative-prompt': { type: 'string', short: 'n' },
      ...MODEL_FLAGS,
      output: { type: 'string', short: 'o' },
      steps: { type: 'string' },
      'cfg-scale': { type: 'string' },
      strength: { type: 'string' },
      seed: { type: 'string' },
      batch: { type: 'string' },
      image: { type: 'string' },
      mask: { type: 'string' },
      t5: { type: 'boolean' },
      'low-memory': { type: 'boolean' },
      'vae-tile': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) {
    console.log(HELP);
    return 0;
  }
  // Check everything we can before loading a model.
  if (v.prompt === undefined) throw new UsageError('--prompt is required (see sd3 generate --help)');
  if (v.mask !== undefined && v.image === undefined) throw new UsageError('--mask needs --image (the picture to inpaint)');
  const model = v.model ?? 'stable_diffusion_3_medium';
  const batch = intArg('batch', v.batch, 1, 1)!;
  const steps = intArg('steps', v.steps, 1);
  const seed = intArg('seed', v.seed, 0);
  if (seed !== undefined && seed > 0xffffffff) throw new UsageError(`--seed must be at most 4294967295, got ${seed}`);
  const runtime = runtimeArgs(v);
  const cfg = numArg('cfg-scale', v['cfg-scale'], () => true, 'a number');
  const strength = numArg('strength', v.strength, (n) => n >= 0 && n <= 1, 'a number in [0, 1]');
  if (strength !== undefined && v.image === undefined) throw new UsageError('--strength applies to --image (image-to-image or inpainting)');
  const image = v.image !== undefined ? await readInput('image', v.image) : undefined;
  const mask = v.mask !== undefined ? await readInput('mask', v.mask) : undefined;
  const fallback = defaultImageSize(model);
  const round16 = (n: number) => Math.max(16, Math.round(n / 16) * 16);
  const width = intArg('width', v.width, 16) ?? (image ? round16(image.width) : fallback);
  const height = intArg('height', v.height, 16) ?? (image ? round16(image.height) : fallback);
  for (const [k, n] of [['width', width], ['height', height]] as const) {
    if (n % 16 !== 0) throw new UsageError(`--${k} must be a multiple of 16, got ${n}`);
  }
  const vaeTile = v['vae-tile'] !== undefined ? tileArg(v['vae-tile']) : undefined;
  const outputs = outputNames(v.output ?? 'out.png', batch);

  const t0 = performance.now();
  const loadProgress = v.json ? undefined : createProgressBar();
  const loaded = await loadPreset(model, {
    imageShape: { width, height },
    ...runtime,
    ...(v.t5 ? { t5: true } : {}),
    ...(v['low-memory'] ? { lowMemory: true } : {}),
    ...(vaeTile ? { vaeTile } : {}),
    ...(loadProgress ? { onProgress: loadProgress } : {}),
    signal,
  });
  const prompts = Array.from({ length: batch }, () => v.prompt!);
  const negativePrompts = prompts.map(() => v['negative-prompt'] ?? '');
  const options = {
    ...(steps !== undefined ? { numSteps: steps } : {}),
    ...(cfg !== undefined ? { guidanceScale: cfg } : {}),
    ...(seed !== undefined ? { seed } : {}),
    ...(strength !== undefined ? { strength } : {}),
    signal,
    onStep: stepReporter(v.json ?? false),
  };
  let images: RGBImage[];
  const { backbone, preprocessor, imageShape } = loaded;
  try {
    if (image && mask) {
      images = ([] as RGBImage[]).concat(await new Inpaint(backbone, preprocessor, imageShape).generate({ images: image, masks: mask, prompts, negativePrompts }, options));
    } else if (image) {
      images = ([] as RGBImage[]).concat(await new ImageToImage(backbone, preprocessor, imageShape).generate({ images: image, prompts, negativePrompts }, options));
    } else {
      images = await new TextToImage(backbone, preprocessor, imageShape).generate({ prompts, negativePrompts }, options);
    }
    if (images.some((img) => JSON.parse(img.metadata.parameters ?? '{}').promptTruncated)) {
      process.stderr.write('sd3 generate: warning: the prompt is longer than CLIP reads (75 tokens); its end was ignored\n');
    }
    // Written only once every image exists, each atomically: an interrupted run leaves no file.
    for (let i = 0; i < images.length; i++) await images[i]!.save(outputs[i]!);
  } finally {
    await backbone.dispose();
  }
  const seconds = (performance.now() - t0) / 1000;
  if (v.json) {
    console.log(JSON.stringify({
      outputs: outputs.map((o) => path.resolve(o)),
      parameters: images.map((img) => JSON.parse(img.metadata.parameters ?? '{}')),
      seconds,
    }));
  } else {
    for (const o of outputs) console.log(o);
  }
  return 0;
}
