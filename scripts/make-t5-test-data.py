#!/usr/bin/python3
"""Builds the T5 tokenizer test data in test/data/t5 with the real SentencePiece library.

No real T5 vocabulary ships with this project, so this trains two small T5-like unigram models and records
how the library tokenizes a few hundred varied strings:

  t5-test.model      unigram, 2000 pieces, nmt_nfkc normaliser, pad 0 / eos 1 / unk 2, no byte fallback (as T5)
  t5-bytes.model     the same corpus and ids, 1000 pieces, byte_fallback on (unknown characters -> <0xXX> pieces)
  tokenizer.json     t5-test.model in the Hugging Face tokenizers layout (as a preset's tokenizer folder has it)
  cases.json         {model, text, ids, normalized} per case; ids are what the library returns, without EOS

Run with Debian's python3-sentencepiece (apt-get install python3-sentencepiece):
  /usr/bin/python3 scripts/make-t5-test-data.py
The training corpus is generated here (image prompts, multilingual sentences) plus the license texts in
/usr/share/common-licenses; training is seeded and single-threaded.
"""
import base64
import json
import os
import random
import sys

import sentencepiece as spm

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'data', 't5')

SUBJECTS = ['a cat', 'an astronaut', 'a red fox', 'two dogs', 'an old fisherman', 'a castle', 'a robot',
            'a bowl of ramen', 'a lighthouse', 'a dragon', 'a little café', 'a mountain village', 'a sailboat',
            'a vintage car', 'an owl', 'a city street', 'a forest spirit', 'a corgi', 'a teapot', 'a violin']
ACTIONS = ['riding a horse', 'reading a book', 'in the rain', 'at sunset', 'on the moon', 'under a bridge',
           'made of glass', 'wearing sunglasses', 'in a jungle', 'on a skateboard', 'by the sea', 'at night']
STYLES = ['oil painting', 'watercolor', 'photorealistic', '35mm photo', 'pixel art', 'low-poly 3D render',
          'studio lighting', 'cinematic', 'highly detailed', '8k', 'trending on artstation', 'by Van Gogh',
          'ukiyo-e', 'isometric', 'film grain', 'f/1.8', 'HDR', 'volumetric fog', 'golden hour']
MULTILINGUAL = [
    'Le petit chat dort sur le canapé près de la fenêtre.', 'Où est la bibliothèque ? Déjà vu, naïve façade.',
    'Der Straßenverkehr in München ist heute sehr ruhig. Größe, Übung, Äpfel.',
    'El niño comió una manzana en el jardín. ¿Dónde está? ¡Olé!', 'São Paulo é uma cidade enorme e não dorme.',
    'Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.', 'Быстрая коричневая лиса прыгает через ленивую собаку.',
    '東京の夜景はとても美しいです。猫が好きです。', '一只小猫坐在窗边看雨。山水画，水墨。', '서울의 밤거리는 아름답습니다.',
    'Zażółć gęślą jaźń. Příliš žluťoučký kůň.', 'İstanbul’da güzel bir gün. Çay içtik.',
    'ＦＵＬＬ ｗｉｄｔｈ ｔｅｘｔ ａｎｄ ｄｉｇｉｔｓ １２３', 'ﬁne ﬂowers, ½ cup, x² + y², №5, ™, ①②③, Ⅻ', '“quoted” ‘text’ — dash – dash … ellipsis',
]


def corpus_lines():
    rng = random.Random(1234)
    lines = []
    for _ in range(6000):
        parts = [rng.choice(SUBJECTS) + ' ' + rng.choice(ACTIONS)] + rng.sample(STYLES, rng.randint(1, 4))
        lines.append(', '.join(parts))
    for _ in range(40):
        lines.extend(MULTILINGUAL)
    for _ in range(300):
        lines.append(' '.join(str(rng.randint(0, 10 ** rng.randint(1, 6))) for _ in range(rng.randint(1, 6))))
    lic = '/usr/share/common-licenses'
    if os.path.isdir(lic):
        for name in sorted(os.listdir(lic)):
            path = os.path.join(lic, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, encoding='utf-8', errors='replace') as f:
                    lines.extend(l.strip() for l in f if l.strip())
    return lines


def train(prefix, vocab_size, byte_fallback, lines):
    spm.set_random_generator_seed(1)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_prefix=prefix, model_type='unigram', vocab_size=vocab_size,
        normalization_rule_name='nmt_nfkc', pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        pad_piece='<pad>', eos_piece='</s>', unk_piece='<unk>', byte_fallback=byte_fallback,
        character_coverage=0.9995, num_threads=1, minloglevel=2)
    os.remove(prefix + '.vocab')
    return spm.SentencePieceProcessor(model_file=prefix + '.model')


def test_strings():
    """Hand-picked edge cases, then seeded random ones; each is kept once."""
    fixed = [
        '', ' ', '   ', '\t', '\n', 'a', 'A', 'hello world', '  hello   world  ', 'hello\tworld\nagain',
        'a photo of a cat', 'A cat holding a sign that says hello world', 'The quick brown fox jumps over the lazy dog.',
        "It's a beautiful day, isn't it? Let's go!", 'ROBOT DJ AT A NEON NIGHTCLUB', '3 apples and 12 oranges, 1990s, 4K UHD',
        'price: $19.99 (50% off!) #sale @store', 'email me at someone@example.com or https://example.com/page?id=42',
        '(masterpiece:1.2), best quality, (cat), [dog]', '{curly} <angle> |pipe| ~tilde~ `tick` ^caret^ \\back\\slash',
        '12345678901234567890', '0.5 1,000,000 3.14159 -42 +7 1e10 0x1F', '2024-01-31T12:00:00Z',
        'café', 'cafe\u0301', 'Å vs A\u030a', 'ﬁ ﬂ ﬀ ﬃ', 'x² y³ H₂O', '½ ¼ ¾', '① ② ⑩', 'Ⅻ ⅷ', '№ ™ ℃ ℉ Å',
        'ＡＢＣ ａｂｃ １２３', 'ｶﾀｶﾅ ﾊﾟﾋﾟﾌﾟ', 'ｶﾞｷﾞｸﾞ', '㍿ ㌔ ㎏ ㎞', '…', '‥', '“smart” ‘quotes’', '— – ‒ ―', '¡¿',
        'non\u00a0breaking\u00a0space', 'ideographic\u3000space', 'thin\u2009space\u200aand\u2002en', 'zero\u200bwidth\u200cjoin\u200d',
        'soft\u00adhyphen', 'line\u2028separator\u2029para', 'nel\u0085char', 'bom\ufeffinside', 'ctrl\u0001\u0002\u0007chars',
        'del\u007fchar', 'tab\u000bvt\u000cff', 'cr\r\nlf', 'nul\u0000char', 'bidi \u202eoverride\u202c mark \u200e\u200f',
        'emoji 😀 🐱 🚀', 'family 👨\u200d👩\u200d👧', 'flag 🇫🇷 🇯🇵', 'skin 👍🏽', 'keycap 1\ufe0f\u20e3', 'variation ☺\ufe0f ☺\ufe0e',
        '中文 日本語 한국어', '漢字かなカナ', 'ひらがな', 'Ελληνικά', 'Русский язык', 'עברית', 'العربية', 'हिन्दी', 'ภาษาไทย',
        '한 decomposed hangul', '한 precomposed hangul', 'ﷺ ligature', 'ǅ titlecase', 'ß ẞ', 'İı', 'ŉ', 'ſ long s',
        'Ⓐⓑⓒ', '𝐁𝐨𝐥𝐝 𝑖𝑡𝑎𝑙𝑖𝑐 𝔉𝔯𝔞𝔨𝔱𝔲𝔯', '𝟙𝟚𝟛', '⁰¹²³⁴⁵⁶⁷⁸⁹', '₀₁₂₃', 'ℌℑℜ', 'µ μ', 'Ω Ω', 'K K', '﹏ ﹐ ﹑', '︰ ︱', '〔〕【】',
        'a' * 40, 'ab' * 100, ' '.join(['word'] * 60), '!!!???...', '---', '...', '«guillemets»', '„German“', '¨ ´ ¸',
        'combining a\u0300\u0301\u0302 only \u0301', 'Zalgo z\u0351\u0352a\u0353l\u0354g\u0355o', 'tone ā á ǎ à',
        'Straße Größe', 'naïve coöperate', 'Ångström', 'ÆØÅ æøå', 'Œuvre œuvre', 'Ĳ ĳ', 'ℓ ℮', '⅓ ⅔ ⅕', '∞ ≠ ≤ ≥ ± × ÷',
        '→ ← ↑ ↓ ⇒', '★ ☆ ♥ ♦', '€ £ ¥ ₹ ₿', '© ® ℗', '° ′ ″', '§ ¶ † ‡', '\U0001f600' * 5, 'x' + '\u0301' * 10,
    ]
    rng = random.Random(99)
    pools = {
        'ascii': [chr(c) for c in range(32, 127)],
        'latin': list('àáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿĀāĂăĄąĆćČčĎďĒēĘęĚěĞğĪīıŁłŃńŇňŌōŐőŒœŘřŚśŠšŢţŤťŪūŮůŰűŸŹźŻżŽž'),
        'cjk': [chr(c) for c in range(0x4e00, 0x4e00 + 400)] + [chr(c) for c in range(0x3041, 0x3097)],
        'compat': list('ﬁﬂ①②③ⅠⅡⅢ²³½¼ＡＢＣａｂｃ１２３ｶﾀﾅﾞﾟ㍿㎏™℃№…‥') + ['\u00a0', '\u3000', '\u2009', '\u200b', '\u00ad'],
        'space': [' ', '  ', '\t', '\n', '\r\n', '\u00a0', '\u3000', '\u2003', '\u200b', '\u0085', '\ufeff'],
        'digits': list('0123456789') + ['.', ',', '-', '+', '%', ' '],
        'punct': list('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~') + list('“”‘’«»—–…¡¿·•'),
        'emoji': ['😀', '🐱', '🚀', '👍🏽', '🇫🇷', '❤️', '✨', '🔥', '\u200d'],
    }
    words = [w for line in MULTILINGUAL for w in line.split()] + [w for s in SUBJECTS + ACTIONS + STYLES for w in s.split()]
    generated = []
    for i in range(260):
        kind = i % 8
        if kind == 0:
            s = ', '.join([rng.choice(SUBJECTS) + ' ' + rng.choice(ACTIONS)] + rng.sample(STYLES, rng.randint(1, 5)))
            if rng.random() < 0.5:
                s = s.upper() if rng.random() < 0.3 else s.title()
        elif kind == 1:
            s = ' '.join(rng.choice(words) for _ in range(rng.randint(1, 12)))
        elif kind in (2, 3):
            pool = pools[rng.choice(list(pools))]
            other = pools[rng.choice(list(pools))]
            s = ''.join(rng.choice(pool if rng.random() < 0.7 else other) for _ in range(rng.randint(1, 30)))
        elif kind == 4:
            sep = pools['space']
            s = ''.join(rng.choice(sep) + rng.choice(words) for _ in range(rng.randint(1, 8))) + rng.choice(sep)
        elif kind == 5:
            s = ''.join(rng.choice(pools['digits']) for _ in range(rng.randint(1, 25)))
        elif kind == 6:
            s = rng.choice(words) + ''.join(rng.choice(pools['punct']) for _ in range(rng.randint(1, 6))) + rng.choice(words)
        else:
            n = rng.choice([50, 200, 800])
            s = ' '.join(rng.choice(words) for _ in range(n))
        generated.append(s)
    out, seen = [], set()
    for s in fixed + generated:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def record(sp, model_name, texts):
    cases = []
    for text in texts:
        ids = sp.encode_as_ids(text)
        proto = sp.encode_as_immutable_proto(text)
        normalized = ''.join(p.piece for p in proto.pieces) if model_name == 't5-test.model' else None
        case = {'model': model_name, 'text': text, 'ids': ids}
        if normalized is not None:
            case['normalized'] = normalized
        cases.append(case)
    return cases


def hf_layout(model_path, sp):
    """As transformers' T5 converter writes it (e.g. google/t5-v1_1-xxl): the SentencePiece pieces and scores, then
    <extra_id_N> sentinels as special added tokens (3 here, 100 in T5)."""
    with open(model_path, 'rb') as f:
        charsmap = extract_charsmap(f.read())
    n = sp.get_piece_size()
    vocab = [[sp.id_to_piece(i), sp.get_score(i)] for i in range(n)]
    extra = ['<extra_id_%d>' % i for i in range(2, -1, -1)]
    vocab += [[piece, 0.0] for piece in extra]
    special = [(i, sp.id_to_piece(i)) for i in (0, 1, 2)] + [(n + k, piece) for k, piece in enumerate(extra)]
    metaspace = {'type': 'Metaspace', 'replacement': '\u2581', 'add_prefix_space': True}
    return {
        'version': '1.0',
        'truncation': None,
        'padding': None,
        'added_tokens': [{'id': i, 'content': piece, 'single_word': False, 'lstrip': False, 'rstrip': False,
                          'normalized': False, 'special': True} for i, piece in special],
        'normalizer': {'type': 'Precompiled', 'precompiled_charsmap': base64.b64encode(charsmap).decode('ascii')},
        'pre_tokenizer': {'type': 'Sequence', 'pretokenizers': [{'type': 'WhitespaceSplit'}, metaspace]},
        'post_processor': {'type': 'TemplateProcessing',
                           'single': [{'Sequence': {'id': 'A', 'type_id': 0}}, {'SpecialToken': {'id': '</s>', 'type_id': 0}}],
                           'pair': [{'Sequence': {'id': 'A', 'type_id': 0}}, {'SpecialToken': {'id': '</s>', 'type_id': 0}},
                                    {'Sequence': {'id': 'B', 'type_id': 0}}, {'SpecialToken': {'id': '</s>', 'type_id': 0}}],
                           'special_tokens': {'</s>': {'id': '</s>', 'ids': [1], 'tokens': ['</s>']}}},
        'decoder': metaspace,
        'model': {'type': 'Unigram', 'unk_id': 2, 'vocab': vocab},
    }


def read_varint(buf, pos):
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7f) << shift
        shift += 7
        if b < 0x80:
            return result, pos


def extract_charsmap(proto):
    """normalizer_spec (field 3) -> precompiled_charsmap (field 2), read from the protobuf wire format."""
    pos = 0
    while pos < len(proto):
        key, pos = read_varint(proto, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = read_varint(proto, pos)
        elif wire == 5:
            pos += 4
        elif wire == 1:
            pos += 8
        elif wire == 2:
            n, pos = read_varint(proto, pos)
            body = proto[pos:pos + n]
            pos += n
            if field == 3:
                inner = 0
                while inner < len(body):
                    k, inner = read_varint(body, inner)
                    if k & 7 == 2:
                        m, inner = read_varint(body, inner)
                        if k >> 3 == 2:
                            return body[inner:inner + m]
                        inner += m
                    elif k & 7 == 0:
                        _, inner = read_varint(body, inner)
                    else:
                        raise ValueError('unexpected wire type in normalizer_spec')
        else:
            raise ValueError('unexpected wire type %d' % wire)
    raise ValueError('no precompiled_charsmap')


def main():
    os.makedirs(OUT, exist_ok=True)
    lines = corpus_lines()
    sp = train(os.path.join(OUT, 't5-test'), 2000, False, lines)
    spb = train(os.path.join(OUT, 't5-bytes'), 1000, True, lines)
    texts = test_strings()
    cases = record(sp, 't5-test.model', texts) + record(spb, 't5-bytes.model', texts[::4])
    meta = {
        'generator': 'scripts/make-t5-test-data.py, sentencepiece %s (Debian python3-sentencepiece)' % spm.__version__,
        'ids': 'SentencePieceProcessor.encode_as_ids(text): no EOS; the T5 tokenizer appends EOS (1)',
        'normalized': 'the pieces of encode_as_immutable_proto joined: the normalised text the library segmented',
    }
    with open(os.path.join(OUT, 'cases.json'), 'w', encoding='utf-8') as f:
        f.write('{"meta": ' + json.dumps(meta, ensure_ascii=False) + ',\n"cases": [\n')
        f.write(',\n'.join(json.dumps(c, ensure_ascii=False) for c in cases))
        f.write('\n]}\n')
    with open(os.path.join(OUT, 'tokenizer.json'), 'w', encoding='utf-8') as f:
        json.dump(hf_layout(os.path.join(OUT, 't5-test.model'), sp), f, ensure_ascii=False)
    print('%d cases, %d for t5-test.model' % (len(cases), sum(c['model'] == 't5-test.model' for c in cases)), file=sys.stderr)


if __name__ == '__main__':
    main()
