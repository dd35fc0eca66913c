"""extra_mmdit_sd35 and extra_sampler_sd35: a tiny MMDiT-X with other depth, dual layers and grid than the shared
SD3.5 fixtures (depth 3, dual attention on blocks 0 and 2 (not contiguous), grid 20), run through the reference
(BaseModel's own key-based detection, MMDiTX.forward with skip_layers, sample_euler / sample_dpmpp_2m with
CFGDenoiser / SkipLayerCFGDenoiser) at other step counts and skip-layer windows."""
import os, json, numpy as np, torch
import ref, st_np, common, sd3_impls
from ref import T, N

DEPTH, H, GRID, ADM, CTX, DUAL = 3, 192, 20, 64, 96, [0, 2]
PFX = 'model.diffusion_model.'

def weights(seed=35):
    g = np.random.default_rng(seed); w = {}
    def lin(name, out, inp, scale=1.0):
        w[f'{name}.weight'] = (scale * g.standard_normal((out, inp)) / np.sqrt(inp)).astype(np.float32)
        w[f'{name}.bias'] = (0.1 * g.standard_normal(out)).astype(np.float32)
    def rms(name): w[f'{name}.weight'] = (1 + 0.2 * g.standard_normal(64)).astype(np.float32)
    w['pos_embed'] = (0.5 * g.standard_normal((1, GRID * GRID, H))).astype(np.float32)
    w['x_embedder.proj.weight'] = (g.standard_normal((H, 16, 2, 2)) / 8).astype(np.float32)
    w['x_embedder.proj.bias'] = (0.1 * g.standard_normal(H)).astype(np.float32)
    lin('t_embedder.mlp.0', H, 256); lin('t_embedder.mlp.2', H, H)
    lin('y_embedder.mlp.0', H, ADM); lin('y_embedder.mlp.2', H, H)
    lin('context_embedder', H, CTX)
    for i in range(DEPTH):
        for b in ['context_block', 'x_block']:
            p = f'joint_blocks.{i}.{b}'
            pre = b == 'context_block' and i == DEPTH - 1
            dual = b == 'x_block' and i in DUAL
            lin(f'{p}.adaLN_modulation.1', (2 if pre else 9 if dual else 6) * H, H, 0.5)
            lin(f'{p}.attn.qkv', 3 * H, H); rms(f'{p}.attn.ln_q'); rms(f'{p}.attn.ln_k')
            if dual:
                lin(f'{p}.attn2.qkv', 3 * H, H); lin(f'{p}.attn2.proj', H, H); rms(f'{p}.attn2.ln_q'); rms(f'{p}.attn2.ln_k')
            if not pre:
                lin(f'{p}.attn.proj', H, H); lin(f'{p}.mlp.fc1', 4 * H, H); lin(f'{p}.mlp.fc2', H, 4 * H)
    lin('final_layer.adaLN_modulation.1', 2 * H, H, 0.5); lin('final_layer.linear', 64, H)
    return {PFX + k: v for k, v in w.items()}

_m = None
def model(path):
    global _m
    if _m is None:
        f = sd3_impls.safe_open(path)
        m = sd3_impls.BaseModel(shift=3.0, file=f, prefix=PFX, device='cpu', dtype=torch.float32).eval()
        ref.quiet_load(f, m, 'model.')
        dm = m.diffusion_model
        detected = [i for i, blk in enumerate(dm.joint_blocks) if blk.x_block.x_block_self_attn]
        assert detected == DUAL, detected
        assert dm.joint_blocks[0].context_block.attn.ln_q is not None and not isinstance(dm.joint_blocks[0].context_block.attn.ln_q, torch.nn.Identity)
        _m = m
    return _m

MM_CASES = [  # name, B, H, W, L, t, skip, seed
    ('d3_nonsquare_10x6_b2', 2, 10, 6, 30, [857.6923, 120.5], [], 301),
    ('d3_skip1_8x8', 2, 8, 8, 24, [1000.0, 33.3], [1], 302),
    ('d3_skip02_12x16_b1', 1, 12, 16, 77, [602.15076], [0, 2], 303),
    ('d3_skip2_8x40_b1', 1, 8, 40, 9, [8.928571], [2], 304),  # the grid's full width: crop left 0
]

def mmdit_run(m, inp, skip):
    dm = m.diffusion_model
    x, t, y, ctx = T(inp['input.x']), T(inp['input.t']), T(inp['input.y']), T(inp['input.context'])
    with torch.no_grad():
        mo = dm(x, t, context=ctx, y=y, skip_layers=skip).float()
        den = m.model_sampling.calculate_denoised(t / 1000.0, mo, x)
        c = dm.t_embedder(t, dtype=torch.float32) + dm.y_embedder(y)
        pe = dm.cropped_pos_embed(x.shape[-2:])
    return {'output.model_output': N(mo), 'output.denoised': N(den), 'debug.c': N(c), 'debug.pos_embed_cropped': N(pe)}

S_CASES = [  # name, sampler, steps, cfg, denoise, slg (scale, start, end, layers) or None, B, H, W, L, seed
    ('dpmpp_7steps_slg1_0.1-0.6', 'dpmpp_2m', 7, 4.0, 1.0, (2.0, 0.1, 0.6, [1]), 1, 8, 8, 24, 401),
    ('euler_i2i_12steps_denoise0.5_slg02', 'euler', 12, 3.5, 0.5, (1.5, 0.0, 0.5, [0, 2]), 1, 6, 8, 24, 402),
    ('dpmpp_i2i_9steps_denoise0.4', 'dpmpp_2m', 9, 5.0, 0.4, None, 2, 8, 6, 24, 403),
    ('dpmpp_3steps_cfg1_slg2_0-1', 'dpmpp_2m', 3, 1.0, 1.0, (3.0, 0.0, 1.0, [2]), 1, 8, 8, 24, 404),
    ('euler_25steps_slg0_0.04-0.24', 'euler', 25, 4.5, 1.0, (2.5, 0.04, 0.24, [0]), 1, 4, 4, 24, 405),
    ('dpmpp_i2i_16steps_denoise0.75_slg12', 'dpmpp_2m', 16, 4.5, 0.75, (2.5, 0.01, 0.3, [1, 2]), 2, 6, 6, 24, 406),
]

def sampler_run(m, inp, p):
    steps, den_, cfg = p['steps'], p['denoise'], p['cfg_scale']
    sigmas = ref.get_sigmas(steps, 3.0)
    start = int(steps * (1 - den_))
    sigmas = sigmas[start:]
    noise = T(inp['input.noise'])
    latent = T(inp['input.init_latent']) if 'input.init_latent' in inp else torch.zeros_like(noise)
    extra = {'cond': {'c_crossattn': T(inp['input.cond_context']), 'y': T(inp['input.cond_y'])},
             'uncond': {'c_crossattn': T(inp['input.uncond_context']), 'y': T(inp['input.uncond_y'])},
             'cond_scale': cfg}
    x0 = m.model_sampling.noise_scaling(sigmas[0], noise, latent)
    slg = p['skip_layer_guidance']
    den = sd3_impls.SkipLayerCFGDenoiser(m, steps, slg) if slg and slg['scale'] > 0 else sd3_impls.CFGDenoiser(m)
    active = []
    if isinstance(den, sd3_impls.SkipLayerCFGDenoiser):
        orig = m.apply_model
        def spy(*a, **kw):
            if 'skip_layers' in kw: active.append(den.step)
            return orig(*a, **kw)
        m.apply_model = spy
    fn = sd3_impls.sample_euler if p['sampler'] == 'euler' else sd3_impls.sample_dpmpp_2m
    try:
        with torch.no_grad(): out = fn(den, x0, sigmas, extra_args=extra)
    finally:
        if 'apply_model' in m.__dict__: del m.apply_model
    lv = sd3_impls.SD3LatentFormat().process_out(out)
    return {'output.sigmas': N(sigmas).astype(np.float32), 'output.latent': N(out), 'output.latent_vae': N(lv)}, start, active

def gen():
    out_root = common.OUT
    md = f'{out_root}/extra_mmdit_sd35'; os.makedirs(f'{md}/cases', exist_ok=True)
    st_np.write(f'{md}/weights.safetensors', weights())
    m = model(f'{md}/weights.safetensors')
    base = json.load(open(f'{ref.SH}/mmdit_sd35m/config.json'))
    cases = []
    for name, B, Hh, W, L, ts, skip, seed in MM_CASES:
        g = np.random.default_rng(seed)
        inp = {'input.x': g.standard_normal((B, 16, Hh, W)).astype(np.float32), 'input.t': np.array(ts, dtype=np.float32),
               'input.y': g.standard_normal((B, ADM)).astype(np.float32), 'input.context': g.standard_normal((B, L, CTX)).astype(np.float32)}
        allt = {**inp, **mmdit_run(m, inp, skip)}
        st_np.write(f'{md}/cases/{name}.safetensors', allt)
        i, o = common.io_meta(allt)
        cases.append({'name': name, 'file': f'cases/{name}.safetensors', 'skip_layers': skip,
                      'description': f'latent {Hh}x{W}, batch {B}, context {L}, t {ts}, skip_layers {skip}', 'inputs': i, 'outputs': o})
        print('wrote', name)
    cfg = {k: base[k] for k in ['component', 'variant', 'weights_prefix', 'tolerance', 'conventions'] if k in base}
    cfg.update({'weights_file': 'weights.safetensors', 'weights_dtype': 'F32', 'cases': cases,
                'config': {'depth': DEPTH, 'hidden_size': H, 'num_heads': DEPTH, 'pos_embed_max_size': GRID, 'adm_in_channels': ADM,
                           'context_in_features': CTX, 'qk_norm': 'rms', 'x_block_self_attn_layers': DUAL},
                'provenance_xfix': 'generated with scripts/extra-fixtures/gen_sd35.py: the reference code (Stability-AI/sd3.5 fbf8f48, BaseModel key detection) on torch 1.13 CPU float32; not official'})
    json.dump(cfg, open(f'{md}/config.json', 'w'), indent=1)

    sd = f'{out_root}/extra_sampler_sd35'; os.makedirs(f'{sd}/cases', exist_ok=True)
    sbase = json.load(open(f'{ref.SH}/sampler_sd35/config.json'))
    cases = []
    for name, sampler, steps, cfg_, den_, slg, B, Hh, W, L, seed in S_CASES:
        g = np.random.default_rng(seed)
        mode = 'img2img' if den_ < 1 else 'txt2img'
        inp = {'input.noise': g.standard_normal((B, 16, Hh, W)).astype(np.float32),
               'input.cond_context': g.standard_normal((B, L, CTX)).astype(np.float32), 'input.cond_y': g.standard_normal((B, ADM)).astype(np.float32),
               'input.uncond_context': g.standard_normal((B, L, CTX)).astype(np.float32), 'input.uncond_y': g.standard_normal((B, ADM)).astype(np.float32)}
        if mode == 'img2img': inp['input.init_latent'] = (1.3 * g.standard_normal((B, 16, Hh, W))).astype(np.float32)
        p = {'steps': steps, 'cfg_scale': cfg_, 'shift': 3.0, 'denoise': den_, 'sampler': sampler, 'mode': mode,
             'skip_layer_guidance': None if slg is None else {'scale': slg[0], 'start': slg[1], 'end': slg[2], 'layers': slg[3]}}
        out, start, active = sampler_run(m, inp, p)
        p['start_index'] = start; p['slg_active_calls'] = active
        allt = {**inp, **out}
        st_np.write(f'{sd}/cases/{name}.safetensors', allt)
        i, o = common.io_meta(allt)
        cases.append({'name': name, 'file': f'cases/{name}.safetensors', 'params': p, 'inputs': i, 'outputs': o,
                      'description': f'{sampler} {mode} {steps} steps cfg {cfg_} denoise {den_} start {start}, slg {p["skip_layer_guidance"]} active {active}'})
        print('wrote', name, 'start', start, 'active', active, 'max|latent|', float(np.abs(out['output.latent']).max()))
    scfg = {k: sbase[k] for k in ['component', 'algorithm', 'conventions', 'tolerance'] if k in sbase}
    scfg.update({'mmdit': {'weights_file': '../extra_mmdit_sd35/weights.safetensors', 'config_file': '../extra_mmdit_sd35/config.json'}, 'cases': cases,
                 'provenance_xfix': 'generated with scripts/extra-fixtures/gen_sd35.py (reference fbf8f48, torch 1.13 CPU float32); not official'})
    json.dump(scfg, open(f'{sd}/config.json', 'w'), indent=1)

if __name__ == '__main__':
    gen()
