"""Craft 32x32 images in [-1,1] (image = tanh(param)) that push the tiny VAE encoder's raw log-variance beyond the
posterior clamp: 'up' targets > +28 (clamp 20), 'down' targets < -40 (clamp -30). Saved to crafted.npz (inputs only)."""
import os, sys; sys.path[:0] = [os.path.dirname(os.path.abspath(__file__))]
import numpy as np, torch, ref
torch.manual_seed(0); torch.set_num_threads(8)
v = ref.vae()
for p in v.parameters(): p.requires_grad_(False)
S = 32; AMP = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
# per image: list of (kind, i, j) latent positions; channel = the best one at that position
PLAN = {
  'above': [[('up', 4, 4), ('up', 4, 11), ('up', 12, 7)], [('up', 0, 0), ('up', 8, 8), ('up', 15, 10)]],
  'below': [[('down', 5, 5), ('down', 10, 12)], [('down', 15, 15), ('down', 3, 9), ('down', 9, 2)]],
  'both':  [[('up', 3, 3), ('down', 12, 12)], []],
}
out = {}
for name, plan in PLAN.items():
    g = torch.Generator().manual_seed(hash(name) % 1000)
    P = (torch.randn(2, 3, S, S, generator=g) * 0.5).requires_grad_(True)
    opt = torch.optim.Adam([P], lr=0.05)
    for it in range(1000):
        h = v.encoder((AMP * torch.tanh(P))); l = h[:, 16:]
        loss = 0
        for b, tg in enumerate(plan):
            for kind, i, j in tg:
                if kind == 'up': loss = loss + torch.relu(30 - l[b, :, i, j].max())
                else: loss = loss + torch.relu(l[b, :, i, j].min() + 42)
        if not torch.is_tensor(loss) or float(loss) == 0: break
        opt.zero_grad(); loss.backward(); opt.step()
    img = (AMP * torch.tanh(P)).detach()
    if not plan[1]:  # control image: plain random image in [-1,1]
        img[1] = torch.rand(3, S, S, generator=g) * 2 - 1
    with torch.no_grad(): l = v.encoder(img)[:, 16:]
    print(name, 'iters', it, 'loss', float(loss), [(float(l[b].max()), float(l[b].min()), int((l[b] > 20).sum()), int((l[b] < -30).sum())) for b in range(2)])
    out[name] = img.numpy().astype(np.float32)
np.savez(os.environ.get('CRAFTED', '/tmp/xfix2/crafted.npz'), **out)
