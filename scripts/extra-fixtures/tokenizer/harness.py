"""Reference harness: openai CLIP simple_tokenizer.py (d05afc4) + Stability sd3.5 other_impls.SDTokenizer (fbf8f48).
ftfy replaced by identity (stub), as in the shared fixtures."""
import sys, os, json, html, unicodedata, hashlib
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, 'stub'))
sys.path.insert(0, HERE)
import regex
import simple_tokenizer as st

GZ = os.path.join(HERE, '..', '..', '..', 'assets', 'vocab', 'bpe_simple_vocab_16e6.txt.gz')
TOK = st.SimpleTokenizer(bpe_path=GZ)

# Stability's SDTokenizer, exact source lines 245-424 of other_impls.py @ fbf8f48
_ns = {}
exec(open(os.path.join(HERE, 'sdtokenizer_src.py')).read(), _ns)
SDTokenizer = _ns['SDTokenizer']

class OpenAIasHF:
    """HF-like call interface around the openai tokenizer: tokenizer(text)['input_ids'] = [start] + ids + [end]."""
    def __call__(self, text):
        return {'input_ids': [49406] + TOK.encode(text) + [49407]}
    def get_vocab(self):
        return TOK.encoder

SD_L = SDTokenizer(tokenizer=OpenAIasHF())
SD_G = SDTokenizer(pad_with_end=False, tokenizer=OpenAIasHF())

def nfc_noescape_ids(text):
    t = unicodedata.normalize('NFC', text).strip()
    t = st.whitespace_clean(t).lower()
    out = []
    for token in regex.findall(TOK.pat, t):
        token = ''.join(TOK.byte_encoder[b] for b in token.encode('utf-8'))
        out.extend(TOK.encoder[b] for b in TOK.bpe(token).split(' '))
    return out

LIGS = set('\ufb00\ufb01\ufb02\ufb03\ufb04\ufb05\ufb06\u0132\u0133\u0149\u01c4\u01c5\u01c6\u01c7\u01c8\u01c9\u01ca\u01cb\u01cc\u01f1\u01f2\u01f3')
def ftfy_reasons(text):
    r = []
    if unicodedata.normalize('NFC', text) != text: r.append('nfc')
    if any(c in LIGS for c in text): r.append('latin_ligature')
    if any(0xff01 <= ord(c) <= 0xffee or c == '\u3000' for c in text): r.append('fullwidth_form')
    if regex.search('[\u02bc\u2018-\u201b\u201c-\u201f]', text): r.append('curly_quotes')
    if regex.search('[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\u2028\u2029\u206a-\u206f\ufeff\ufff9-\ufffc\U000e0000-\U000e007f]', text) or '\r' in text: r.append('control_char')
    if regex.search('[\u00c2\u00c3\u00e2][\u0080-\u00bf\u20ac\u201a-\u203a\u0152-\u0178\u02c6\u02dc]', text): r.append('mojibake')
    if '<' not in text:
        twice = html.unescape(html.unescape(text))
        if html.unescape(twice) != twice: r.append('html_unescape_3x')
    return r

def make_case(text):
    ids = TOK.encode(text)
    body = ids[:75]
    l = [49406] + body + [49407]; l += [49407] * (77 - len(l))
    g = [49406] + body + [49407]; g += [0] * (77 - len(g))
    eos = max(range(77), key=lambda i: (l[i], -i))
    assert eos == l.index(max(l))
    c = {'text': text, 'ids': ids, 'num_tokens': len(ids), 'truncated': len(ids) > 75, 'eos_index': eos,
         'ids77_clip_l': l, 'ids77_clip_g': g}
    rl = SD_L.tokenize_with_weights(text); rg = SD_G.tokenize_with_weights(text)
    rl0 = [t for t, w in rl[0]]; rg0 = [t for t, w in rg[0]]
    assert len(rl) == len(rg)
    differs = rl0 != l or rg0 != g
    if differs or len(rl) > 1:
        c['sd3ref'] = {'ids77_clip_l': rl0, 'ids77_clip_g': rg0, 'num_chunks': len(rl), 'differs_from_truncation': differs}
    fr = ftfy_reasons(text)
    if fr: c['ftfy_sensitive'] = fr
    if html.unescape(html.unescape(text)) != text:
        c['html_unescape_changes_text'] = True
    alt = nfc_noescape_ids(text)
    if alt != ids: c['ids_nfc_no_html_unescape'] = alt
    return c

def dump(cases, meta, path):
    with open(path, 'w', encoding='utf-8') as f:
        f.write('{\n"meta": ' + json.dumps(meta, ensure_ascii=False, indent=1) + ',\n"cases": [\n')
        f.write(',\n'.join(json.dumps(c, ensure_ascii=False) for c in cases))
        f.write('\n]\n}\n')
