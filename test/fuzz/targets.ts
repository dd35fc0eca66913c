/**
 * Fuzz targets: every parser of outside data, each with a fast-check arbitrary of inputs (random bytes and
 * strings, and mutations of valid files, which reach deeper than noise) and a run that must either succeed
 * with a result that passes the target's property checks or throw an SD3Error. Anything else (another
 * error type, a failed property, or an input that takes longer than SLOW_MS) is a finding.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import jpeg from 'jpeg-js';
import { SD3Error } from '../../src/core/errors.js';
import { type DType, tensor } from '../../src/core/tensor.js';
import { parseSafetensorsHeader } from '../../src/core/safetensors.js';
import { RGBImage, decodeImage, imageHeader, readPNGText } from '../../src/image/image.js';
import { declaredAbsent, parseJsonObject, schedulerShift, shardFileNames } from '../../src/loaders/checkpoint.js';
import { clipConfigFromHF, inferCLIPTextConfig } from '../../src/models/clip.js';
import { maskToLatent } from '../../src/pipelines/inputs.js';
import { tinyRandomWeights } from '../../src/presets/tiny-random.js';
import { CLIPTokenizer } from '../../src/tokenizers/clip-bpe.js';
import { parseSpieceModel } from '../../src/tokenizers/sentencepiece-model.js';
import { T5Tokenizer } from '../../src/tokenizers/t5-unigram.js';
import { parseTokenizerJson } from '../../src/tokenizers/tokenizer-json.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** An input slower than this is reported as a (possible) hang. */
export const SLOW_MS = 2000;

export interface Target<T = unknown> {
  readonly name: string;
  /** Its share of a run's inputs (relative; slow targets get fewer). */
  readonly weight: number;
  readonly arbitrary: fc.Arbitrary<T>;
  /** The time an input may take before it counts as a hang (default SLOW_MS). */
  readonly slowMs?: (input: T) => number;
  /** Parses the input; throws an SD3Error for bad input; returns a problem description when a property fails. */
  readonly run: (input: T) => string | undefined;
}

class PropertyFailure extends Error {}
function check(ok: boolean, what: string): void {
  if (!ok) throw new PropertyFailure(what);
}

// ---- mutation of valid seeds ----

/** Byte mutations of a valid file: flips, overwrites with boundary values, truncation, insertion, splices. */
function mutated(seeds: readonly Uint8Array[]): fc.Arbitrary<Uint8Array> {
  const edit = fc.oneof(
    fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat(7) }),
    fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.constantFrom(0, 1, 0x7f, 0x80, 0xff, 0x22, 0x5c, 0x7b, 0x7d, 0x30, 0x39) }),
    fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ maxLength: 8 }) }),
    fc.record({ kind: fc.constant('dup' as const), at: fc.nat(), len: fc.nat(64) }),
  );
  return fc.tuple(fc.constantFrom(...seeds), fc.array(edit, { minLength: 1, maxLength: 4 })).map(([seed, edits]) => {
    let b = Uint8Array.from(seed);
    for (const e of edits) {
      const at = b.length ? e.at % b.length : 0;
      if (e.kind === 'flip') { if (b.length) b[at] = b[at]! ^ (1 << e.bit); }
      else if (e.kind === 'set') { if (b.length) b[at] = e.value; }
      else if (e.kind === 'cut') b = b.slice(0, at);
      else if (e.kind === 'insert') b = Uint8Array.from([...b.subarray(0, at), ...e.bytes, ...b.subarray(at)]);
      else b = Uint8Array.from([...b.subarray(0, at), ...b.subarray(at, at + e.len), ...b.subarray(at)]);
    }
    return b;
  });
}

const text = (s: string) => new TextEncoder().encode(s);

// ---- safetensors ----

const FILE_DTYPES: Record<string, number> = { F16: 2, BF16: 2, F32: 4, F64: 8, I8: 1, U8: 1, I16: 2, I32: 4, I64: 8, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1 };

function safetensorsBytes(header: unknown, dataBytes: number, lengthOverride?: bigint): Uint8Array {
  const json = text(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

const validSafetensors = [
  safetensorsBytes({ a: { dtype: 'F16', shape: [2, 3], data_offsets: [0, 12] }, b: { dtype: 'F32', shape: [1], data_offsets: [12, 16] }, __metadata__: { format: 'pt' } }, 16),
  safetensorsBytes({ 'model.diffusion_model.x': { dtype: 'BF16', shape: [], data_offsets: [0, 2] }, z: { dtype: 'I64', shape: [0, 4], data_offsets: [2, 2] } }, 2),
  safetensorsBytes({ w: { dtype: 'F8_E4M3', shape: [4], data_offsets: [0, 4] } }, 4),
];

/** Headers built from parts: names, dtypes (fp8 ones included), shapes and offsets near the edges. */
const structuredSafetensors = fc.tuple(
  fc.dictionary(fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('__metadata__', '__proto__', 'a')), fc.oneof(
    fc.record({
      dtype: fc.oneof(fc.constantFrom('F16', 'BF16', 'F32', 'F64', 'I8', 'U8', 'I16', 'I32', 'I64', 'BOOL', 'F8_E4M3', 'F8_E5M2', 'F4', 'f16', ''), fc.string({ maxLength: 4 })),
      shape: fc.oneof(fc.array(fc.oneof(fc.nat(8), fc.constantFrom(-1, 2 ** 31, 2 ** 53, 1.5)), { maxLength: 4 }), fc.anything()),
      data_offsets: fc.oneof(fc.tuple(fc.nat(64), fc.nat(64)), fc.array(fc.oneof(fc.nat(), fc.constantFrom(-1, 2 ** 53, 2 ** 64)), { maxLength: 3 }), fc.anything()),
    }, { requiredKeys: [] }),
    fc.dictionary(fc.string({ maxLength: 4 }), fc.oneof(fc.string({ maxLength: 4 }), fc.integer())),
    fc.anything(),
  ), { maxKeys: 5 }),
  fc.nat(96),
  fc.option(fc.constantFrom(0n, 1n, 2n, 2n ** 31n, 2n ** 63n, 2n ** 64n - 1n, 100_000_001n), { nil: undefined }),
).map(([h, n, len]) => safetensorsBytes(h, n, len));

const safetensorsTarget: Target<Uint8Array> = {
  name: 'safetensors-header',
  weight: 3,
  arbitrary: fc.oneof({ weight: 3, arbitrary: mutated(validSafetensors) }, { weight: 3, arbitrary: structuredSafetensors }, { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }) }),
  run: (bytes) => {
    const h = parseSafetensorsHeader(bytes);
    const dataStart = 8 + h.headerLength;
    const spans = [...h.tensors].sort((a, b) => a.fileOffset - b.fileOffset);
    for (const [i, t] of spans.entries()) {
      const size = { float16: 2, bfloat16: 2, float32: 4, float64: 8, int8: 1, uint8: 1, int16: 2, int32: 4, int64: 8, bool: 1, float8e4m3fn: 1, float8e5m2: 1 }[t.dtype as string];
      check(size !== undefined, `accepted unknown dtype ${t.dtype}`);
      check(t.byteLength === t.shape.reduce((a, b) => a * b, 1) * size!, `${t.name}: byteLength ${t.byteLength} is not numel * ${size}`);
      check(t.fileOffset >= dataStart && t.fileOffset + t.byteLength <= bytes.length, `${t.name}: [${t.fileOffset}, +${t.byteLength}] outside the data`);
      if (i > 0) check(spans[i - 1]!.fileOffset + spans[i - 1]!.byteLength <= t.fileOffset, `${t.name} overlaps ${spans[i - 1]!.name}`);
    }
    check(Object.keys(FILE_DTYPES).length === 12, 'dtype table');
    return undefined;
  },
};

// ---- diffusers JSON: model_index.json, config.json (CLIP, scheduler), sharded weight indexes ----

const clipStore = tinyRandomWeights().weights.clipL;

const jsonDocs = fc.oneof(
  { weight: 2, arbitrary: fc.json() },
  { weight: 3, arbitrary: fc.record({
    weight_map: fc.oneof(fc.dictionary(fc.string({ maxLength: 8 }), fc.oneof(
      fc.constantFrom('a.safetensors', '../x.safetensors', '/etc/passwd', 'sub/a.safetensors', '..\\a.safetensors', 'C:\\a.safetensors', '..', '.safetensors', 'a.bin', 'a\u0000.safetensors'),
      fc.string({ maxLength: 12 }).map((s) => `${s}.safetensors`), fc.anything())), fc.anything()),
    shift: fc.oneof(fc.double(), fc.anything()),
    tokenizer_3: fc.oneof(fc.constant([null, null]), fc.anything()),
    hidden_size: fc.oneof(fc.nat(2000), fc.anything()), num_attention_heads: fc.oneof(fc.integer({ min: -2, max: 40 }), fc.anything()),
    hidden_act: fc.oneof(fc.constantFrom('gelu', 'quick_gelu', 'relu'), fc.anything()), num_hidden_layers: fc.oneof(fc.nat(4), fc.anything()),
    layer_norm_eps: fc.oneof(fc.double(), fc.anything()), projection_dim: fc.oneof(fc.nat(64), fc.anything()),
  }, { requiredKeys: [] }).map((o) => JSON.stringify(o)) },
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
);

const jsonTarget: Target<string> = {
  name: 'diffusers-json',
  weight: 2,
  arbitrary: jsonDocs,
  run: (textIn) => {
    const doc = parseJsonObject(textIn, 'fuzz.json');
    // Each reader on its own: one refusing the document must not hide another's crash.
    for (const step of [
      () => {
        for (const f of shardFileNames(doc, 'index.json')) {
          check(!f.includes('/') && !f.includes('\\') && f !== '..' && f.endsWith('.safetensors') && path.resolve('/dir', f).startsWith('/dir/'), `shard name ${JSON.stringify(f)} escapes the folder`);
        }
      },
      () => { const s = schedulerShift(doc, 'scheduler'); check(Number.isFinite(s) && s > 0, `shift ${s}`); },
      () => { check(typeof declaredAbsent(doc, 'tokenizer_3') === 'boolean', 'declaredAbsent'); },
      () => { inferCLIPTextConfig(clipStore, clipConfigFromHF(doc)); },
    ]) {
      try {
        step();
      } catch (e) {
        if (!(e instanceof SD3Error)) throw e;
      }
    }
    return undefined;
  },
};

// ---- tokenizers ----

const clip = CLIPTokenizer.default();
const t5 = T5Tokenizer.fromFolder(path.join(REPO, 'test', 'data', 't5'));

const prompts = fc.oneof(
  { weight: 3, arbitrary: fc.string({ unit: 'grapheme', maxLength: 80 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 80 }) },
  { weight: 2, arbitrary: fc.string({ unit: fc.constantFrom('a', ' ', '(', ')', ':', '1.5', '&amp;', '&#x', ';', '\u0345', '\u00e9', 'e\u0301', '\u200b', '\t', '\n', '<|endoftext|>', '\ud800', '\udc00', '\u{1f600}', '\u3000', 'ﬁ'), maxLength: 60 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary-ascii', minLength: 200, maxLength: 1500 }) },
  { weight: 1, arbitrary: fc.nat(10_200).map((n) => 'x'.repeat(n)) },
);

const clipTarget: Target<string> = {
  name: 'clip-bpe',
  weight: 2,
  arbitrary: prompts,
  run: (p) => {
    const ids = clip.encode(p);
    check(ids.every((i) => Number.isInteger(i) && i >= 0 && i < 49408), 'id outside the vocabulary');
    for (const pad of ['end', 'zero'] as const) {
      const r = clip.encodeForSD3(p, { pad });
      check(r.ids.length === 77 && r.ids[0] === clip.startId && r.ids[r.eosIndex] === clip.endId, `row: ${r.ids.length} ids, eos at ${r.eosIndex}`);
      check(r.truncated === ids.length > 75, 'truncated flag');
    }
    return undefined;
  },
};

const t5Target: Target<string> = {
  name: 't5-unigram',
  weight: 2,
  arbitrary: prompts,
  run: (p) => {
    const ids = t5.encode(p);
    check(ids.every((i) => Number.isInteger(i) && i >= 0 && i < t5.vocabSize), 'id outside the vocabulary');
    const r = t5.encodeForSD3(p, { length: 77 });
    check(r.ids.length >= 77 && r.ids.includes(t5.eosId), 'SD3 row');
    return undefined;
  },
};

const spiece = fs.readFileSync(path.join(REPO, 'test', 'data', 't5', 't5-test.model'));
const tokJson = fs.readFileSync(path.join(REPO, 'test', 'data', 't5', 'tokenizer.json'));

const tokenizerFileTarget: Target<{ kind: 'spiece' | 'json'; bytes: Uint8Array }> = {
  name: 'tokenizer-files',
  weight: 0.01,
  arbitrary: fc.oneof(
    mutated([spiece]).map((bytes) => ({ kind: 'spiece' as const, bytes })),
    mutated([tokJson]).map((bytes) => ({ kind: 'json' as const, bytes })),
    fc.json().map((s) => ({ kind: 'json' as const, bytes: text(s) })),
  ),
  run: ({ kind, bytes }) => {
    const model = kind === 'spiece' ? parseSpieceModel(bytes, 'fuzz.model') : parseTokenizerJson(new TextDecoder().decode(bytes), 'fuzz.json');
    const tok = new T5Tokenizer(model, 'fuzz');
    const ids = tok.encode('a quick test, ünïcödé 123');
    check(ids.every((i) => Number.isInteger(i) && i >= 0 && i < tok.vocabSize), 'id outside the vocabulary');
    return undefined;
  },
};

// ---- images: PNG and JPEG decoding, PNG text chunks ----

function pattern(w: number, h: number): RGBImage {
  return new RGBImage(w, h, Uint8Array.from({ length: w * h * 3 }, (_, i) => (i * 37) % 256));
}
const pngSeeds = [pattern(3, 2).toPNG(), pattern(8, 5).withMetadata({ parameters: '{"prompt":"x"}' }).toPNG(), ...['gray16.png', 'palette-alpha.png'].map((f) => path.join(REPO, 'test', 'corrupt', f)).filter((f) => fs.existsSync(f)).map((f) => fs.readFileSync(f))];
const jpegSeeds = [jpeg.encode({ width: 8, height: 8, data: Buffer.from(Uint8Array.from({ length: 256 }, (_, i) => (i * 13) % 256)) }, 90).data, ...['cmyk.jpg', 'progressive.jpg'].map((f) => path.join(REPO, 'test', 'corrupt', f)).filter((f) => fs.existsSync(f)).map((f) => fs.readFileSync(f))];

const imageTarget: Target<Uint8Array> = {
  name: 'image-decode',
  weight: 2,
  // Decoding is linear in the pixels the header claims (at most MAX_IMAGE_SIDE squared, which a tiny file can
  // claim): the budget is SLOW_MS plus 150 ns per claimed pixel, so only super-linear work counts as a hang.
  slowMs: (bytes) => {
    try {
      const h = imageHeader(bytes);
      return SLOW_MS + h.width * h.height * 150e-6;
    } catch {
      return SLOW_MS;
    }
  },
  arbitrary: fc.oneof({ weight: 3, arbitrary: mutated(pngSeeds) }, { weight: 3, arbitrary: mutated(jpegSeeds) }, { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }) }),
  run: (bytes) => {
    try {
      readPNGText(bytes);
    } catch (e) {
      if (!(e instanceof SD3Error)) throw e;
    }
    const img = decodeImage(bytes, 'fuzz');
    check(img.data.length === img.width * img.height * 3, 'pixel count');
    return undefined;
  },
};

// ---- the mask reader ----

const maskTarget: Target<{ dtype: DType; shape: number[]; values: number[]; size: [number, number] }> = {
  name: 'mask-reader',
  weight: 1,
  arbitrary: fc.record({
    dtype: fc.constantFrom<DType>('bool', 'uint8', 'float32', 'int64', 'float16'),
    shape: fc.array(fc.nat(9), { minLength: 0, maxLength: 4 }),
    values: fc.array(fc.oneof(fc.double(), fc.nat(255)), { maxLength: 4 }),
    size: fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 4 })),
  }),
  run: ({ dtype, shape, values, size }) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = Array.from({ length: n }, (_, i) => values.length ? values[i % values.length]! : 0);
    let t;
    if (dtype === 'float32') t = tensor('float32', shape, Float32Array.from(data));
    else if (dtype === 'uint8' || dtype === 'bool') t = tensor(dtype, shape, Uint8Array.from(data, (v) => (Number.isFinite(v) ? Math.abs(v) % 256 : 0)));
    else if (dtype === 'int64') t = tensor('int64', shape, BigInt64Array.from(data, (v) => BigInt(Number.isFinite(v) ? Math.trunc(v) : 0)));
    else t = tensor('float16', shape, new Uint16Array(n));
    const [lw, lh] = size;
    const out = maskToLatent(t, 0, lw * 8, lh * 8, lw, lh);
    check(out.length === lw * lh && out.every((v) => v === 0 || v === 1), 'mask values');
    return undefined;
  },
};

export const TARGETS: readonly Target<never>[] = [safetensorsTarget, jsonTarget, clipTarget, t5Target, tokenizerFileTarget, imageTarget, maskTarget] as unknown as Target<never>[];

export interface Finding {
  readonly target: string;
  readonly kind: 'error type' | 'property' | 'slow';
  readonly message: string;
  readonly input: string;
}

/** Runs one input; returns a finding or undefined. */
export function runOne(t: Target<never>, input: never): Finding | undefined {
  const started = performance.now();
  let finding: Omit<Finding, 'target' | 'input'> | undefined;
  try {
    const problem = t.run(input);
    if (problem) finding = { kind: 'property', message: problem };
  } catch (e) {
    if (e instanceof PropertyFailure) finding = { kind: 'property', message: e.message };
    else if (!(e instanceof SD3Error)) finding = { kind: 'error type', message: `${(e as Error)?.name}: ${(e as Error)?.message}\n${(e as Error)?.stack?.split('\n').slice(1, 4).join('\n')}` };
  }
  const ms = performance.now() - started;
  const limit = (t.slowMs as ((i: never) => number) | undefined)?.(input) ?? SLOW_MS;
  if (!finding && ms > limit) finding = { kind: 'slow', message: `${ms.toFixed(0)} ms (limit ${limit.toFixed(0)} ms)` };
  return finding ? { target: t.name, ...finding, input: fc.stringify(input).slice(0, 400) } : undefined;
}
