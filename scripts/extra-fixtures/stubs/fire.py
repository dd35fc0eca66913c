def Fire(*a, **k): raise NotImplementedError
