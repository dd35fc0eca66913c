/**
 * The input image and the inpainting mask painted over it. The image is scaled once, on load, to a size the
 * model takes (multiples of 16 within the server's limits); the mask is kept at that same size, white where the
 * user painted (repaint) and black elsewhere, which is what `POST /api/jobs` expects. The visible canvas shows
 * the image with the mask tinted on top.
 */

const MASK_TINT = 'rgba(236, 72, 153, 1)';

/** The largest size at most `limits` with the image's aspect ratio, in multiples of 16 (at least 16). */
export function fitSize(width, height, maxWidth, maxHeight) {
  const scale = Math.min(1, maxWidth / width, maxHeight / height);
  const snap = (v) => Math.max(16, Math.floor((v * scale) / 16) * 16);
  return { width: snap(width), height: snap(height) };
}

export class MaskEditor {
  /** @param {HTMLCanvasElement} canvas the visible canvas */
  constructor(canvas) {
    this.canvas = canvas;
    this.image = document.createElement('canvas');
    this.mask = document.createElement('canvas');
    this.tint = document.createElement('canvas');
    this.brush = 32;
    /** Strokes erase the mask instead of painting it. */
    this.erase = false;
    this.painting = false;
    this.enabled = false;
    this.painted = false;
    this.last = null;
    canvas.addEventListener('pointerdown', (e) => this.#down(e));
    canvas.addEventListener('pointermove', (e) => this.#move(e));
    canvas.addEventListener('pointerup', (e) => this.#up(e));
    canvas.addEventListener('pointercancel', (e) => this.#up(e));
    canvas.addEventListener('contextmenu', (e) => { if (this.enabled) e.preventDefault(); });
  }

  get loaded() {
    return this.image.width > 0 && this.image.height > 0 && this.source !== undefined;
  }

  get width() { return this.image.width; }
  get height() { return this.image.height; }

  /** Draws `bitmap` scaled to width x height and starts an empty mask. */
  load(bitmap, width, height) {
    this.source = bitmap;
    for (const c of [this.canvas, this.image, this.mask, this.tint]) {
      c.width = width;
      c.height = height;
    }
    const ctx = this.image.getContext('2d');
    ctx.imageSmoothingQuality = 'high';
    ctx.drawImage(bitmap, 0, 0, width, height);
    this.clear();
  }

  /** Erases the mask (nothing to repaint). */
  clear() {
    const m = this.mask.getContext('2d');
    m.fillStyle = '#000';
    m.fillRect(0, 0, this.mask.width, this.mask.height);
    this.tint.getContext('2d').clearRect(0, 0, this.tint.width, this.tint.height);
    this.painted = false;
    this.#render();
  }

  /** Whether any pixel is marked for repainting (strokes may have been erased again). */
  get hasMask() {
    if (!this.painted) return false;
    const { data } = this.mask.getContext('2d').getImageData(0, 0, this.mask.width, this.mask.height);
    for (let i = 0; i < data.length; i += 4) if (data[i] >= 128) return true;
    return false;
  }

  imageDataURL() { return this.image.toDataURL('image/png'); }
  maskDataURL() { return this.mask.toDataURL('image/png'); }

  #render() {
    const ctx = this.canvas.getContext('2d');
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    ctx.drawImage(this.image, 0, 0);
    if (this.enabled) {
      ctx.globalAlpha = 0.55;
      ctx.drawImage(this.tint, 0, 0);
      ctx.globalAlpha = 1;
    }
  }

  /** Turns painting on (inpainting) or off (image-to-image shows the image only). */
  setEnabled(on) {
    this.enabled = on;
    this.canvas.classList.toggle('paintable', on);
    this.#render();
  }

  #point(e) {
    const r = this.canvas.getBoundingClientRect();
    return {
      x: ((e.clientX - r.left) / r.width) * this.canvas.width,
      y: ((e.clientY - r.top) / r.height) * this.canvas.height,
    };
  }

  #stroke(from, to) {
    for (const [c, colour] of [[this.mask, this.erase ? '#000' : '#fff'], [this.tint, MASK_TINT]]) {
      const ctx = c.getContext('2d');
      // On the tint, erasing cuts the stroke out; on the mask it paints black (keep).
      ctx.globalCompositeOperation = this.erase && c === this.tint ? 'destination-out' : 'source-over';
      ctx.strokeStyle = colour;
      ctx.fillStyle = colour;
      ctx.lineWidth = this.brush;
      ctx.lineCap = 'round';
      ctx.lineJoin = 'round';
      if (from.x === to.x && from.y === to.y) {
        ctx.beginPath();
        ctx.arc(to.x, to.y, this.brush / 2, 0, 2 * Math.PI);
        ctx.fill();
      } else {
        ctx.beginPath();
        ctx.moveTo(from.x, from.y);
        ctx.lineTo(to.x, to.y);
        ctx.stroke();
      }
      ctx.globalCompositeOperation = 'source-over';
    }
    if (!this.erase) this.painted = true;
    this.#render();
  }

  #down(e) {
    if (!this.enabled || !this.loaded || e.button !== 0) return;
    e.preventDefault();
    this.canvas.setPointerCapture(e.pointerId);
    this.painting = true;
    this.last = this.#point(e);
    this.#stroke(this.last, this.last);
  }

  #move(e) {
    if (!this.painting) return;
    const p = this.#point(e);
    this.#stroke(this.last, p);
    this.last = p;
  }

  #up(e) {
    if (!this.painting) return;
    this.painting = false;
    if (this.canvas.hasPointerCapture(e.pointerId)) this.canvas.releasePointerCapture(e.pointerId);
    this.canvas.dispatchEvent(new CustomEvent('maskchange'));
  }
}
