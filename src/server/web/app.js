/**
 * The page: a form for the three tasks (text to image, image to image, inpainting), one job at a time followed
 * live (queue position, progress, preview) and a gallery of the results. It talks only to this server's native
 * jobs API (api.js).
 */
import { ApiError, cancelJob, createJob, getConfig, setApiKey, watchJob } from './api.js';
import { Gallery } from './gallery.js';
import { MaskEditor, fitSize } from './mask-editor.js';

const $ = (id) => document.getElementById(id);

const ui = {
  form: $('form'),
  modelInfo: $('model-info'),
  prompt: $('prompt'),
  negative: $('negative-prompt'),
  imageSection: $('image-section'),
  imageFile: $('image-file'),
  imageHint: $('image-hint'),
  maskTools: $('mask-tools'),
  canvasWrap: $('canvas-wrap'),
  canvas: $('mask-canvas'),
  brush: $('brush-size'),
  brushValue: $('brush-size-value'),
  clearMask: $('clear-mask'),
  eraseMask: $('erase-mask'),
  strength: $('strength'),
  strengthValue: $('strength-value'),
  steps: $('steps'),
  cfg: $('cfg-scale'),
  width: $('width'),
  height: $('height'),
  seed: $('seed'),
  randomSeed: $('random-seed'),
  batch: $('batch-size'),
  apiKeyField: $('api-key-field'),
  apiKey: $('api-key'),
  error: $('error'),
  generate: $('generate'),
  cancel: $('cancel'),
  progress: $('progress'),
  progressFill: $('progress-fill'),
  status: $('status'),
  preview: $('preview'),
  previewEmpty: $('preview-empty'),
};

/** Request fields (as the server names them in `error.field`) and the control that sets each. */
const FIELD_CONTROLS = {
  prompt: ui.prompt, negative_prompt: ui.negative, steps: ui.steps, cfg_scale: ui.cfg, seed: ui.seed,
  width: ui.width, height: ui.height, batch_size: ui.batch, image: ui.imageFile, mask: ui.canvas, strength: ui.strength,
  api_key: ui.apiKey,
};

let config;
let limits = { max_width: 4096, max_height: 4096 };
const editor = new MaskEditor(ui.canvas);
const gallery = new Gallery($('gallery'), $('gallery-empty'), {
  onUseSeed: (seed) => {
    ui.seed.value = String(seed);
    ui.seed.focus();
  },
  onUseAsInput: (url, name) => { useAsInput(url, name); },
});
/** The job this page follows: {id, stop, started (ms), request}. */
let current;
/** Inputs the user changed: defaults (from the server, or per mode) no longer overwrite them. */
const touched = new Set();
const MODE_KEYS = { txt2img: 'text-to-image', img2img: 'image-to-image', inpaint: 'inpaint' };

function setDefault(input, value) {
  if (touched.has(input) || value === undefined || value === null || !Number.isFinite(Number(value))) return;
  input.value = String(value);
  if (input === ui.strength) ui.strengthValue.textContent = Number(value).toFixed(2);
}

/** This mode's defaults from /api/config (`defaults_by_mode`, else `defaults`). */
function modeDefaults(m) {
  return { ...(config?.defaults ?? {}), ...(config?.defaults_by_mode?.[MODE_KEYS[m]] ?? {}) };
}

// --- the form --------------------------------------------------------------------------------------------

function mode() {
  return ui.form.elements.namedItem('mode').value;
}

function showMode() {
  const m = mode();
  const usesImage = m !== 'txt2img';
  ui.imageSection.hidden = !usesImage;
  ui.maskTools.hidden = m !== 'inpaint';
  ui.canvasWrap.hidden = !usesImage || !editor.loaded;
  editor.setEnabled(m === 'inpaint');
  // With an input image the output has the image's size.
  const fixed = usesImage && editor.loaded;
  for (const input of [ui.width, ui.height]) input.readOnly = fixed;
  if (fixed) {
    ui.width.value = String(editor.width);
    ui.height.value = String(editor.height);
  } else if (config) {
    if (ui.width.dataset.userValue) ui.width.value = ui.width.dataset.userValue;
    if (ui.height.dataset.userValue) ui.height.value = ui.height.dataset.userValue;
  }
  const d = modeDefaults(m);
  setDefault(ui.steps, d.steps);
  setDefault(ui.cfg, d.cfg_scale);
  setDefault(ui.strength, d.strength);
}

function setStrength(v) {
  ui.strength.value = String(v);
  ui.strengthValue.textContent = Number(ui.strength.value).toFixed(2);
}

/** Takes `blob` (a chosen or dropped file, or a gallery image) as the input image. */
async function loadInputImage(blob, name) {
  clearError();
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob);
  } catch {
    ui.imageFile.value = '';
    return showError(`"${name}" is not an image this browser can read (try a PNG or JPEG).`, 'image');
  }
  const size = fitSize(bitmap.width, bitmap.height, limits.max_width, limits.max_height);
  editor.load(bitmap, size.width, size.height);
  const scaled = size.width !== bitmap.width || size.height !== bitmap.height;
  ui.imageHint.textContent = scaled
    ? `${name}: ${bitmap.width}×${bitmap.height}, used at ${size.width}×${size.height} (multiples of 16 within the model's limits).`
    : `${name}: ${size.width}×${size.height}.`;
  showMode();
}

function loadImageFile() {
  const file = ui.imageFile.files?.[0];
  if (file) loadInputImage(file, file.name);
}

/** A gallery image as the input of image to image (or of inpainting, when that is the mode). */
async function useAsInput(url, name) {
  if (mode() === 'txt2img') {
    ui.form.querySelector('input[name="mode"][value="img2img"]').checked = true;
    showMode();
  }
  let blob;
  try {
    const res = await fetch(url);
    if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
    blob = await res.blob();
  } catch (e) {
    return showError(`Could not fetch ${name}: ${e.message}`);
  }
  ui.imageFile.value = '';
  await loadInputImage(blob, name);
  ui.imageSection.scrollIntoView({ block: 'nearest' });
}

for (const radio of ui.form.querySelectorAll('input[name="mode"]')) radio.addEventListener('change', () => { clearError(); showMode(); });
ui.imageFile.addEventListener('change', loadImageFile);
ui.brush.addEventListener('input', () => {
  editor.brush = Number(ui.brush.value);
  ui.brushValue.textContent = ui.brush.value;
});
ui.clearMask.addEventListener('click', () => editor.clear());
ui.eraseMask.addEventListener('click', () => {
  editor.erase = !editor.erase;
  ui.eraseMask.setAttribute('aria-pressed', String(editor.erase));
});
// Dropping an image file on the image section loads it, as choosing it does.
ui.imageSection.addEventListener('dragover', (e) => {
  if (![...(e.dataTransfer?.types ?? [])].includes('Files')) return;
  e.preventDefault();
  ui.imageSection.classList.add('dropping');
});
ui.imageSection.addEventListener('dragleave', () => ui.imageSection.classList.remove('dropping'));
ui.imageSection.addEventListener('drop', (e) => {
  ui.imageSection.classList.remove('dropping');
  const file = e.dataTransfer?.files?.[0];
  if (!file) return;
  e.preventDefault();
  loadInputImage(file, file.name);
});
ui.strength.addEventListener('input', () => setStrength(ui.strength.value));
for (const input of [ui.steps, ui.cfg, ui.strength, ui.width, ui.height]) input.addEventListener('input', () => touched.add(input));
ui.apiKey.addEventListener('input', () => {
  setApiKey(ui.apiKey.value);
  sessionStorage.setItem('sd3-api-key', ui.apiKey.value);
});
for (const input of [ui.width, ui.height]) input.addEventListener('input', () => { if (!input.readOnly) input.dataset.userValue = input.value; });
ui.randomSeed.addEventListener('click', () => {
  ui.seed.value = String(crypto.getRandomValues(new Uint32Array(1))[0]);
});
ui.prompt.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) ui.form.requestSubmit();
});

// --- errors and status -----------------------------------------------------------------------------------

function clearError() {
  ui.error.hidden = true;
  ui.error.textContent = '';
  for (const c of Object.values(FIELD_CONTROLS)) {
    c.removeAttribute('aria-invalid');
    c.removeAttribute('aria-errormessage');
  }
}

function showError(message, field) {
  ui.error.textContent = message;
  ui.error.hidden = false;
  const control = field ? FIELD_CONTROLS[field] : undefined;
  if (control) {
    control.setAttribute('aria-invalid', 'true');
    control.setAttribute('aria-errormessage', 'error');
    if (!control.closest('[hidden]')) control.focus();
  }
}

function setStatus(text) {
  ui.status.textContent = text;
}

function setProgress(step, total, text) {
  const max = Math.max(1, total || 1);
  const now = Math.min(Math.max(0, step || 0), max);
  // Only what changed, so that assistive technology announces each value once.
  const set = (name, v) => { if (ui.progress.getAttribute(name) !== v) ui.progress.setAttribute(name, v); };
  set('aria-valuemax', String(max));
  set('aria-valuenow', String(now));
  set('aria-valuetext', text);
  ui.progressFill.style.width = `${(100 * now) / max}%`;
}

function seconds(ms) {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** A preview (often at latent resolution, 1/8 of the image) shown at the job's size, within the panel. */
function showPreview(png, width) {
  if (typeof png !== 'string' || png === '') return;
  if (Number.isFinite(width)) ui.preview.style.width = `${Math.min(width, 512)}px`;
  ui.preview.src = png.startsWith('data:') ? png : `data:image/png;base64,${png}`;
  ui.preview.hidden = false;
  ui.previewEmpty.hidden = true;
}

function hidePreview() {
  ui.preview.hidden = true;
  ui.preview.removeAttribute('src');
  ui.previewEmpty.hidden = false;
}

function setBusy(busy) {
  ui.generate.disabled = busy;
  ui.cancel.disabled = !busy;
  ui.form.setAttribute('aria-busy', String(busy));
  document.body.classList.toggle('busy', busy);
}

// --- reading the form ------------------------------------------------------------------------------------

class FormError extends Error {
  constructor(message, field) {
    super(message);
    this.field = field;
  }
}

/** A number input: undefined when empty (the server's default), else a number within the input's bounds. */
function numberField(input, field, label, { integer = true } = {}) {
  const raw = input.value.trim();
  if (raw === '' && input.validity.valid) return undefined;
  const v = Number(raw);
  const min = input.min === '' ? -Infinity : Number(input.min);
  const max = input.max === '' ? Infinity : Number(input.max);
  const bounds = max === Infinity ? `at least ${min}` : `from ${min} to ${max}`;
  if (raw === '' || !Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < min || v > max) {
    throw new FormError(`${label} must be ${integer ? 'a whole number' : 'a number'} ${bounds}${raw === '' ? '' : `, not "${raw}"`}.`, field);
  }
  return v;
}

function readRequest() {
  const m = mode();
  const prompt = ui.prompt.value;
  if (prompt.trim() === '') throw new FormError('Write a prompt first.', 'prompt');
  const maxChars = config?.limits?.max_prompt_chars;
  if (maxChars && prompt.length > maxChars) throw new FormError(`The prompt has ${prompt.length} characters; the server takes at most ${maxChars}.`, 'prompt');
  const body = { prompt };
  if (ui.negative.value.trim() !== '') body.negative_prompt = ui.negative.value;
  const put = (key, value) => { if (value !== undefined) body[key] = value; };
  put('steps', numberField(ui.steps, 'steps', 'Steps'));
  put('cfg_scale', numberField(ui.cfg, 'cfg_scale', 'Guidance', { integer: false }));
  put('seed', numberField(ui.seed, 'seed', 'Seed'));
  put('batch_size', numberField(ui.batch, 'batch_size', 'Batch'));
  if (m === 'txt2img') {
    const width = numberField(ui.width, 'width', 'Width');
    const height = numberField(ui.height, 'height', 'Height');
    for (const [k, v, label] of [['width', width, 'Width'], ['height', height, 'Height']]) {
      if (v !== undefined && v % 16 !== 0) throw new FormError(`${label} must be a multiple of 16, not ${v}.`, k);
    }
    put('width', width);
    put('height', height);
  } else {
    if (!editor.loaded) throw new FormError('Choose an image to start from.', 'image');
    body.image = editor.imageDataURL();
    body.width = editor.width;
    body.height = editor.height;
    if (m === 'inpaint') {
      if (!editor.hasMask) throw new FormError('Paint over the part of the image to repaint.', 'mask');
      body.mask = editor.maskDataURL();
    }
    put('strength', numberField(ui.strength, 'strength', 'Strength', { integer: false }));
  }
  return body;
}

// --- running a job ---------------------------------------------------------------------------------------

function finish(job, final) {
  if (current !== job) return;
  current = undefined;
  job.stop();
  setBusy(false);
  const took = seconds(performance.now() - job.started);
  if (final.status === 'completed') {
    const items = gallery.add(final, job.request);
    const n = items.length;
    setProgress(job.total ?? 1, job.total ?? 1, 'done');
    setStatus(`Done: ${n} image${n === 1 ? '' : 's'} in ${took}.`);
    hidePreview();
  } else if (final.status === 'cancelled') {
    setProgress(0, 1, 'cancelled');
    setStatus(`Cancelled after ${took}.`);
    hidePreview();
  } else {
    setProgress(0, 1, 'failed');
    setStatus('Failed.');
    hidePreview();
    showError(`The job failed: ${final.error?.message ?? 'no reason given'}`);
  }
}

async function generate() {
  if (current) return;
  clearError();
  let body;
  try {
    body = readRequest();
  } catch (e) {
    if (e instanceof FormError) return showError(e.message, e.field);
    throw e;
  }
  setBusy(true);
  setProgress(0, 1, 'submitting');
  setStatus('Submitting…');
  hidePreview();
  let created;
  try {
    created = await createJob(body);
  } catch (e) {
    setBusy(false);
    setProgress(0, 1, 'idle');
    setStatus('Not started.');
    if (e instanceof ApiError && e.status === 401) {
      ui.apiKeyField.hidden = false;
      return showError(ui.apiKey.value.trim() === ''
        ? 'This server needs an API key: enter it under "API key", then Generate again.'
        : `The server did not accept this API key (${e.message}).`, 'api_key');
    }
    if (e instanceof ApiError) return showError(e.message, e.field);
    throw e;
  }
  const job = { id: created.id, started: performance.now(), request: body, total: undefined, stop: () => {} };
  current = job;
  const queued = (position) => {
    setProgress(0, 1, 'queued');
    setStatus(Number.isFinite(position) && position > 0
      ? `Queued: ${position} job${position === 1 ? '' : 's'} ahead.`
      : 'Queued: next in line.');
  };
  if (created.status === 'queued') queued(created.queue_position);
  job.stop = watchJob(created, {
    queued: (d) => { if (current === job) queued(d.queue_position); },
    started: (d) => {
      if (current !== job) return;
      if (Number.isFinite(d.total)) job.total = d.total;
      setProgress(0, job.total ?? 1, 'started');
      setStatus('Running…');
    },
    progress: (d) => {
      if (current !== job) return;
      job.total = d.total;
      const eta = Number.isFinite(d.eta) && d.eta > 0 ? ` · about ${d.eta < 10 ? d.eta.toFixed(1) : Math.round(d.eta)} s left` : '';
      const text = `step ${d.step} of ${d.total}`;
      setProgress(d.step, d.total, text);
      setStatus(`Step ${d.step} of ${d.total}${eta}.`);
    },
    preview: (d) => { if (current === job) showPreview(d.png, body.width ?? config?.width); },
    done: (final) => finish(job, final),
  });
}

async function cancel() {
  const job = current;
  if (!job) return;
  ui.cancel.disabled = true;
  setStatus('Cancelling…');
  try {
    const answer = await cancelJob(job.id);
    if (answer && ['completed', 'failed', 'cancelled'].includes(answer.status) && answer.status !== 'completed') finish(job, answer);
  } catch (e) {
    // 409: it had already ended; its own terminal event says how.
    if (!(e instanceof ApiError && e.status === 409)) {
      if (current === job) ui.cancel.disabled = false;
      showError(`Could not cancel: ${e.message}`);
    }
  }
}

ui.form.addEventListener('submit', (e) => {
  e.preventDefault();
  generate().catch((err) => {
    setBusy(false);
    showError(`Something went wrong on this page: ${err.message}`);
  });
});
ui.cancel.addEventListener('click', () => { cancel(); });

// --- start-up --------------------------------------------------------------------------------------------

function applyConfig(c) {
  config = c;
  limits = { ...limits, ...(c.limits ?? {}) };
  const l = c.limits ?? {};
  const setMax = (input, v) => { if (Number.isFinite(v)) input.max = String(v); };
  setMax(ui.steps, l.max_steps);
  setMax(ui.batch, l.max_batch);
  setMax(ui.width, l.max_width);
  setMax(ui.height, l.max_height);
  if (Number.isFinite(l.max_prompt_chars)) ui.prompt.maxLength = l.max_prompt_chars;
  if (Number.isFinite(c.width)) ui.width.dataset.userValue ??= String(c.width);
  if (Number.isFinite(c.height)) ui.height.dataset.userValue ??= String(c.height);
  setDefault(ui.width, c.width);
  setDefault(ui.height, c.height);
  if (c.auth) ui.apiKeyField.hidden = false;
  const parts = [c.model ?? 'unknown model'];
  if (c.status === 'loading') parts.push('loading the model…');
  else if (c.status === 'failed') parts.push('the model failed to load');
  else if (Number.isFinite(c.width) && Number.isFinite(c.height)) parts.push(`${c.width}×${c.height} by default`);
  if (Number.isFinite(l.max_steps)) parts.push(`up to ${l.max_steps} steps`);
  if (Number.isFinite(l.max_batch)) parts.push(`batch ≤ ${l.max_batch}`);
  ui.modelInfo.textContent = parts.join(' · ');
  document.title = `sd3.ts · ${c.model ?? ''}`;
  showMode();
}

/** Reads /api/config, again every 2 s while the model loads (its default size is known only then). */
async function loadConfig() {
  try {
    const c = await getConfig();
    applyConfig(c);
    if (c.status === 'loading') setTimeout(loadConfig, 2000);
  } catch (e) {
    const wait = e instanceof ApiError && e.status === 503 ? Math.max(1, e.retryAfter ?? 2) : undefined;
    ui.modelInfo.textContent = wait ? 'the server is not ready yet…' : 'server configuration unavailable';
    if (wait) setTimeout(loadConfig, wait * 1000);
    else showError(`Could not read the server's configuration: ${e.message}`);
  }
}

const savedKey = sessionStorage.getItem('sd3-api-key');
if (savedKey) {
  ui.apiKey.value = savedKey;
  setApiKey(savedKey);
}
setStrength(ui.strength.value);
showMode();
loadConfig();
