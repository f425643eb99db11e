"""Proves that SAEs trained by `saelab train` on a model's activations load in SAELens, say which
model and hook they belong to, and compute the same thing there.

    .venv/bin/python tools/check_train_export.py      # after `cargo build --release`

Makes a small random GPT-2 with GPT-2's tokenizer (`saelab random-model`), trains a TopK, a
BatchTopK (saved as jumprelu) and a JumpReLU SAE on its `blocks.1.hook_resid_pre` over a text
corpus with `saelab train`, loads each with SAELens's `SAE.load_from_disk`, checks `hook_name`,
`model_name`, `d_in`, `d_sae` and the architecture in its config, and compares `sae.encode(x)`
and `sae(x)` with `saelab encode` / `saelab reconstruct` on the model's own activations
(`saelab forward --hook`), 1e-5 absolute + 1e-4 relative. Exits non-zero on any mismatch.
"""

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from sae_lens import SAE

ROOT = Path(__file__).resolve().parent.parent
SAELAB = ROOT / "target" / "release" / "saelab"
HOOK = "blocks.1.hook_resid_pre"
TEXT = ("The quick brown fox jumps over the lazy dog. " * 3 + "In the beginning was the word, and the word was with the model. "
        "Sparse autoencoders find features: déjà vu, 東京, numbers 12345, and code like x = f(y) + 1.\n") * 40


def run(*args):
    return subprocess.run([str(SAELAB), *map(str, args)], check=True, capture_output=True, text=True).stdout


def main():
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = tmp / "tiny-gpt2"
        run("random-model", "--out", model, "--vocab-from", ROOT / "tests/fixtures/gpt2_tokenizer/tokenizer.json",
            "--layers", "2", "--width", "48", "--heads", "4", "--context", "64", "--seed", "5")
        (tmp / "corpus.txt").write_text(TEXT)
        run("forward", "--model", model, "--text", TEXT[:160], "--hook", f"{HOOK}={tmp / 'x.npy'}", "--device", "cpu")
        x = np.load(tmp / "x.npy").astype(np.float32)
        for arch, extra, saved_as in [("topk", ["--k", "4"], "topk"), ("batchtopk", ["--k", "4"], "jumprelu"),
                                      ("jumprelu", ["--l0", "0.01"], "jumprelu")]:
            folder = tmp / arch
            run("train", "--model", model, "--hook", HOOK, "--corpus", tmp / "corpus.txt", "--arch", arch, *extra,
                "--dict", "96", "--tokens", "4096", "--batch", "128", "--context", "32", "--device", "cpu", "--save", folder)
            sae = SAE.load_from_disk(folder, device="cpu", dtype="float32")
            meta = sae.cfg.metadata
            cfg_ok = (meta.hook_name == HOOK and meta.model_name == "tiny-gpt2" and meta.context_size == 32 and meta.prepend_bos is True
                      and sae.cfg.d_in == 48
                      and sae.cfg.d_sae == 96 and sae.cfg.architecture() == saved_as)
            run("encode", "--sae", folder, "--input", tmp / "x.npy", "--output", tmp / "acts.npy", "--device", "cpu")
            run("reconstruct", "--sae", folder, "--input", tmp / "x.npy", "--output", tmp / "recon.npy", "--device", "cpu")
            with torch.no_grad():
                want_acts = sae.encode(torch.from_numpy(x)).numpy()
                want_recon = sae(torch.from_numpy(x)).numpy()
            same = all(np.allclose(np.load(tmp / name), want, atol=1e-5, rtol=1e-4)
                       for name, want in [("acts.npy", want_acts), ("recon.npy", want_recon)])
            print(f"{arch}: SAELens loaded {type(sae).__name__} (architecture {sae.cfg.architecture()}), "
                  f"hook_name={meta.hook_name} model_name={meta.model_name} d_in={sae.cfg.d_in} d_sae={sae.cfg.d_sae}: "
                  f"config {'ok' if cfg_ok else 'WRONG'}; encode and sae(x) on the model's activations {'match' if same else 'DIFFER'}")
            failures += (not cfg_ok) + (not same)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
