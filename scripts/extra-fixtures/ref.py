"""Harness around the Stability sd3.5 reference code (fbf8f48), CPU float32."""
import sys, os, io, contextlib
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, 'stubs'), os.environ.get('SD35_DIR', '/tmp/sd35')]
import sdpa_shim  # noqa  (torch 1.13 lacks F.scaled_dot_product_attention)
import numpy as np, torch
import st_np
torch.set_num_threads(2)
import sd3_impls, mmditx, other_impls
with contextlib.redirect_stdout(io.StringIO()):
    import sd3_infer
from sd3_infer import load_into, SD3Inferencer

SH = os.environ.get('SD3_SHARED_FIXTURES', os.path.join(HERE, '..', '..', 'test', 'fixtures'))
T = lambda a: torch.from_numpy(np.ascontiguousarray(a))
N = lambda t: t.detach().cpu().numpy()

def quiet_load(f, model, prefix):
    with contextlib.redirect_stdout(io.StringIO()):
        load_into(f, model, prefix, 'cpu', torch.float32)

_mm = None
def mmdit(shift=3.0):
    global _mm
    if _mm is None:
        f = sd3_impls.safe_open(f'{SH}/mmdit/weights.safetensors')
        m = sd3_impls.BaseModel(shift=shift, file=f, prefix='model.diffusion_model.', device='cpu', dtype=torch.float32).eval()
        quiet_load(f, m, 'model.')
        _mm = m
    return _mm

class TinyVAE(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = sd3_impls.VAEEncoder(ch=32, ch_mult=(1, 2), num_res_blocks=1, in_channels=3, z_channels=16)
        self.decoder = sd3_impls.VAEDecoder(ch=32, out_ch=3, ch_mult=(1, 2), num_res_blocks=1, z_channels=16)
_vae = None
def vae():
    global _vae
    if _vae is None:
        f = sd3_impls.safe_open(f'{SH}/vae/weights.safetensors')
        v = TinyVAE().eval()
        quiet_load(f, v, 'first_stage_model.')
        _vae = v
    return _vae

def get_sigmas(steps, shift=3.0):
    ms = sd3_impls.ModelSamplingDiscreteFlow(shift=shift)
    return SD3Inferencer.get_sigmas(None, ms, steps)

def stats(a):
    a = np.asarray(a, dtype=np.float64)
    return {'mean': float(a.mean()), 'std': float(a.std()), 'max_abs': float(np.abs(a).max()), 'finite': bool(np.isfinite(a).all())}
