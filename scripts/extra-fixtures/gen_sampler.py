import sys, numpy as np, torch
import ref, st_np, common, sd3_impls
from ref import T, N

def run(inp, p, want_image=False, want_steps=False):
    m = ref.mmdit()
    steps, denoise, cfg, shift = p['steps'], p['denoise'], p['cfg_scale'], p['shift']
    sigmas = ref.get_sigmas(steps, shift)
    start = int(steps * (1 - denoise))
    sigmas = sigmas[start:]
    noise = T(inp['input.noise'])
    latent = T(inp['input.init_latent']) if 'input.init_latent' in inp else torch.zeros_like(noise)
    extra = {'cond': {'c_crossattn': T(inp['input.cond_context']), 'y': T(inp['input.cond_y'])},
             'uncond': {'c_crossattn': T(inp['input.uncond_context']), 'y': T(inp['input.uncond_y'])},
             'cond_scale': cfg, 'controlnet_cond': None}
    noise_scaled = m.model_sampling.noise_scaling(sigmas[0], noise, latent)
    den = sd3_impls.CFGDenoiser(m)
    xs = []
    def rec(x, s, **kw):
        xs.append(N(x).copy()); return den(x, s, **kw)
    with torch.no_grad():
        out = sd3_impls.sample_euler(rec, noise_scaled, sigmas, extra_args=extra)
    xs.append(N(out).copy())
    lv = sd3_impls.SD3LatentFormat().process_out(out)
    r = {'output.sigmas': N(sigmas).astype(np.float32), 'output.latent': N(out), 'output.latent_vae': N(lv)}
    if want_steps: r['debug.x_steps'] = np.stack(xs)
    if want_image:
        with torch.no_grad(): r['output.image'] = N(ref.vae().decoder(lv))
    return r, start

def verify():
    import json
    cfg = json.load(open(f'{ref.SH}/sampler/config.json')); w = 0
    for c in cfg['cases']:
        s = st_np.read(f'{ref.SH}/sampler/{c["file"]}')
        got, start = run(s, c['params'], 'output.image' in s, 'debug.x_steps' in s)
        assert start == c['params']['start_index']
        w = max(w, common.compare(c['name'], got, s))
    return w

# name, steps, cfg, denoise, B, H, W, L, seed, image, x_steps
SHIFT = {'t2i_4steps_cfg5_shift1': 1.0, 'i2i_10steps_denoise0.7_cfg5_shift1': 1.0, 't2i_5steps_cfg4_shift2.5': 2.5}
CASES = [
    ('t2i_4steps_cfg0.5_b1_8x8', 4, 0.5, 1.0, 1, 8, 8, 24, 215, False, False),
    ('t2i_4steps_cfg5_shift1', 4, 5.0, 1.0, 1, 8, 8, 24, 216, False, True),
    ('i2i_10steps_denoise0.7_cfg5_shift1', 10, 5.0, 0.7, 1, 6, 8, 24, 217, False, False),
    ('t2i_5steps_cfg4_shift2.5', 5, 4.0, 1.0, 1, 8, 8, 24, 218, False, False),
    ('t2i_3steps_cfg4.5_b1_6x10', 3, 4.5, 1.0, 1, 6, 10, 30, 201, False, True),
    ('t2i_7steps_cfg7_b2_8x8', 7, 7.0, 1.0, 2, 8, 8, 24, 202, True, False),
    ('t2i_5steps_cfg1_b1_8x8', 5, 1.0, 1.0, 1, 8, 8, 24, 203, False, False),
    ('t2i_28steps_cfg7_b1_4x4', 28, 7.0, 1.0, 1, 4, 4, 154, 204, False, False),
    ('t2i_2steps_cfg0_b1_8x12', 2, 0.0, 1.0, 1, 8, 12, 24, 205, False, False),
    ('i2i_10steps_denoise0.3_cfg4.5', 10, 4.5, 0.3, 2, 8, 8, 24, 206, False, True),
    ('i2i_20steps_denoise0.65_cfg7', 20, 7.0, 0.65, 1, 10, 6, 24, 207, False, False),
    ('i2i_6steps_denoise1.0_cfg7', 6, 7.0, 1.0, 1, 8, 8, 24, 208, False, False),
    ('i2i_7steps_denoise0.6_cfg2.5', 7, 2.5, 0.6, 2, 12, 8, 24, 209, False, False),
    ('i2i_3steps_denoise0.3_cfg7', 3, 7.0, 0.3, 1, 8, 8, 24, 210, False, False),
    ('i2i_50steps_denoise0.1_cfg5', 50, 5.0, 0.1, 1, 4, 6, 24, 211, False, False),
    ('i2i_28steps_denoise0.8_cfg7', 28, 7.0, 0.8, 1, 4, 4, 24, 212, True, False),
    ('i2i_10steps_denoise0.9_cfg7', 10, 7.0, 0.9, 1, 8, 8, 24, 213, False, True),
    ('i2i_20steps_denoise0.95_cfg3', 20, 3.0, 0.95, 1, 6, 6, 24, 214, False, False),
]

def gen():
    d = common.setup('sampler', copy_weights=False); cases = []
    import shutil; shutil.copy(f'{ref.SH}/sampler/schedules.json', f'{d}/schedules.json')
    for name, steps, cfg, den, B, H, W, L, seed, img, xst in CASES:
        g = np.random.default_rng(seed)
        mode = 'img2img' if name.startswith('i2i') else 'txt2img'
        inp = {'input.noise': g.standard_normal((B, 16, H, W)).astype(np.float32),
               'input.cond_context': g.standard_normal((B, L, 96)).astype(np.float32),
               'input.cond_y': g.standard_normal((B, 64)).astype(np.float32),
               'input.uncond_context': g.standard_normal((B, L, 96)).astype(np.float32),
               'input.uncond_y': g.standard_normal((B, 64)).astype(np.float32)}
        if mode == 'img2img': inp['input.init_latent'] = (1.3 * g.standard_normal((B, 16, H, W))).astype(np.float32)
        p = {'steps': steps, 'cfg_scale': cfg, 'shift': SHIFT.get(name, 3.0), 'denoise': den, 'sampler': 'euler', 'mode': mode}
        out, start = run(inp, p, img, xst)
        p['start_index'] = start
        p = {k: p[k] for k in ['steps', 'cfg_scale', 'shift', 'denoise', 'start_index', 'sampler', 'mode']}
        allt = {**inp, **out}
        st_np.write(f'{d}/cases/{name}.safetensors', allt)
        i, o = common.io_meta(allt)
        cases.append({'name': name, 'file': f'cases/{name}.safetensors', 'description': f'{mode} {steps} steps shift {p["shift"]} cfg {cfg} denoise {den} start {start}, latent {B}x16x{H}x{W}, context {L}',
                      'params': p, 'inputs': i, 'outputs': o})
        print('wrote', name, 'start', start, 'max|latent|', float(np.abs(out['output.latent']).max()))
    common.write_config('sampler', cases)

if __name__ == '__main__':
    print('verify worst rel', verify())
    gen()
