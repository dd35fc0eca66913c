"""Draws the loss curves of log.json as a PNG (PIL only: Debian's python3 has no matplotlib here).

    /usr/bin/python3 scripts/demo-model/plot.py WORK_DIR/log.json scripts/demo-model/loss.png
"""
import json
import math
import os
import re
import sys

from PIL import Image, ImageDraw


def smooth(ys, k=25):
    out, acc = [], []
    for y in ys:
        acc.append(y)
        if len(acc) > k:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def panel(draw, box, xs, ys, title, colour):
    x0, y0, x1, y1 = box
    draw.rectangle(box, outline=(0, 0, 0))
    draw.text((x0 + 6, y0 + 4), title, fill=(0, 0, 0))
    if not ys:
        return
    ly = [math.log10(max(y, 1e-6)) for y in ys]
    lo, hi = min(ly), max(ly)
    hi = hi if hi > lo else lo + 1
    xmax = max(xs) or 1
    for d in range(math.floor(lo), math.ceil(hi) + 1):
        if lo <= d <= hi:
            yy = y1 - 10 - (d - lo) / (hi - lo) * (y1 - y0 - 30)
            draw.line((x0, yy, x1, yy), fill=(220, 220, 220))
            draw.text((x0 + 4, yy - 12), f'1e{d}', fill=(120, 120, 120))
    pts = [(x0 + 10 + x / xmax * (x1 - x0 - 20), y1 - 10 - (y - lo) / (hi - lo) * (y1 - y0 - 30)) for x, y in zip(xs, ly)]
    draw.line(pts, fill=colour, width=2)
    draw.text((x1 - 90, y1 - 16), f'step {xmax}', fill=(0, 0, 0))


def from_text_log(path, first_logged):
    """MMDiT losses printed by train.py (every 20 steps) before `first_logged`: a run resumed from a checkpoint
    keeps only the steps after it in log.json."""
    rows = []
    for line in open(path):
        m = re.search(r'mmdit (\d+)/\d+ loss ([0-9.]+)', line)
        if m and int(m.group(1)) < first_logged:
            rows.append([int(m.group(1)), float(m.group(2))])
    return sorted({r[0]: r for r in rows}.values())


def main():
    log = json.load(open(sys.argv[1]))
    text = os.path.join(os.path.dirname(sys.argv[1]), 'train.log')
    first = log['mmdit'][0][0] if log['mmdit'] else 10 ** 9
    if first > 0 and os.path.exists(text):
        log['mmdit'] = from_text_log(text, first) + log['mmdit']
    img = Image.new('RGB', (900, 360), 'white')
    d = ImageDraw.Draw(img)
    v = log['vae']
    panel(d, (10, 10, 440, 350), [r[0] for r in v], smooth([r[1] for r in v]),
          'VAE reconstruction (L1 + MSE, log scale, smoothed)', (200, 60, 40))
    m = log['mmdit']
    panel(d, (460, 10, 890, 350), [r[0] for r in m], smooth([r[1] for r in m]),
          'MMDiT + CLIPs flow-matching loss (log scale, smoothed)', (40, 80, 200))
    img.save(sys.argv[2])


if __name__ == '__main__':
    main()
