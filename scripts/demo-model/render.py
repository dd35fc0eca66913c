"""Draws the demo scenes from their attributes (meta.json written by dump-data.ts): one flat shape on a plain
background, 128x128, anti-aliased by 4x supersampling. Deterministic: a scene is always the same picture."""
import numpy as np

SS = 4


_GRIDS = {}


def _grid(n):
    if n not in _GRIDS:
        c = (np.arange(n * SS) + 0.5) / SS
        _GRIDS[n] = np.meshgrid(c, c)
    return _GRIDS[n]


def shape_mask(shape, cx, cy, r, n):
    """Coverage in [0, 1] of an n x n image (centre cx, cy and half-extent r in pixels)."""
    x, y = _grid(n)
    if shape == 'circle':
        m = (x - cx) ** 2 + (y - cy) ** 2 <= r * r
    elif shape == 'square':
        h = 0.9 * r  # about a circle's area
        m = (np.abs(x - cx) <= h) & (np.abs(y - cy) <= h)
    elif shape == 'triangle':
        # apex up, base at the bottom of the r-box: |x - cx| <= r * (y - top) / (2r)
        top = cy - r
        m = (y >= top) & (y <= cy + r) & (np.abs(x - cx) <= (y - top) / 2)
    else:
        raise ValueError(shape)
    return m.reshape(n, SS, n, SS).mean(axis=(1, 3))


def render(scene, meta):
    n = meta['size']
    fx, fy = meta['positions'][scene['position']]
    cov = shape_mask(scene['shape'], fx * n, fy * n, meta['sizes'][scene['size']], n)[..., None]
    fg = np.array(meta['colours'][scene['colour']], dtype=np.float64)
    bg = np.array(meta['colours'][scene['background']], dtype=np.float64)
    return np.round(cov * fg + (1 - cov) * bg).astype(np.uint8)


def render_all(meta):
    return np.stack([render(s, meta) for s in meta['scenes']])
