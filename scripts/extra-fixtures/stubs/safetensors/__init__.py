import torch, st_np
class _F:
    def __init__(self, path): self.t = st_np.read(path)
    def keys(self): return list(self.t.keys())
    def get_tensor(self, k): return torch.from_numpy(self.t[k].copy())
    def __enter__(self): return self
    def __exit__(self, *a): return False
def safe_open(path, framework='pt', device='cpu'): return _F(path)
