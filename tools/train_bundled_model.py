"""Trains the page's bundled language model: a small GPT-2 on the King James Bible.

    apt-get install bible-kjv                     # Debian: the `bible` program and bible-kjv-text
    .venv/bin/pip install torch transformers tokenizers safetensors
    .venv/bin/python tools/train_bundled_model.py [--steps 700] [--out www/models/kjv-gpt2]

Corpus: the King James Version as Debian's `bible-kjv-text` package ships it (printed by its
`bible` program). The translation's copyright has long expired (public domain); the package's
data file is "provided for unrestricted use ... Users may copy, modify or distribute this file at
will" (Chip Chapin, 1989, /usr/share/doc/bible-kjv-text/copyright). Verse numbers are dropped;
each chapter is one document: its heading ("Genesis 1") then one verse per line. Every 20th
chapter (index ≡ 7 mod 20, 60 of 1189) is held out.

Tokenizer: byte-level BPE as GPT-2's (`tokenizers`, 4096 tokens, `<|endoftext|>` = 0 between
documents), trained on the training chapters only.

Model: `transformers.GPT2LMHeadModel` (so the files are Hugging Face GPT-2 by construction): 4
layers, width 256, 4 heads, context 256, gelu_new, tied embeddings, no dropout. AdamW (lr 2e-3,
betas 0.9/0.95, weight decay 0.1 on matrices), 100 warm-up steps then cosine to 10%, batches of 16
random 256-token windows. Stored as float16; the held-out loss reported is that of the stored
(f16-rounded) weights, mean next-token cross-entropy over non-overlapping 256-token windows of the
held-out chapters.

With --write-corpus FILE it only writes the training chapters (what the bundled SAEs are trained
on: tools/train_bundled_saes.sh). Writes to --out: config.json, model.safetensors, tokenizer.json, heldout.txt (the held-out
chapters, the dashboards' corpus sample) and training.json (settings, loss curve, held-out loss).
Deterministic for a given torch build and thread count (seeded); takes ~20-25 minutes on 2 cores.
"""

import argparse
import json
import math
import re
import subprocess
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GPT2Config, GPT2LMHeadModel

ROOT = Path(__file__).resolve().parent.parent
EOT = "<|endoftext|>"
HELD_OUT_EVERY, HELD_OUT_AT = 20, 7


def chapters():
    """The KJV as (heading, [verses]) per chapter, in canonical order."""
    text = subprocess.run(["bible", "-l0", "gen1:1-rev22:21"], check=True, capture_output=True, text=True).stdout
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        verse = re.match(r"^\s+\d+ (.*)$", line)
        if verse:
            out[-1][1].append(verse.group(1).strip())
        else:
            out.append((line.strip(), []))
    assert len(out) == 1189, f"expected the 1189 chapters of the KJV, found {len(out)}"
    return [heading + "\n" + "\n".join(verses) + "\n" for heading, verses in out]


def train_tokenizer(docs, vocab_size):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOT], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(docs, trainer)
    assert tok.token_to_id(EOT) == 0
    return tok


def stream(tok, docs):
    """Documents' token ids, each followed by <|endoftext|>."""
    ids = []
    for enc in tok.encode_batch(docs):
        ids.extend(enc.ids)
        ids.append(0)
    return torch.tensor(ids, dtype=torch.long)


@torch.no_grad()
def held_out_loss(model, ids, ctx):
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(ids) - 1, ctx):
        window = ids[start:start + ctx + 1]
        if len(window) < 2:
            break
        logits = model(window[None, :-1]).logits[0]
        total += torch.nn.functional.cross_entropy(logits, window[1:], reduction="sum").item()
        count += len(window) - 1
    model.train()
    return total / count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "www" / "models" / "kjv-gpt2"))
    ap.add_argument("--steps", type=int, default=700)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write-corpus", metavar="FILE", help="only write the training chapters (the SAEs' corpus) to FILE")
    args = ap.parse_args()
    if args.write_corpus:
        docs = chapters()
        Path(args.write_corpus).write_text("\n".join(d for i, d in enumerate(docs) if i % HELD_OUT_EVERY != HELD_OUT_AT))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)

    docs = chapters()
    held = [d for i, d in enumerate(docs) if i % HELD_OUT_EVERY == HELD_OUT_AT]
    train_docs = [d for i, d in enumerate(docs) if i % HELD_OUT_EVERY != HELD_OUT_AT]
    tok = train_tokenizer(train_docs, args.vocab)
    tok.save(str(out / "tokenizer.json"))
    train_ids, held_ids = stream(tok, train_docs), stream(tok, held)
    print(f"corpus: {len(train_docs)} training chapters ({len(train_ids)} tokens), {len(held)} held out ({len(held_ids)} tokens)", flush=True)

    ctx = 256
    cfg = GPT2Config(
        vocab_size=tok.get_vocab_size(), n_positions=ctx, n_embd=256, n_layer=4, n_head=4,
        activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        tie_word_embeddings=True, layer_norm_epsilon=1e-5, bos_token_id=0, eos_token_id=0,
    )
    model = GPT2LMHeadModel(cfg)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=2e-3, betas=(0.9, 0.95))
    warmup = 100

    def lr_at(step):
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, args.steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    generator = torch.Generator().manual_seed(args.seed)
    curve = []
    started = time.time()
    for step in range(args.steps):
        starts = torch.randint(0, len(train_ids) - ctx - 1, (args.batch,), generator=generator)
        batch = torch.stack([train_ids[s:s + ctx + 1] for s in starts.tolist()])
        # Position t of the window predicts token t+1 (the window's last token is only a target).
        logits = model(input_ids=batch[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 25 == 0 or step == args.steps - 1:
            elapsed = time.time() - started
            curve.append({"step": step, "loss": round(loss.item(), 4), "seconds": round(elapsed, 1)})
            print(f"step {step}/{args.steps}  loss {loss.item():.3f}  {elapsed / 60:.1f} min", flush=True)

    # Store float16 and report the loss of exactly what is stored.
    model.eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.float16).to(torch.float32))
    loss = held_out_loss(model, held_ids, ctx)
    state = {k: v.to(torch.float16).contiguous() for k, v in model.state_dict().items()
             if k != "lm_head.weight" and not k.endswith(".attn.bias") and not k.endswith(".attn.masked_bias")}
    save_file(state, out / "model.safetensors", metadata={"format": "pt"})
    config = cfg.to_dict()
    config["architectures"] = ["GPT2LMHeadModel"]
    config.pop("transformers_version", None)
    config["torch_dtype"] = "float16"
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (out / "heldout.txt").write_text("\n".join(held))
    report = {
        "corpus": "King James Version (Debian bible-kjv-text), public domain",
        "train_tokens": len(train_ids), "held_out_tokens": len(held_ids),
        "steps": args.steps, "batch": args.batch, "context": ctx, "tokens_seen": args.steps * args.batch * ctx,
        "held_out_loss": round(loss, 4), "minutes": round((time.time() - started) / 60, 1),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "curve": curve,
    }
    (out / "training.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"held-out loss {loss:.4f} nats/token ({len(held_ids)} tokens); wrote {out}", flush=True)


if __name__ == "__main__":
    main()
