import torch, math
import torch.nn.functional as F
def sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
    s = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    a = q @ k.transpose(-2, -1) * s
    if attn_mask is not None: a = a + attn_mask
    return torch.softmax(a, dim=-1) @ v
if not hasattr(F, 'scaled_dot_product_attention'):
    F.scaled_dot_product_attention = sdpa
