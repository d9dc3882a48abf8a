#!/usr/bin/env python3
"""Regenerates the tokenizer golden fixtures (development only; tests never run Python).

Independent implementations used:
  * HF `tokenizers` (PyPI) BPE built from the GGUF's own vocab + merges, with SmolLM's
    pre-tokenizer (Digits(individual_digits) + ByteLevel(use_regex)) and its 17 CONTROL
    tokens as special added tokens -> smollm2_goldens.json
  * the `regex` module (PyPI) running the split patterns verbatim (llama.cpp llama-vocab.cpp /
    HF tokenizer.json) -> pretokenizer_goldens.json

Usage: python3 generate_goldens.py ~/.cache/lftf-patch/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import json, os, sys
import gguf, regex, tokenizers
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, AddedToken

HERE = os.path.dirname(os.path.abspath(__file__))

TEXTS = [
    "The nurse smiled because", " he", " she", "he", "She", "Hello, world!",
    "12345", "3.14159", "x = 1000000", "Call 555-0123 now", "The year 2024 was 12% better",
    "  leading spaces", "trailing spaces   ", "multiple   spaces   between", "   ",
    "tabs\tand\t\ttabs", "new\nlines\n\n\nend", "windows\r\nline\r\n", "   \n  x", "x  \n\n  y",
    "café naïve résumé", "Ünïcödé façade", "e\u0301 combining accent", "ẞ ß ﬁ ligature",
    "日本語のテキスト", "中文测试，标点。", "한국어 텍스트", "Привет, мир!", "مرحبا بالعالم", "שלום עולם",
    "emoji 😀🎉 👍🏽 family 👨‍👩‍👧", "🤖", "★☆♥ ∑∫√ → ←",
    "I'm he's they're we've I'll she'd don't", "IT'S SHOUTING, WE'RE LOUD", "'s 't 're 've 'm 'll 'd",
    "def f(x):\n    return x**2  # comment\n", "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "if x == 1:\n\tpass\n", "<html><body class=\"x\">hi</body></html>",
    "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n", "<|endoftext|>", "text<|im_end|>more",
    "a<b>c < d", "email@example.com https://x.org/path?q=1&r=2", "$100.00 and 50% off!!!",
    "@user #tag ...", "—dash– “quotes” «guillemets» ‘single’", "٣٤٥ Arabic-Indic digits",
    "½ ² Ⅻ superscripts", "non-breaking\u00a0space", "\u3000ideographic space", "zero\u200bwidth",
    "Supercalifragilisticexpialidocious antidisestablishmentarianism",
    "The mechanic said that", "The doctor asked the nurse whether", "",
]

def read_gguf(path):
    r = gguf.GGUFReader(path)
    f = r.fields
    toks = [bytes(f["tokenizer.ggml.tokens"].parts[i]).decode() for i in f["tokenizer.ggml.tokens"].data]
    types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
    merges = [bytes(f["tokenizer.ggml.merges"].parts[i]).decode() for i in f["tokenizer.ggml.merges"].data]
    return toks, types, merges

def hf_smollm(toks, types, merges):
    vocab = {t: i for i, t in enumerate(toks)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tk = Tokenizer(models.BPE(vocab=vocab, merges=pairs))
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False)
                           for t, ty in zip(toks, types) if ty == 3])
    return tk

GPT2 = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3 = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
QWEN2 = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
DIGIT = r"""\p{N}"""

def split(pieces, pattern):
    """llama.cpp's unicode_regex_split_stl: matches and the gaps between them are pieces."""
    out = []
    for p in pieces:
        last = 0
        for m in regex.finditer(pattern, p):
            if m.start() > last: out.append(p[last:m.start()])
            out.append(m.group()); last = m.end()
        if last < len(p): out.append(p[last:])
    return out

def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser("~/.cache/lftf-patch/SmolLM2-135M-Instruct.Q4_1.gguf")
    toks, types, merges = read_gguf(path)
    tk = hf_smollm(toks, types, merges)
    ref_path = os.environ.get("LFTF_REFERENCE", os.path.join(HERE, "../../../../shared/reference/smollm2-135m-q4_1.json"))
    ref = json.load(open(ref_path))
    for p in ref["prompts"]:
        got = tk.encode(p["prompt"], add_special_tokens=False).ids
        assert got == p["token_ids"], (p["prompt"], got, p["token_ids"])
    for w, i in ref["token_ids"].items():
        assert tk.encode(w, add_special_tokens=False).ids == [i], w
    cases = []
    for t in TEXTS + [p["prompt"] for p in ref["prompts"]]:
        if any(c["text"] == t for c in cases): continue
        enc = tk.encode(t, add_special_tokens=False)
        cases.append({"text": t, "ids": enc.ids, "tokens": [tk.decode([i]) for i in enc.ids]})
    json.dump({
        "source": "HF tokenizers %s (PyPI): models.BPE built from this GGUF's tokenizer.ggml.tokens and "
                  "tokenizer.ggml.merges; pre_tokenizer Sequence[Digits(individual_digits=true), "
                  "ByteLevel(add_prefix_space=false, use_regex=true)] (what llama.cpp's pre 'smollm' means); "
                  "the 17 CONTROL tokens added as special tokens; no BOS. Checked first against the llama.cpp "
                  "token_ids in shared/reference/smollm2-135m-q4_1.json. Generated by generate_goldens.py." % tokenizers.__version__,
        "model": os.path.basename(path),
        "cases": cases,
    }, open(os.path.join(HERE, "smollm2_goldens.json"), "w"), ensure_ascii=False, indent=1)

    pre = {"source": "python `regex` %s running the patterns verbatim; a piece is a match or the gap between "
                     "matches (llama.cpp unicode_regex_split_stl). Generated by generate_goldens.py." % regex.__version__,
           "patterns": {"gpt2": GPT2, "llama3": LLAMA3, "qwen2": QWEN2, "smollm": DIGIT + "  then  " + GPT2},
           "cases": []}
    for t in TEXTS:
        pre["cases"].append({"text": t,
                             "gpt2": split([t], GPT2) if t else [],
                             "llama3": split([t], LLAMA3) if t else [],
                             "qwen2": split([t], QWEN2) if t else [],
                             "smollm": split(split([t], DIGIT), GPT2) if t else []})
    json.dump(pre, open(os.path.join(HERE, "pretokenizer_goldens.json"), "w"), ensure_ascii=False, indent=1)
    print("wrote", len(cases), "cases")

    # Random strings over an alphabet of awkward characters (seeded, so reproducible).
    import random
    rng = random.Random(20261125)
    alphabet = (list("abcXYZ'sStTdDmMlLrReEvV") + ["'", "'", " ", " ", " ", "  ", "\t", "\n", "\r\n", "\r",
                "\u00a0", "\u3000", "\u2009", "\u0085", "\u200b", "é", "ß", "ﬁ", "e\u0301", "Ж", "ж", "日", "本",
                "한", "ا", "ـ", "0", "1", "9", "٣", "²", "½", "Ⅻ", "𝟙", ".", ",", "!", "?", "-", "_", "(", ")", "{",
                "$", "+", "<", ">", "=", "^", "~", "|", "`", "@", "#", "%", "&", "*", "/", "\\", "\"", "“", "”",
                "—", "…", "€", "©", "😀", "👍🏽", "👨\u200d👩\u200d👧", "🇫🇷", "<|im_start|>", "<|im_end|>", "<|endoftext|>"])
    fuzz = []
    for _ in range(400):
        t = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24)))
        fuzz.append({"text": t, "ids": tk.encode(t, add_special_tokens=False).ids})
    json.dump({"source": "seeded random strings; ids from the same HF tokenizers build as smollm2_goldens.json. "
                         "Generated by generate_goldens.py.", "cases": fuzz},
              open(os.path.join(HERE, "smollm2_fuzz_goldens.json"), "w"), ensure_ascii=False, separators=(",", ":"))
    fuzz_pre = []
    for _ in range(400):
        t = "".join(rng.choice(alphabet[:-3]) for _ in range(rng.randint(1, 24)))
        fuzz_pre.append({"text": t, "gpt2": split([t], GPT2), "llama3": split([t], LLAMA3), "qwen2": split([t], QWEN2),
                         "smollm": split(split([t], DIGIT), GPT2)})
    json.dump({"source": "seeded random strings; pieces from python `regex` %s as in pretokenizer_goldens.json. "
                         "Generated by generate_goldens.py." % regex.__version__, "cases": fuzz_pre},
              open(os.path.join(HERE, "pretokenizer_fuzz_goldens.json"), "w"), ensure_ascii=False, separators=(",", ":"))

if __name__ == "__main__":
    main()
