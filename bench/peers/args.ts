/** Arguments of `npm run bench:peers` (bench/peers.ts), parsed without side effects. */
import { parseArgs } from 'node:util';
import { SD3Error } from '../../src/core/errors.js';
import { type BenchSize, parseSize } from '../args.js';

export const PEERS = ['sd3ts-fp32', 'sd3ts-int8', 'torch', 'sdcpp'] as const;
export type Peer = (typeof PEERS)[number];

export interface PeersArgs {
  readonly checkpoint: string;
  readonly sizes: readonly BenchSize[];
  readonly steps: number;
  readonly threads: number;
  readonly peers: readonly Peer[];
  /** PyTorch dtypes to run (default both). */
  readonly torchDtypes: readonly ('float32' | 'bfloat16')[];
  readonly json: boolean;
}

export const PEERS_USAGE = 'usage: SDCPP_SRC=<stable-diffusion.cpp checkout> npm run bench:peers -- --checkpoint <random checkpoint> '
  + `[--size 256,512] [--steps 1] [--threads 2] [--peers ${PEERS.join(',')}] [--torch-dtype float32,bfloat16] [--json]`;

export function parsePeersArgs(argv: readonly string[]): PeersArgs {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        checkpoint: { type: 'string' },
        size: { type: 'string', default: '256' },
        steps: { type: 'string', default: '1' },
        threads: { type: 'string', default: '2' },
        peers: { type: 'string', default: PEERS.join(',') },
        'torch-dtype': { type: 'string', default: 'float32,bfloat16' },
        json: { type: 'boolean', default: false },
      },
    }));
  } catch (e) {
    throw new SD3Error((e as Error).message, { cause: e });
  }
  if (!values.checkpoint) throw new SD3Error('--checkpoint is required (make one with: npm run make-random-checkpoint -- /tmp/sd3_random.safetensors)');
  const int = (text: string, flag: string) => {
    if (!/^\d+$/.test(text) || Number(text) < 1) throw new SD3Error(`${flag} must be an integer >= 1, got ${JSON.stringify(text)}`);
    return Number(text);
  };
  const peers = values.peers.split(',').map((p) => {
    if (!(PEERS as readonly string[]).includes(p)) throw new SD3Error(`--peers must be among ${PEERS.join(', ')}, got ${JSON.stringify(p)}`);
    return p as Peer;
  });
  const torchDtypes = values['torch-dtype'].split(',').map((d) => {
    if (d !== 'float32' && d !== 'bfloat16') throw new SD3Error(`--torch-dtype must be float32 and/or bfloat16, got ${JSON.stringify(d)}`);
    return d;
  });
  return {
    checkpoint: values.checkpoint, sizes: values.size.split(',').map(parseSize), steps: int(values.steps, '--steps'),
    threads: int(values.threads, '--threads'), peers, torchDtypes, json: values.json,
  };
}
