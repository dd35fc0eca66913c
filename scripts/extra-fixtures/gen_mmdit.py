import sys, numpy as np, torch
import ref, st_np, common
from ref import T, N

def run(inp):
    m = ref.mmdit(); dm = m.diffusion_model
    x, t, y, ctx = T(inp['input.x']), T(inp['input.t']), T(inp['input.y']), T(inp['input.context'])
    with torch.no_grad():
        mo = dm(x, t, context=ctx, y=y).float()
        den = m.model_sampling.calculate_denoised(t / 1000.0, mo, x)
        tf = dm.t_embedder.timestep_embedding(t, 256)
        c = dm.t_embedder(t, dtype=torch.float32) + dm.y_embedder(y)
        pe = dm.cropped_pos_embed(x.shape[-2:])
        xe = dm.x_embedder(x) + pe
    return {'output.model_output': N(mo), 'output.denoised': N(den), 'debug.t_freq': N(tf), 'debug.c': N(c),
            'debug.x_embedded': N(xe), 'debug.pos_embed_cropped': N(pe)}

def verify():
    w = 0
    for name in ['square_8x8', 'nonsquare_8x12']:
        s = st_np.read(f'{ref.SH}/mmdit/cases/{name}.safetensors')
        w = max(w, common.compare(name, run(s), s))
    return w

CASES = [  # name, B, H, W, L, t list, seed
    ('x_4x4_b1_L77_t1000', 1, 4, 4, 77, [1000.0], 101),
    ('x_6x10_b3_L160', 3, 6, 10, 160, [0.0, 999.9999, 428.57144], 102),
    ('x_16x8_b2_L1', 2, 16, 8, 1, [1.0, 1000.0], 103),
    ('x_10x10_b1_L200_t0', 1, 10, 10, 200, [0.0], 104),
    ('x_2x2_b2_L154', 2, 2, 2, 154, [8.928571, 602.15076], 105),
    ('x_32x32_b1_L77', 1, 32, 32, 77, [857.6923], 106),
    ('x_12x30_b1_L10', 1, 12, 30, 10, [33.3], 107),
    ('x_30x6_b2_L300', 2, 30, 6, 300, [500.0, 0.5], 108),
]

def gen():
    d = common.setup('mmdit'); cases = []
    for name, B, H, W, L, ts, seed in CASES:
        g = np.random.default_rng(seed)
        inp = {'input.x': g.standard_normal((B, 16, H, W)).astype(np.float32),
               'input.t': np.array(ts, dtype=np.float32),
               'input.y': g.standard_normal((B, 64)).astype(np.float32),
               'input.context': g.standard_normal((B, L, 96)).astype(np.float32)}
        out = run(inp); allt = {**inp, **out}
        st_np.write(f'{d}/cases/{name}.safetensors', allt)
        i, o = common.io_meta(allt)
        ph, pw = H // 2, W // 2
        cases.append({'name': name, 'file': f'cases/{name}.safetensors',
                      'description': f'latent {H}x{W} ({ph}x{pw} patches, crop top {(16-ph)//2} left {(16-pw)//2}), batch {B}, context {L}, t {ts}',
                      'inputs': i, 'outputs': o})
        print('wrote', name)
    common.write_config('mmdit', cases)

if __name__ == '__main__':
    print('verify worst rel', verify())
    gen()
