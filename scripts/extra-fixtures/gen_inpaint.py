import sys, json, numpy as np, torch
import ref, st_np, common
from ref import T, N

def run(inp, p, variant='v'):
    m = ref.mmdit(); dm = m.diffusion_model
    steps, strength, cfg, shift = p['steps'], p['strength'], p['cfg_scale'], p['shift']
    sig = ref.get_sigmas(steps, shift)
    start = int(steps * (1 - strength))
    noise, init, mask = T(inp['input.noise']), T(inp['input.init_latent']), T(inp['input.mask_latent'])
    cc, cy = T(inp['input.cond_context']), T(inp['input.cond_y'])
    uc, uy = T(inp['input.uncond_context']), T(inp['input.uncond_y'])
    B = noise.shape[0]
    x = sig[start] * noise + (1 - sig[start]) * init
    xs = [N(x).copy()]
    with torch.no_grad():
        for step in range(start, steps):
            s, sn = sig[step], sig[step + 1]
            t = (s * 1000).reshape(1).expand(2 * B)
            v = dm(torch.cat([x, x]), t, context=torch.cat([cc, uc]), y=torch.cat([cy, uy])).float()
            vp, vn = v.chunk(2)
            if variant == 'v':
                vc = vn + cfg * (vp - vn)
                x = x + (sn - s) * vc
            else:
                Dp, Dn = x - vp * s, x - vn * s
                D = Dn + (Dp - Dn) * cfg
                x = x + (x - D) / s * (sn - s)
            initn = sn * noise + (1 - sn) * init if step < steps - 1 else init
            x = (1 - mask) * initn + mask * x
            xs.append(N(x).copy())
    return {'output.sigmas': N(sig).astype(np.float32), 'output.latent': N(x), 'debug.x_steps': np.stack(xs)}, start

def verify():
    cfg = json.load(open(f'{ref.SH}/inpaint_kerashub/config.json')); w = 0
    for c in cfg['cases']:
        s = st_np.read(f'{ref.SH}/inpaint_kerashub/{c["file"]}')
        for var in ['v', 'x0']:
            print(var)
            got, start = run(s, c['params'], var)
            assert start == c['params']['start_index']
            r = common.compare(c['name'], got, s)
            if var == 'v': w = max(w, r)
    return w

def rect_mask(g, B, H, W):
    m = np.zeros((B, 1, H, W), np.float32)
    for b in range(B):
        r0, c0 = g.integers(0, H // 2), g.integers(0, W // 2)
        m[b, 0, r0:r0 + g.integers(1, H - r0 + 1), c0:c0 + g.integers(1, W - c0 + 1)] = 1
    return m

# name, steps, cfg, strength, B, H, W, L, seed, masktype
CASES = [
    ('inp_5steps_s0.6_cfg7_b2_8x8_rect', 5, 7.0, 0.6, 2, 8, 8, 24, 301, 'rect'),
    ('inp_4steps_s0.3_cfg4.5_b1_6x10_random', 4, 4.5, 0.3, 1, 6, 10, 24, 302, 'random'),
    ('inp_10steps_s0.8_cfg7_b1_8x8_full', 10, 7.0, 0.8, 1, 8, 8, 24, 303, 'ones'),
    ('inp_3steps_s1.0_cfg2.5_b1_10x6_empty', 3, 2.5, 1.0, 1, 10, 6, 24, 304, 'zeros'),
    ('inp_7steps_s0.65_cfg5_b2_4x12_random', 7, 5.0, 0.65, 2, 4, 12, 30, 305, 'random'),
    ('inp_10steps_s0.9_cfg7_b1_8x8_rect', 10, 7.0, 0.9, 1, 8, 8, 24, 306, 'rect'),
]

def gen():
    d = common.setup('inpaint_kerashub', copy_weights=False); cases = []
    for name, steps, cfg, st, B, H, W, L, seed, mt in CASES:
        g = np.random.default_rng(seed)
        inp = {'input.noise': g.standard_normal((B, 16, H, W)).astype(np.float32),
               'input.init_latent': (1.3 * g.standard_normal((B, 16, H, W))).astype(np.float32)}
        inp['input.mask_latent'] = {'rect': lambda: rect_mask(g, B, H, W), 'random': lambda: (g.random((B, 1, H, W)) < 0.5).astype(np.float32),
                                    'ones': lambda: np.ones((B, 1, H, W), np.float32), 'zeros': lambda: np.zeros((B, 1, H, W), np.float32)}[mt]()
        inp.update({'input.cond_context': g.standard_normal((B, L, 96)).astype(np.float32),
                    'input.cond_y': g.standard_normal((B, 64)).astype(np.float32),
                    'input.uncond_context': g.standard_normal((B, L, 96)).astype(np.float32),
                    'input.uncond_y': g.standard_normal((B, 64)).astype(np.float32)})
        p = {'steps': steps, 'cfg_scale': cfg, 'shift': 3.0, 'strength': st}
        out, start = run(inp, p); p['start_index'] = start
        allt = {**inp, **out}
        st_np.write(f'{d}/cases/{name}.safetensors', allt)
        i, o = common.io_meta(allt)
        cases.append({'name': name, 'file': f'cases/{name}.safetensors', 'description': f'{steps} steps strength {st} (start {start}) cfg {cfg}, mask {mt}',
                      'params': p, 'inputs': i, 'outputs': o})
        print('wrote', name, 'start', start)
    common.write_config('inpaint_kerashub', cases)

if __name__ == '__main__':
    print('verify worst rel', verify())
    gen()
