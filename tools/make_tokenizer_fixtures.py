#!/usr/bin/env python3
"""Writes a small `tokenizer.json` in each family's configuration, with the ids Hugging Face's
Python `tokenizers` gives for a set of awkward texts, to tests/fixtures/tokenizers/<style>/
(`tokenizer.json`, `expected.json`: [{"text", "ids", "decoded"}]).

The real tokenizers cannot be downloaded here, so each is a BPE trained on a small corpus with the
pieces the family's own `tokenizer.json` has (read from the files the Hub serves for them):
  gpt_neox   Pythia / GPT-NeoX-20B: ByteLevel pre-tokenizer and decoder, no special tokens added
  llama3     Llama 3: tiktoken-style Split regex then ByteLevel(use_regex=False), ignore_merges,
             <|begin_of_text|> added by a TemplateProcessing post-processor
  qwen2      Qwen 2/3: NFC, the same Split regex (digits one by one), ByteLevel; <|endoftext|>
  gemma      Gemma 2/3: " " → "▁" (Replace normaliser, no pre-tokenizer), BPE with byte_fallback and
             <0x00>…<0xFF> in the vocabulary, decoder Replace + ByteFallback + Fuse, <bos> added
  llama2     Llama 2 / SentencePiece: Metaspace (prepend_scheme first), byte_fallback, <s> added
saelab encodes without the post-processor's special tokens (it prepends the model's BOS itself,
as TransformerLens does when the SAE asks), so `ids` are `encode(text, add_special_tokens=False)`;
`with_special` records what the post-processor adds, to show it is not applied twice.

    /work/.venv-hf/bin/python tools/make_tokenizer_fixtures.py

Made with tokenizers 0.23.3.
"""

import json
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tokenizers"

# Llama 3's and Qwen 2's pre-tokenizer patterns, as their tokenizer.json files write them.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")

CORPUS = [
    "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs away.",
    "In the beginning God created the heaven and the earth. And the earth was without form.",
    "Sparse autoencoders decompose activations into features: each feature is a direction.",
    "def forward(self, x):\n    return self.decode(self.encode(x))\n",
    "Numbers like 12345, 3.14159 and 2026 appear in text; so do dates such as 2026-12-01.",
    "Café, naïve, résumé, Zürich and São Paulo are words with accents.",
    "It's, we're, they've, I'm, you'll, he'd — contractions everywhere.",
] * 20

TEXTS = [
    "Hello world",
    " leading space and  double  spaces",
    "The fox's den, isn't it?",
    "Café naïve résumé",
    "日本語のテキスト",
    "emoji 😀🚀 and ⚙️",
    "tabs\tand\nnew\n\nlines",
    "numbers 1234567 and 3.14",
    "    indented code()",
    "zero\u200bwidth and rtl \u202eabc",
    "",
    "a",
]


def bpe_trainer(special, vocab_size=600):
    return trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False,
                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet())


def byte_level(split=None, special=(), post=None, nfc=False, ignore_merges=False):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if nfc:
        tok.normalizer = normalizers.NFC()
    if split is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, bpe_trainer(list(special)))
    if post:
        tok.post_processor = post(tok)
    return tok


def with_byte_fallback(tok: Tokenizer) -> Tokenizer:
    """Adds <0x00>…<0xFF> to the vocabulary, as SentencePiece-converted tokenizers carry them."""
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    for b in range(256):
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    spec["model"]["byte_fallback"] = True
    spec["model"]["fuse_unk"] = True
    return Tokenizer.from_str(json.dumps(spec))


def sentencepiece(style):
    special = ["<pad>", "<eos>", "<bos>", "<unk>"] if style == "gemma" else ["<unk>", "<s>", "</s>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    if style == "gemma":
        tok.normalizer = normalizers.Replace(" ", "▁")
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=special, show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    tok = with_byte_fallback(tok)
    bos = "<bos>" if style == "gemma" else "<s>"
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))])
    return tok


def template(bos):
    return lambda tok: processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))])


STYLES = {
    "gpt_neox": lambda: byte_level(special=["<|endoftext|>"]),
    "llama3": lambda: byte_level(LLAMA3_SPLIT, ["<|begin_of_text|>", "<|end_of_text|>"], template("<|begin_of_text|>"), ignore_merges=True),
    "qwen2": lambda: byte_level(QWEN2_SPLIT, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], nfc=True),
    "gemma": lambda: sentencepiece("gemma"),
    "llama2": lambda: sentencepiece("llama2"),
}


def main():
    for style, make in STYLES.items():
        tok = make()
        folder = OUT / style
        folder.mkdir(parents=True, exist_ok=True)
        tok.save(str(folder / "tokenizer.json"))
        # Read back as saelab will read it.
        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        cases = []
        for text in TEXTS:
            enc = tok.encode(text, add_special_tokens=False)
            cases.append({
                "text": text,
                "ids": enc.ids,
                "tokens": enc.tokens,
                "decoded": tok.decode(enc.ids, skip_special_tokens=False),
                "with_special": tok.encode(text).ids,
            })
        (folder / "expected.json").write_text(json.dumps(cases, ensure_ascii=False, indent=1))
        print(style, tok.get_vocab_size(), "tokens")


if __name__ == "__main__":
    main()
