"""SD3's four models in PyTorch, written from the architecture at any size, with the single-file checkpoint's
parameter names (after the component prefix). Development tool only: it trains the demo model; the runtime is
TypeScript. Each module follows Stability's reference (`mmditx.py`, `sd3_impls.py`, `other_impls.py`) and
Hugging Face's CLIPTextModel, as our TypeScript graphs do.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------- CLIP text towers (HF CLIPTextModel names)

class CLIPAttention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x, mask):
        B, P, W = x.shape
        h = self.heads
        q, k, v = (p(x).view(B, P, h, W // h).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(W // h) + mask, dim=-1) @ v
        return self.out_proj(a.transpose(1, 2).reshape(B, P, W))


class CLIPMLP(nn.Module):
    def __init__(self, width, act):
        super().__init__()
        self.act = act
        self.fc1 = nn.Linear(width, 4 * width)
        self.fc2 = nn.Linear(4 * width, width)

    def forward(self, x):
        h = self.fc1(x)
        h = h * torch.sigmoid(1.702 * h) if self.act == 'quick_gelu' else F.gelu(h)
        return self.fc2(h)


class CLIPLayer(nn.Module):
    def __init__(self, width, heads, act):
        super().__init__()
        self.self_attn = CLIPAttention(width, heads)
        self.layer_norm1 = nn.LayerNorm(width, eps=1e-5)
        self.mlp = CLIPMLP(width, act)
        self.layer_norm2 = nn.LayerNorm(width, eps=1e-5)

    def forward(self, x, mask):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class Embeddings(nn.Module):
    def __init__(self, vocab, width, length):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, width)
        self.position_embedding = nn.Embedding(length, width)


class Encoder(nn.Module):
    def __init__(self, width, layers, heads, act):
        super().__init__()
        self.layers = nn.ModuleList([CLIPLayer(width, heads, act) for _ in range(layers)])


class TextModel(nn.Module):
    def __init__(self, vocab, width, layers, heads, act, length=77):
        super().__init__()
        self.embeddings = Embeddings(vocab, width, length)
        self.encoder = Encoder(width, layers, heads, act)
        self.final_layer_norm = nn.LayerNorm(width, eps=1e-5)


class CLIPText(nn.Module):
    """Returns (penultimate [B, 77, W], pooled [B, W], pooled_projected [B, W])."""

    def __init__(self, width, layers, act, projection, vocab=49408):
        super().__init__()
        # SD3's CLIP towers have 64-wide heads (CLIP-L 768/12, CLIP-G 1280/20); the loader infers heads so.
        self.text_model = TextModel(vocab, width, layers, width // 64, act)
        self.text_projection = nn.Linear(width, width, bias=False) if projection else None
        nn.init.normal_(self.text_model.embeddings.token_embedding.weight, std=0.02)
        nn.init.normal_(self.text_model.embeddings.position_embedding.weight, std=0.01)

    def forward(self, ids):
        tm = self.text_model
        P = ids.shape[1]
        x = tm.embeddings.token_embedding(ids) + tm.embeddings.position_embedding.weight[:P]
        mask = torch.full((P, P), float('-inf')).triu(1)
        states = [x]
        for layer in tm.encoder.layers:
            x = layer(x, mask)
            states.append(x)
        last = tm.final_layer_norm(x)
        pooled = last[torch.arange(ids.shape[0]), ids.argmax(dim=1)]
        projected = self.text_projection(pooled) if self.text_projection is not None else pooled
        return states[-2], pooled, projected


def sd3_conditioning(clip_l_out, clip_g_out, context_width, t5_rows=77):
    """context = [CLIP-L seq | CLIP-G seq | zero pad] ; 77 zero rows (no T5); y = L pooled | G projected."""
    l_seq, l_pooled, _ = clip_l_out
    g_seq, _, g_proj = clip_g_out
    seq = torch.cat([l_seq, g_seq], dim=-1)
    seq = F.pad(seq, (0, context_width - seq.shape[-1]))
    context = torch.cat([seq, seq.new_zeros(seq.shape[0], t5_rows, context_width)], dim=1)
    return context, torch.cat([l_pooled, g_proj], dim=-1)


# ---------------------------------------------------------------- MMDiT (reference mmditx.py names)

def timestep_embedding(t, dim, max_period=10000):
    half = dim // 2
    dtype = t.dtype if t.is_floating_point() else torch.float32
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=dtype) / half)
    args = t[:, None].to(dtype) * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class MLPEmbedder(nn.Module):
    def __init__(self, inp, hidden):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(inp, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, x):
        return self.mlp(x)


class PatchEmbed(nn.Module):
    def __init__(self, channels, hidden, patch):
        super().__init__()
        self.proj = nn.Conv2d(channels, hidden, patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class Attn(nn.Module):
    def __init__(self, hidden, pre_only):
        super().__init__()
        self.qkv = nn.Linear(hidden, 3 * hidden)
        if not pre_only:
            self.proj = nn.Linear(hidden, hidden)


class Mlp(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.fc1 = nn.Linear(hidden, 4 * hidden)
        self.fc2 = nn.Linear(4 * hidden, hidden)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate='tanh'))


class DismantledBlock(nn.Module):
    def __init__(self, hidden, pre_only):
        super().__init__()
        self.pre_only = pre_only
        self.attn = Attn(hidden, pre_only)
        if not pre_only:
            self.mlp = Mlp(hidden)
        n = 2 if pre_only else 6
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, n * hidden))
        self.hidden = hidden

    def pre_attention(self, x, c):
        mods = self.adaLN_modulation(c).chunk(2 if self.pre_only else 6, dim=1)
        h = modulate(F.layer_norm(x, (self.hidden,), eps=1e-6), mods[0], mods[1])
        return self.attn.qkv(h), mods

    def post_attention(self, attn, x, mods):
        _, _, gate_msa, shift_mlp, scale_mlp, gate_mlp = mods
        x = x + gate_msa.unsqueeze(1) * self.attn.proj(attn)
        h = modulate(F.layer_norm(x, (self.hidden,), eps=1e-6), shift_mlp, scale_mlp)
        return x + gate_mlp.unsqueeze(1) * self.mlp(h)


class JointBlock(nn.Module):
    def __init__(self, hidden, heads, pre_only):
        super().__init__()
        self.heads = heads
        self.context_block = DismantledBlock(hidden, pre_only)
        self.x_block = DismantledBlock(hidden, False)

    def forward(self, context, x, c, key_bias=None):
        cq, cm = self.context_block.pre_attention(context, c)
        xq, xm = self.x_block.pre_attention(x, c)
        qkv = torch.cat([cq, xq], dim=1)
        B, S, H3 = qkv.shape
        H = H3 // 3
        q, k, v = (t.view(B, S, self.heads, H // self.heads).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
        logits = q @ k.transpose(-1, -2) / math.sqrt(H // self.heads)
        if key_bias is not None:
            logits = logits + key_bias
        a = torch.softmax(logits, dim=-1) @ v
        a = a.transpose(1, 2).reshape(B, S, H)
        L = context.shape[1]
        ca, xa = a[:, :L], a[:, L:]
        context = None if self.context_block.pre_only else self.context_block.post_attention(ca, context, cm)
        return context, self.x_block.post_attention(xa, x, xm)


class FinalLayer(nn.Module):
    def __init__(self, hidden, patch, out):
        super().__init__()
        self.hidden = hidden
        self.linear = nn.Linear(hidden, patch * patch * out)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(F.layer_norm(x, (self.hidden,), eps=1e-6), shift, scale))


def sincos_2d(hidden, m):
    """2-D sine-cosine grid (the usual DiT initialisation of pos_embed), [1, m*m, hidden]."""
    def one(d, pos):
        omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d / 2))
        out = pos.reshape(-1)[:, None] * omega[None]
        return torch.cat([torch.sin(out), torch.cos(out)], dim=1)
    gy, gx = torch.meshgrid(torch.arange(m, dtype=torch.float64), torch.arange(m, dtype=torch.float64), indexing='ij')
    return torch.cat([one(hidden // 2, gy), one(hidden // 2, gx)], dim=1).float()[None]


class MMDiT(nn.Module):
    def __init__(self, depth, pos_max, adm, context_in, channels=16, patch=2):
        super().__init__()
        H = 64 * depth
        self.depth, self.hidden, self.patch, self.channels, self.pos_max = depth, H, patch, channels, pos_max
        self.x_embedder = PatchEmbed(channels, H, patch)
        self.t_embedder = MLPEmbedder(256, H)
        self.y_embedder = MLPEmbedder(adm, H)
        self.context_embedder = nn.Linear(context_in, H)
        self.pos_embed = nn.Parameter(sincos_2d(H, pos_max))
        self.joint_blocks = nn.ModuleList([JointBlock(H, depth, i == depth - 1) for i in range(depth)])
        self.final_layer = FinalLayer(H, patch, channels)
        # adaLN-Zero: every block starts as the identity and the output as zero
        for blk in self.joint_blocks:
            for b in (blk.context_block, blk.x_block):
                nn.init.zeros_(b.adaLN_modulation[1].weight)
                nn.init.zeros_(b.adaLN_modulation[1].bias)
        for p in (self.final_layer.adaLN_modulation[1].weight, self.final_layer.adaLN_modulation[1].bias,
                  self.final_layer.linear.weight, self.final_layer.linear.bias):
            nn.init.zeros_(p)

    def forward(self, x, t, y, context, merged_rows=0):
        """x [B, 16, h, w] model-space latents, t [B] = sigma * 1000, y [B, adm], context [B, L, ctx] -> v.

        Training shortcut (exact in exact arithmetic): with merged_rows = n, the context's last row stands for n
        identical rows (SD3's 77 zero rows in place of T5). Identical rows stay identical through every block, and
        n equal keys weigh in the softmax as one key with log(n) added to its logits, so the image tokens see the
        same attention while the context is 78 rows instead of 154.
        """
        B, C, Hh, Ww = x.shape
        p = self.patch
        hp, wp = Hh // p, Ww // p
        m = self.pos_max
        top, left = (m - hp) // 2, (m - wp) // 2
        pos = self.pos_embed.view(1, m, m, -1)[:, top:top + hp, left:left + wp].reshape(1, hp * wp, -1)
        h = self.x_embedder(x) + pos
        c = self.t_embedder(timestep_embedding(t, 256)) + self.y_embedder(y)
        ctx = self.context_embedder(context)
        key_bias = None
        if merged_rows > 1:
            key_bias = torch.zeros(ctx.shape[1] + h.shape[1])
            key_bias[ctx.shape[1] - 1] = math.log(merged_rows)
        for blk in self.joint_blocks:
            ctx, h = blk(ctx, h, c, key_bias)
        out = self.final_layer(h, c)  # [B, N, p*p*C]
        out = out.view(B, hp, wp, p, p, C).permute(0, 5, 1, 3, 2, 4)
        return out.reshape(B, C, Hh, Ww)


# ---------------------------------------------------------------- VAE (reference sd3_impls.py names)

# GroupNorm groups. SD3 has 32, with 128-512 channels (4-16 per group). At the demo's 16 channels, 32 groups
# cannot divide them, and one or two channels per group erase a flat colour's absolute value (over a flat
# crop only the signs survive each normalisation; with 8 groups the VAE's loss stalled, measured); 4 groups keep
# SD3's 4 channels per group at its widest level. The checkpoint records it (metadata "vae.groups").
VAE_GROUPS = 4


def gn(c):
    return nn.GroupNorm(VAE_GROUPS, c, eps=1e-6)


class ResnetBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1 = gn(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = gn(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.nin_shortcut(x) if self.nin_shortcut is not None else x) + h


class AttnBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = gn(c)
        self.q = nn.Conv2d(c, c, 1)
        self.k = nn.Conv2d(c, c, 1)
        self.v = nn.Conv2d(c, c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x):
        B, C, H, W = x.shape
        h = self.norm(x)
        q, k, v = (p(h).view(B, C, H * W).transpose(1, 2) for p in (self.q, self.k, self.v))
        a = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(C), dim=-1) @ v
        return x + self.proj_out(a.transpose(1, 2).reshape(B, C, H, W))


class Down(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Up(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode='nearest'))


class Mid(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.block_1 = ResnetBlock(c, c)
        self.attn_1 = AttnBlock(c)
        self.block_2 = ResnetBlock(c, c)

    def forward(self, x):
        return self.block_2(self.attn_1(self.block_1(x)))


class Level(nn.Module):
    pass


class VAEEncoder(nn.Module):
    def __init__(self, channels, blocks, z=16):
        super().__init__()
        self.conv_in = nn.Conv2d(3, channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        cin = channels[0]
        for i, c in enumerate(channels):
            lvl = Level()
            lvl.block = nn.ModuleList()
            for _ in range(blocks):
                lvl.block.append(ResnetBlock(cin, c))
                cin = c
            if i < len(channels) - 1:
                lvl.downsample = Down(c)
            self.down.append(lvl)
        self.mid = Mid(cin)
        self.norm_out = gn(cin)
        self.conv_out = nn.Conv2d(cin, 2 * z, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for i, lvl in enumerate(self.down):
            for b in lvl.block:
                h = b(h)
            if i < len(self.down) - 1:
                h = lvl.downsample(h)
        h = self.conv_out(F.silu(self.norm_out(self.mid(h))))
        return h.chunk(2, dim=1)  # mean, logvar


class VAEDecoder(nn.Module):
    def __init__(self, channels, blocks, z=16):
        super().__init__()
        last = channels[-1]
        self.conv_in = nn.Conv2d(z, last, 3, padding=1)
        self.mid = Mid(last)
        self.up = nn.ModuleList()
        levels = [None] * len(channels)
        cin = last
        for i in reversed(range(len(channels))):
            lvl = Level()
            lvl.block = nn.ModuleList()
            for _ in range(blocks + 1):
                lvl.block.append(ResnetBlock(cin, channels[i]))
                cin = channels[i]
            if i > 0:
                lvl.upsample = Up(cin)
            levels[i] = lvl
        for lvl in levels:
            self.up.append(lvl)
        self.norm_out = gn(channels[0])
        self.conv_out = nn.Conv2d(channels[0], 3, 3, padding=1)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for i in reversed(range(len(self.up))):
            for b in self.up[i].block:
                h = b(h)
            if i > 0:
                h = self.up[i].upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VAE(nn.Module):
    def __init__(self, channels, blocks):
        super().__init__()
        self.encoder = VAEEncoder(channels, blocks)
        self.decoder = VAEDecoder(channels, blocks)


# ---------------------------------------------------------------- the demo's sizes

CLIP_WIDTH = 64
CLIP_LAYERS = 2
MMDIT_DEPTH = 2
POS_MAX = 4          # 4x4 patches of 2x2 latent cells = 64x64 pixels, the native size
VAE_CHANNELS = [16, 32, 64, 64]  # SD3's multipliers (1, 2, 4, 4) on a base of 16
VAE_BLOCKS = 1
LATENT_SCALE = 1.5305  # SD3's factors, kept: the VAE's latent statistics are folded into its weights
LATENT_SHIFT = 0.0609


def make_models():
    clip_l = CLIPText(CLIP_WIDTH, CLIP_LAYERS, 'quick_gelu', projection=False)
    clip_g = CLIPText(CLIP_WIDTH, CLIP_LAYERS, 'gelu', projection=True)
    mmdit = MMDiT(MMDIT_DEPTH, POS_MAX, adm=2 * CLIP_WIDTH, context_in=2 * CLIP_WIDTH)
    vae = VAE(VAE_CHANNELS, VAE_BLOCKS)
    return clip_l, clip_g, mmdit, vae
