"""Development aid: reconstructions of a few scenes by the trained VAE (WORK_DIR/vae.pt) as one PNG.

    /usr/bin/python3 scripts/demo-model/peek.py DATA_DIR WORK_DIR out.png
"""
import json
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import LATENT_SCALE, LATENT_SHIFT, make_models  # noqa: E402
from render import render  # noqa: E402

torch.set_num_threads(1)
meta = json.load(open(os.path.join(sys.argv[1], 'meta.json')))
_, _, _, vae = make_models()
vae.load_state_dict(torch.load(os.path.join(sys.argv[2], 'vae.pt')))
scenes = [meta['scenes'][i] for i in range(0, len(meta['scenes']), len(meta['scenes']) // 10)][:10]
x = torch.from_numpy(np.stack([render(s, meta) for s in scenes])).permute(0, 3, 1, 2).float() / 127.5 - 1
with torch.no_grad():
    mean, _ = vae.encoder(x)
    print('model-space latent std', float(((mean - LATENT_SHIFT) * LATENT_SCALE).std()))
    rec = vae.decoder(mean).clamp(-1, 1)
row = lambda t: np.concatenate(list(((t.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().astype(np.uint8)), axis=1)
Image.fromarray(np.concatenate([row(x), row(rec)], axis=0)).resize((640 * 2, 128 * 2), Image.NEAREST).save(sys.argv[3])
