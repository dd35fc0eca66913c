/**
 * SD3's text conditioning, assembled from the three encoders' outputs (reference: sd3.5 `sd3_infer.py`
 * get_cond). Pure data movement on Tensors:
 *
 *   context = [ CLIP-L seq ‖ CLIP-G seq ‖ zeros ]  (77 rows, features padded to the T5 width, 4096)
 *             [ T5 last hidden state              ]  (T rows; 77 zero rows without T5, as KerasHub and diffusers)
 *   y       =   CLIP-L pooled ‖ CLIP-G pooled-projected  (768 + 1280 = 2048)
 */
import { SD3Error } from '../core/errors.js';
import { type DType, type DataOf, type Tensor, numel, tensor } from '../core/tensor.js';

/** The context width of SD3 Medium: T5-XXL's d_model, to which the CLIP features are zero-padded. */
export const SD3_CONTEXT_WIDTH = 4096;
/** Zero rows standing in for T5 when it is not used. */
export const NO_T5_ROWS = 77;

/** What SD3 takes from each encoder; `CLIPTextOutput` satisfies both CLIP parts. */
export interface SD3TextEmbeddings {
  /** CLIP-L: penultimate layer [B, 77, 768] and the unprojected pooled vector [B, 768]. */
  readonly clipL: { readonly penultimate: Tensor; readonly pooled: Tensor };
  /** CLIP-G: penultimate layer [B, 77, 1280] and the projected pooled vector [B, 1280]. */
  readonly clipG: { readonly penultimate: Tensor; readonly pooledProjected: Tensor };
  /** T5 last hidden state [B, T, 4096]; absent: 77 zero rows. */
  readonly t5?: Tensor | undefined;
}

export interface SD3Conditioning {
  /** [B, 77 + T, width] */
  readonly context: Tensor<'float32'>;
  /** [B, CLIP-L width + CLIP-G width] */
  readonly y: Tensor<'float32'>;
}

function float3(name: string, t: Tensor, batch?: number): Tensor<'float32'> {
  if (t.dtype !== 'float32') throw new SD3Error(`conditioning: ${name} must be float32, got ${t.dtype}`);
  if (t.shape.length !== 3) throw new SD3Error(`conditioning: ${name} must have shape [batch, tokens, features], got [${t.shape.join(', ')}]`);
  if (batch !== undefined && t.shape[0] !== batch) throw new SD3Error(`conditioning: ${name} has batch ${t.shape[0]}, expected ${batch} (as CLIP-L)`);
  return t as Tensor<'float32'>;
}

function float2(name: string, t: Tensor, batch: number): Tensor<'float32'> {
  if (t.dtype !== 'float32') throw new SD3Error(`conditioning: ${name} must be float32, got ${t.dtype}`);
  if (t.shape.length !== 2) throw new SD3Error(`conditioning: ${name} must have shape [batch, features], got [${t.shape.join(', ')}]`);
  if (t.shape[0] !== batch) throw new SD3Error(`conditioning: ${name} has batch ${t.shape[0]}, expected ${batch} (as CLIP-L)`);
  return t as Tensor<'float32'>;
}

/**
 * The MMDiT's `context` and `y` for a batch of prompts (positive and negative prompts are simply rows of the
 * batch). `contextWidth` is the T5 width when T5 is given (and must agree), else 4096.
 *
 * @example
 *   const { context, y } = sd3Conditioning({ clipL: await clipL.encode(idsL), clipG: await clipG.encode(idsG) });
 *   // context [B, 154, 4096], y [B, 2048]
 */
export function sd3Conditioning(e: SD3TextEmbeddings, opts: { contextWidth?: number } = {}): SD3Conditioning {
  const l = float3('CLIP-L sequence', e.clipL.penultimate);
  const [B, S, Wl] = l.shape as [number, number, number];
  const gSeq = float3('CLIP-G sequence', e.clipG.penultimate, B);
  if (gSeq.shape[1] !== S) throw new SD3Error(`conditioning: CLIP-G sequence has ${gSeq.shape[1]} tokens, CLIP-L ${S}`);
  const Wg = gSeq.shape[2]!;
  const t5 = e.t5 === undefined ? undefined : float3('T5 sequence', e.t5, B);
  const width = t5 ? t5.shape[2]! : opts.contextWidth ?? SD3_CONTEXT_WIDTH;
  if (t5 && opts.contextWidth !== undefined && opts.contextWidth !== width) {
    throw new SD3Error(`conditioning: contextWidth ${opts.contextWidth} differs from the T5 width ${width}`);
  }
  if (!Number.isInteger(width) || width < Wl + Wg) {
    throw new SD3Error(`conditioning: context width ${width} cannot hold the CLIP features ${Wl} + ${Wg} = ${Wl + Wg}`);
  }
  const T = t5 ? t5.shape[1]! : NO_T5_ROWS;
  const N = S + T;

  // context [B, S + T, width]: CLIP rows (L ‖ G ‖ zeros), then the T5 rows (or zeros)
  const context = new Float32Array(B * N * width);
  for (let b = 0; b < B; b++) {
    for (let s = 0; s < S; s++) {
      const row = (b * N + s) * width;
      context.set(l.data.subarray((b * S + s) * Wl, (b * S + s + 1) * Wl), row);
      context.set(gSeq.data.subarray((b * S + s) * Wg, (b * S + s + 1) * Wg), row + Wl);
    }
    if (t5) context.set(t5.data.subarray(b * T * width, (b + 1) * T * width), (b * N + S) * width);
  }

  const pl = float2('CLIP-L pooled', e.clipL.pooled, B);
  const pg = float2('CLIP-G pooled', e.clipG.pooledProjected, B);
  const [Pl, Pg] = [pl.shape[1]!, pg.shape[1]!];
  const y = new Float32Array(B * (Pl + Pg));
  for (let b = 0; b < B; b++) {
    y.set(pl.data.subarray(b * Pl, (b + 1) * Pl), b * (Pl + Pg));
    y.set(pg.data.subarray(b * Pg, (b + 1) * Pg), b * (Pl + Pg) + Pl);
  }
  return { context: tensor('float32', [B, N, width], context), y: tensor('float32', [B, Pl + Pg], y) };
}

/** Tensors of one dtype stacked along the batch axis (every other dimension must agree). */
export function concatBatch<D extends DType>(parts: readonly Tensor<D>[]): Tensor<D> {
  if (parts.length === 0) throw new SD3Error('concatBatch: no tensors given');
  const first = parts[0]!;
  const rest = first.shape.slice(1).join(', ');
  let batch = 0;
  for (const [i, p] of parts.entries()) {
    if (p.dtype !== first.dtype) throw new SD3Error(`concatBatch: tensor ${i} is ${p.dtype}, tensor 0 is ${first.dtype}`);
    if (p.shape.length < 1 || p.shape.slice(1).join(', ') !== rest) {
      throw new SD3Error(`concatBatch: tensor ${i} has shape [${p.shape.join(', ')}], expected [batch, ${rest}]`);
    }
    batch += p.shape[0]!;
  }
  const data = new (first.data.constructor as new (n: number) => DataOf[D])(numel([batch, ...first.shape.slice(1)]));
  let at = 0;
  for (const p of parts) {
    (data as unknown as { set(a: ArrayLike<unknown>, o: number): void }).set(p.data as ArrayLike<unknown>, at);
    at += p.data.length;
  }
  return tensor(first.dtype, [batch, ...first.shape.slice(1)], data);
}

/** Several conditionings as one batch, in order (e.g. positive then negative for classifier-free guidance). */
export function batchConditioning(parts: readonly SD3Conditioning[]): SD3Conditioning {
  const shapes = parts.map((p) => `[${p.context.shape.join(', ')}]`);
  if (new Set(parts.map((p) => p.context.shape.slice(1).join())).size > 1) {
    throw new SD3Error(`conditioning: contexts of shapes ${shapes.join(', ')} cannot be batched (T5 rows differ? pad the T5 ids to one length)`);
  }
  return { context: concatBatch(parts.map((p) => p.context)), y: concatBatch(parts.map((p) => p.y)) };
}
