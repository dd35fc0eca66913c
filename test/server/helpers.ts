/**
 * A server on 127.0.0.1 (port 0) with the tiny-random model at 64x64 on one thread, for the server tests, and
 * small helpers: JSON posts, SSE reading, test images as base64 PNGs.
 */
import assert from 'node:assert/strict';
import { RGBImage } from '../../src/image/image.js';
import { loadPreset } from '../../src/presets/index.js';
import { type ServerHandle, type ServerOptions, startServer } from '../../src/server/index.js';
import type { LoadedModel } from '../../src/server/engine.js';

export interface TestServer extends ServerHandle {
  readonly model: LoadedModel;
  stop(): Promise<void>;
}

export async function tinyModel(): Promise<LoadedModel> {
  const loaded = await loadPreset('tiny-random', { imageShape: { width: 64, height: 64 }, threads: 1 });
  return { name: 'tiny-random', ...loaded };
}

/** Starts a server on a tiny model (a fresh one unless given). */
export async function startTiny(opts: Partial<ServerOptions> & { model?: LoadedModel } = {}): Promise<TestServer> {
  const model = opts.model ?? await tinyModel();
  const handle = await startServer({ modelName: 'tiny-random', port: 0, ...opts, model });
  await handle.ready;
  return {
    ...handle,
    model,
    async stop() {
      await handle.close();
      if (!opts.model) await model.backbone.dispose();
    },
  };
}

export function postJSON(url: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(init.headers as Record<string, string> | undefined) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...(init.signal ? { signal: init.signal } : {}),
  });
}

export interface SSEEvent {
  readonly event: string;
  readonly data: unknown;
}

/** Reads a whole SSE stream (until the server closes it). */
export async function readSSE(res: Response, onEvent?: (e: SSEEvent) => void): Promise<SSEEvent[]> {
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
  const out: SSEEvent[] = [];
  const decoder = new TextDecoder();
  let buf = '';
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let cut: number;
    while ((cut = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data.push(line.slice(6));
      }
      if (data.length === 0) continue;
      const text = data.join('\n');
      let parsed: unknown = text;
      try { parsed = JSON.parse(text); } catch { /* plain text */ }
      const e = { event, data: parsed };
      out.push(e);
      onEvent?.(e);
    }
  }
  return out;
}

/** A deterministic picture as a base64 PNG. */
export function pictureB64(width: number, height: number, salt = 0): string {
  return picture(width, height, salt).toPNG().toString('base64');
}

export function picture(width: number, height: number, salt = 0): RGBImage {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    const x = i % width;
    const y = Math.floor(i / width);
    data[i * 3] = (x * 4 + salt) % 256;
    data[i * 3 + 1] = (y * 4) % 256;
    data[i * 3 + 2] = ((x ^ y) * 8 + salt) % 256;
  }
  return new RGBImage(width, height, data);
}

/** White (repaint) where `repaint(x, y)`, black elsewhere, as a base64 PNG. */
export function maskB64(width: number, height: number, repaint: (x: number, y: number) => boolean): string {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) if (repaint(x, y)) data.fill(255, (y * width + x) * 3, (y * width + x) * 3 + 3);
  return new RGBImage(width, height, data).toPNG().toString('base64');
}

export async function json(res: Response): Promise<Record<string, unknown>> {
  return (await res.json()) as Record<string, unknown>;
}
