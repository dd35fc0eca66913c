import json, os, shutil, numpy as np
import ref, st_np
import os
OUT = os.environ.get('XFIX_OUT', '/tmp/xfix/fixtures')
def setup(comp, copy_weights=True):
    d = f'{OUT}/{comp}'; os.makedirs(f'{d}/cases', exist_ok=True)
    if copy_weights and os.path.exists(f'{ref.SH}/{comp}/weights.safetensors'):
        shutil.copy(f'{ref.SH}/{comp}/weights.safetensors', f'{d}/weights.safetensors')
    return d
def compare(name, got, want):
    worst = 0.0
    for k, e in want.items():
        if not (k.startswith('output.') or k.startswith('debug.')): continue
        if k not in got: print(f'  {name}:{k} NOT PRODUCED'); continue
        g = np.asarray(got[k]); e = np.asarray(e)
        if g.shape != e.shape: print(f'  {name}:{k} SHAPE {g.shape} vs {e.shape}'); continue
        diff = float(np.abs(g.astype(np.float64) - e.astype(np.float64)).max()); mx = float(np.abs(e.astype(np.float64)).max())
        rel = diff / max(mx, 1e-30)
        print(f'  {name}:{k} maxdiff {diff:.3e} (rel {rel:.2e}) {"BITEXACT" if diff == 0 else ""}')
        if k.startswith('output.'): worst = max(worst, rel)
    return worst
def write_config(comp, cases, extra_mutate=None):
    cfg = json.load(open(f'{ref.SH}/{comp}/config.json'))
    cfg['cases'] = cases
    cfg['provenance_xfix'] = 'extra cases generated in /tmp/xfix with the reference code (Stability-AI/sd3.5 fbf8f48) on torch 1.13 CPU float32; not official'
    if extra_mutate: extra_mutate(cfg)
    json.dump(cfg, open(f'{OUT}/{comp}/config.json', 'w'), indent=1)
def io_meta(tensors, meanings={}):
    inputs, outputs = {}, {}
    for k, a in sorted(tensors.items()):
        a = np.asarray(a)
        ent = {'shape': list(a.shape), 'dtype': st_np.RDT[a.dtype]}
        if k in meanings: ent['meaning'] = meanings[k]
        if k.startswith('input.'): inputs[k] = ent
        else:
            if k.startswith('output.') and a.dtype.kind == 'f': ent['stats'] = ref.stats(a)
            outputs[k] = ent
    return inputs, outputs
