"""VAE encode cases that exercise the posterior's log-variance clamp (-30, 20). Posterior sample via the reference's own
sd3_impls.SDVAE.encode (unmodified) with torch.randn_like patched to return the given eps; mean/logvar are the two halves
of the reference VAEEncoder output; latent_scaled via SD3LatentFormat.process_in. Inputs crafted by craft_vae.py."""
import os, sys; sys.path[:0] = [os.path.dirname(os.path.abspath(__file__))]
import copy, types, numpy as np, torch
import ref, st_np, common, sd3_impls
from ref import T, N
common.OUT = os.environ.get('XFIX_OUT', '/tmp/xfix2/fixtures')
LF = sd3_impls.SD3LatentFormat()

def encode(enc, img, eps):
    with torch.no_grad():
        h = enc(img); mean, logvar = torch.chunk(h, 2, dim=1)
        orig = torch.randn_like
        def fake_randn_like(t, *a, **k):
            assert t.shape == eps.shape; return eps.to(t.dtype)
        torch.randn_like = fake_randn_like
        try: s = sd3_impls.SDVAE.encode(types.SimpleNamespace(encoder=enc), img)
        finally: torch.randn_like = orig
        return mean, logvar, s, LF.process_in(s)

_enc64 = None
def run(inp, with64=False):
    global _enc64
    r = dict(zip(['output.mean', 'output.logvar', 'output.sample', 'output.latent_scaled'],
                 map(N, encode(ref.vae().encoder, T(inp['input.image']), T(inp['input.eps'])))))
    if not with64: return r, None
    if _enc64 is None: _enc64 = copy.deepcopy(ref.vae().encoder).double()
    r64 = dict(zip(r, map(N, encode(_enc64, T(inp['input.image']).double(), T(inp['input.eps']).double()))))
    return r, {k: float(np.abs(r[k].astype(np.float64) - r64[k]).max()) for k in r}

def verify():
    s = st_np.read(f'{ref.SH}/vae/cases/encode.safetensors')
    got, _ = run(s)
    common.compare('shared encode', got, s)

def gen():
    d = common.setup('vae')  # copies the shared tiny VAE weights.safetensors
    cr = np.load(os.environ.get('CRAFTED', '/tmp/xfix2/crafted.npz')); cases = []
    specs = [('encode_logvar_above_20_b2', 'above', False, 'both images push some raw logvar elements above +20 (clamped to 20: std = exp(10))'),
             ('encode_logvar_below_m30_b2', 'below', True, 'both images push some raw logvar elements below -30; eps is +-1e5 exactly there, N(0,1) elsewhere, so the clamp to -30 is visible in output.sample (exp(-15)*1e5 = 0.03)'),
             ('encode_logvar_both_b2', 'both', False, 'image 0 has raw logvar above +20 and below -30; image 1 is a plain random image in [-1,1] (control)')]
    for n, (name, key, boost, desc) in enumerate(specs):
        img = cr[key]; g = np.random.default_rng(800 + n)
        eps = g.standard_normal((2, 16, 16, 16)).astype(np.float32)
        inp = {'input.image': img, 'input.eps': eps}
        raw = run(inp)[0]['output.logvar']
        if boost:
            m = raw < -30; eps[m] = np.where(g.standard_normal(int(m.sum())) >= 0, 1e5, -1e5).astype(np.float32)
        out, d64 = run(inp, with64=True)
        lv = out['output.logvar']
        gap = float(min(np.abs(lv - 20).min(), np.abs(lv + 30).min()))
        # what an implementation WITHOUT the clamp would give, relative to the pass budget of output.sample
        noclamp = out['output.mean'] + np.exp(0.5 * lv.astype(np.float64)) * eps
        budget = 1e-6 + 1e-5 * np.abs(out['output.sample']).max()
        print(f'{name}: image range [{img.min():.3f},{img.max():.3f}], logvar max {lv.max():.3f} min {lv.min():.3f}, '
              f'>20: {int((lv > 20).sum())}, <-30: {int((lv < -30).sum())}, closest distance to a clamp limit {gap:.3f}, '
              f'no-clamp sample error / budget = {np.abs(noclamp - out["output.sample"]).max() / budget:.3g}; fp32 vs fp64 {d64}')
        assert gap > 1e-2
        allt = {**inp, **out}
        st_np.write(f'{d}/cases/{name}.safetensors', allt)
        i, o = common.io_meta(allt)
        for k in o:
            if k in d64: o[k]['fp32_vs_fp64_max_abs'] = d64[k]
        o['output.logvar']['raw_elements_above_20'] = int((lv > 20).sum()); o['output.logvar']['raw_elements_below_minus_30'] = int((lv < -30).sum())
        cases.append({'name': name, 'file': f'cases/{name}.safetensors', 'description': desc, 'inputs': i, 'outputs': o})
    common.write_config('vae', cases)

if __name__ == '__main__':
    verify(); gen()
