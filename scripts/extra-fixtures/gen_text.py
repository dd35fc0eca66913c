import sys, json, numpy as np, torch
import ref, st_np, common, other_impls, sd3_infer
from ref import T, N

_m = {}
def t5():
    if 't5' not in _m:
        cfg = dict(sd3_infer.T5_CONFIG); c = json.load(open(f'{ref.SH}/t5xxl/config.json'))['config']
        cfg.update({k: c[k] for k in ['d_ff', 'd_model', 'num_heads', 'num_layers', 'vocab_size']})
        m = other_impls.T5XXLModel(cfg, device='cpu', dtype=torch.float32)
        ref.quiet_load(other_impls_safe(f'{ref.SH}/t5xxl/weights.safetensors'), m.transformer, 'text_encoders.t5xxl.transformer.')
        _m['t5'] = m
    return _m['t5']
def other_impls_safe(p):
    import sd3_impls; return sd3_impls.safe_open(p)
def clip(which):
    if which not in _m:
        c = json.load(open(f'{ref.SH}/{which}/config.json'))['config']
        cfg = {k: c[k] for k in ['hidden_act', 'hidden_size', 'intermediate_size', 'num_attention_heads', 'num_hidden_layers']}
        with torch.no_grad():
          if which == 'clip_l':
            m = other_impls.SDClipModel(layer='hidden', layer_idx=-2, device='cpu', dtype=torch.float32, layer_norm_hidden_state=False,
                                        return_projected_pooled=False, textmodel_json_config=cfg)
          else:
            m = other_impls.SDXLClipG(cfg, device='cpu', dtype=torch.float32)
        ref.quiet_load(other_impls_safe(f'{ref.SH}/{which}/weights.safetensors'), m.transformer, f'text_encoders.{which}.transformer.')
        _m[which] = m
    return _m[which]

def run_t5(inp, want_bias=False, want_bucket=False):
    m = t5(); enc = m.transformer.encoder; ids = T(inp['input.input_ids'])
    with torch.no_grad():
        last, _ = m.transformer(ids)
        # hidden states after each block (replaying the reference modules)
        x = enc.embed_tokens(ids); pb = None; hs = []
        for blk in enc.block:
            x, pb = blk(x, pb); hs.append(N(x).copy())
        r = {'output.last_hidden_state': N(last), 'debug.hidden_states': np.stack(hs)}
        L = ids.shape[1]
        att = enc.block[0].layer[0].SelfAttention
        if want_bias: r['debug.position_bias'] = N(att.compute_bias(L, L, 'cpu'))
        if want_bucket:
            rp = torch.arange(L)[None, :] - torch.arange(L)[:, None]
            r['debug.relative_position_bucket'] = N(att._relative_position_bucket(rp, True, 32, 128)).astype(np.int32)
    return r

def run_clip(which, inp):
    m = clip(which); tm = m.transformer.text_model; ids = T(inp['input.input_ids'])
    with torch.no_grad():
        last, pen, pooled = tm(ids, intermediate_output=-2, final_layer_norm_intermediate=False)
        proj = m.transformer.text_projection(pooled)
        # SD3 wrapper's own outputs (z, pooled) as a cross-check
        z, sd3pooled = m(ids.tolist())
        assert torch.equal(z, pen)
        assert torch.equal(sd3pooled, pooled if which == 'clip_l' else proj)
        x = tm.embeddings(ids); hs = [N(x).copy()]
        mask = torch.empty(77, 77).fill_(float('-inf')).triu_(1)
        for l in tm.encoder.layers:
            x = l(x, mask); hs.append(N(x).copy())
    return {'output.penultimate_hidden_state': N(pen), 'output.last_hidden_state': N(last), 'output.pooled': N(pooled),
            'output.pooled_projected': N(proj), 'debug.hidden_states': np.stack(hs)}

def verify():
    w = 0
    for name in ['batch2_len77', 'batch1_len140']:
        s = st_np.read(f'{ref.SH}/t5xxl/cases/{name}.safetensors')
        got = run_t5(s, 'debug.position_bias' in s, 'debug.relative_position_bucket' in s)
        if 'debug.relative_position_bucket' in s: print('  bucket equal', np.array_equal(got['debug.relative_position_bucket'], s['debug.relative_position_bucket']))
        w = max(w, common.compare('t5:' + name, {k: v for k, v in got.items() if 'bucket' not in k}, {k: v for k, v in s.items() if 'bucket' not in k}))
    for which in ['clip_l', 'clip_g']:
        s = st_np.read(f'{ref.SH}/{which}/cases/prompts.safetensors')
        w = max(w, common.compare(which, run_clip(which, s), s))
    return w

def t5_ids(g, B, L, content):
    ids = np.zeros((B, L), np.int64)
    for b, n in enumerate(content):
        ids[b, :n] = g.integers(2, 32128, n); ids[b, n] = 1
    return ids

def gen_t5():
    d = common.setup('t5xxl'); cases = []
    specs = [('batch1_len20_unpadded', 1, 20, [19]), ('batch1_len200', 1, 200, [199]), ('batch3_len77', 3, 77, [0, 30, 76]),
             ('batch1_len78', 1, 78, [77]), ('batch2_len130', 2, 130, [129, 60]), ('batch1_len3', 1, 3, [2])]
    for i, (name, B, L, content) in enumerate(specs):
        g = np.random.default_rng(500 + i)
        inp = {'input.input_ids': t5_ids(g, B, L, content)}
        out = run_t5(inp, want_bias=(L <= 130), want_bucket=(L > 130 or L == 20))
        allt = {**inp, **out}
        st_np.write(f'{d}/cases/{name}.safetensors', allt)
        io_i, io_o = common.io_meta(allt)
        cases.append({'name': name, 'file': f'cases/{name}.safetensors', 'description': f'{B}x{L}, content lengths {content}, EOS 1, pad 0',
                      'inputs': io_i, 'outputs': io_o})
        print('wrote t5', name)
    common.write_config('t5xxl', cases)

def clip_rows(g, which, lens):
    pad = 49407 if which == 'clip_l' else 0
    rows = []
    for n in lens:
        n = min(n, 75)
        r = [49406] + list(g.integers(0, 49406, n)) + [49407] + [pad] * (75 - n)
        rows.append(r)
    return np.array(rows, np.int64)

def gen_clip():
    for which in ['clip_l', 'clip_g']:
        d = common.setup(which); cases = []
        specs = [('full75_and_short', [75, 1, 40, 100]), ('single_len74', [74]), ('batch2_len10_len60', [10, 60])]
        for i, (name, lens) in enumerate(specs):
            g = np.random.default_rng(600 + i)
            ids = clip_rows(g, which, lens)
            if name == 'full75_and_short':
                # extra row: an '<|endoftext|>' token inside the text (pooled position moves there)
                r = ids[2].copy(); r[10] = 49407; ids = np.concatenate([ids, r[None]])
            inp = {'input.input_ids': ids, 'input.eos_index': ids.argmax(-1).astype(np.int64)}
            out = run_clip(which, inp); allt = {**inp, **out}
            st_np.write(f'{d}/cases/{name}.safetensors', allt)
            io_i, io_o = common.io_meta(allt)
            cases.append({'name': name, 'file': f'cases/{name}.safetensors', 'description': f'random ids, content lengths {lens}',
                          'inputs': io_i, 'outputs': io_o,
                          'sd3_uses': {'sequence': 'output.penultimate_hidden_state', 'pooled': 'output.pooled' if which == 'clip_l' else 'output.pooled_projected'}})
            print('wrote', which, name, inp['input.eos_index'])
        common.write_config(which, cases)

if __name__ == '__main__':
    print('verify worst rel', verify())
    gen_t5(); gen_clip()
