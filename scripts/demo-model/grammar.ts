/**
 * The demo model's world: flat shapes on a plain background, and the small caption grammar that describes
 * them. One source of truth for the training data (`dump-data.ts` writes the scenes' attributes and their
 * captions' token ids for the Python trainer, which draws the pictures from the attributes) and for the
 * semantic evaluator (`evaluate.ts`), which asks for scenes by caption and checks what was drawn.
 */
import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';

/** Native size of the demo model (pixels); the MMDiT's position grid is exactly this large. */
export const DEMO_SIZE = 64;

export const COLOURS = {
  red: [220, 40, 40],
  orange: [245, 140, 20],
  yellow: [240, 220, 40],
  green: [40, 170, 60],
  blue: [40, 80, 220],
  purple: [140, 60, 190],
  white: [245, 245, 245],
  black: [25, 25, 25],
} as const satisfies Record<string, readonly [number, number, number]>;
export type Colour = keyof typeof COLOURS;
export const COLOUR_NAMES = Object.keys(COLOURS) as Colour[];

export const SHAPES = ['circle', 'square', 'triangle'] as const;
export type Shape = (typeof SHAPES)[number];

/** Named positions: centre of the shape as fractions of the image side (x to the right, y down). */
export const POSITIONS = {
  'top left': [0.25, 0.25], top: [0.5, 0.25], 'top right': [0.75, 0.25],
  left: [0.25, 0.5], centre: [0.5, 0.5], right: [0.75, 0.5],
  'bottom left': [0.25, 0.75], bottom: [0.5, 0.75], 'bottom right': [0.75, 0.75],
} as const satisfies Record<string, readonly [number, number]>;
export type Position = keyof typeof POSITIONS;
export const POSITION_NAMES = Object.keys(POSITIONS) as Position[];

/** Half the shape's extent (pixels at 64x64). */
export const SIZES = { small: 7, large: 13 } as const;
export type Size = keyof typeof SIZES;
export const SIZE_NAMES = Object.keys(SIZES) as Size[];

export interface Scene {
  readonly shape: Shape;
  readonly colour: Colour;
  readonly position: Position;
  readonly size: Size;
  readonly background: Colour;
}

/** Every scene (shape colour differs from the background): 3 * 8 * 9 * 2 * 7 = 3024. */
export function allScenes(): Scene[] {
  const out: Scene[] = [];
  for (const shape of SHAPES) for (const colour of COLOUR_NAMES) for (const position of POSITION_NAMES) {
    for (const size of SIZE_NAMES) for (const background of COLOUR_NAMES) {
      if (background !== colour) out.push({ shape, colour, position, size, background });
    }
  }
  return out;
}

export const sceneIndex = (() => {
  const map = new Map<string, number>();
  allScenes().forEach((s, i) => map.set(sceneKey(s), i));
  return (s: Scene): number => map.get(sceneKey(s))!;
})();

function sceneKey(s: Scene): string {
  return `${s.shape}|${s.colour}|${s.position}|${s.size}|${s.background}`;
}

/** A seeded stream of uniform numbers in [0, 1). */
export function uniform(seed: number): () => number {
  const rng = xoroshiro128plus(seed | 0);
  return () => uniformFloat64(rng);
}

const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;

const SHAPE_WORDS: Record<Shape, readonly string[]> = {
  circle: ['circle', 'circle', 'disc', 'round dot'],
  square: ['square', 'square', 'box', 'block'],
  triangle: ['triangle', 'triangle', 'triangle shape'],
};
const SIZE_WORDS: Record<Size, readonly string[]> = { small: ['small', 'little', 'tiny'], large: ['large', 'big', 'huge'] };
const POSITION_WORDS: Record<Position, readonly string[]> = {
  'top left': ['in the top left corner', 'at the top left', 'in the upper left'],
  top: ['at the top', 'at the top centre', 'near the top'],
  'top right': ['in the top right corner', 'at the top right', 'in the upper right'],
  left: ['on the left', 'at the left', 'on the left side'],
  centre: ['in the centre', 'in the middle', 'in the center'],
  right: ['on the right', 'at the right', 'on the right side'],
  'bottom left': ['in the bottom left corner', 'at the bottom left', 'in the lower left'],
  bottom: ['at the bottom', 'at the bottom centre', 'near the bottom'],
  'bottom right': ['in the bottom right corner', 'at the bottom right', 'in the lower right'],
};
const BACKGROUND_WORDS = ['on a {bg} background', '{bg} background', 'against a {bg} background', 'on {bg}'];
const withArticle = (phrase: string) => phrase.replace(/\ba ([aeiou])/g, 'an $1');

/**
 * A caption for a scene, drawn from the grammar: paraphrases of each attribute and several word orders.
 * With `omit`, the size may be left out (either size fits), and a centred shape's position may be left out
 * (a shape named without a position is drawn in the centre).
 */
export function caption(s: Scene, r: () => number, omit = true): string {
  const sizeWord = omit && r() < 0.25 ? '' : `${pick(r, SIZE_WORDS[s.size])} `;
  const thing = `${sizeWord}${s.colour} ${pick(r, SHAPE_WORDS[s.shape])}`;
  const article = /^[aeiou]/.test(thing) ? 'an' : 'a';
  const where = s.position === 'centre' && omit && r() < 0.5 ? '' : pick(r, POSITION_WORDS[s.position]);
  const bg = pick(r, BACKGROUND_WORDS).replace('{bg}', s.background);
  const subject = where ? `${article} ${thing} ${where}` : `${article} ${thing}`;
  const onBg = bg.startsWith('on ') || bg.startsWith('against ');
  let text: string;
  switch (Math.floor(r() * 4)) {
    case 0: text = `${subject}, ${bg}`; break;
    case 1: text = `${onBg ? bg : `on a ${bg}`}, ${subject}`; break;
    case 2: text = where ? `${where}, ${article} ${thing}, ${bg}` : `${subject} ${onBg ? bg : `on a ${bg}`}`; break;
    default: text = `${subject} ${onBg ? bg : `with a ${bg}`}`;
  }
  return withArticle(text);
}

/** A random scene from a seeded stream. */
export function randomScene(r: () => number): Scene {
  const colour = pick(r, COLOUR_NAMES);
  let background = pick(r, COLOUR_NAMES);
  while (background === colour) background = pick(r, COLOUR_NAMES);
  return { shape: pick(r, SHAPES), colour, position: pick(r, POSITION_NAMES), size: pick(r, SIZE_NAMES), background };
}
