"""Development aid: the VAE's reconstructions of every scene, decode(encoder mean), as raw RGB bytes for the
evaluator (`npx tsx scripts/demo-model/eval-recon.ts OUT`): they bound what the MMDiT can be seen to draw.

    /usr/bin/python3 scripts/demo-model/recon.py DATA_DIR WORK_DIR OUT [--decoder decoder2.pt]

OUT receives recon.bin ([N, 64, 64, 3] uint8) and scenes.json (the scenes, in order).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import make_models  # noqa: E402
from render import render_all  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument('data')
ap.add_argument('work')
ap.add_argument('out')
ap.add_argument('--decoder', help='a decoder state file in WORK_DIR to use instead of the one in vae.pt')
a = ap.parse_args()
torch.set_num_threads(1)
meta = json.load(open(os.path.join(a.data, 'meta.json')))
_, _, _, vae = make_models()
vae.load_state_dict(torch.load(os.path.join(a.work, 'vae.pt')))
if a.decoder:
    vae.decoder.load_state_dict(torch.load(os.path.join(a.work, a.decoder)))
images = torch.from_numpy(render_all(meta)).permute(0, 3, 1, 2).contiguous()
out = []
with torch.no_grad():
    for i in range(0, images.shape[0], 64):
        mean, _ = vae.encoder(images[i:i + 64].float() / 127.5 - 1)
        rec = vae.decoder(mean).clamp(-1, 1)
        out.append(((rec.permute(0, 2, 3, 1) + 1) * 127.5).round().to(torch.uint8).numpy())
os.makedirs(a.out, exist_ok=True)
np.concatenate(out).tofile(os.path.join(a.out, 'recon.bin'))
json.dump(meta['scenes'], open(os.path.join(a.out, 'scenes.json'), 'w'))
print(f'{len(meta["scenes"])} reconstructions written to {a.out}')
