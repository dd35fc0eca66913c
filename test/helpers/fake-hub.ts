/**
 * A loopback stand-in for the Hugging Face hub (Node's http module, 127.0.0.1 only) with the endpoints and
 * headers the downloader relies on, as huggingface.co answers them:
 *
 * - `GET /api/models/{repo}/revision/{rev}`: `{ _id, id, sha, siblings: [{ rfilename }] }`
 * - `HEAD|GET /{repo}/resolve/{rev}/{path}`: `X-Repo-Commit`, `ETag` (git sha1, quoted), `Content-Length`;
 *   for LFS files a 302 to a second "CDN" server (another origin, a signed-looking URL) with `X-Linked-Etag`
 *   (sha256, quoted) and `X-Linked-Size`; byte ranges answered with 206 and `Content-Range`
 * - errors with `X-Error-Code` / `X-Error-Message` headers and a JSON `{ error }` body: 401 RepoNotFound,
 *   404 RevisionNotFound / EntryNotFound, 401/403 GatedRepo with the hub's wording
 * - the CDN, like a presigned S3 URL, refuses requests that also carry an Authorization header (400)
 */
import { createHash, randomBytes } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeFile {
  readonly path: string;
  readonly content: Uint8Array | string;
  /** Stored with Git LFS (served through the CDN redirect); default: `.safetensors` files. */
  readonly lfs?: boolean;
}

export interface FakeRepo {
  readonly files: readonly FakeFile[];
  /** Commit of `main`; default a random 40-digit hash. */
  readonly commit?: string;
  /** Needs `Authorization: Bearer <token>` for the API and every file. */
  readonly gated?: boolean;
}

export interface RecordedRequest {
  readonly server: 'hub' | 'cdn';
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
}

export interface FakeHub {
  readonly endpoint: string;
  readonly cdnOrigin: string;
  /** The token the gated repositories accept. */
  readonly token: string;
  readonly requests: RecordedRequest[];
  commitOf(repoId: string): string;
  /** The next GET of `repoId/path` sends `afterBytes` body bytes, then waits (for `cutStalled` or the client). */
  stall(repoId: string, path: string, afterBytes: number): void;
  /** Drops the connections of stalled transfers: the client sees the transfer cut off mid-way. */
  cutStalled(): void;
  /** Sends the rest of every stalled transfer: the client sees a slow but complete answer. */
  finishStalled(): void;
  /** The next request (HEAD or GET) for `repoId/path` on the hub gets no answer at all, not even headers. */
  hold(repoId: string, path: string): void;
  /** From now on `repoId/path` is sent whole (200) even when a Range is asked for, as some proxies do. */
  ignoreRange(repoId: string, path: string): void;
  /** From now on `repoId/path` is served with one byte flipped (same size, wrong checksum). */
  tamper(repoId: string, path: string): void;
  close(): Promise<void>;
}

interface Entry {
  readonly bytes: Buffer;
  readonly lfs: boolean;
  readonly sha256: string;
  readonly gitSha1: string;
  readonly pointerSha1: string;
}

function gitSha1(bytes: Uint8Array): string {
  return createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
}

function entryOf(file: FakeFile): Entry {
  const bytes = Buffer.from(typeof file.content === 'string' ? Buffer.from(file.content, 'utf8') : file.content);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const pointer = `version https://git-lfs.github.com/spec/v1\noid sha256:${sha256}\nsize ${bytes.length}\n`;
  return { bytes, lfs: file.lfs ?? file.path.endsWith('.safetensors'), sha256, gitSha1: gitSha1(bytes), pointerSha1: gitSha1(Buffer.from(pointer)) };
}


export async function startFakeHub(repos: Record<string, FakeRepo>, options: { token?: string } = {}): Promise<FakeHub> {
  const token = options.token ?? 'hf_fake_hub_test_token';
  const data = new Map<string, { commit: string; gated: boolean; files: Map<string, Entry> }>();
  for (const [id, repo] of Object.entries(repos)) {
    data.set(id, {
      commit: repo.commit ?? randomBytes(20).toString('hex'),
      gated: repo.gated ?? false,
      files: new Map(repo.files.map((f) => [f.path, entryOf(f)])),
    });
  }
  const bySha = new Map<string, { repoId: string; path: string; entry: Entry }>();
  for (const [repoId, repo] of data) for (const [path, entry] of repo.files) if (entry.lfs) bySha.set(entry.sha256, { repoId, path, entry });
  const plans = new Map<string, number>();
  const stalled = new Map<http.ServerResponse, Buffer>();
  const held = new Set<string>();
  const tampered = new Set<string>();
  const wholeOnly = new Set<string>();
  const requests: RecordedRequest[] = [];

  const fail = (req: http.IncomingMessage, res: http.ServerResponse, status: number, code: string, message: string): void => {
    const body = JSON.stringify({ error: message });
    res.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      'x-error-code': code,
      'x-error-message': message,
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  };

  /** The hub's checks, in its order: repository, access, revision. */
  const access = (req: http.IncomingMessage, res: http.ServerResponse, repoId: string, rev: string) => {
    const repo = data.get(repoId);
    const auth = req.headers.authorization;
    if (!repo) {
      fail(req, res, auth ? 404 : 401, 'RepoNotFound', 'Repository not found');
      return null;
    }
    if (repo.gated && !auth) {
      fail(req, res, 401, 'GatedRepo', `Access to model ${repoId} is restricted. You must have access to it and be authenticated to access it. Please log in.`);
      return null;
    }
    if (repo.gated && auth !== `Bearer ${token}`) {
      fail(req, res, 403, 'GatedRepo', `Access to model ${repoId} is restricted and you are not in the authorized list. Visit https://huggingface.co/${repoId} to ask for access.`);
      return null;
    }
    if (rev !== 'main' && rev !== repo.commit) {
      fail(req, res, 404, 'RevisionNotFound', `Invalid rev id: ${rev}`);
      return null;
    }
    return repo;
  };

  const sendBytes = (req: http.IncomingMessage, res: http.ServerResponse, key: string, entry: Entry, headers: http.OutgoingHttpHeaders): void => {
    let bytes = entry.bytes;
    if (tampered.has(key)) {
      bytes = Buffer.from(bytes);
      bytes[bytes.length >> 1] ^= 0xff;
    }
    let start = 0;
    let status = 200;
    const range = wholeOnly.has(key) ? null : /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const end = range && range[2] ? Math.min(Number(range[2]), bytes.length - 1) : bytes.length - 1;
    if (range) {
      start = Number(range[1]);
      if (start >= bytes.length) {
        res.writeHead(416, { 'content-range': `bytes */${bytes.length}` });
        res.end();
        return;
      }
      status = 206;
      headers = { ...headers, 'content-range': `bytes ${start}-${end}/${bytes.length}` };
    }
    const body = bytes.subarray(start, end + 1);
    res.writeHead(status, { ...headers, 'accept-ranges': 'bytes', 'content-length': body.length, 'content-type': 'application/octet-stream' });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const afterBytes = plans.get(key);
    if (afterBytes === undefined) {
      res.end(body);
      return;
    }
    plans.delete(key);
    stalled.set(res, body.subarray(afterBytes));
    res.on('close', () => stalled.delete(res));
    res.write(body.subarray(0, afterBytes));
  };

  const hub = http.createServer((req, res) => {
    requests.push({ server: 'hub', method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const parts = url.pathname.split('/').slice(1).map(decodeURIComponent);
    if (parts[0] === 'api' && parts[1] === 'models' && parts[4] === 'revision' && parts.length === 6 && req.method === 'GET') {
      const repoId = `${parts[2]}/${parts[3]}`;
      const repo = access(req, res, repoId, parts[5]);
      if (!repo) return;
      const body = JSON.stringify({
        _id: createHash('md5').update(repoId).digest('hex').slice(0, 24),
        id: repoId,
        sha: repo.commit,
        private: false,
        gated: repo.gated ? 'manual' : false,
        downloads: 0,
        likes: 0,
        lastModified: '2024-06-12T00:00:00.000Z',
        pipeline_tag: 'text-to-image',
        siblings: [...repo.files.keys()].map((rfilename) => ({ rfilename })),
      });
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    if (parts[2] === 'resolve' && parts.length >= 5 && (req.method === 'GET' || req.method === 'HEAD')) {
      const repoId = `${parts[0]}/${parts[1]}`;
      const repo = access(req, res, repoId, parts[3]);
      if (!repo) return;
      const path = parts.slice(4).join('/');
      if (held.delete(`${repoId}/${path}`)) {
        stalled.set(res, Buffer.alloc(0));
        res.on('close', () => stalled.delete(res));
        return;
      }
      const entry = repo.files.get(path);
      if (!entry) {
        fail(req, res, 404, 'EntryNotFound', `${path} does not exist on "${parts[3]}"`);
        return;
      }
      if (entry.lfs) {
        const location = `${cdnOrigin}/repos/${entry.sha256}?X-Amz-Signature=${randomBytes(8).toString('hex')}`;
        const body = `Found. Redirecting to ${location}`;
        res.writeHead(302, {
          location,
          'x-repo-commit': repo.commit,
          'x-linked-etag': `"${entry.sha256}"`,
          'x-linked-size': entry.bytes.length,
          etag: `"${entry.pointerSha1}"`,
          'content-type': 'text/plain; charset=utf-8',
          'content-length': Buffer.byteLength(body),
        });
        res.end(req.method === 'HEAD' ? undefined : body);
        return;
      }
      sendBytes(req, res, `${repoId}/${path}`, entry, { 'x-repo-commit': repo.commit, etag: `"${entry.gitSha1}"` });
      return;
    }
    fail(req, res, 404, 'NotFound', `no route for ${req.method} ${url.pathname}`);
  });

  const cdn = http.createServer((req, res) => {
    requests.push({ server: 'cdn', method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const found = bySha.get(url.pathname.replace(/^\/repos\//, ''));
    if (req.headers.authorization) {
      res.writeHead(400, { 'content-type': 'application/xml' });
      res.end('<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>');
    } else if (!url.searchParams.get('X-Amz-Signature') || !found) {
      res.writeHead(403, { 'content-type': 'application/xml' });
      res.end('<Error><Code>AccessDenied</Code></Error>');
    } else {
      sendBytes(req, res, `${found.repoId}/${found.path}`, found.entry, { etag: `"${found.entry.sha256}"` });
    }
  });

  const listen = (server: http.Server) =>
    new Promise<string>((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));
  const endpoint = await listen(hub);
  const cdnOrigin = await listen(cdn);
  const close = (server: http.Server) =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });

  return {
    endpoint,
    cdnOrigin,
    token,
    requests,
    commitOf: (repoId) => data.get(repoId)?.commit ?? '',
    stall: (repoId, path, afterBytes) => plans.set(`${repoId}/${path}`, afterBytes),
    cutStalled: () => {
      for (const res of stalled.keys()) res.socket?.destroy();
    },
    finishStalled: () => {
      for (const [res, rest] of stalled) res.end(rest);
    },
    hold: (repoId, path) => held.add(`${repoId}/${path}`),
    ignoreRange: (repoId, path) => wholeOnly.add(`${repoId}/${path}`),
    tamper: (repoId, path) => tampered.add(`${repoId}/${path}`),
    close: async () => {
      await Promise.all([close(hub), close(cdn)]);
    },
  };
}

/** Deterministic filler bytes of a given size (distinct per seed). */
export function bytesOf(size: number, seed: number): Buffer {
  const out = Buffer.alloc(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** A tiny repository with the file names of stabilityai/stable-diffusion-3-medium-diffusers. */
export function sd3DiffusersRepo(): FakeFile[] {
  const json = (v: unknown) => JSON.stringify(v, null, 2) + '\n';
  const index = (shards: string[]) => json({ metadata: { total_size: 2048 }, weight_map: { 'encoder.a': shards[0], 'encoder.b': shards[1] } });
  let seed = 1;
  const w = (path: string, size = 1024): FakeFile => ({ path, content: bytesOf(size, seed++) });
  return [
    { path: '.gitattributes', content: '*.safetensors filter=lfs diff=lfs merge=lfs -text\n' },
    { path: 'README.md', content: '# tiny sd3\n' },
    { path: 'model_index.json', content: json({ _class_name: 'StableDiffusion3Pipeline' }) },
    { path: 'scheduler/scheduler_config.json', content: json({ shift: 3.0 }) },
    { path: 'transformer/config.json', content: json({ num_layers: 2 }) },
    w('transformer/diffusion_pytorch_model.safetensors', 256 * 1024),
    { path: 'vae/config.json', content: json({ latent_channels: 16 }) },
    w('vae/diffusion_pytorch_model.safetensors'),
    { path: 'text_encoder/config.json', content: json({ hidden_size: 12 }) },
    w('text_encoder/model.safetensors', 2048),
    w('text_encoder/model.fp16.safetensors'),
    { path: 'text_encoder_2/config.json', content: json({ hidden_size: 12 }) },
    w('text_encoder_2/model.safetensors', 2048),
    w('text_encoder_2/model.fp16.safetensors'),
    { path: 'text_encoder_3/config.json', content: json({ d_model: 12 }) },
    { path: 'text_encoder_3/model.safetensors.index.json', content: index(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']) },
    w('text_encoder_3/model-00001-of-00002.safetensors', 2048),
    w('text_encoder_3/model-00002-of-00002.safetensors', 2048),
    { path: 'text_encoder_3/model.safetensors.index.fp16.json', content: index(['model.fp16-00001-of-00002.safetensors', 'model.fp16-00002-of-00002.safetensors']) },
    w('text_encoder_3/model.fp16-00001-of-00002.safetensors'),
    w('text_encoder_3/model.fp16-00002-of-00002.safetensors'),
    { path: 'text_encoder_3/pytorch_model.bin', content: bytesOf(64, 99), lfs: true },
    { path: 'tokenizer/vocab.json', content: json({ a: 0 }) },
    { path: 'tokenizer/merges.txt', content: '#version: 0.2\na b\n' },
    { path: 'tokenizer/tokenizer_config.json', content: json({ model_max_length: 77 }) },
    { path: 'tokenizer/special_tokens_map.json', content: json({}) },
    { path: 'tokenizer_2/vocab.json', content: json({ a: 0 }) },
    { path: 'tokenizer_2/merges.txt', content: '#version: 0.2\na b\n' },
    { path: 'tokenizer_2/tokenizer_config.json', content: json({ model_max_length: 77 }) },
    { path: 'tokenizer_2/special_tokens_map.json', content: json({}) },
    { path: 'tokenizer_3/spiece.model', content: bytesOf(300, 7), lfs: true },
    { path: 'tokenizer_3/tokenizer.json', content: json({ model: { type: 'Unigram' } }) },
    { path: 'tokenizer_3/tokenizer_config.json', content: json({}) },
    { path: 'tokenizer_3/special_tokens_map.json', content: json({}) },
    w('vae/diffusion_pytorch_model.onnx', 64),
    w('transformer/diffusion_pytorch_model.msgpack', 64),
  ];
}
