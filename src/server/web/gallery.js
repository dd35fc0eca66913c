/**
 * The gallery of finished images: each with its parameters in words, the full parameter set on demand, a
 * download link, and buttons that put its seed back into the form or take it as the next input image.
 */

import { withKey } from './api.js';

const TASK_NAMES = { 'text-to-image': 'text to image', txt2img: 'text to image', 'image-to-image': 'image to image', img2img: 'image to image', inpaint: 'inpaint' };

/** The first of `keys` that `obj` has (the library names parameters in camelCase, JSON clients in snake_case). */
function pick(obj, ...keys) {
  for (const k of keys) if (obj && obj[k] !== undefined && obj[k] !== null) return obj[k];
  return undefined;
}

/** `parameters` as the server sent it: an object, or a JSON string of one. */
function asObject(parameters) {
  if (typeof parameters === 'string') {
    try {
      const v = JSON.parse(parameters);
      return v && typeof v === 'object' ? v : { text: parameters };
    } catch {
      return { text: parameters };
    }
  }
  return parameters && typeof parameters === 'object' ? parameters : {};
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined) continue;
    if (k === 'class') e.className = v;
    else if (k in e && typeof v !== 'string') e[k] = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== undefined && c !== null) e.append(c);
  return e;
}

/** "seed 42 · 28 steps · guidance 7 · 256×256 · text to image" from whatever keys the parameters have. */
export function summary(p, image) {
  const parts = [];
  const seed = pick(image, 'seed') ?? pick(p, 'seed');
  if (seed !== undefined) parts.push(`seed ${seed}`);
  const steps = pick(p, 'numSteps', 'steps', 'num_inference_steps');
  if (steps !== undefined) parts.push(`${steps} steps`);
  const cfg = pick(p, 'guidanceScale', 'cfg_scale', 'guidance_scale');
  if (cfg !== undefined) parts.push(`guidance ${cfg}`);
  const w = pick(p, 'width');
  const h = pick(p, 'height');
  if (w !== undefined && h !== undefined) parts.push(`${w}×${h}`);
  const strength = pick(p, 'strength', 'denoising_strength');
  const task = pick(p, 'task', 'mode');
  if (task !== undefined) parts.push(TASK_NAMES[task] ?? String(task));
  if (strength !== undefined && task !== 'text-to-image' && task !== 'txt2img') parts.push(`strength ${strength}`);
  return parts.join(' · ');
}

export class Gallery {
  constructor(list, empty, { onUseSeed, onUseAsInput } = {}) {
    this.list = list;
    this.empty = empty;
    this.onUseSeed = onUseSeed;
    this.onUseAsInput = onUseAsInput;
    this.count = 0;
  }

  /** Adds one finished job's images at the top, in their batch order. */
  add(job, request) {
    const images = Array.isArray(job.images) ? job.images : [];
    const items = images.map((image, i) => this.#item(job, image, i, request));
    this.list.prepend(...items);
    this.empty.hidden = this.list.children.length > 0;
    return items;
  }

  #item(job, image, index, request) {
    const p = asObject(image.parameters);
    const prompt = pick(p, 'prompt') ?? request.prompt ?? '';
    const seed = pick(image, 'seed') ?? pick(p, 'seed');
    this.count++;
    const name = `sd3-${seed ?? job.id}-${index}.png`;
    const url = withKey(image.url);
    const img = el('img', { src: url, alt: prompt || 'generated image', loading: 'lazy', width: String(pick(p, 'width') ?? ''), height: String(pick(p, 'height') ?? '') });
    if (!img.getAttribute('width')) img.removeAttribute('width');
    if (!img.getAttribute('height')) img.removeAttribute('height');
    const neg = pick(p, 'negativePrompt', 'negative_prompt');
    const truncated = pick(p, 'promptTruncated', 'prompt_truncated') === true;
    const useSeed = el('button', { type: 'button', class: 'secondary small', 'aria-label': `Use seed ${seed}` }, 'Use seed');
    useSeed.addEventListener('click', () => this.onUseSeed?.(seed));
    if (seed === undefined) useSeed.hidden = true;
    const useInput = el('button', { type: 'button', class: 'secondary small', 'aria-label': `Use ${name} as input` }, 'Use as input');
    useInput.addEventListener('click', () => this.onUseAsInput?.(url, name));
    const details = el('details', {}, el('summary', {}, 'Parameters'), el('pre', {}, JSON.stringify(p, null, 2)));
    const caption = el('figcaption', {},
      el('p', { class: 'prompt', title: prompt }, prompt || '(empty prompt)'),
      neg ? el('p', { class: 'neg', title: neg }, `not: ${neg}`) : undefined,
      el('p', { class: 'meta' }, summary(p, image)),
      truncated ? el('p', { class: 'note' }, 'The prompt is longer than CLIP reads (75 tokens): its end was ignored.') : undefined,
      el('div', { class: 'item-actions' },
        el('a', { href: url, download: name, class: 'button-link small', 'aria-label': `Download ${name}` }, 'Download'),
        useSeed, useInput),
      details);
    return el('li', { class: 'gallery-item' }, el('figure', {}, el('a', { href: url, target: '_blank', rel: 'noopener', class: 'thumb' }, img), caption));
  }
}
