"""Exports the trained demo model to one single-file checkpoint with SD3's key names (F16), and writes the
parity goldens: the training framework's own forward on the exported weights (read back from F16), which our
TypeScript pipeline must reproduce (test/unit/demo-model.test.ts).

    /usr/bin/python3 scripts/demo-model/export.py DATA_DIR WORK_DIR assets/demo/sd3-demo.safetensors test/fixtures/demo
"""
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import (CLIP_LAYERS, CLIP_WIDTH, MMDIT_DEPTH, POS_MAX, VAE_BLOCKS, VAE_CHANNELS, VAE_GROUPS,  # noqa: E402
                    make_models, sd3_conditioning)
from render import render  # noqa: E402

PREFIX = {'mmdit': 'model.diffusion_model.', 'vae': 'first_stage_model.',
          'clip_l': 'text_encoders.clip_l.transformer.', 'clip_g': 'text_encoders.clip_g.transformer.'}
DTYPES = {torch.float16: 'F16', torch.float32: 'F32', torch.int64: 'I64'}
# The guidance the file states as its own default ("sampling.guidance_scale", read by the single-file loader):
# the scale at which `npm run eval:demo` scored the shipped weights best (README, "Scores"). KerasHub's 7.0
# overshoots a model this well fitted to its small world.
DEFAULT_GUIDANCE = 1.5


def write_safetensors(path, tensors, metadata=None):
    """The safetensors format by hand (8-byte header length, JSON header, raw little-endian data): Debian ships
    no `safetensors` module, and the format is a page long."""
    header, blobs, at = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        b = t.numpy().tobytes()
        header[name] = {'dtype': DTYPES[t.dtype], 'shape': list(t.shape), 'data_offsets': [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    if metadata:
        header['__metadata__'] = metadata
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * (-len(h) % 8)
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def main():
    data_dir, work, out_file, golden_dir = sys.argv[1:5]
    torch.set_num_threads(1)
    meta = json.load(open(os.path.join(data_dir, 'meta.json')))
    raw = np.fromfile(os.path.join(data_dir, 'captions.bin'), dtype='<u2').reshape(-1, 155)
    seen = np.zeros(49408, dtype=bool)
    seen[raw[:, 1:].reshape(-1)] = True
    seen[meta['empty']['clipL']] = True
    seen[meta['empty']['clipG']] = True

    ck = torch.load(os.path.join(work, 'mmdit.pt'))
    parts = {'clip_l': ck['clip_l'], 'clip_g': ck['clip_g'], 'mmdit': ck['mmdit'],
             'vae': torch.load(os.path.join(work, 'vae.pt'))}
    # the fine-tuned decoder (train.py's decoder stage; the encoder, and so the latent space, is the VAE stage's)
    # (the second pass's, decoder2.pt, when it ran)
    dec_path = os.path.join(work, 'decoder2.pt')
    if not os.path.exists(dec_path):
        dec_path = os.path.join(work, 'decoder.pt')
    if os.path.exists(dec_path):
        parts['vae'].update({'decoder.' + k: v for k, v in torch.load(dec_path).items()})
    # Token rows no training caption used never received a gradient (Adam without weight decay leaves them at
    # their random init): store them as zeros, which compress away in the npm tarball.
    for c in ('clip_l', 'clip_g'):
        emb = parts[c]['text_model.embeddings.token_embedding.weight'].clone()
        emb[torch.from_numpy(~seen)] = 0
        parts[c]['text_model.embeddings.token_embedding.weight'] = emb
    tensors = {PREFIX[c] + k: v.to(torch.float16) for c, sd in parts.items() for k, v in sd.items()}
    os.makedirs(os.path.dirname(out_file) or '.', exist_ok=True)
    write_safetensors(out_file, tensors, {
        'description': 'sd3.ts demo model: SD3 structure at a tiny size, trained on drawn shapes (scripts/demo-model)',
        'step': str(ck['step']), 'native_size': str(meta['size']), 'vae.groups': str(VAE_GROUPS),
        'sampling.guidance_scale': str(DEFAULT_GUIDANCE),
    })
    print(f'{out_file}: {os.path.getsize(out_file)} bytes, {len(tensors)} tensors, '
          f'{int(seen.sum())} token rows kept, step {ck["step"]}')

    # ---- goldens: the same weights as float32 (read back from F16), run by PyTorch
    clip_l, clip_g, mmdit, vae = make_models()
    for mod, c in ((clip_l, 'clip_l'), (clip_g, 'clip_g'), (mmdit, 'mmdit'), (vae, 'vae')):
        mod.load_state_dict({k: tensors[PREFIX[c] + k].float() for k in parts[c]})
        mod.eval()
    rows = [0, 1]
    ids_l = torch.from_numpy(np.concatenate([raw[rows, 1:78], [meta['empty']['clipL']]]).astype(np.int64))
    ids_g = torch.from_numpy(np.concatenate([raw[rows, 78:], [meta['empty']['clipG']]]).astype(np.int64))
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        lo, go = clip_l(ids_l), clip_g(ids_g)
        context, y = sd3_conditioning(lo, go, mmdit.context_embedder.in_features)
        x = torch.randn(3, 16, 8, 8, generator=g)
        t = torch.tensor([1000.0, 500.0, 30.0])
        v = mmdit(x, t, y, context)
        scene = meta['scenes'][int(raw[0, 0])]
        image = torch.from_numpy(render(scene, meta)).permute(2, 0, 1)[None].float() / 127.5 - 1
        mean, logvar = vae.encoder(image)
        latent = torch.randn(1, 16, 4, 8, generator=g)
        decoded = vae.decoder(latent)
    cases = {
        'input.clip_l_ids': ids_l, 'input.clip_g_ids': ids_g,
        'output.clip_l_penultimate': lo[0], 'output.clip_l_pooled': lo[1],
        'output.clip_g_penultimate': go[0], 'output.clip_g_pooled_projected': go[2],
        'output.context': context, 'output.y': y,
        'input.mmdit_x': x, 'input.mmdit_t': t, 'output.mmdit_v': v,
        'input.vae_image': image, 'output.vae_mean': mean, 'output.vae_logvar': logvar,
        'input.vae_latent': latent, 'output.vae_decoded': decoded,
    }
    os.makedirs(golden_dir, exist_ok=True)
    write_safetensors(os.path.join(golden_dir, 'cases.safetensors'), {k: v.contiguous() for k, v in cases.items()})
    # float32 noise of each output: the same graph in float64
    with torch.no_grad():
        l64, g64, m64, v64 = (mod.double() for mod in (clip_l, clip_g, mmdit, vae))
        lo64, go64 = l64(ids_l), g64(ids_g)
        c64, y64 = sd3_conditioning(lo64, go64, mmdit.context_embedder.in_features)
        noise = {
            'output.clip_l_penultimate': (lo64[0] - lo[0].double()).abs().max().item(),
            'output.clip_g_penultimate': (go64[0] - go[0].double()).abs().max().item(),
            'output.mmdit_v': (m64(x.double(), t.double(), y.double(), context.double()) - v.double()).abs().max().item(),
            'output.vae_decoded': (v64.decoder(latent.double()) - decoded.double()).abs().max().item(),
            'output.vae_mean': (v64.encoder(image.double())[0] - mean.double()).abs().max().item(),
        }
    config = {
        'description': 'PyTorch forward (scripts/demo-model/models.py) of assets/demo/sd3-demo.safetensors, '
                       'its F16 weights read as float32; inputs and outputs in cases.safetensors (NCHW, F32; ids I64)',
        'weights': 'assets/demo/sd3-demo.safetensors', 'step': ck['step'],
        'sizes': {'clip_width': CLIP_WIDTH, 'clip_layers': CLIP_LAYERS, 'mmdit_depth': MMDIT_DEPTH,
                  'pos_embed_max_size': POS_MAX, 'vae_channels': VAE_CHANNELS, 'vae_res_blocks': VAE_BLOCKS,
                  'vae_groups': VAE_GROUPS},
        'prompts': [meta['examples'][0], meta['examples'][1], ''],
        'fp32_vs_fp64_max_abs': noise,
        'tolerance': {'atol': 1e-4, 'rtol': 1e-4, 'rule': 'max |actual - expected| <= atol + rtol * max |expected|'},
    }
    json.dump(config, open(os.path.join(golden_dir, 'config.json'), 'w'), indent=2)
    print('goldens written; float32 noise:', noise)


if __name__ == '__main__':
    main()
