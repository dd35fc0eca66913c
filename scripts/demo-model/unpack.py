"""Development aid: turns a shipped demo checkpoint (export.py's single file, SD3 key names, F16) back into the
trainer's work files, so that a later stage (the second decoder pass) can run without retraining the stages
before it. The weights are the file's (F16 widened to float32), which is what the pipeline runs anyway.

    /usr/bin/python3 scripts/demo-model/unpack.py assets/demo/sd3-demo.safetensors WORK_DIR

Writes WORK_DIR/vae.pt (encoder and decoder as shipped), decoder.pt (the shipped decoder) and mmdit.pt (the
text towers and the MMDiT, as export.py reads them). Existing files are left alone.
"""
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export import PREFIX  # noqa: E402

NUMPY = {'F16': np.float16, 'F32': np.float32, 'I64': np.int64}


def read_safetensors(path):
    with open(path, 'rb') as f:
        (n,) = struct.unpack('<Q', f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop('__metadata__', {})
    out = {}
    for name, h in header.items():
        a, b = h['data_offsets']
        out[name] = torch.from_numpy(np.frombuffer(data[a:b], dtype=NUMPY[h['dtype']]).reshape(h['shape']).copy())
    return out, meta


def main():
    src, work = sys.argv[1:3]
    tensors, meta = read_safetensors(src)
    parts = {c: {k[len(p):]: v.float() for k, v in tensors.items() if k.startswith(p)} for c, p in PREFIX.items()}
    os.makedirs(work, exist_ok=True)
    wanted = {
        'vae.pt': parts['vae'],
        'decoder.pt': {k[len('decoder.'):]: v for k, v in parts['vae'].items() if k.startswith('decoder.')},
        'mmdit.pt': {'clip_l': parts['clip_l'], 'clip_g': parts['clip_g'], 'mmdit': parts['mmdit'],
                     'step': int(meta.get('step', 0))},
    }
    for name, obj in wanted.items():
        path = os.path.join(work, name)
        if os.path.exists(path):
            print(f'{path} exists, left alone')
            continue
        torch.save(obj, path + '.tmp')
        os.replace(path + '.tmp', path)
        print(f'wrote {path}')


if __name__ == '__main__':
    main()
