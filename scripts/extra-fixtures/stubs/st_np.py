import json, struct, numpy as np
DT = {'F32': np.float32, 'F64': np.float64, 'F16': np.float16, 'I64': np.int64, 'I32': np.int32,
      'U8': np.uint8, 'I8': np.int8, 'I16': np.int16, 'BOOL': np.bool_}
RDT = {np.dtype(v): k for k, v in DT.items()}
def read(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n]); base = 8 + n
    out = {}
    for k, v in h.items():
        if k == '__metadata__': continue
        s, e = v['data_offsets']
        if v['dtype'] == 'BF16':
            u = np.frombuffer(b[base + s:base + e], dtype='<u2').astype(np.uint32) << 16
            a = u.view(np.float32)
        else:
            a = np.frombuffer(b[base + s:base + e], dtype=np.dtype(DT[v['dtype']]).newbyteorder('<'))
        out[k] = a.reshape(v['shape']).copy()
    return out
def write(path, tensors):
    h = {}; off = 0; blobs = []
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k])
        raw = a.astype(a.dtype.newbyteorder('<')).tobytes()
        h[k] = {'dtype': RDT[a.dtype], 'shape': list(a.shape), 'data_offsets': [off, off + len(raw)]}
        off += len(raw); blobs.append(raw)
    hb = json.dumps(h, separators=(',', ':')).encode()
    hb += b' ' * ((8 - len(hb) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(hb))); f.write(hb)
        for r in blobs: f.write(r)
