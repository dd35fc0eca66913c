/** `sd3 download`: fetch SD3 weights from the Hugging Face hub into the standard cache. */
import { parseArgs } from 'node:util';
import { createProgressBar, downloadSD3 } from '../hub/index.js';
import { UsageError } from './args.js';

const HELP = `Usage: sd3 download <repo> [--file NAME.safetensors] [--t5] [--revision REV]

  <repo>        e.g. stabilityai/stable-diffusion-3-medium-diffusers (diffusers layout), or
                stabilityai/stable-diffusion-3-medium with --file sd3_medium_incl_clips.safetensors
  --file NAME   a single-file checkpoint in the repo (repeatable)
  --t5          also fetch T5-XXL (text_encoder_3, tokenizer_3) from a diffusers repo
  --revision R  branch, tag or commit (default main)

Token: HF_TOKEN or the token file of huggingface-cli login. Cache: HF_HUB_CACHE or HF_HOME/hub
(~/.cache/huggingface/hub), shared with the Python tools. HF_HUB_OFFLINE=1 uses the cache only.
SD3_HUB_TIMEOUT=S: give up on a server silent for S seconds (default 30; the partial file is resumed next run).`;

export async function runDownload(argv: string[], signal: AbortSignal): Promise<number> {
  const { values: v, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      file: { type: 'string', multiple: true },
      t5: { type: 'boolean' },
      revision: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) {
    console.log(HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError(`expected one repo id, got ${positionals.length} (see sd3 download --help)`);
  const result = await downloadSD3(positionals[0]!, {
    t5: v.t5 ?? false,
    ...(v.file ? { file: v.file } : {}),
    ...(v.revision ? { revision: v.revision } : {}),
    onProgress: createProgressBar(),
    signal,
  });
  console.log(v.file ? Object.values(result.files).join('\n') : result.snapshotDir);
  return 0;
}
