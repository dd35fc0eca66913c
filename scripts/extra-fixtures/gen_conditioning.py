"""Conditioning glue cases, derived with the reference sd3_infer.SD3Inferencer.get_cond (unmodified) on fake encoders.
Tiny widths: the reference pads CLIP features to 4096; T5 (width 24) is fed zero-padded to 4096 and the result is cut
back to the first 24 features (the reference's padding columns beyond 24 are checked to be zero)."""
import os, sys
sys.path[:0] = [os.path.dirname(os.path.abspath(__file__))]
import json, numpy as np, torch
import ref, st_np, common
from ref import T, N
from sd3_infer import SD3Inferencer
common.OUT = os.environ.get('XFIX_OUT', '/tmp/xfix2/fixtures')
W_L, W_G, W_T5 = 8, 12, 24

class _Enc:
    def __init__(self, out, pooled): self.model = self; self._r = (out, pooled)
    def encode_token_weights(self, tokens):
        assert tokens == 'tok'
        return self._r
class _Tok:
    def tokenize_with_weights(self, prompt): return {'l': 'tok', 'g': 'tok', 't5xxl': 'tok'}
class _Fake:
    def print(self, *a): pass

def ref_get_cond(lp, lpool, gp, gpool, t5):
    s = _Fake(); s.tokenizer = _Tok()
    s.clip_l = _Enc(T(lp), T(lpool)); s.clip_g = _Enc(T(gp), T(gpool))
    t5w = torch.nn.functional.pad(T(t5), (0, 4096 - t5.shape[-1]))
    s.t5xxl = _Enc(t5w, None)
    with torch.no_grad():
        ctx, y = SD3Inferencer.get_cond(s, 'prompt')
    ctx = N(ctx)
    assert ctx.shape[-1] == 4096 and not np.any(ctx[..., W_T5:]), 'padding beyond the tiny T5 width must be zero'
    return ctx[..., :W_T5].copy(), N(y)

def run(inp):
    a = [inp[k] for k in ['input.clip_l_penultimate', 'input.clip_l_pooled', 'input.clip_g_penultimate', 'input.clip_g_pooled', 'input.t5_last_hidden_state']]
    ctx, y = ref_get_cond(*a)
    B = a[0].shape[0]
    # KerasHub without T5: the T5 rows are 77 rows of zeros -> same reference glue with a zero T5 output of length 77
    ctx0, y0 = ref_get_cond(a[0], a[1], a[2], a[3], np.zeros((B, 77, W_T5), np.float32))
    assert np.array_equal(y, y0)
    return {'output.context': ctx, 'output.y': y, 'output.context_without_t5': ctx0}

def verify():
    s = st_np.read(f'{ref.SH}/conditioning/cases/glue.safetensors')
    got = run(s)
    for k in got:
        d = float(np.abs(got[k].astype(np.float64) - s[k]).max()); print(f'  glue:{k} maxdiff {d} bit-exact {np.array_equal(got[k].view(np.uint32), s[k].view(np.uint32))}')

def vals(g, shape, kind):
    x = g.standard_normal(shape)
    if kind == 'normal': return (1.7 * x).astype(np.float32)
    if kind == 'extreme':
        # wide dynamic range: huge, tiny, subnormal and signed-zero values (a lossy copy, e.g. via fp16, would change them)
        e = g.integers(-40, 38, shape).astype(np.float64)
        v = (x * 10.0 ** e).astype(np.float32)
        f = v.reshape(-1); n = f.size
        f[g.integers(0, n, max(1, n // 50))] = np.float32(1e-42)  # subnormal
        f[g.integers(0, n, max(1, n // 50))] = np.float32(-0.0)
        f[g.integers(0, n, max(1, n // 100))] = np.float32(3.0e38)
        return v
    raise ValueError(kind)

CASES = [  # name, batch, T5 length (None = absent: zeros of length 77), value kind, seed
    ('b1_t5len20', 1, 20, 'normal', 701),
    ('b3_t5len120', 3, 120, 'normal', 702),
    ('b1_t5_absent_zeros', 1, None, 'normal', 703),
    ('b3_t5_absent_zeros_extreme', 3, None, 'extreme', 704),
    ('b2_t5len256_extreme', 2, 256, 'extreme', 705),
]

def gen():
    d = common.setup('conditioning', copy_weights=False); cases = []
    for name, B, L, kind, seed in CASES:
        g = np.random.default_rng(seed)
        inp = {'input.clip_l_penultimate': vals(g, (B, 77, W_L), kind), 'input.clip_l_pooled': vals(g, (B, W_L), kind),
               'input.clip_g_penultimate': vals(g, (B, 77, W_G), kind), 'input.clip_g_pooled': vals(g, (B, W_G), kind),
               'input.t5_last_hidden_state': np.zeros((B, 77, W_T5), np.float32) if L is None else vals(g, (B, L, W_T5), kind)}
        out = run(inp)
        if L is None: assert np.array_equal(out['output.context'], out['output.context_without_t5'])
        allt = {**inp, **out}
        st_np.write(f'{d}/cases/{name}.safetensors', allt)
        i, o = common.io_meta(allt)
        desc = f'batch {B}, ' + ('T5 absent: t5_last_hidden_state is 77 zero rows (context == context_without_t5)' if L is None else f'T5 length {L}') + f', {kind} values'
        cases.append({'name': name, 'file': f'cases/{name}.safetensors', 'description': desc, 'inputs': i, 'outputs': o})
        print('wrote', name, {k: v.shape for k, v in out.items()})
    common.write_config('conditioning', cases)

if __name__ == '__main__':
    verify(); gen()
