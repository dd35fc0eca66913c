import json, os, sys
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
ROOT = os.path.join(HERE, '..', '..', '..')
from harness import make_case, dump
from prompts import P
meta = json.load(open(os.path.join(ROOT, 'test/fixtures/tokenizer/clip_bpe_cases.json')))['meta']
cases = [make_case(t) for t in P]
meta = dict(meta)
meta['count'] = len(cases)
meta['generated_by'] = 'scripts/extra-fixtures/tokenizer/generate.py (openai simple_tokenizer d05afc4 + sd3.5 other_impls.SDTokenizer fbf8f48 with the openai tokenizer inside; Debian python3 3.11.2, python3-regex 2022.10.31 (Unicode 14 data in str.lower); ftfy = identity)'
dump(cases, meta, os.environ.get('TOKX_OUT', '/tmp/tokx/fixtures/tokenizer/clip_bpe_cases.json'))
import collections
print('cases', len(cases), 'sd3ref', sum('sd3ref' in c for c in cases), 'ftfy_sensitive', sum('ftfy_sensitive' in c for c in cases),
      'truncated', sum(c['truncated'] for c in cases), 'special', sum(c['eos_index'] != min(len(c['ids']),75)+1 for c in cases))
print(collections.Counter(r for c in cases for r in c.get('ftfy_sensitive', [])))
