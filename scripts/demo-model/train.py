"""Trains the demo model from scratch: the VAE first, then CLIP-L, CLIP-G and the MMDiT together.

    /usr/bin/python3 scripts/demo-model/train.py DATA_DIR WORK_DIR [--mmdit-steps N] [--threads N]

DATA_DIR is what dump-data.ts wrote (scene attributes and captions tokenized by our TypeScript tokenizer).
WORK_DIR receives vae.pt, latents.pt, decoder.pt and decoder2.pt (the two decoder passes), mmdit.pt (with EMA
weights), log.json (log.json.decoder / .decoder2 from a run of only those stages). Seeds are fixed (torch 16,
numpy 16); everything runs on the CPU, on one thread by default (--threads). A stage whose output exists is skipped.
"""
import argparse
import json
import math
import os
import sys
import time

# One BLAS thread as well: Debian's OpenBLAS would otherwise start its own threads beside torch's (see --threads).
os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import LATENT_SCALE, LATENT_SHIFT, make_models, sd3_conditioning  # noqa: E402
from render import render_all  # noqa: E402

SHIFT = 3.0          # SD3's flow-matching shift, as the pipeline samples with
FOREGROUND_WEIGHT = 4.0  # extra loss weight on latent cells the shape touches
MMDIT_BATCH = 32
TEXT_DROPOUT = 0.1   # captions replaced by the empty prompt, so classifier-free guidance has an unconditional model
T5_ROWS = 77


def log(msg):
    print(f'[{time.strftime("%H:%M:%S")}] {msg}', flush=True)


def load_data(data_dir):
    meta = json.load(open(os.path.join(data_dir, 'meta.json')))
    raw = np.fromfile(os.path.join(data_dir, 'captions.bin'), dtype='<u2').reshape(-1, 1 + 2 * 77)
    return meta, raw[:, 0].astype(np.int64), raw[:, 1:78].astype(np.int64), raw[:, 78:].astype(np.int64)


# (steps, batch, crop side): 32x32 crops first (a quarter of the work of a whole scene, and what a convolutional
# VAE learns is local; a crop still holds a whole small shape), then whole 64x64 scenes so GroupNorm and the
# middle attention end on the statistics of full images. The first recipe (1800 steps, mostly 16x16 crops) gave
# reconstructions whose shapes the evaluator read right only 42% of the time (corners rounded off): the MMDiT
# cannot draw a sharper shape than the VAE decodes.
VAE_PHASES = [(3000, 16, 32), (250, 16, 64)]
EDGE_WEIGHT = 0.5    # L1 on horizontal and vertical pixel differences: keeps edges and corners sharp


def train_vae(vae, images, out, logs):
    steps = sum(p[0] for p in VAE_PHASES)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    start = 0
    partial = out + '.partial'
    if os.path.exists(partial):
        ck = torch.load(partial)
        vae.load_state_dict(ck['vae']); opt.load_state_dict(ck['opt']); start = ck['step']
        logs['vae'] = [r for r in logs['vae'] if r[0] < start]
    g = torch.Generator().manual_seed(1 + start)
    t0 = time.time()
    plan = [(bs, crop) for n, bs, crop in VAE_PHASES for _ in range(n)]
    for step in range(start, steps):
        lr = 1e-3 * min(1.0, (step + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        for pg in opt.param_groups:
            pg['lr'] = lr
        bs, crop = plan[step]
        idx = torch.randint(0, images.shape[0], (bs,), generator=g)
        x = images[idx].float() / 127.5 - 1
        if crop < x.shape[-1]:
            oy, ox = (int(v) * 8 for v in torch.randint(0, (x.shape[-1] - crop) // 8 + 1, (2,), generator=g))
            x = x[:, :, oy:oy + crop, ox:ox + crop]
        mean, logvar = vae.encoder(x)
        logvar = logvar.clamp(-30, 20)
        z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=g)
        rec = vae.decoder(z)
        recon = (rec - x).abs().mean() + F.mse_loss(rec, x)
        edges = ((rec.diff(dim=-1) - x.diff(dim=-1)).abs().mean() + (rec.diff(dim=-2) - x.diff(dim=-2)).abs().mean())
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        loss = recon + EDGE_WEIGHT * edges + 1e-4 * kl
        opt.zero_grad()
        loss.backward()
        opt.step()
        logs['vae'].append([step, float(recon), float(kl)])
        if step % 50 == 0 or step == steps - 1:
            log(f'vae {step}/{steps} ({crop}x{crop}, batch {bs}) recon {float(recon):.4f} kl {float(kl):.3f} ({time.time() - t0:.0f} s)')
        if (step + 1) % 100 == 0:
            torch.save({'vae': vae.state_dict(), 'opt': opt.state_dict(), 'step': step + 1}, partial + '.tmp')
            os.replace(partial + '.tmp', partial)
            json.dump(logs, open(os.path.join(os.path.dirname(out), 'log.json'), 'w'))
    torch.save(vae.state_dict(), out)


# Decoder fine-tuning with the encoder frozen (so the latent space, and everything the MMDiT learns in it, stays
# as it is): the first VAE stage decodes large shapes well but rounds small ones (14 px, two latent cells) into
# look-alike blobs. (steps, batch, latent crop side in cells): crops first, then whole scenes.
DECODER_PHASES = [(3000, 16, 4), (500, 16, 8)]
DECODER_FOREGROUND = 8.0  # extra pixel-loss weight where the scene differs from its background


def decoder_batch(idx, g, images, lat_mean, lat_std, fg_pixels):
    """A posterior sample of the scenes idx in the decoder's input space, their pixels and pixel-loss weights."""
    z = lat_mean[idx] + lat_std[idx] * torch.randn(lat_mean[idx].shape, generator=g)
    z = z / LATENT_SCALE + LATENT_SHIFT          # model space -> the decoder's input
    x = images[idx].float() / 127.5 - 1
    w = 1 + DECODER_FOREGROUND * fg_pixels[idx]
    return z, x, w


def decoder_update(dec, opt, z, x, w):
    """One optimiser step of the decoder: foreground-weighted L1 + MSE and the edge term; returns the pixel loss."""
    rec = dec(z)
    err = (rec - x)
    recon = ((err.abs() + err.pow(2)) * w).mean() / w.mean()
    edges = ((rec.diff(dim=-1) - x.diff(dim=-1)).abs().mean() + (rec.diff(dim=-2) - x.diff(dim=-2)).abs().mean())
    loss = recon + EDGE_WEIGHT * edges
    opt.zero_grad()
    loss.backward()
    opt.step()
    return recon


def finetune_decoder(vae, images, lat_mean, lat_std, fg_pixels, out, logs):
    """Trains vae.decoder alone on posterior samples of the frozen encoder (what the MMDiT learns to produce)."""
    steps = sum(p[0] for p in DECODER_PHASES)
    dec = vae.decoder
    opt = torch.optim.AdamW(dec.parameters(), lr=3e-4, weight_decay=0.0)
    g = torch.Generator().manual_seed(3)
    plan = [(bs, crop) for n, bs, crop in DECODER_PHASES for _ in range(n)]
    logs['decoder'] = []
    t0 = time.time()
    for step in range(steps):
        lr = 3e-4 * min(1.0, (step + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        for pg in opt.param_groups:
            pg['lr'] = lr
        bs, crop = plan[step]
        idx = torch.randint(0, images.shape[0], (bs,), generator=g)
        z, x, w = decoder_batch(idx, g, images, lat_mean, lat_std, fg_pixels)
        if crop < z.shape[-1]:
            oy, ox = (int(v) for v in torch.randint(0, z.shape[-1] - crop + 1, (2,), generator=g))
            z = z[:, :, oy:oy + crop, ox:ox + crop]
            x = x[:, :, 8 * oy:8 * (oy + crop), 8 * ox:8 * (ox + crop)]
            w = w[:, :, 8 * oy:8 * (oy + crop), 8 * ox:8 * (ox + crop)]
        recon = decoder_update(dec, opt, z, x, w)
        logs['decoder'].append([step, float(recon)])
        if step % 50 == 0 or step == steps - 1:
            log(f'decoder {step}/{steps} ({8 * crop}x{8 * crop}, batch {bs}) recon {float(recon):.4f} ({time.time() - t0:.0f} s)')
    torch.save(dec.state_dict(), out)


# A second decoder pass on whole scenes, mostly small shapes: after the first pass the reconstructions of all
# 3024 scenes still read right as shapes 98% of the time for large ones but 56% for small ones (eval-recon.ts),
# so the MMDiT's small shapes came out as look-alike blobs however well it placed them. (steps, batch); the
# encoder stays frozen, so the latent space and the MMDiT are untouched.
DECODER2_PHASES = [(5000, 16)]
DECODER2_SMALL = 0.75  # fraction of each batch drawn from scenes with a small shape


def finetune_decoder_again(vae, images, lat_mean, lat_std, fg_pixels, small, out, logs):
    """Continues training vae.decoder (as the first decoder pass left it) on whole scenes, small shapes oversampled."""
    steps = sum(p[0] for p in DECODER2_PHASES)
    dec = vae.decoder
    opt = torch.optim.AdamW(dec.parameters(), lr=2e-4, weight_decay=0.0)
    g = torch.Generator().manual_seed(5)
    plan = [bs for n, bs in DECODER2_PHASES for _ in range(n)]
    small_idx, large_idx = small.nonzero()[:, 0], (~small).nonzero()[:, 0]
    logs['decoder2'] = []
    t0 = time.time()
    for step in range(steps):
        lr = 2e-4 * min(1.0, (step + 1) / 50) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        for pg in opt.param_groups:
            pg['lr'] = lr
        bs = plan[step]
        ns = int(round(bs * DECODER2_SMALL))
        idx = torch.cat([small_idx[torch.randint(0, small_idx.numel(), (ns,), generator=g)],
                         large_idx[torch.randint(0, large_idx.numel(), (bs - ns,), generator=g)]])
        recon = decoder_update(dec, opt, *decoder_batch(idx, g, images, lat_mean, lat_std, fg_pixels))
        logs['decoder2'].append([step, float(recon)])
        if step % 50 == 0 or step == steps - 1:
            log(f'decoder2 {step}/{steps} (batch {bs}, {ns} small) recon {float(recon):.4f} ({time.time() - t0:.0f} s)')
    torch.save(dec.state_dict(), out)


@torch.no_grad()
def fold_latent_statistics(vae, images):
    """Per-channel statistics of the posterior, folded into encoder.conv_out and decoder.conv_in so that SD3's
    own factors ((z - 0.0609) * 1.5305) map the demo VAE's latents to zero mean and unit variance."""
    means, stds = [], []
    for i in range(0, images.shape[0], 64):
        m, lv = vae.encoder(images[i:i + 64].float() / 127.5 - 1)
        means.append(m)
        stds.append(torch.exp(0.5 * lv.clamp(-30, 20)))
    m, s = torch.cat(means), torch.cat(stds)
    mu = m.mean(dim=(0, 2, 3))
    sd = torch.sqrt(m.var(dim=(0, 2, 3)) + s.pow(2).mean(dim=(0, 2, 3)))
    a = 1 / (sd * LATENT_SCALE)                # z_new = a * (z_old - mu) + shift
    b = LATENT_SHIFT - a * mu
    z = mu.numel()
    co = vae.encoder.conv_out
    co.weight[:z] *= a[:, None, None, None]
    co.bias[:z] = a * co.bias[:z] + b
    co.bias[z:] += 2 * torch.log(a)            # logvar of the scaled posterior
    ci = vae.decoder.conv_in                   # z_old = (z_new - b) / a
    w = ci.weight.clone()
    ci.bias += -(w * (b / a)[None, :, None, None]).sum(dim=(1, 2, 3))
    ci.weight.copy_(w / a[None, :, None, None])
    return mu, sd


@torch.no_grad()
def encode_all(vae, images):
    means, stds = [], []
    for i in range(0, images.shape[0], 64):
        m, lv = vae.encoder(images[i:i + 64].float() / 127.5 - 1)
        means.append((m - LATENT_SHIFT) * LATENT_SCALE)              # model space
        stds.append(torch.exp(0.5 * lv.clamp(-30, 20)) * LATENT_SCALE)
    return torch.cat(means), torch.cat(stds)


def sample_sigmas(n, g):
    """SD3's logit-normal timestep density (m = 0, s = 1), shifted by SHIFT like the sampling schedule."""
    s = torch.sigmoid(torch.randn(n, generator=g))
    return SHIFT * s / (1 + (SHIFT - 1) * s)


# The text towers' stand-in for CLIP's contrastive pretraining: a linear head (training only, not exported) reads
# every attribute of the scene back from the pooled vector y. Without it, trained through the MMDiT alone, the
# towers learnt colours, sizes and shapes but not positions: a linear probe on y found the position 21% of the
# time (chance 11%; colour 93%), and the MMDiT drew the shape at all nine places at once.
AUX_WEIGHT = 0.1
ATTRIBUTES = ('shape', 'colour', 'position', 'size', 'background')


def attribute_labels(meta):
    """[scenes, 5] class indices of each scene's attributes, and the number of classes of each."""
    values = {'shape': meta['shapes'], 'colour': list(meta['colours']), 'position': list(meta['positions']),
              'size': list(meta['sizes']), 'background': list(meta['colours'])}
    labels = torch.tensor([[values[a].index(sc[a]) for a in ATTRIBUTES] for sc in meta['scenes']])
    return labels, [len(values[a]) for a in ATTRIBUTES]


def train_mmdit(clip_l, clip_g, mmdit, lat_mean, lat_std, fg_cells, scene, ids_l, ids_g, empty, steps, out, logs, resume=None, meta=None):
    params = list(clip_l.parameters()) + list(clip_g.parameters()) + list(mmdit.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0, betas=(0.9, 0.99))
    labels, classes = attribute_labels(meta)
    aux = torch.nn.Linear(mmdit.y_embedder.mlp[0].in_features, sum(classes))  # re-initialised on a resume
    aux_opt = torch.optim.AdamW(aux.parameters(), lr=1e-3, weight_decay=0.0)
    ema = [p.detach().clone() for p in params]
    start = 0
    if resume is not None:
        clip_l.load_state_dict(resume['clip_l_live']); clip_g.load_state_dict(resume['clip_g_live'])
        mmdit.load_state_dict(resume['mmdit_live']); opt.load_state_dict(resume['opt'])
        ema = resume['ema']; start = resume['step']
    g = torch.Generator().manual_seed(2 + start)
    bs = MMDIT_BATCH
    peak = 1e-3
    t0 = time.time()
    el, eg = torch.tensor(empty['clipL']), torch.tensor(empty['clipG'])
    for step in range(start, steps):
        lr = peak * min(1.0, (step + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        for pg in opt.param_groups:
            pg['lr'] = lr
        r = torch.randint(0, scene.shape[0], (bs,), generator=g)
        sc = torch.from_numpy(scene[r.numpy()])
        il, ig = torch.from_numpy(ids_l[r.numpy()]), torch.from_numpy(ids_g[r.numpy()])
        drop = torch.rand(bs, generator=g) < TEXT_DROPOUT
        il[drop], ig[drop] = el, eg
        x0 = lat_mean[sc] + lat_std[sc] * torch.randn(lat_mean[sc].shape, generator=g)
        noise = torch.randn(x0.shape, generator=g)
        sigma = sample_sigmas(bs, g)
        xt = sigma[:, None, None, None] * noise + (1 - sigma[:, None, None, None]) * x0
        ctx, y = sd3_conditioning(clip_l(il), clip_g(ig), mmdit.context_embedder.in_features, t5_rows=1)
        v = mmdit(xt, sigma * 1000, y, ctx, merged_rows=T5_ROWS)
        keep = ~drop
        logits = aux(y[keep]).split(classes, dim=1)
        aux_loss = sum(F.cross_entropy(lg, labels[sc[keep], j]) for j, lg in enumerate(logits)) / len(classes)
        # The shape covers a few of the 64 latent cells, so the plain MSE is mostly the background's: weigh the
        # cells the shape touches more (the first run, unweighted, learnt every background by step 400, no shape).
        w = 1 + FOREGROUND_WEIGHT * fg_cells[sc]
        loss = (w * (v - (noise - x0)).pow(2)).mean() / w.mean()
        opt.zero_grad()
        aux_opt.zero_grad()
        (loss + AUX_WEIGHT * aux_loss).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        aux_opt.step()
        decay = min(0.998, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema, params):
                e.mul_(decay).add_(p.detach(), alpha=1 - decay)
        logs['mmdit'].append([step, float(loss), float(aux_loss)])
        if step % 20 == 0 or step == steps - 1:
            log(f'mmdit {step}/{steps} loss {float(loss):.4f} attributes {float(aux_loss):.3f} lr {lr:.2e} ({time.time() - t0:.0f} s)')
        if (step + 1) % 250 == 0 or step == steps - 1:
            save_mmdit(clip_l, clip_g, mmdit, params, ema, opt, step + 1, out)


def save_mmdit(clip_l, clip_g, mmdit, params, ema, opt, step, out):
    live = {'clip_l_live': clip_l.state_dict(), 'clip_g_live': clip_g.state_dict(), 'mmdit_live': mmdit.state_dict()}
    live = {k: {n: t.clone() for n, t in v.items()} for k, v in live.items()}
    with torch.no_grad():
        saved = [p.detach().clone() for p in params]
        for p, e in zip(params, ema):
            p.copy_(e)
        ema_sd = {'clip_l': clip_l.state_dict(), 'clip_g': clip_g.state_dict(), 'mmdit': mmdit.state_dict()}
        ema_sd = {k: {n: t.clone() for n, t in v.items()} for k, v in ema_sd.items()}
        for p, s in zip(params, saved):
            p.copy_(s)
    tmp = out + '.tmp'
    torch.save({**ema_sd, **live, 'ema': ema, 'opt': opt.state_dict(), 'step': step}, tmp)
    os.replace(tmp, out)
    log(f'saved {out} at step {step}')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('data')
    ap.add_argument('work')
    ap.add_argument('--mmdit-steps', type=int, default=5000)
    # One thread: on this shared 2-core machine two threads were 5-20x slower per step than one whenever other
    # work held a core (each parallel region waits for the descheduled thread; measured, see README).
    ap.add_argument('--threads', type=int, default=1)
    # The stages to run (each is skipped when its output exists); the decoder fine-tuning needs only the VAE and
    # the latents, so it can run beside the MMDiT stage in a second process.
    ap.add_argument('--stages', default='vae,decoder,decoder2,mmdit')
    a = ap.parse_args()
    stages = set(a.stages.split(','))
    torch.set_num_threads(a.threads)
    torch.manual_seed(16)
    np.random.seed(16)
    os.makedirs(a.work, exist_ok=True)
    t_start = time.time()
    meta, scene, ids_l, ids_g = load_data(a.data)
    images = torch.from_numpy(render_all(meta)).permute(0, 3, 1, 2).contiguous()  # uint8 [N, 3, 128, 128]
    log(f'rendered {images.shape[0]} scenes')
    clip_l, clip_g, mmdit, vae = make_models()
    log_path = os.path.join(a.work, 'log.json')
    logs = json.load(open(log_path)) if os.path.exists(log_path) else {'vae': [], 'mmdit': [], 'seconds': {}}

    vae_path = os.path.join(a.work, 'vae.pt')
    if not os.path.exists(vae_path) and 'vae' not in stages:
        sys.exit(f'{vae_path} is missing: run the vae stage first')
    if not os.path.exists(vae_path):
        t = time.time()
        if not os.path.exists(vae_path + '.raw.partial'):
            logs['vae'] = []
        train_vae(vae, images, vae_path + '.raw', logs)
        vae.load_state_dict(torch.load(vae_path + '.raw'))
        os.remove(vae_path + '.raw.partial')
        mu, sd = fold_latent_statistics(vae, images)
        log(f'latent statistics folded: mean {mu.numpy().round(3)} std {sd.numpy().round(3)}')
        torch.save(vae.state_dict(), vae_path)
        logs['seconds']['vae'] = time.time() - t
        json.dump(logs, open(log_path, 'w'))
    vae.load_state_dict(torch.load(vae_path))
    lat_path = os.path.join(a.work, 'latents.pt')
    if not os.path.exists(lat_path):
        t = time.time()
        torch.save(encode_all(vae, images), lat_path)
        logs['seconds']['latents'] = time.time() - t
    lat_mean, lat_std = torch.load(lat_path)
    log(f'latents {tuple(lat_mean.shape)}: mean {float(lat_mean.mean()):.3f} std {float(lat_mean.std()):.3f}')

    # pixels, and latent cells (8x8 pixels each), where the scene differs from its background
    bg = torch.tensor([meta['colours'][sc['background']] for sc in meta['scenes']], dtype=torch.int16)
    differs = (images.to(torch.int16) - bg[:, :, None, None]).abs().amax(dim=1, keepdim=True) > 8
    fg_cells = F.max_pool2d(differs.float(), 8)  # [N, 1, 8, 8]
    dec_path = os.path.join(a.work, 'decoder.pt')
    if 'decoder' in stages and not os.path.exists(dec_path):
        t = time.time()
        finetune_decoder(vae, images, lat_mean, lat_std, differs.float(), dec_path + '.tmp', logs)
        os.replace(dec_path + '.tmp', dec_path)
        logs['seconds']['decoder'] = time.time() - t
        json.dump(logs, open(log_path + '.decoder', 'w'))
    dec2_path = os.path.join(a.work, 'decoder2.pt')
    if 'decoder2' in stages and not os.path.exists(dec2_path):
        if not os.path.exists(dec_path):
            sys.exit(f'{dec_path} is missing: run the decoder stage first')
        vae.decoder.load_state_dict(torch.load(dec_path))
        small = torch.tensor([sc['size'] == 'small' for sc in meta['scenes']])
        t = time.time()
        finetune_decoder_again(vae, images, lat_mean, lat_std, differs.float(), small, dec2_path + '.tmp', logs)
        os.replace(dec2_path + '.tmp', dec2_path)
        logs['seconds']['decoder2'] = time.time() - t
        json.dump(logs, open(log_path + '.decoder2', 'w'))
    mm_path = os.path.join(a.work, 'mmdit.pt')
    resume = torch.load(mm_path) if os.path.exists(mm_path) else None
    if 'mmdit' in stages and (resume is None or resume['step'] < a.mmdit_steps):
        t = time.time()
        if resume is None:
            logs['mmdit'] = []
        train_mmdit(clip_l, clip_g, mmdit, lat_mean, lat_std, fg_cells, scene, ids_l, ids_g, meta['empty'], a.mmdit_steps, mm_path, logs, resume, meta)
        logs['seconds']['mmdit'] = logs['seconds'].get('mmdit', 0) + time.time() - t
    logs['seconds']['total_this_run'] = time.time() - t_start
    if not stages <= {'decoder', 'decoder2'}:  # a decoder-only run beside the MMDiT's leaves log.json to that process
        json.dump(logs, open(log_path, 'w'))
    log('done')


if __name__ == '__main__':
    main()
