#!/usr/bin/env node
/**
 * The `sd3` command: generate (text-to-image, --image for image-to-image, --mask for inpainting), download,
 * serve, info, devices. Exit codes: 0 success, 1 failure, 2 bad usage or input, 130 interrupted.
 */
import { AbortError, SD3Error } from '../core/errors.js';
import { UsageError } from './args.js';
import { describeUnexpected } from './failure.js';
import { VERSION } from '../pipelines/task.js';
import { runDevices } from './devices.js';
import { runDownload } from './download.js';
import { runGenerate } from './generate.js';
import { runInfo } from './info.js';
import { runServe } from './serve.js';
import { runWorker } from './worker.js';

const HELP = `sd3 ${VERSION}: Stable Diffusion 3 Medium in TypeScript

Usage:
  sd3 generate -p "a photo of a cat" [-m MODEL] [-o out.png] [options]
  sd3 generate --image in.png -p "..."                 image-to-image
  sd3 generate --image in.png --mask mask.png -p "..." inpainting (white = repaint)
  sd3 download <repo> [--file NAME.safetensors] [--t5]
  sd3 serve [-m MODEL] [--port 7860]                  OpenAI, A1111 and jobs APIs and a web page (serve --help)
  sd3 worker -m MODEL --redis redis://HOST:PORT        runs the jobs of "sd3 serve --redis" front ends (worker --help)
  sd3 info FILE.png [--json]                           the generation parameters a PNG carries
  sd3 devices [--json]                                 CPU, GPU (WebGPU) and what --device auto picks

Run "sd3 <command> --help" for a command's options.
MODEL: a preset (stable_diffusion_3_medium, demo, tiny-random), a .safetensors file, a folder
(single file or diffusers layout), or a Hugging Face repo id (org/name[/file.safetensors]).`;


async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    // Asked for: stdout, exit 0. No command at all is bad usage: stderr, exit 2.
    if (command === undefined) {
      process.stderr.write(`${HELP}\n`);
      return 2;
    }
    console.log(HELP);
    return 0;
  }
  if (command === '--version' || command === '-v') {
    console.log(VERSION);
    return 0;
  }
  const controller = new AbortController();
  let interrupted = false;
  const onSigint = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write('\ninterrupted: stopping after the current step (Ctrl-C again to quit now)\n');
    controller.abort();
  };
  process.on('SIGINT', onSigint);
  try {
    switch (command) {
      case 'generate': return await runGenerate(rest, controller.signal);
      case 'download': return await runDownload(rest, controller.signal);
      case 'serve': return await runServe(rest, controller.signal);
      case 'worker': return await runWorker(rest, controller.signal);
      case 'devices': return await runDevices(rest);
      case 'info': return await runInfo(rest);
      default: throw new UsageError(`unknown command "${command}" (expected generate, download, serve, worker, info or devices; see sd3 --help)`);
    }
  } catch (e) {
    if (e instanceof AbortError || (e as Error).name === 'AbortError') {
      process.stderr.write('sd3: stopped; nothing was written\n');
      return 130;
    }
    if (e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`sd3 ${command}: ${(e as Error).message}\n`);
      return 2;
    }
    if (e instanceof SD3Error) {
      process.stderr.write(`sd3 ${command}: ${e.message}\n`);
      return 1;
    }
    process.stderr.write(`sd3 ${command}: ${describeUnexpected(e)}\n`);
    return 1;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

process.exitCode = await main(process.argv.slice(2));
