#!/usr/bin/env python3
"""Trains the small tokenizer fixtures of tests/tokenizer/fixtures with the `tokenizers` package.

Each fixture reproduces the tokenizer.json structure of a model family (normalizer, pre-tokenizer
with the family's real regex strings, decoder, added/special tokens, post-processor), trained on
corpus.txt, and comes with the ids `tokenizers` produces for the edge-case texts below:
  qwen3.json     NFC + Split(Qwen2/3 regex) + ByteLevel, <|im_start|>-style added tokens
  deepseek.json  Sequence of three Splits (DeepSeek-V3 regexes) + ByteLevel, BOS via
                 TemplateProcessing, fullwidth-bar special tokens, ids 0..2 special
  mixtral.json   SentencePiece-style BPE: Prepend/Replace normalizers, byte_fallback, <unk>,
                 decoder Replace+ByteFallback+Fuse+Strip, BOS via TemplateProcessing
  mixtral_metaspace.json  same model with the newer Metaspace pre-tokenizer form
  model/tokenizer_default.json  the built-in default model's (DeepSeek-V3 layout, 2048 ids)
Writes <name>.json and <name>.expected.json ({"cases": [{"text", "ids", "ids_plain",
"decoded", "decoded_skip"}]}). Usage: make_tokenizers.py [--out DIR]   (pinned: tokenizers 0.22.2)
"""
import argparse
import json
import os
import unicodedata

from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, processors, trainers)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_VOCAB = 2048  # model/random_checkpoint.cc DefaultModelConfigJson() "vocab_size"

QWEN_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
DEEPSEEK_PATTERNS = [
    r"\p{N}{1,3}",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+|"""
    r""" ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
]

EDGE_CASES = [
    "", " ", "  ", "\n", "\t", "\r\n", " \n \n", "a", "Hello world", " Hello world",
    "Hello  world", "Hello   world  ", "hello\n\nworld\n", "trailing space ", "tab\tsep\tvalues",
    "\u00a0nbsp\u00a0inside\u00a0", "nel\u0085line", "ideographic\u3000space", "zero\u200bwidth",
    "I'm don't we'll THEY'RE it'S y'all", "123 4567 89012 3.14159 1,000,000", "٣٤٥ ४५६ １２３",
    "caf\u0065\u0301 vs caf\u00e9", "e\u0301\u0301\u0301 stacked marks", "\u1100\u1161\u11a8 jamo",
    "ﬁ ligature Ⅻ ½ ²", "😀", "👍🏽", "👨‍👩‍👧‍👦 family", "🏳️‍🌈", "🇺🇸🇯🇵🇩🇪", "1️⃣#️⃣",
    "emoji😀inside😃words", "中文", "我们需要一个快速而正确的分词器。", "日本語とカタカナ、ひらがな。",
    "Привет, мир!", "مرحبا بالعالم", "नमस्ते दुनिया", "안녕하세요", "สวัสดีชาวโลก",
    "GPU加速 and CPU推理, 東京2026", "def f(x):\n    return x  # comment\n", "    indented",
    "a\r\nb\rc\nd", "!!!???...", "<html><p>x</p></html>", "{\"k\": [1, 2, 3]}",
    "\U0001F9D1\U0001F3FF\u200d\U0001F680 astronaut", "\ufeffBOM start", "control\u0001char",
    "rare \U00010348 gothic and \U0001D11E clef", "unseen: ꙮ ᚠᛇᚻ ⵣ", "ǅ Ǆ ǆ titlecase",
]


def special_cases(specials):
    return [
        specials[0] + "Hello" + specials[1],
        "before " + specials[0] + " after",
        specials[0] + specials[0] + "x" + specials[1] + "\n",
        "no space" + specials[1] + "Привет" + specials[0],
        "<think>\nreasoning\n</think>\n\nanswer",
        "almost<|im_start but not",
    ]


def corpus_lines():
    with open(os.path.join(HERE, "corpus.txt"), encoding="utf-8") as f:
        text = f.read()
    lines = text.splitlines(keepends=True)
    return text, lines


def training_texts(text, lines):
    # The corpus, its NFD form, CRLF variants and joined paragraphs: enough pairs for a few
    # thousand merges.
    out = list(lines) + [unicodedata.normalize("NFD", l) for l in lines]
    out += [l.rstrip("\n") + "\r\n" for l in lines[::3]]
    out += ["".join(lines[i:i + 4]) for i in range(0, len(lines), 4)]
    return out * 2


def test_texts(text, lines, specials):
    cases = EDGE_CASES + special_cases(specials) + [l for l in lines]
    cases.append(unicodedata.normalize("NFD", text[:2000]))
    cases.append(text)
    return cases


def expected(tok, texts):
    cases = []
    for t in texts:
        with_special = tok.encode(t, add_special_tokens=True).ids
        plain = tok.encode(t, add_special_tokens=False).ids
        cases.append({"text": t, "ids": with_special, "ids_plain": plain,
                      "decoded": tok.decode(with_special, skip_special_tokens=False),
                      "decoded_skip": tok.decode(with_special, skip_special_tokens=True)})
    return {"cases": cases}


def byte_level_tokenizer(pre, normalizer, vocab_size, specials_front, specials_back, texts):
    tok = Tokenizer(models.BPE())
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials_front,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.add_special_tokens(specials_back)
    return tok


def make_qwen(texts):
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False, trim_offsets=False)])
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = byte_level_tokenizer(pre, normalizers.NFC(), 3000, [], specials, texts)
    tok.add_tokens([AddedToken("<think>", special=False, normalized=False),
                    AddedToken("</think>", special=False, normalized=False)])
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False,
                                              use_regex=False)
    return tok, ["<|im_start|>", "<|im_end|>"]


def make_deepseek(texts, vocab_size=4000):
    pre = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(p), behavior="isolated", invert=False)
         for p in DEEPSEEK_PATTERNS] +
        [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False, trim_offsets=True)])
    bos, eos, pad = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"
    tok = byte_level_tokenizer(pre, normalizers.Sequence([]), vocab_size, [bos, eos, pad], [],
                               texts)
    tok.add_tokens([AddedToken("<｜User｜>", special=False, normalized=True),
                    AddedToken("<｜Assistant｜>", special=False, normalized=True),
                    AddedToken("<think>", special=False, normalized=True),
                    AddedToken("</think>", special=False, normalized=True)])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
        special_tokens=[(bos, tok.token_to_id(bos))])
    return tok, [bos, eos]


def make_default_model(texts):
    """The built-in default model's tokenizer (model/tokenizer_default.json): DeepSeek-V3 layout,
    exactly DEFAULT_VOCAB ids (the model's vocab_size), BOS 0 and EOS 1 as its config.json says."""
    tok, specials = make_deepseek(texts, vocab_size=DEFAULT_VOCAB - 4)
    assert tok.get_vocab_size() == DEFAULT_VOCAB, tok.get_vocab_size()
    return tok, specials


def make_mixtral(texts, metaspace):
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    trainer = trainers.BpeTrainer(vocab_size=2500, special_tokens=["<unk>", "<s>", "</s>"],
                                  limit_alphabet=600, show_progress=False)
    # SentencePiece trains per line without a pre-tokenizer; a word-level split keeps the trainer
    # fast here and does not change the file's structure.
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.train_from_iterator(texts, trainer)
    # Byte tokens live in the model vocab right after the three specials, as in Mistral's.
    data = json.loads(tok.to_str())
    old = data["model"]["vocab"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in byte_tokens:
        vocab[b] = len(vocab)
    for t, _ in sorted(old.items(), key=lambda kv: kv[1]):
        if t not in vocab:
            vocab[t] = len(vocab)
    data["model"]["vocab"] = vocab
    for a in data["added_tokens"]:
        a["id"] = vocab[a["content"]]
    if metaspace:
        data["normalizer"] = None
        data["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁",
                                 "prepend_scheme": "first", "split": False}
    else:
        data["pre_tokenizer"] = None
    data["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    tok = Tokenizer.from_str(json.dumps(data))
    tok.post_processor = processors.TemplateProcessing(
        single="<s>:0 $A:0", pair="<s>:0 $A:0 <s>:1 $B:1", special_tokens=[("<s>", 1)])
    return tok, ["<s>", "</s>"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.path.join(HERE, "fixtures"))
    parser.add_argument("--default-out",
                        default=os.path.join(HERE, "..", "..", "model", "tokenizer_default.json"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    text, lines = corpus_lines()
    train = training_texts(text, lines)
    builds = {"qwen3": lambda: make_qwen(train), "deepseek": lambda: make_deepseek(train),
              "mixtral": lambda: make_mixtral(train, False),
              "mixtral_metaspace": lambda: make_mixtral(train, True)}
    for name, build in builds.items():
        tok, specials = build()
        tok.save(os.path.join(args.out, name + ".json"), pretty=False)
        with open(os.path.join(args.out, name + ".expected.json"), "w", encoding="utf-8") as f:
            json.dump(expected(tok, test_texts(text, lines, specials)), f, ensure_ascii=False)
        print(f"{name}: vocab {tok.get_vocab_size()}")
    tok, specials = make_default_model(train)
    tok.save(args.default_out, pretty=False)
    with open(os.path.join(args.out, "default_model.expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected(tok, EDGE_CASES + special_cases(specials) + lines[:20]), f,
                  ensure_ascii=False)
    print(f"default model: vocab {tok.get_vocab_size()} -> {args.default_out}")


if __name__ == "__main__":
    main()
