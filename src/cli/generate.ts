/** `sd3 generate`: text-to-image, image-to-image (--image) and inpainting (--mask). */
import * as fs from 'node:fs';
import { AbortError } from '../core/errors.js';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { createProgressBar } from '../hub/index.js';
import { type RGBImage, readImage } from '../image/image.js';
import type { StepInfo } from '../pipelines/denoise.js';
import { generationParameters } from '../pipelines/infotext.js';
import { ImageToImage } from '../pipelines/image-to-image.js';
import { Inpaint } from '../pipelines/inpaint.js';
import { MAX_STEPS } from '../pipelines/inputs.js';
import { TextToImage } from '../pipelines/text-to-image.js';
import { defaultImageShape, loadPreset } from '../presets/index.js';
import { MODEL_FLAGS, SAMPLER_FLAGS, UsageError, intArg, longPromptsArg, loraArg, numArg, runtimeArgs, samplerArgs, tileArg } from './args.js';

const HELP = `Usage: sd3 generate -p PROMPT [options]

  -p, --prompt TEXT            the prompt (required)
  -n, --negative-prompt TEXT   what to steer away from (default "")
  -m, --model MODEL            preset, .safetensors file, folder or hub id (default stable_diffusion_3_medium)
  -o, --output FILE.png        output file (default out.png; with --batch N: out-1.png ... out-N.png)
      --width N, --height N    image size, multiples of 16 (default 1024; 64 for demo, 256 for tiny-random; the input image's size with --image, scaled down to fit the model)
      --steps N                denoising steps (default per model, README: SD3 Medium 28, 50 with --image;
                               SD3.5 Medium/Large 40; Large Turbo 4)
      --cfg-scale X            guidance scale (default per model: 7.0 SD3, 4.5 SD3.5, 1 Turbo; <= 1 disables the negative prompt)
      --sampler NAME           euler or dpmpp_2m (DPM-Solver++(2M), as Stability's reference; default euler)
      --slg-scale X            skip-layer guidance (off by default; 2.5 is Stability's SD3.5 Medium setting): a third,
                               positive-only pass with --slg-layers (default 7,8,9) skipped, on the steps k with
                               --slg-start * steps < k < --slg-end * steps (default 0.01 and 0.2)
      --step-cache X           step caching (off by default; 0.05-0.2 useful): a step reuses the last model
                               output while the summed estimate of its relative change stays under X, in (0, 1];
                               only steps k with --step-cache-start * steps <= k < --step-cache-end * steps
                               (default 0.15 and 0.95), never the first two or the last. Faster, not exact
      --strength X             with --image: how much to repaint, 0..1 (default 0.8; 0.6 with --mask)
      --seed N                 seed (default random); image i of a batch uses seed + i
      --batch N                images per prompt (default 1, at most 64)
      --image FILE             input image (PNG or JPEG) for image-to-image
      --mask FILE              inpainting mask (PNG or JPEG; white = repaint), needs --image
      --threads N              CPU threads (default: all cores)
      --device cpu|webgpu|auto where to run (default cpu, or $SD3_DEVICE); webgpu: the GPU (with --fp16: float16);
                               auto: the GPU when one is found
      --int8                   int8 Linear weights (faster on CPUs with AMX/VNNI; cached next to the checkpoint)
      --vae-int8               int8 VAE decoder convolutions (CPU; about 2x faster decodes, not exact)
      --fp16                   float16 MMDiT and VAE on the GPU (implies --device webgpu; needs WebGPU shader-f16)
      --t5                     use T5-XXL when the checkpoint has it (needs much more memory)
      --low-memory             release each model once it is no longer needed
      --vae-tile N[,OVERLAP]   decode in tiles of N latent cells (default overlap N/4): far less memory for
                               large images, not exactly the untiled result
      --lora FILE[:SCALE]      apply a LoRA to the MMDiT (diffusers, kohya or ComfyUI file; scale default 1);
                               repeat for several
      --long-prompts MODE      truncate (default: CLIP reads the first 75 tokens) or chunk (77-token CLIP
                               windows, T5 up to 256 tokens)
      --prompt-weights         read A1111 emphasis: (word), ((word)), (word:1.5), [word]; \\( is a literal (
      --json                   print a JSON result on stdout
  -h, --help`;

/** The most images one command makes: they are all held in memory until every one exists. */
const MAX_BATCH = 64;

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
      process.stderr.write(`step ${s.step}/${s.total} ${s.elapsed.toFixed(2)} s${s.cached ? ' (cached)' : ''}\n`);
    }
  };
}

/**
 * Writes the images once every one exists, each atomically; an interrupt or a failure while saving a batch
 * removes the images this run already wrote: a run leaves all its files or none.
 */
async function saveAllOrNone(images: readonly RGBImage[], outputs: readonly string[], signal: AbortSignal): Promise<void> {
  const written: string[] = [];
  try {
    for (let i = 0; i < images.length; i++) {
      if (signal.aborted) throw new AbortError();
      await images[i]!.save(outputs[i]!);
      written.push(outputs[i]!);
    }
    if (signal.aborted) throw new AbortError();
  } catch (e) {
    for (const f of written) fs.rmSync(f, { force: true });
    throw e;
  }
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
      ...SAMPLER_FLAGS,
      strength: { type: 'string' },
      seed: { type: 'string' },
      batch: { type: 'string' },
      image: { type: 'string' },
      mask: { type: 'string' },
      t5: { type: 'boolean' },
      'low-memory': { type: 'boolean' },
      'vae-tile': { type: 'string' },
      lora: { type: 'string', multiple: true },
      'long-prompts': { type: 'string' },
      'prompt-weights': { type: 'boolean' },
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
  const batch = intArg('batch', v.batch, 1, 1, MAX_BATCH)!;
  const steps = intArg('steps', v.steps, 1, undefined, MAX_STEPS);
  const seed = intArg('seed', v.seed, 0);
  if (seed !== undefined && seed > 0xffffffff) throw new UsageError(`--seed must be at most 4294967295, got ${seed}`);
  const runtime = runtimeArgs(v);
  const cfg = numArg('cfg-scale', v['cfg-scale'], () => true, 'a number');
  const sampling = samplerArgs(v);
  const strength = numArg('strength', v.strength, (n) => n >= 0 && n <= 1, 'a number in [0, 1]');
  if (strength !== undefined && v.image === undefined) throw new UsageError('--strength applies to --image (image-to-image or inpainting)');
  const image = v.image !== undefined ? await readInput('image', v.image) : undefined;
  const mask = v.mask !== undefined ? await readInput('mask', v.mask) : undefined;
  const fallback = defaultImageShape(model, image);
  const width = intArg('width', v.width, 16) ?? fallback.width;
  const height = intArg('height', v.height, 16) ?? fallback.height;
  for (const [k, n] of [['width', width], ['height', height]] as const) {
    if (n % 16 !== 0) throw new UsageError(`--${k} must be a multiple of 16, got ${n}`);
  }
  const vaeTile = v['vae-tile'] !== undefined ? tileArg(v['vae-tile']) : undefined;
  const loras = (v.lora ?? []).map(loraArg);
  for (const l of loras) if (!fs.existsSync(l.path)) throw new UsageError(`--lora: no such file ${l.path}`);
  const longPrompts = longPromptsArg(v['long-prompts']);
  const outputs = outputNames(v.output ?? 'out.png', batch);

  const t0 = performance.now();
  const loadProgress = v.json ? undefined : createProgressBar();
  const loaded = await loadPreset(model, {
    imageShape: { width, height },
    ...runtime,
    ...(v.t5 ? { t5: true } : {}),
    ...(v['low-memory'] ? { lowMemory: true } : {}),
    ...(vaeTile ? { vaeTile } : {}),
    ...(loras.length ? { loras } : {}),
    ...(longPrompts ? { longPrompts } : {}),
    ...(v['prompt-weights'] ? { promptWeights: true } : {}),
    ...(loadProgress ? { onProgress: loadProgress } : {}),
    signal,
  });
  const prompts = Array.from({ length: batch }, () => v.prompt!);
  const negativePrompts = prompts.map(() => v['negative-prompt'] ?? '');
  const options = {
    ...(steps !== undefined ? { numSteps: steps } : {}),
    ...(cfg !== undefined ? { guidanceScale: cfg } : {}),
    ...sampling,
    ...(seed !== undefined ? { seed } : {}),
    ...(strength !== undefined ? { strength } : {}),
    signal,
    onStep: stepReporter(v.json ?? false),
  };
  let images: RGBImage[];
  const { backbone, preprocessor, imageShape } = loaded;
  if (!v.json) {
    for (const l of backbone.loras) {
      const where = Object.entries(l.modulesByModel).map(([m, n]) => `${n} ${m}`).join(', ');
      process.stderr.write(`sd3 generate: LoRA ${path.basename(l.path)} x${l.scale}: ${where} modules (${l.formats.join(', ')})${l.ignoredKeys ? `, ${l.ignoredKeys} keys ignored (not for these models)` : ''}\n`);
    }
    process.stderr.write(`sd3 generate: long prompts: ${longPrompts ?? 'truncate'}${v['prompt-weights'] ? ', prompt weights on' : ''}\n`);
  }
  try {
    if (image && mask) {
      images = ([] as RGBImage[]).concat(await new Inpaint(backbone, preprocessor, imageShape).generate({ images: image, masks: mask, prompts, negativePrompts }, options));
    } else if (image) {
      images = ([] as RGBImage[]).concat(await new ImageToImage(backbone, preprocessor, imageShape).generate({ images: image, prompts, negativePrompts }, options));
    } else {
      images = await new TextToImage(backbone, preprocessor, imageShape).generate({ prompts, negativePrompts }, options);
    }
    if (images.some((img) => generationParameters(img)?.promptTruncated)) {
      process.stderr.write('sd3 generate: warning: the prompt is longer than CLIP reads (75 tokens); its end was ignored (--long-prompts chunk reads it all)\n');
    }
    await saveAllOrNone(images, outputs, signal);
  } finally {
    await backbone.dispose();
  }
  const seconds = (performance.now() - t0) / 1000;
  if (v.json) {
    console.log(JSON.stringify({
      outputs: outputs.map((o) => path.resolve(o)),
      parameters: images.map((img) => generationParameters(img) ?? {}),
      seconds,
    }));
  } else {
    for (const o of outputs) console.log(o);
  }
  return 0;
}
