/**
 * `sd3 serve`: a small HTTP server with a web page. One model is loaded once; requests are served one at a
 * time (a queue), since one generation already uses every core.
 *
 *   GET  /               the page
 *   POST /api/generate   JSON { prompt, negativePrompt?, steps?, cfgScale?, seed? } -> image/png
 *   GET  /api/health     { model, width, height, busy, queued }
 */
import * as http from 'node:http';
import { parseArgs } from 'node:util';
import { SD3Error, describe } from '../core/errors.js';
import { TextToImage } from '../pipelines/text-to-image.js';
import { defaultImageSize, loadPreset } from '../presets/index.js';
import { MODEL_FLAGS, UsageError, intArg, runtimeArgs } from './args.js';
import { PAGE } from './page.js';

const MAX_BODY = 64 * 1024;

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) { reject(new SD3Error(`request body over ${MAX_BODY} bytes`)); req.destroy(); } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/**
 * A numeric field as the page sends it (a string) or as JSON clients do (a number). Absent, null or "" (an empty
 * form field) means the default; anything else goes to the task as is, whose check names the bad value.
 */
function numberField(v: unknown): number | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v))) return Number(v);
  return v as number;
}

export interface ServerHandle {
  readonly server: http.Server;
  readonly url: string;
  close(): Promise<void>;
}

/** Starts the server on 127.0.0.1 (or `host`) and resolves once it listens. */
export async function startServer(task: TextToImage, opts: { port: number; host?: string; model: string }): Promise<ServerHandle> {
  let chain: Promise<unknown> = Promise.resolve();
  let queued = 0;
  const json = (res: http.ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };
  const server = http.createServer(async (req, res) => {
    try {
      if (req.method === 'GET' && (req.url === '/' || req.url === '/index.html')) {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
      } else if (req.method === 'GET' && req.url === '/api/health') {
        json(res, 200, { model: opts.model, width: task.imageShape.width, height: task.imageShape.height, busy: queued > 0, queued });
      } else if (req.method === 'POST' && req.url === '/api/generate') {
        let body: unknown;
        try {
          body = JSON.parse(await readBody(req));
        } catch (e) {
          return json(res, 400, { error: `body must be JSON: ${(e as Error).message}` });
        }
        if (typeof body !== 'object' || body === null || Array.isArray(body)) return json(res, 400, { error: `body must be a JSON object, got ${describe(body)}` });
        const b = body as Record<string, unknown>;
        if (typeof b.prompt !== 'string') return json(res, 400, { error: `prompt must be a string, got ${describe(b.prompt)}` });
        const negative = b.negativePrompt ?? '';
        if (typeof negative !== 'string') return json(res, 400, { error: `negativePrompt must be a string, got ${describe(negative)}` });
        const steps = numberField(b.steps);
        const cfgScale = numberField(b.cfgScale);
        const seed = numberField(b.seed);
        const controller = new AbortController();
        res.on('close', () => { if (!res.writableFinished) controller.abort(); });
        queued++;
        const job = chain.then(() => task.generate({ prompts: b.prompt as string, negativePrompts: negative }, {
          ...(steps !== undefined ? { numSteps: steps } : {}),
          ...(cfgScale !== undefined ? { guidanceScale: cfgScale } : {}),
          ...(seed !== undefined ? { seed } : {}),
          signal: controller.signal,
        }));
        chain = job.catch(() => undefined).finally(() => { queued--; });
        try {
          const img = ([] as import('../image/image.js').RGBImage[]).concat(await job)[0]!;
          res.writeHead(200, { 'content-type': 'image/png', 'x-sd3-parameters': img.metadata.parameters ?? '' }).end(img.toPNG());
        } catch (e) {
          if (!res.headersSent) json(res, e instanceof SD3Error ? 400 : 500, { error: (e as Error).message });
        }
      } else {
        json(res, 404, { error: `no route ${req.method} ${req.url}` });
      }
    } catch (e) {
      if (!res.headersSent) json(res, 500, { error: (e as Error).message });
    }
  });
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, host, () => resolve());
  });
  const addr = server.address() as { port: number };
  return {
    server,
    url: `http://${host}:${addr.port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

export async function runServe(argv: string[], signal: AbortSignal): Promise<number> {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      ...MODEL_FLAGS,
      port: { type: 'string' },
      host: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) {
    console.log('Usage: sd3 serve [-m MODEL] [--port 7860] [--host 127.0.0.1] [--width N --height N] [--threads N] [--device cpu|webgpu|auto] [--int8]');
    return 0;
  }
  const port = intArg('port', v.port, 0, 7860)!;
  if (port > 65535) throw new UsageError(`--port must be at most 65535, got ${port}`);
  const model = v.model ?? 'stable_diffusion_3_medium';
  const size = defaultImageSize(model);
  const runtime = runtimeArgs(v);
  const loaded = await loadPreset(model, {
    imageShape: { width: intArg('width', v.width, 16, size)!, height: intArg('height', v.height, 16, size)! },
    ...runtime,
  });
  const task = new TextToImage(loaded.backbone, loaded.preprocessor, loaded.imageShape);
  const handle = await startServer(task, { port, model, ...(v.host ? { host: v.host } : {}) });
  console.log(`sd3 serving ${model} at ${handle.url}`);
  await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
  await handle.close();
  await task.dispose();
  return 0;
}
