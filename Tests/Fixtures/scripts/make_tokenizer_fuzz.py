"""Random strings and their token ids from the `tokenizers` library, for the Swift tokenizer tests.

Usage: python make_tokenizer_fuzz.py TOKENIZER_DIR OUT.json [--count N] [--seed S]
Needs only `tokenizers` (pip install tokenizers==0.23.3). Deterministic for a given seed.
The strings stress the pre-tokenizer pattern's corners: every kind of Unicode whitespace, CR/LF runs,
letters and numbers outside ASCII, contractions in any case (and the long s, which case-folds to s),
combining marks (NFC), emoji sequences, added tokens and broken added tokens inside the text.
"""
import argparse, base64, json, random, tokenizers
from tokenizers import Tokenizer

POOLS = {
    "ascii": [chr(c) for c in range(32, 127)],
    "space": [" ", " ", " ", "\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x85", "\xa0", "\u1680", "\u2000",
              "\u2009", "\u200a", "\u200b", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\u180e", "\ufeff"],
    "word": ["the", "The", "cat", "photo", "snow", "fox", "light", "sky", "DON", "naïve", "Café", "straße",
             "Ωmega", "über", "日本語", "中文", "한국어", "ٱلعربية", "हिन्दी", "ελληνικά", "русский"],
    "contraction": ["'s", "'S", "'t", "'T", "'re", "'RE", "'rE", "'ve", "'Ve", "'m", "'M", "'ll", "'LL", "'lL",
                    "'d", "'D", "'ſ", "'x", "'", "''", "'1", "' s"],
    "number": ["0", "7", "42", "1234567890", "²", "³", "½", "Ⅻ", "٣", "१२", "𝟘", "①", "3.14", "-17", "1e-5"],
    "mark": ["e\u0301", "a\u0308", "A\u030a", "\u0301", "n\u0303", "\u0327c", "ﬁ", "Å", "\u1e9b\u0323"],
    "emoji": ["🙂", "🚀", "👍🏽", "🇨🇳", "👩\u200d💻", "❤️", "\U0001f9d1\u200d\U0001f91d\u200d\U0001f9d1"],
    "symbol": ["@", "#", "...", "—", "–", "«", "»", "“", "”", "€", "¥", "©", "®", "™", "→", "★", "♪",
               "。", "，", "：", "「", "」", "!?", "()", "[]", "{}", "<", ">", "|", "\\", "~"],
    "added": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>",
              "<|vision_end|>", "<|im_sta", "<|im_end", "<<|im_end|>>", "|>", "<|", "<|im_start|><|im_end|>"],
    "cjk": [chr(c) for c in range(0x4E00, 0x4E00 + 200)] + [chr(c) for c in range(0x3040, 0x30A0)],
}


def random_text(rng):
    n = rng.randint(1, 40)
    weights = {"ascii": 6, "space": 5, "word": 5, "contraction": 3, "number": 3, "mark": 2, "emoji": 2,
               "symbol": 3, "added": 1, "cjk": 3}
    names = list(weights)
    out = []
    for _ in range(n):
        pool = rng.choices(names, [weights[k] for k in names])[0]
        out.append(rng.choice(POOLS[pool]))
    return "".join(out)


def case(tok, text):
    # "utf8" (base64) is the exact text: Foundation's JSONSerialization drops a U+FEFF that starts a
    # string or follows an escape, so the tests read the text from it; "text" is for people.
    return {"text": text, "utf8": base64.b64encode(text.encode("utf-8")).decode("ascii"),
            "ids": tok.encode(text, add_special_tokens=False).ids}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tokenizer_dir")
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=400)
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    tok = Tokenizer.from_file(a.tokenizer_dir + "/tokenizer.json")
    rng = random.Random(a.seed)
    cases = []
    for _ in range(a.count):
        text = random_text(rng)
        cases.append(case(tok, text))
    # A long mixed prompt (speed and many cache hits).
    long_text = " ".join(random_text(rng) for _ in range(60))
    cases.append(case(tok, long_text))
    # Long pieces (the BPE priority-queue path): a run of CJK letters and a run of symbols, no spaces.
    cases.append(case(tok, "".join(rng.choice(POOLS["cjk"]) for _ in range(1500))))
    cases.append(case(tok, "".join(rng.choice(POOLS["symbol"]) for _ in range(400))))
    with open(a.out, "w", encoding="utf-8") as f:
        header = {"generator": "make_tokenizer_fuzz.py", "tokenizers_version": tokenizers.__version__,
                  "seed": a.seed}
        f.write(json.dumps(header, ensure_ascii=False)[:-1] + ', "cases": [\n')
        f.write(",\n".join(json.dumps(c, ensure_ascii=False) for c in cases))
        f.write("\n]}\n")


if __name__ == "__main__":
    main()
