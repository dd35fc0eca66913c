import sys, json, numpy as np, torch
import ref, st_np, common, sd3_impls
from ref import T, N
LF = sd3_impls.SD3LatentFormat()

def to_u8(img):
    im = torch.clamp((img + 1.0) / 2.0, min=0.0, max=1.0)
    a = np.moveaxis(N(im), 1, 3)  # NHWC
    trunc = (255.0 * a).astype(np.uint8)
    rnd = np.round(a * np.float32(255)).astype(np.uint8)
    return trunc, rnd

def run(inp):
    v = ref.vae(); r = {}
    with torch.no_grad():
        if 'input.image' in inp:
            h = v.encoder(T(inp['input.image']))
            mean, logvar = torch.chunk(h, 2, dim=1)
            r['output.mean'], r['output.logvar'] = N(mean), N(logvar)
            if 'input.eps' in inp:
                std = torch.exp(0.5 * torch.clamp(logvar, -30.0, 20.0))
                s = mean + std * T(inp['input.eps'])
                r['output.sample'] = N(s); r['output.latent_scaled'] = N(LF.process_in(s))
        if 'input.latent' in inp:
            z = T(inp['input.latent'])
            r['output.image'] = N(v.decoder(z))
            im = v.decoder(LF.process_out(z))
            r['output.image_from_model_latent'] = N(im)
            r['output.uint8_reference_truncate'], r['output.uint8_kerashub_round'] = to_u8(im)
    return r

def verify():
    w = 0
    for name in ['encode', 'decode_16x16', 'decode_8x12']:
        s = st_np.read(f'{ref.SH}/vae/cases/{name}.safetensors')
        got = run(s)
        for k in ['output.uint8_reference_truncate', 'output.uint8_kerashub_round']:
            if k in s: print('  ', name, k, 'codes differing', int((got[k] != s[k]).sum()), 'max', int(np.abs(got[k].astype(int) - s[k]).max()))
        w = max(w, common.compare(name, {k: v for k, v in got.items() if 'uint8' not in k}, {k: v for k, v in s.items() if 'uint8' not in k}))
    return w

CASES = [
    ('decode_6x10', 'dec', (1, 16, 6, 10), 401),
    ('decode_12x12_b2', 'dec', (2, 16, 12, 12), 402),
    ('decode_5x7_odd', 'dec', (1, 16, 5, 7), 403),
    ('decode_4x20_b3', 'dec', (3, 16, 4, 20), 404),
    ('encode_24x40', 'enc', (1, 3, 24, 40), 405),
    ('encode_16x16_b3', 'enc', (3, 3, 16, 16), 406),
    ('encode_20x12_big_logvar', 'enc', (1, 3, 20, 12), 407),
]

def gen():
    d = common.setup('vae'); cases = []
    for name, kind, shape, seed in CASES:
        g = np.random.default_rng(seed)
        if kind == 'dec':
            inp = {'input.latent': (1.5 * g.standard_normal(shape)).astype(np.float32)}
        else:
            B, C, H, W = shape
            img = np.clip(g.uniform(-1.1, 1.1, shape), -1, 1)
            if 'big' in name: img = np.sign(img)
            inp = {'input.image': img.astype(np.float32), 'input.eps': g.standard_normal((B, 16, H // 2, W // 2)).astype(np.float32)}
        out = run(inp); allt = {**inp, **out}
        st_np.write(f'{d}/cases/{name}.safetensors', allt)
        i, o = common.io_meta(allt)
        cases.append({'name': name, 'file': f'cases/{name}.safetensors', 'description': f'{kind} {shape}', 'inputs': i, 'outputs': o})
        print('wrote', name, {k: v.shape for k, v in out.items()})
    common.write_config('vae', cases)

if __name__ == '__main__':
    print('verify worst rel', verify())
    gen()
