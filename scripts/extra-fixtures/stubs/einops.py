# minimal einops.rearrange / repeat for the patterns the reference uses
import re, math
def _parse(side):
    toks = re.findall(r'\([^)]*\)|\S+', side.strip())
    return [t[1:-1].split() if t.startswith('(') else [t] for t in toks]
def rearrange(x, pattern, **sizes):
    l, r = pattern.split('->')
    L, R = _parse(l), _parse(r)
    assert len(L) == x.dim(), (pattern, x.shape)
    known = dict(sizes); elem_shape = []; names = []
    for grp, dim in zip(L, x.shape):
        unk = [n for n in grp if n != '1' and n not in known]
        prod = math.prod(known[n] for n in grp if n != '1' and n in known)
        if unk:
            assert len(unk) == 1; known[unk[0]] = dim // prod
        for n in grp:
            if n == '1': continue
            elem_shape.append(known[n]); names.append(n)
    x = x.reshape(elem_shape)
    rnames = [n for grp in R for n in grp if n != '1']
    x = x.permute([names.index(n) for n in rnames])
    out = [math.prod(known[n] for n in grp if n != '1') for grp in R]
    return x.reshape(out)
def repeat(x, pattern, **sizes):
    assert pattern == "1 ... -> b ..."
    return x.expand(sizes['b'], *x.shape[1:])
