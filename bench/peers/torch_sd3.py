#!/usr/bin/python3
"""The PyTorch peer of `npm run bench:peers`: a minimal SD3 MMDiT and VAE decoder written for the measurement.

Development tool only (never used at run time). Runs on Debian's python3-torch; weights are read from the
single-file checkpoint's safetensors (F16) with numpy, no other package.

  torch_sd3.py check <fixtures dir>                   # the tiny MMDiT and VAE fixtures vs this code (float32)
  torch_sd3.py bench <checkpoint> --size 512 [--steps 1] [--dtype float32|bfloat16] [--threads 2] [--no-decode]

`bench` prints one JSON line: seconds per MMDiT forward at batch 2 (CFG) with 154 context tokens, and the VAE
decode of one latent, in the dtype asked for (weights cast from the file's F16).
"""
import json
import math
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

NP_DTYPE = {'F16': np.float16, 'F32': np.float32, 'BF16': np.uint16, 'U8': np.uint8, 'I64': np.int64, 'I32': np.int32}


def read_safetensors(path, prefix='', dtype=torch.float32):
    """Tensors under `prefix` (prefix removed) as torch tensors of `dtype` (floating) or their own type."""
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
    data = np.memmap(path, dtype=np.uint8, mode='r', offset=8 + n)
    out = {}
    for name, e in header.items():
        if name == '__metadata__' or not name.startswith(prefix):
            continue
        a, b = e['data_offsets']
        arr = data[a:b].view(NP_DTYPE[e['dtype']]).reshape(e['shape'])
        if e['dtype'] == 'BF16':
            t = torch.from_numpy(arr.astype(np.int32) << 16).view(torch.float32)
        else:
            t = torch.from_numpy(np.array(arr))
        out[name[len(prefix):]] = t.to(dtype) if t.is_floating_point() else t
    return out


# ---- MMDiT (SD3 Medium: joint blocks with adaLN-Zero over [context ; image]) ----

def linear(w, name, x):
    return F.linear(x, w[name + '.weight'], w.get(name + '.bias'))


def modulate(x, shift, scale):
    x = F.layer_norm(x, (x.shape[-1],), eps=1e-6)
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def timestep_features(t, dim, dtype):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(dtype)


def attention(q, k, v, heads):
    b, s, width = q.shape
    d = width // heads
    q, k, v = (z.view(b, s, heads, d).transpose(1, 2) for z in (q, k, v))
    scores = torch.matmul(q, k.transpose(-1, -2)) * (d ** -0.5)
    out = torch.matmul(scores.softmax(dim=-1), v)
    return out.transpose(1, 2).reshape(b, s, width)


def mmdit_forward(w, x, t, y, context):
    hidden = w['x_embedder.proj.weight'].shape[0]
    p = w['x_embedder.proj.weight'].shape[2]
    heads = hidden // 64
    depth = hidden // 64
    b, _, H, W = x.shape
    h, wd = H // p, W // p
    m = int(round(math.sqrt(w['pos_embed'].shape[1])))
    grid = w['pos_embed'].view(m, m, hidden)
    top, left = (m - h) // 2, (m - wd) // 2
    pos = grid[top:top + h, left:left + wd].reshape(1, h * wd, hidden)
    img = F.conv2d(x, w['x_embedder.proj.weight'], w['x_embedder.proj.bias'], stride=p).flatten(2).transpose(1, 2) + pos
    tf = timestep_features(t, w['t_embedder.mlp.0.weight'].shape[1], x.dtype)
    c = linear(w, 't_embedder.mlp.2', F.silu(linear(w, 't_embedder.mlp.0', tf)))
    c = c + linear(w, 'y_embedder.mlp.2', F.silu(linear(w, 'y_embedder.mlp.0', y)))
    sc = F.silu(c)
    ctx = linear(w, 'context_embedder', context)
    for i in range(depth):
        pre = f'joint_blocks.{i}.'
        last = i == depth - 1
        cm = linear(w, pre + 'context_block.adaLN_modulation.1', sc).chunk(2 if last else 6, dim=1)
        xm = linear(w, pre + 'x_block.adaLN_modulation.1', sc).chunk(6, dim=1)
        cqkv = linear(w, pre + 'context_block.attn.qkv', modulate(ctx, cm[0], cm[1]))
        xqkv = linear(w, pre + 'x_block.attn.qkv', modulate(img, xm[0], xm[1]))
        q, k, v = torch.cat([cqkv, xqkv], dim=1).chunk(3, dim=2)
        a = attention(q, k, v, heads)
        L = ctx.shape[1]

        def post(branch, x0, mod, att):
            x1 = x0 + mod[2].unsqueeze(1) * linear(w, pre + branch + '.attn.proj', att)
            hmid = F.gelu(linear(w, pre + branch + '.mlp.fc1', modulate(x1, mod[3], mod[4])), approximate='tanh')
            return x1 + mod[5].unsqueeze(1) * linear(w, pre + branch + '.mlp.fc2', hmid)
        img = post('x_block', img, xm, a[:, L:])
        ctx = None if last else post('context_block', ctx, cm, a[:, :L])
    shift, scale = linear(w, 'final_layer.adaLN_modulation.1', sc).chunk(2, dim=1)
    out = linear(w, 'final_layer.linear', modulate(img, shift, scale))
    cout = out.shape[-1] // (p * p)
    out = out.view(b, h, wd, p, p, cout).permute(0, 5, 1, 3, 2, 4)
    return out.reshape(b, cout, H, W)


# ---- VAE decoder ----

def group_norm(w, name, x):
    return F.group_norm(x, 32, w[name + '.weight'], w[name + '.bias'], eps=1e-6)


def conv(w, name, x, pad=1):
    return F.conv2d(x, w[name + '.weight'], w[name + '.bias'], padding=pad)


def resnet(w, name, x):
    h = conv(w, name + '.conv1', F.silu(group_norm(w, name + '.norm1', x)))
    h = conv(w, name + '.conv2', F.silu(group_norm(w, name + '.norm2', h)))
    if name + '.nin_shortcut.weight' in w:
        x = conv(w, name + '.nin_shortcut', x, pad=0)
    return x + h


def attn_block(w, name, x):
    b, c, hh, ww = x.shape
    h = group_norm(w, name + '.norm', x)
    q, k, v = (conv(w, f'{name}.{p}', h, pad=0).flatten(2).transpose(1, 2) for p in ('q', 'k', 'v'))
    a = attention(q, k, v, 1)
    return x + conv(w, name + '.proj_out', a.transpose(1, 2).reshape(b, c, hh, ww), pad=0)


def vae_decode(w, z):
    levels = 0
    while f'decoder.up.{levels}.block.0.conv1.weight' in w:
        levels += 1
    blocks = 0
    while f'decoder.up.0.block.{blocks}.conv1.weight' in w:
        blocks += 1
    h = conv(w, 'decoder.conv_in', z)
    h = resnet(w, 'decoder.mid.block_1', h)
    h = attn_block(w, 'decoder.mid.attn_1', h)
    h = resnet(w, 'decoder.mid.block_2', h)
    for i in reversed(range(levels)):
        for j in range(blocks):
            h = resnet(w, f'decoder.up.{i}.block.{j}', h)
        if i > 0:
            h = conv(w, f'decoder.up.{i}.upsample.conv', F.interpolate(h, scale_factor=2.0, mode='nearest'))
    return conv(w, 'decoder.conv_out', F.silu(group_norm(w, 'decoder.norm_out', h)))


# ---- commands ----

def check(fixtures):
    """Every MMDiT and VAE-decode case of the tiny fixtures (and their extra cases), with each fixture's own pass rule."""
    worst = {}
    ok = True
    import os
    folders = [(f, kind) for f, kind in (('mmdit', 'mmdit'), ('vae', 'vae'), ('extra_mmdit', 'mmdit'), ('extra_vae', 'vae'))
               if os.path.exists(f'{fixtures}/{f}/config.json')]
    for comp, kind in folders:
        cfg = json.load(open(f'{fixtures}/{comp}/config.json'))
        w = read_safetensors(f"{fixtures}/{comp}/{cfg['weights_file']}", cfg['weights_prefix'])
        tol = cfg['tolerance']
        for case in cfg['cases']:
            if kind == 'vae' and not case['name'].startswith('decode'):
                continue
            c = read_safetensors(f"{fixtures}/{comp}/{case['file']}")
            with torch.no_grad():
                if kind == 'mmdit':
                    got, want = mmdit_forward(w, c['input.x'], c['input.t'], c['input.y'], c['input.context']), c['output.model_output']
                else:
                    got, want = vae_decode(w, c['input.latent']), c['output.image']
            err = (got - want).abs().max().item()
            budget = tol['atol'] + tol['rtol'] * want.abs().max().item()
            worst[f"{comp}/{case['name']}"] = {'max_abs_diff': err, 'budget': budget, 'pass': err <= budget}
            ok = ok and err <= budget
    print(json.dumps({'check': worst, 'pass': ok}))
    return 0 if ok else 1


def bench(args):
    ckpt = args[0]
    opt = {'--size': '512', '--steps': '1', '--dtype': 'float32', '--threads': '2'}
    flags = set()
    i = 1
    while i < len(args):
        if args[i] == '--no-decode':
            flags.add(args[i])
            i += 1
        elif args[i] in opt and i + 1 < len(args):
            opt[args[i]] = args[i + 1]
            i += 2
        else:
            sys.exit(f'torch_sd3.py bench: unknown argument {args[i]!r}')
    if opt['--dtype'] not in ('float32', 'bfloat16'):
        sys.exit(f"--dtype must be float32 or bfloat16, got {opt['--dtype']!r}")
    torch.set_num_threads(int(opt['--threads']))
    dtype = getattr(torch, opt['--dtype'])
    size, steps = int(opt['--size']), int(opt['--steps'])
    t0 = time.time()
    w = read_safetensors(ckpt, 'model.diffusion_model.', dtype)
    load = time.time() - t0
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, size // 8, size // 8, generator=g).to(dtype)
    y = torch.randn(2, w['y_embedder.mlp.0.weight'].shape[1], generator=g).to(dtype)
    ctx = torch.randn(2, 154, w['context_embedder.weight'].shape[1], generator=g).to(dtype)
    times = []
    finite = True
    with torch.no_grad():
        for s in range(steps):
            t = torch.full((2,), 1000.0 * (1 - s / steps))
            t0 = time.time()
            out = mmdit_forward(w, x, t, y, ctx)
            times.append(time.time() - t0)
            finite = finite and bool(torch.isfinite(out.float()).all())
    del w
    decode = None
    if '--no-decode' not in flags:
        v = read_safetensors(ckpt, 'first_stage_model.', dtype)
        z = torch.randn(1, 16, size // 8, size // 8, generator=g).to(dtype)
        with torch.no_grad():
            vae_decode(v, torch.zeros(1, 16, 8, 8, dtype=dtype))  # warm-up at a small shape
            t0 = time.time()
            img = vae_decode(v, z)
            decode = time.time() - t0
        finite = finite and bool(torch.isfinite(img.float()).all())
    try:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except Exception:
        peak = None
    print(json.dumps({'engine': 'torch', 'torch': torch.__version__, 'dtype': opt['--dtype'], 'size': size, 'threads': torch.get_num_threads(),
                      'loadSeconds': load, 'stepSeconds': times, 'secondsPerStep': sum(times) / len(times), 'decodeSeconds': decode,
                      'peakRssBytes': peak, 'finite': finite}))
    return 0


if __name__ == '__main__':
    if len(sys.argv) >= 3 and sys.argv[1] == 'check':
        sys.exit(check(sys.argv[2]))
    if len(sys.argv) >= 3 and sys.argv[1] == 'bench':
        sys.exit(bench(sys.argv[2:]))
    sys.exit(__doc__)
