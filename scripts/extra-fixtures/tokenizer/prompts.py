# -*- coding: utf-8 -*-
"""Diverse prompts for CLIP BPE parity (deterministic)."""
import random

P = []
def add(*xs):
    for x in xs:
        if x not in P: P.append(x)

# A. typical SD prompts
add(
 "a photograph of an astronaut riding a horse",
 "portrait of a young woman, soft lighting, bokeh, 85mm, f/1.4, Canon EOS R5",
 "masterpiece, best quality, ultra-detailed, 1girl, solo, long hair, looking at viewer, smile",
 "lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry",
 "a cozy cabin in the woods during winter, smoke from the chimney, warm light in the windows, snow-covered pine trees",
 "isometric view of a tiny island with a lighthouse, 3D render, octane render, unreal engine 5, trending on ArtStation",
 "a steampunk airship over Victorian London, oil on canvas, by Greg Rutkowski and Alphonse Mucha",
 "a bowl of fruit, still life, Cézanne style",
 "studio ghibli style, a girl and her cat on a train, golden hour",
 "a neon sign that reads \"OPEN 24/7\"",
 "a T-shirt design with the text 'Stay Weird'",
 "hyperrealistic close-up of a hummingbird drinking nectar, 8K, National Geographic",
 "an epic fantasy landscape with dragons, castles, waterfalls and floating islands, matte painting, concept art",
 "a cute kawaii avocado character, sticker, white background, vector art",
 "low angle shot of a skyscraper, brutalist architecture, overcast sky, black and white",
 "A Renaissance painting of a cat wearing a ruff collar",
 "photo of a 1967 Ford Mustang GT500 in a desert at dusk, cinematic, anamorphic lens flare",
 "a knolling photo of vintage camera parts",
 "Ukiyo-e woodblock print of Mount Fuji with a bullet train",
 "food photography: sushi platter, salmon nigiri, tuna maki, wasabi, soy sauce, chopsticks",
 "an infographic about the water cycle, flat design, pastel colors",
 "portrait of an elderly man with a white beard, Rembrandt lighting, dramatic chiaroscuro",
 "a cyborg samurai in a bamboo forest, rain, volumetric light, 4k wallpaper",
 "interior design of a Scandinavian living room, minimalist, natural wood, large windows, plants",
 "a children's book illustration of a bear having a picnic with a rabbit",
 "macro photograph of a snowflake on black wool",
 "aerial drone shot of the Amalfi coast, turquoise water, colorful houses",
 "a fantasy map of an archipelago with compass rose and sea monsters, parchment texture",
 "an oil painting of a lighthouse in a storm, waves crashing, by J.M.W. Turner",
 "logo for a tech startup named 'Quantum Leap', geometric, blue and orange",
 "Dungeons & Dragons character portrait, half-elf ranger, leather armor, longbow",
 "a papercraft diorama of a city at night",
 "claymation style penguin playing the saxophone",
 "a marble statue of a gamer holding a controller, museum lighting",
 "vaporwave aesthetic, palm trees, sunset grid, 80's retro",
 "A sign that says \"Hello, World!\" in Comic Sans",
 "tilt-shift photo of a busy train station",
 "double exposure portrait of a woman and a forest",
 "a glass of whiskey on the rocks, bar counter, moody lighting, shallow depth of field",
 "pencil sketch of a hand holding a rose, cross-hatching",
 "stained glass window depicting a phoenix",
 "screenshot of a 90s video game, PS1 graphics, low poly",
 "the Mona Lisa as a cyberpunk hacker",
 "an ant's-eye view of a dandelion",
 "Thomas Kinkade style painting of a cottage",
 "a cat astronaut floating in space, earth in the background, NASA photo",
 "photo of a red fox, wildlife photography, Sony A7R IV, 600mm",
 "a sports car made of LEGO, product photo",
 "watercolor and ink, cherry blossoms over a river, Kyoto",
 "pop art portrait of a dog in the style of Andy Warhol",
 "a robot barista making latte art in a Parisian café",
 "cross-section of a volcano, educational diagram, labeled",
 "8-bit pixel art sprite sheet of a knight, 16x16",
 "film still from a 1970s sci-fi movie, grainy, Kodak Portra 400",
 "RAW photo, dslr, high quality, film grain, Fujifilm XT3",
 "(worst quality, low quality:1.4), (deformed, distorted, disfigured:1.3), poorly drawn, bad anatomy",
 "Trending on artstation, by artgerm, by wlop, by ross tran",
 "A man in a suit standing in the rain, noir, 1940s",
 "surreal Dalí-esque melting clocks on a beach",
)

# B. weight syntax / parentheses (sd3ref)
add(
 "(masterpiece), (best quality), (ultra detailed)",
 "((masterpiece)), ((best quality)), 1girl",
 "(((very detailed))) face",
 "(masterpiece:1.2) (best quality:1.1) a cat",
 "(a cat:1.3) and (a dog:0.7)",
 "(red hair: 1.2), (blue eyes :1.1)",
 "(cat: 1.5 ), (dog:\t0.5)",
 "(cat:1.2:1.3)",
 "(time: 12:30)",
 "(ratio:16:9)",
 "(x:inf) (y:-inf) (z:nan) (w:Infinity) (v:NaN)",
 "(x:iNf) (y:InFiNiTy) (z:+nan)",
 "(x:infinit) (y:nan1) (z:in)",
 "(x:1e3) (y:1E-2) (z:2.5e+1)",
 "(x:1_000) (y:1_0.0_1) (z:1e1_0)",
 "(x:1__0) (y:_1) (z:1_) (w:1_.5)",
 "(x:.5) (y:5.) (z:.) (w:+.5) (v:-0)",
 "(x:) (:1.2) (:) ()",
 "(x:0x10) (y:1,5) (z:1.2.3) (w:1 2)",
 "(x:١٢) (y:١.٥)",
 "(x:１.５) (y:１５)",
 "(x:𝟏𝟐) (y:²)",
 "(x:\u00a01.5) (y:1.5\u3000) (z:\u20281)",
 "(x:\x1c1.5)",
 "(x:1.5\n)",
 "(word:1.5)",
 "word(inner)word",
 "word(inner:1.2)word and more",
 "a(b)c(d)e",
 "(a)(b)(c)",
 "((a:1.2), b:0.9)",
 "((a), (b)), c",
 "(((a:1.1):1.2):1.3)",
 "((a)",
 "(a))",
 "a)b(c",
 ")))(((",
 "(",
 ")",
 "()",
 "(())",
 "( )",
 "(   spaced out   :1.2)",
 "\\(not a weight\\)",
 "\\(escaped:1.2\\) (real:1.2)",
 "\\\\(double backslash\\\\)",
 "a \\( b \\) c",
 "(nested \\(escaped\\) parens:1.3)",
 "(unclosed \\)",
 "\\(",
 "\\)",
 "[dog] [[cat]] {bird} {{fish}}",
 "[a:b:0.5] {red|blue|green}",
 "<lora:detail_tweaker:0.8> a photo",
 "(masterpiece:1.2), best quality, (cat), [dog], (smile:0.8), <lora:add_detail:1>",
 "(a photo of a cat sitting on a windowsill, looking outside at the rain, cozy atmosphere:1.3)",
 "(   :1.2)",
 "(\n:1.2) text",
 "(a\nb:1.1) c\nd",
 "emoticons :-) ;-) :( :-( (: ):",
 "price (USD): $5 (approx.)",
 "f(x) = (x+1)(x-1)",
 "(1girl:1.2), (solo:1.1), (long_hair:1.0), (blue_eyes:0.9)",
 "(cat)dog(bird)",
 "(cat)\t(dog)",
 "(&amp;:1.2) (&lt;tag&gt;)",
 "(it's:1.2) (don't)",
 "(你好:1.2) (世界)",
 "(🐱:1.3)",
 "(a:-1.5) (b:-.5) (c:+2)",
 "(a:1e500) (b:1e-500)",
 "(a : 1.2)",
 "(a:1.2 )",
 "(a:1.2)b",
 "((a:1.2)b:1.3)",
)

# C. contractions / apostrophes
add(
 "it's", "IT'S", "It'S", "iT's",
 "you're YOU'RE You'Re", "we've WE'VE", "I'm I'M", "she'll SHE'LL", "he'd HE'D",
 "don't can't won't shouldn't DON'T CAN'T",
 "y'all o'clock rock'n'roll",
 "'tis 'twas 'em 'cause",
 "'s alone", "''s", "'''", "'", "' '", "'s'", "'re'", "'d'", "'ll'", "'m'", "'ve'", "'t'",
 "James' book", "the 90's", "the '90s", "its' apostrophe",
 "l'amour aujourd'hui d'Artagnan",
 "x'sy a'tb c'red d'veq e'mx f'llz g'dd",
 "it's's", "it''s", "it'ss", "it'stime", "it'rest", "it'vest", "it'mom", "it'llama", "it'dog",
 "it`s it´s", "it's a dog's life, isn't it? They'd've been there.",
 "I'D'VE", "SHE'LL'VE", "O'NEILL O'Neill", "McDonald'S",
 "it'ſ", "'ſ", "<|ſtartoftext|>", "<|endoftext|>'s",
 "\"quoted\" 'single' `backtick`",
 "don'’t",
)

# D. numbers
add(
 "2024", "3.14159", "1,000,000", "1st 2nd 3rd 4th 21st", "0.5x zoom", "-5°C", "100%", "#1 fan", "v1.5", "SDXL 1.0",
 "1024x1024", "16:9 aspect ratio", "4k 8k 16k 32k", "9999999999", "007", "0", "00000",
 "½ cup of sugar, ¼ tsp salt", "x² + y² = z²", "Ⅻ o'clock", "Chapter Ⅳ", "①②③ steps", "٣٤٥ Arabic-Indic", "१२३ देवनागरी अंक",
 "𝟙𝟚𝟛 double-struck", "1e10", "3/4", "2:30pm", "1990s", "A4 paper", "mp3 mp4 h264", "covid19", "r2d2 c3po",
 "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
 "phone +1 (555) 123-4567", "IPv4 192.168.0.1", "ISO 8601: 2024-01-15T12:30:45Z",
)

# E. punctuation, symbols, special tokens
add(
 "!!!", "?!?!", "...", "…", "— – -", "--", "***", "~~~", "<<>>", "@@", "$$$", "^_^", ">_<", "¯\\_(ツ)_/¯",
 "(╯°□°)╯︵ ┻━┻", "\\", "\\\\", "/", "|", "<|", "|>", "<||>", "<|>", "|||", ".,;:!?", "«guillemets» ‹single›",
 "¡Hola! ¿Qué tal?", "§ ¶ † ‡ • ‰ ′ ″", "© ® ™ ℠", "€ £ ¥ ₹ ₽ ₿ ¢", "← → ↑ ↓ ↔ ⇒", "∀x ∃y: x ≤ y ∧ y ≠ 0", "∑ ∏ ∫ √ ∞ ≈ ≡",
 "♠ ♣ ♥ ♦ ♪ ♫", "★☆✓✗", "░▒▓█", "○●◎◇◆", "° ± × ÷", "C++ C# F# .NET node.js", "snake_case_word kebab-case-word CamelCaseWord",
 "file.name.tar.gz", "https://www.example.com/a/b?c=d&e=f#g", "user@example.com", "#hashtag @mention $TICKER",
 "a/b\\c|d", "[1] [2] [3]", "{json: true}", "<b>bold</b>", "<img src=\"x.png\">", "a<b>c", "1<2>3",
 "<|endoftext|>", "<|startoftext|>", "hello <|endoftext|> world", "<|ENDOFTEXT|>", "<|EndOfText|> and more",
 "<|startoftext|>a photo<|endoftext|>", "<|endoftext|><|endoftext|>", "x<|endoftext|>y", "!!<|endoftext|>!!",
 "&lt;|endoftext|&gt;", "&amp;lt;|endoftext|&amp;gt;", "<|endoftext|", "|endoftext|>", "<| endoftext |>", "<|endoftext |>",
 "<|endoftext|>s", "a<|startoftext|>b", "<|startoftext|><|startoftext|>", "<<|endoftext|>>", "<|<|endoftext|>|>",
 "**bold** _italic_ ~strike~ `code`", "----====----", "!?!?!?!?!?!?!?!?!?!?!?!?!?!?", "........................................",
 "=)", ":3", "xD", "<3 </3", "o_O", "T_T", "(^_^)", "(ノಠ益ಠ)ノ彡┻━┻",
)

# F. scripts / case mapping
add(
 "一只可爱的猫坐在窗台上", "猫", "日本の桜と富士山", "東京タワーの夜景、ネオン", "カタカナ ひらがな ラーメン", "ー々〆",
 "귀여운 고양이 사진", "한국어 텍스트와 English mixed",
 "قطة لطيفة تجلس على النافذة", "مَرْحَبًا بِالْعَالَمِ", "שלום עולם", "שָׁלוֹם",
 "Привет, мир! КРАСИВАЯ КОШКА", "Ёжик в тумане", "Україна Ґ ґ Ї ї Є є",
 "Γειά σου Κόσμε", "ΟΔΟΣ", "ΣΑΣ ΚΑΛΟΣ", "Σ", "ΑΣ.", "ΑΣΑ", "ΑΣ'Σ", "Σ1", "ΑΣ1", "ΑΣ-Β", "ὈΔΥΣΣΕΎΣ", "Σ Σ Σ", "ABΣ", "AΣ\u0301", "ΑΣ\u00ad",
 "नमस्ते दुनिया", "हिन्दी में एक सुंदर बिल्ली", "สวัสดีชาวโลก", "বাংলা ভাষা", "தமிழ் மொழி", "ქართული ენა", "Ⴀ ა Ა",
 "Հայերեն ԵՎ և", "አማርኛ", "ᠮᠣᠩᠭᠣᠯ", "བོད་ཡིག", "ខ្មែរ", "සිංහල", "ελληνικά", "ᏣᎳᎩ Ꭰ ꭰ",
 "İSTANBUL İstanbul", "ıi Iİ", "STRASSE ẞ ß", "ǅ ǈ ǋ ǲ", "ᾈ ᾼ ῌ ῼ", "K Ω Å ϴ", "Ⓐ Ⓑ Ⓒ", "𐐀𐐁𐐂 Deseret", "ﬁ ﬂ ﬀ",
 "Tiếng Việt có dấu", "Crème brûlée à la française", "Ñandú piñata jalapeño", "Smörgåsbord Ølstue Æble", "Łódź Gdańsk Kraków",
 "Dvořák Škoda Čeština", "façade naïve coöperate résumé", "Ærøskøbing", "Þingvellir Ísland", "ĳsselmeer",
 "e\u0301 cafe\u0301 re\u0301sume\u0301", "a\u0308o\u0308u\u0308", "n\u0303", "Z\u0336a\u0336l\u0336g\u0336o\u0336",
 "α\u0345", "\u0345", "ᾳ", "α\u0345 ὠ\u0345δή", "ΑΙ\u0345",
 "\u200b", "a\u200bb", "a\u200cb\u200dc", "a\u2060b", "a\u00adb", "\u180e", "a\u180eb",
 "mixed 中文English日本語한국어", "Ǆemal ǅemal ǆemal",
)

# G. emoji
add(
 "🐱", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷🇯🇵", "1️⃣ 2️⃣", "❤️", "🏳️‍🌈", "☃", "✨ sparkles ✨", "emoji🙂text", "🐱🐶🐭🐹🐰🦊🐻🐼",
 "😂😂😂", "🔥 fire 🔥", "a cat 🐈 and a dog 🐕", "🧑🏻‍💻", "🫠", "☺︎ ☺️", "#️⃣ *️⃣",
 "🍕" * 40,
)

# H. HTML entities
add(
 "&amp;", "&lt;b&gt;bold&lt;/b&gt;", "&quot;quoted&quot;", "&#39;s &#x27;s", "it&apos;s", "&nbsp;", "a&nbsp;&nbsp;b",
 "&nbsp;leading", "trailing&nbsp;", "&amp;amp;", "&amp;amp;amp;", "&copy; 2024", "&copy 2024", "&eacute;t&eacute;", "caf&eacute;",
 "&ampfoo", "&notin;", "&notit;", "&notinva", "&AMP; &Amp;", "&#0;", "&#1;x", "&#128;", "&#x80;", "&#x9F;", "&#x81;", "&#13;",
 "&#65", "&#x41", "&#65;&#66;&#67;", "&#xD800;", "&#1114112;", "&#99999999999999999999;", "&#x110000;", "&#xFFFE;", "&#xFDD0;",
 "&#x1F600;", "&#128512;", "&hearts;", "&hearts", "&NotEqualTilde;", "&fjlig;", "&ThickSpace;", "a&NewLine;b", "a&Tab;b", "a&zwj;b",
 "a&ZeroWidthSpace;b", "& amp;", "&;", "&#;", "&#x;", "&x", "AT&T", "R&D", "&&&", "&amp;lt;", "&gtx", "&lt3", "&LT", "&ltfoo;",
 "&amplt;", "&sup2; &frac12; &sup1 &frac34", "&not &pound &times &divide", "&Gt; &gt &GT &gt;", "&there4;",
 "&aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;", "&amp" + "x" * 40, "&" + "x" * 31 + "amp;", "&#00065;", "&#x0041;",
 "&#X41;", "&#x00000000000041;", "&#9;tab&#10;newline&#32;space", "&#8203;", "&#xa0;", "&#x2028;", "&#x85;", "&#133;",
 "&#x1c;", "&#28;", "&lt;|startoftext|&gt;", "&#60;|endoftext|&#62;", "&quot;&amp;&quot;", "&amp;#39;", "&amp;#x41;", "&#38;amp;",
 "&#38;#38;amp;", "salt&amp;pepper", "tom &amp; jerry &lt;3", "&Eacute;COLE", "&AElig;&aelig;", "&szlig;", "&Iuml;&iuml;",
 "&acirc&Acirc", "&ensp;&emsp;&thinsp;", "&shy;", "&lrm;&rlm;", "&nbsp&nbsp", "&NBSP;", "&apos", "&quot",
 "&amp&amp;amp", "&;&;&;", "&#x41;&#x42;&#x43", "&#0065;", "&#x;&#;", "&#65a", "&#x4g", "&#x41z",
)

# I. whitespace
add(
 "", " ", "  ", "\t", "\n\n", "\u3000", "\xa0", "\u2028", "\x85", "\x1c", " \x1c ", "a\x1cb", "\x1ca", "a\x1c", "a \x1c b",
 "\x1f\x1e\x1d\x1c", "\ufeff", "\ufeffhello", "hello\ufeff", "a\ufeffb", "a\u00a0b", "a\u2003b", "a\u202fb", "a\u205fb", "a\u1680b",
 "\r\n", "a \t\n\r\x0b\x0c b", "a\x0bb", "a\x0cb", "a\rb", "a\x85b", "a\u2029b", " \x85 a \x85 ", "word\ttab\tseparated",
 "line one\nline two\nline three", "   \t  \n  ", "a                                                   b",
 "\x00", "a\x00b", "a\x07b", "\x1b[31mred\x1b[0m", "a\x7fb",
)

# K. very long single words / vocab coverage
add(
 "a" * 200, "supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis", "ab" * 100, "x" * 1000,
 "1" * 100, "!" * 100, "é" * 50, "日本" * 40, "qwertyuiopasdfghjklzxcvbnm", "zxcvbnm", "xkcd", "photorealistic hyperrealistic",
 "unrealengine octanerender artstation", "bokeh", "Donaudampfschiffahrtsgesellschaftskapitän", "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch",
 "antidisestablishmentarianism", "floccinaucinihilipilification", "thequickbrownfoxjumpsoverthelazydog", "ThisIsCamelCaseWithoutSpaces",
 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
 "https://example.com/" + "very-long-path-segment/" * 8,
 "the", "a", "I", "of", "pizza", "zyzzyva", "qoph", "hmmmmmmmmmmmmmmmmmmmmmmm",
)

# J. long prompts and chunk boundaries (sd3ref)
base_words = ["red", "cat", "on", "a", "mat", "with", "the", "blue", "dog", "near", "tree"]
for n in (73, 74, 75, 76, 77, 78, 150, 151, 152, 225, 226, 300):
    add(" ".join(base_words[i % len(base_words)] for i in range(n)))
for pre in (70, 71, 72, 73, 74, 75):
    filler = " ".join(["cat"] * pre)
    add(filler + " supercalifragilisticexpialidocious dog")       # big word straddling
    add(filler + " 1234567 dog")                                   # 7 tokens, moved whole
    add(filler + " 12345678 dog")                                  # 8 tokens, split
    add(filler + " 123456789012 dog")
    add(filler + ", (masterpiece:1.2), best quality")
    add(filler + "\ttabbed\tgroup\tof\twords end")
    add(filler + " <|endoftext|> after")
add(" ".join(["cat"] * 80) + " <|endoftext|>")
add(" ".join(["cat"] * 74) + " <|endoftext|>")
add(" ".join(["cat"] * 75) + " <|endoftext|>")
add("<|endoftext|> " + " ".join(["cat"] * 100))
add(" ".join(["dog"] * 75))
add(" ".join(["dog"] * 74) + " a")
add(", ".join(["cat"] * 40))
add(",".join(["cat"] * 40))
add(" , ".join(["cat"] * 40))
add("\n".join(["a cat on a mat"] * 20))
add(" ".join(["(masterpiece:1.2)"] * 30))
add(" ".join(["((best quality))"] * 30))
add(" ".join(["it's"] * 40))
add(" ".join(["12345678"] * 20))
add(" ".join(["1234567"] * 25))
add(" ".join(["🐱🐶"] * 30))
add(" ".join(["&amp;"] * 80))
add(" ".join(["日本語"] * 60))
add("a " * 74 + "supercalifragilisticexpialidocious" * 3)
add("x" * 500 + " end")
add("cat " * 73 + "(" + "dog " * 10 + ":1.5)")
add("A breathtaking photograph of a lone wolf standing on a snowy ridge under the aurora borealis, stars reflecting on a frozen lake below, "
    "pine trees silhouetted against the sky, shot on a Nikon Z9 with a 14-24mm lens, long exposure, ISO 3200, f/2.8, ultra sharp, "
    "award-winning nature photography, National Geographic cover, 8k, HDR, dramatic colors, masterpiece, best quality")
add("(masterpiece, best quality:1.2), 1girl, solo, (long silver hair:1.1), (red eyes), kimono, cherry blossoms, (night sky:0.9), "
    "lanterns, festival, fireworks, smiling, looking at viewer, upper body, detailed face, detailed eyes, (sharp focus:1.2), "
    "depth of field, bokeh, cinematic lighting, volumetric light, highly detailed, intricate, elegant, digital painting, artstation, "
    "concept art, smooth, illustration, art by artgerm and greg rutkowski and alphonse mucha")
add("Negative prompt: blurry, lowres, bad anatomy, bad hands, missing fingers, extra digit, fewer digits, cropped, worst quality, "
    "low quality, normal quality, jpeg artifacts, signature, watermark, username, text, error, deformed, ugly, duplicate, morbid, "
    "mutilated, out of frame, extra fingers, mutated hands, poorly drawn hands, poorly drawn face, mutation, disfigured")
add("一只可爱的猫坐在窗台上，" * 10)
add("Привет мир " * 30)
add("Steps: 28, Sampler: Euler, CFG scale: 7, Seed: 1234567890, Size: 1024x1024, Model: sd3_medium")

# L. seeded fuzz
rng = random.Random(20240515)
POOL_ASCII = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") + list(" " * 12) + list("'()(:)..,,!?-_&;#\"/\\[]{}<>|@$%^*+=~`")
WORDS = ["cat", "dog", "masterpiece", "best", "quality", "it's", "we'll", "&amp;", "&lt;", "&#39;", "(", ")", ":1.2", ":", "\\(", "\\)",
         "<|endoftext|>", "1.5", "8k", "photo", "of", "a", "the", "très", "日本", "кот", "🐱", "!!!", "...", "\t", "\n", "  ", "McDonald's",
         "ÉCOLE", "straße", "ΟΔΟΣ", "İ", "x²", "½", "١٢", "naïve", "e-mail", "C++", "don't", "I'M", "YOU'LL"]
for i in range(90):
    k = rng.randint(1, 40)
    add("".join(rng.choice(POOL_ASCII) for _ in range(k)))
for i in range(90):
    k = rng.randint(1, 30)
    s = ""
    for _ in range(k):
        s += rng.choice(WORDS) + rng.choice([" ", " ", " ", "", ",", ", ", "\t"])
    add(s)
for i in range(30):
    k = rng.randint(60, 140)
    add(" ".join(rng.choice(WORDS) for _ in range(k)))
