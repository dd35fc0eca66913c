/**
 * Command-line arguments of the benchmark scripts, parsed without side effects so that a test can check them.
 * Bad values throw an SD3Error naming the flag, the value and what was expected.
 */
import { parseArgs } from 'node:util';
import { SD3Error } from '../src/core/errors.js';
import { type DeviceChoice, parseDevice } from '../src/runtime/ort.js';

/** The bench's mode names and the backbone dtype each stands for. */
// 'resident': float32 math with the file's 16-bit MMDiT weights kept resident and widened per layer.
export const BENCH_MODES = { fp32: 'float32', float32: 'float32', int8: 'int8', resident: 'float32', fp16: 'float16', float16: 'float16' } as const;
export type BenchMode = keyof typeof BENCH_MODES;

export interface BenchSize {
  readonly width: number;
  readonly height: number;
  /** As given on the command line ("512" or "768x1344"). */
  readonly text: string;
}

export interface RunArgs {
  readonly checkpoint: string;
  readonly sizes: readonly BenchSize[];
  readonly modes: readonly BenchMode[];
  readonly steps: number;
  readonly threads?: number;
  readonly device: DeviceChoice;
  readonly json: boolean;
  readonly noDecode: boolean;
  readonly vaeTile?: { readonly size: number; readonly overlap: number };
  readonly int8Clip: boolean;
  /** Decode with the int8 VAE decoder (vaeDtype 'int8'), and also with the exact one to report the difference. */
  readonly vaeInt8: boolean;
  /** Profile every session with ORT's profiler and print a table by operator type. */
  readonly profile: boolean;
  /** Where the profile JSON files go (default: a new folder under the OS temp folder). */
  readonly profileDir?: string;
}

export const RUN_USAGE = 'usage: npm run bench -- --checkpoint <path.safetensors> [--size 512[,256,WxH]] [--steps 2] [--mode fp32|int8|resident|fp16[,..]] '
  + '[--threads N] [--device cpu|webgpu|auto] [--no-decode] [--vae-tile N,OVERLAP] [--int8-clip] [--vae-int8] [--profile [--profile-dir DIR]] [--json]';

function positiveInt(text: string, flag: string, min = 1): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < min) throw new SD3Error(`${flag} must be an integer >= ${min}, got ${JSON.stringify(text)}`);
  return n;
}

/** "512" -> 512x512, "768x1344" -> width 768, height 1344 (multiples of 16: the VAE's 8 times the patch size 2). */
export function parseSize(text: string): BenchSize {
  const m = /^(\d+)(?:x(\d+))?$/.exec(text);
  if (!m) throw new SD3Error(`--size takes N or WxH (e.g. 512 or 768x1344), got ${JSON.stringify(text)}`);
  const width = Number(m[1]);
  const height = m[2] ? Number(m[2]) : width;
  if (width < 16 || height < 16 || width % 16 || height % 16) throw new SD3Error(`--size ${text}: width and height must be multiples of 16, at least 16`);
  return { width, height, text };
}

/** Parses bench/run.ts's arguments. */
export function parseRunArgs(argv: readonly string[]): RunArgs {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        checkpoint: { type: 'string' },
        size: { type: 'string', default: '512' },
        steps: { type: 'string', default: '2' },
        mode: { type: 'string', default: 'fp32' },
        threads: { type: 'string' },
        device: { type: 'string', default: 'cpu' },
        json: { type: 'boolean', default: false },
        'no-decode': { type: 'boolean', default: false },
        'vae-tile': { type: 'string' },
        'int8-clip': { type: 'boolean', default: false },
        'vae-int8': { type: 'boolean', default: false },
        profile: { type: 'boolean', default: false },
        'profile-dir': { type: 'string' },
      },
    }));
  } catch (e) {
    throw new SD3Error((e as Error).message, { cause: e });
  }
  if (!values.checkpoint) throw new SD3Error('--checkpoint is required (make one with: npm run make-random-checkpoint -- /tmp/sd3_random.safetensors)');
  const modes = values.mode.split(',').map((m) => {
    if (!Object.hasOwn(BENCH_MODES, m)) throw new SD3Error(`--mode must be ${Object.keys(BENCH_MODES).join(', ')} (comma-separated for several), got ${JSON.stringify(m)}`);
    return m as BenchMode;
  });
  let vaeTile: RunArgs['vaeTile'];
  if (values['vae-tile'] !== undefined) {
    const parts = values['vae-tile'].split(',');
    if (parts.length > 2) throw new SD3Error(`--vae-tile takes N[,OVERLAP], got ${JSON.stringify(values['vae-tile'])}`);
    vaeTile = { size: positiveInt(parts[0]!, '--vae-tile size'), overlap: parts[1] === undefined ? 16 : positiveInt(parts[1], '--vae-tile overlap', 0) };
  }
  if (values['profile-dir'] !== undefined && !values.profile) throw new SD3Error('--profile-dir needs --profile');
  return {
    checkpoint: values.checkpoint,
    sizes: values.size.split(',').map(parseSize),
    modes,
    steps: positiveInt(values.steps, '--steps'),
    ...(values.threads !== undefined ? { threads: positiveInt(values.threads, '--threads') } : {}),
    device: parseDevice(values.device, '--device'),
    json: values.json,
    noDecode: values['no-decode'],
    ...(vaeTile ? { vaeTile } : {}),
    int8Clip: values['int8-clip'],
    vaeInt8: values['vae-int8'],
    profile: values.profile,
    ...(values['profile-dir'] !== undefined ? { profileDir: values['profile-dir'] } : {}),
  };
}

/** The arguments for one configuration's child process (one size, one mode). */
export function childRunArgs(a: RunArgs, mode: BenchMode, size: BenchSize): string[] {
  return [
    '--checkpoint', a.checkpoint, '--size', size.text, '--steps', String(a.steps), '--mode', mode, '--json', '--device', a.device,
    ...(a.threads !== undefined ? ['--threads', String(a.threads)] : []),
    ...(a.noDecode ? ['--no-decode'] : []),
    ...(a.vaeTile ? ['--vae-tile', `${a.vaeTile.size},${a.vaeTile.overlap}`] : []),
    ...(a.int8Clip ? ['--int8-clip'] : []),
    ...(a.vaeInt8 ? ['--vae-int8'] : []),
    ...(a.profile ? ['--profile'] : []),
    ...(a.profileDir !== undefined ? ['--profile-dir', a.profileDir] : []),
  ];
}

export interface T5Args {
  readonly checkpoint: string;
  readonly dtype: 'int8' | 'float32';
  readonly tokens: number;
}

export const T5_USAGE = 'usage: npm run bench:t5 -- --checkpoint <path> [--dtype int8|float32] [--tokens 77]';

/** Parses bench/t5.ts's arguments. */
export function parseT5Args(argv: readonly string[]): T5Args {
  let values;
  try {
    ({ values } = parseArgs({ args: [...argv], options: { checkpoint: { type: 'string' }, dtype: { type: 'string', default: 'int8' }, tokens: { type: 'string', default: '77' } } }));
  } catch (e) {
    throw new SD3Error((e as Error).message, { cause: e });
  }
  if (!values.checkpoint) throw new SD3Error('--checkpoint is required (make one with: npm run make-random-checkpoint -- /tmp/sd3_random_t5.safetensors --t5)');
  if (values.dtype !== 'int8' && values.dtype !== 'float32') throw new SD3Error(`--dtype must be int8 or float32, got ${JSON.stringify(values.dtype)}`);
  return { checkpoint: values.checkpoint, dtype: values.dtype, tokens: positiveInt(values.tokens, '--tokens', 2) };
}

/** Runs `main` with parsed arguments; a bad argument prints its message and the usage line and exits with 2. */
export function withArgs<T>(parse: (argv: readonly string[]) => T, usage: string, argv = process.argv.slice(2)): T {
  try {
    return parse(argv);
  } catch (e) {
    if (!(e instanceof SD3Error)) throw e;
    console.error(`${e.message}\n${usage}`);
    process.exit(2);
  }
}

/** Runs `f`; an SD3Error (e.g. a checkpoint that lacks what the bench needs) prints its message and exits with 1. */
export function orExit<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (!(e instanceof SD3Error)) throw e;
    console.error(e.message);
    process.exit(1);
  }
}
