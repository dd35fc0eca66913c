/**
 * The demo model's semantic evaluator: an image analysis of our own that reads back what a picture shows
 * (background colour from the border, the foreground blob's colour, centroid and fill ratio) and scores it
 * against the scene a prompt asked for.
 */
import type { RGBImage } from '../../src/image/image.js';
import {
  COLOURS, COLOUR_NAMES, type Colour, type Position, type Scene, type Shape, type Size, caption, randomScene, uniform,
} from './grammar.js';

export interface Analysis {
  readonly background: Colour;
  /** Undefined when no foreground blob was found. */
  readonly colour?: Colour;
  readonly position?: Position;
  readonly shape?: Shape;
  readonly size?: Size;
  /** Foreground blob: pixel count, centroid (fractions of the side), fill ratio of its bounding box. */
  readonly blob?: { readonly area: number; readonly cx: number; readonly cy: number; readonly fill: number; readonly extent: number };
}

type RGB = readonly [number, number, number];

function nearestColour(c: RGB): Colour {
  let best: Colour = COLOUR_NAMES[0]!;
  let bestD = Infinity;
  for (const name of COLOUR_NAMES) {
    const d = dist(c, COLOURS[name]);
    if (d < bestD) { bestD = d; best = name; }
  }
  return best;
}

function dist(a: RGB, b: RGB): number {
  return Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

/** Pixels further than this (RGB distance) from the background colour are foreground. */
const FOREGROUND_DISTANCE = 60;
/** Border ring width read for the background colour (pixels). */
const BORDER = 3;

export function analyse(image: RGBImage): Analysis {
  const { width: W, height: H, data } = image;
  const px = (i: number): RGB => [data[3 * i]!, data[3 * i + 1]!, data[3 * i + 2]!];
  const ring: RGB[] = [];
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      if (x < BORDER || y < BORDER || x >= W - BORDER || y >= H - BORDER) ring.push(px(y * W + x));
    }
  }
  const bgRGB: RGB = [median(ring.map((p) => p[0])), median(ring.map((p) => p[1])), median(ring.map((p) => p[2]))];
  const background = nearestColour(bgRGB);

  // the largest 4-connected region of foreground pixels
  const fg = new Uint8Array(W * H);
  for (let i = 0; i < W * H; i++) fg[i] = dist(px(i), bgRGB) > FOREGROUND_DISTANCE ? 1 : 0;
  const label = new Int32Array(W * H).fill(-1);
  let best: number[] = [];
  for (let s = 0; s < W * H; s++) {
    if (!fg[s] || label[s]! >= 0) continue;
    const region: number[] = [];
    const stack = [s];
    label[s] = s;
    while (stack.length) {
      const i = stack.pop()!;
      region.push(i);
      const x = i % W, y = (i - x) / W;
      for (const [nx, ny] of [[x - 1, y], [x + 1, y], [x, y - 1], [x, y + 1]] as const) {
        if (nx < 0 || ny < 0 || nx >= W || ny >= H) continue;
        const j = ny * W + nx;
        if (fg[j] && label[j]! < 0) { label[j] = s; stack.push(j); }
      }
    }
    if (region.length > best.length) best = region;
  }
  if (best.length < 20) return { background };

  let sx = 0, sy = 0, x0 = W, x1 = 0, y0 = H, y1 = 0;
  for (const i of best) {
    const x = i % W, y = (i - x) / W;
    sx += x; sy += y;
    x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  const cx = (sx / best.length + 0.5) / W;
  const cy = (sy / best.length + 0.5) / H;
  const bw = x1 - x0 + 1, bh = y1 - y0 + 1;
  const fill = best.length / (bw * bh);
  // colour: the median of the blob's pixels away from its edge (the most foreground half)
  const far = best.map((i) => [dist(px(i), bgRGB), i] as const).sort((a, b) => b[0] - a[0]).slice(0, Math.max(1, best.length >> 1));
  const colour = nearestColour([0, 1, 2].map((c) => median(far.map(([, i]) => data[3 * i + c]!))) as unknown as RGB);
  const col = cx < 0.375 ? 0 : cx > 0.625 ? 2 : 1;
  const row = cy < 0.375 ? 0 : cy > 0.625 ? 2 : 1;
  const position = ([['top left', 'top', 'top right'], ['left', 'centre', 'right'], ['bottom left', 'bottom', 'bottom right']] as const)[row][col];
  // fill ratio of the bounding box: square 1, circle pi/4 = 0.785, triangle 0.5
  const shape: Shape = fill > 0.89 ? 'square' : fill > 0.64 ? 'circle' : 'triangle';
  const extent = Math.max(bw, bh) / W;
  const size: Size = extent > 0.31 ? 'large' : 'small'; // small 14/64 = 0.22, large 26/64 = 0.41
  return { background, colour, position, shape, size, blob: { area: best.length, cx, cy, fill, extent } };
}

export interface EvalCase { readonly prompt: string; readonly scene: Scene; readonly seed: number; readonly sizeNamed: boolean }

/**
 * The evaluation prompts: drawn from the caption grammar with their own seed (not the training seed), in the
 * order drawn; none was chosen by looking at outputs. Image i is generated with seed 1000 + i.
 */
export function evalCases(count = 48, seed = 4242): EvalCase[] {
  const r = uniform(seed);
  return Array.from({ length: count }, (_, i) => {
    const scene = randomScene(r);
    const prompt = caption(scene, r);
    const sizeNamed = /\b(small|little|tiny|large|big|huge)\b/.test(prompt);
    return { prompt, scene, seed: 1000 + i, sizeNamed };
  });
}

export interface Score {
  readonly n: number;
  readonly background: number;
  readonly colour: number;
  readonly position: number;
  readonly shape: number;
  /** Only over prompts that name a size. */
  readonly size: number;
}

export function score(cases: readonly EvalCase[], analyses: readonly Analysis[]): Score {
  const frac = (ok: (c: EvalCase, a: Analysis) => boolean, which = cases.map((_, i) => i)) =>
    which.length ? which.filter((i) => ok(cases[i]!, analyses[i]!)).length / which.length : 1;
  const named = cases.map((c, i) => (c.sizeNamed ? i : -1)).filter((i) => i >= 0);
  return {
    n: cases.length,
    background: frac((c, a) => a.background === c.scene.background),
    colour: frac((c, a) => a.colour === c.scene.colour),
    position: frac((c, a) => a.position === c.scene.position),
    shape: frac((c, a) => a.shape === c.scene.shape),
    size: frac((c, a) => a.size === c.scene.size, named),
  };
}
