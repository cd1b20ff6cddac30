#!/usr/bin/env python3
"""Cross-checks the C++ tokenizer (via tokenizer_dump) against the `tokenizers` package.

For every fixture tokenizer.json in tests/tokenizer/fixtures and model/tokenizer_default.json: random texts drawn (seeded) from the
corpus's characters, whitespace/newline runs, emoji (ZWJ, flags, skin tones), combining marks,
digits, special tokens, rare planes and White_Space look-alikes (U+0085, U+180E, U+200B, U+001C),
plus the whole corpus repeated to ~200 KB, must give identical ids (with and without special
tokens) and identical decoded text; random id sequences must decode identically (lossy UTF-8 of
cut characters included) and stream into valid UTF-8 chunks that add up to the decode.
Usage: check_tokenizers.py --dumper PATH/tokenizer_dump [--cases N]
Exits 77 (a ctest skip) when `tokenizers` is not importable, 1 on any difference.
"""
import argparse
import glob
import json
import os
import random
import subprocess
import sys
import tempfile

try:
    from tokenizers import Tokenizer
except ImportError:
    print("SKIPPED: the `tokenizers` package is not installed (pip install tokenizers==0.22.2)")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
EXTRA = ["\u0085", "\u180e", "\u200b", "\u001c", "\u00a0", "\u3000", "\u2028", "\t", "\r", "\n",
         "\r\n", "   ", "\u0301", "\u0308", "\u200d", "\ufe0f", "\U0001F3FD", "\U0001F1FA",
         "\U0001F1F8", "\U0001F680", "\U0001F468\u200d\U0001F469\u200d\U0001F467", "'s", "'LL",
         "\U00010348", "\U0001D11E", "\U000E0001", "\uffff", "\ufffd", "\x00", "1234567",
         "٣٤", "\u1100\u1161"]


def random_texts(rng, alphabet, specials, n):
    texts = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 30)):
            r = rng.random()
            if r < 0.6:
                parts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))))
            elif r < 0.9:
                parts.append(rng.choice(EXTRA))
            elif specials:
                parts.append(rng.choice(specials))
        texts.append("".join(parts))
    return texts


def run_dump(dumper, tokenizer_path, lines):
    payload = "".join(json.dumps(l, ensure_ascii=False) + "\n" for l in lines)
    proc = subprocess.run([dumper, tokenizer_path], input=payload.encode(), capture_output=True,
                          timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{dumper} failed: {proc.stderr.decode(errors='replace')}")
    return [json.loads(l) for l in proc.stdout.decode().split("\n") if l]


def check(dumper, path, cases, long_text=True):
    name = os.path.basename(path)
    tok = Tokenizer.from_file(path)
    with open(os.path.join(HERE, "corpus.txt"), encoding="utf-8") as f:
        corpus = f.read()
    rng = random.Random(1234)
    alphabet = sorted(set(corpus))
    specials = [t.content for t in tok.get_added_tokens_decoder().values()]
    texts = random_texts(rng, alphabet, specials, cases) + ["hello world worldly"]
    if long_text:
        texts.append(corpus * 40)
    id_lists = [[rng.randrange(tok.get_vocab_size()) for _ in range(rng.randint(1, 12))]
                for _ in range(cases)]
    ours = run_dump(dumper, path, [{"text": t} for t in texts] + [{"ids": i} for i in id_lists])
    errors = 0
    for k, text in enumerate(texts):
        got = ours[k]
        ids = tok.encode(text, add_special_tokens=True).ids
        want = {"ids": ids, "ids_plain": tok.encode(text, add_special_tokens=False).ids,
                "decoded": tok.decode(ids, skip_special_tokens=False),
                "decoded_skip": tok.decode(ids, skip_special_tokens=True)}
        for key, value in want.items():
            if got[key] != value:
                errors += 1
                if errors <= 5:
                    print(f"{name}: {key} differs for text {text[:200]!r}:\n  ours   {got[key]}\n"
                          f"  theirs {value}")
        if not got["stream_ok"] or got["stream"] != got["decoded"]:
            errors += 1
            print(f"{name}: streaming decode differs for {text[:200]!r}")
    for k, ids in enumerate(id_lists):
        got = ours[len(texts) + k]
        want = tok.decode(ids, skip_special_tokens=False)
        if got["decoded"] != want or got["stream"] != want or not got["stream_ok"]:
            errors += 1
            if errors <= 10:
                print(f"{name}: decode of {ids} differs:\n  ours   {got['decoded']!r}\n"
                      f"  stream {got['stream']!r}\n  theirs {want!r}")
    print(f"{name}: {len(texts)} texts, {len(id_lists)} id lists, {errors} differences")
    return errors


def variants(fixtures):
    """(name, tokenizer.json text) pairs: fixtures with other supported options switched on."""
    with open(os.path.join(fixtures, "qwen3.json"), encoding="utf-8") as f:
        qwen = json.load(f)
    with open(os.path.join(fixtures, "mixtral.json"), encoding="utf-8") as f:
        mixtral = json.load(f)
    out = []

    def add(name, base, edit):
        data = json.loads(json.dumps(base))
        edit(data)
        out.append((name, json.dumps(data, ensure_ascii=False)))

    def pre(p):
        return lambda d: d.__setitem__("pre_tokenizer", p)
    add("gpt2_bytelevel", qwen, pre({"type": "ByteLevel", "add_prefix_space": True,
                                     "trim_offsets": True, "use_regex": True}))
    for behavior in ["Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"]:
        for invert in [False, True]:
            split = {"type": "Split", "pattern": {"Regex": r"\p{N}+|\s"}, "behavior": behavior,
                     "invert": invert}
            add(f"split_{behavior}_{invert}", qwen, pre({"type": "Sequence", "pretokenizers": [
                split, {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                        "use_regex": False}]}))
    add("split_string", qwen, pre({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"String": "."}, "behavior": "MergedWithPrevious",
         "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
         "use_regex": True}]}))

    def added_flags(d):
        next_id = max(t["id"] for t in d["added_tokens"]) + 1
        for t in d["added_tokens"]:
            if t["content"] == "<think>":
                t["lstrip"] = True
            if t["content"] == "</think>":
                t["rstrip"] = True
                t["normalized"] = True
        d["added_tokens"].append({"id": next_id, "content": "world", "single_word": True,
                                  "lstrip": False, "rstrip": False, "normalized": False,
                                  "special": False})
        d["added_tokens"].append({"id": next_id + 1, "content": "ﬁ", "single_word": False,
                                  "lstrip": False, "rstrip": False, "normalized": True,
                                  "special": True})
    add("added_flags", qwen, added_flags)
    add("nfkc", qwen, lambda d: d.__setitem__("normalizer", {"type": "NFKC"}))
    add("nfd_strip_marks", qwen, lambda d: d.__setitem__("normalizer", {
        "type": "Sequence", "normalizers": [{"type": "NFD"}, {
            "type": "Replace", "pattern": {"Regex": r"\p{Mn}"}, "content": ""}]}))
    add("ignore_merges", qwen, lambda d: d["model"].__setitem__("ignore_merges", True))
    add("unk_no_fuse", mixtral, lambda d: d["model"].update(fuse_unk=False, byte_fallback=False))
    add("unk_fuse", mixtral, lambda d: d["model"].update(fuse_unk=True, byte_fallback=False))
    add("metaspace_split", mixtral, lambda d: d.update(normalizer=None, pre_tokenizer={
        "type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}))
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dumper", required=True)
    parser.add_argument("--cases", type=int, default=300)
    args = parser.parse_args()
    # Every fixture tokenizer (those with ids expected of them) and the default model's.
    paths = sorted(p for p in glob.glob(os.path.join(HERE, "fixtures", "*.json"))
                   if os.path.exists(p[:-len(".json")] + ".expected.json"))
    paths.append(os.path.join(HERE, "..", "..", "model", "tokenizer_default.json"))
    if not paths:
        print("no fixtures found")
        return 1
    errors = sum(check(args.dumper, p, args.cases) for p in paths)
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in variants(os.path.join(HERE, "fixtures")):
            path = os.path.join(tmp, name + ".json")
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            errors += check(args.dumper, path, max(20, args.cases // 5), long_text=False)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
