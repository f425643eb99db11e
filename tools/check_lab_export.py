"""Proves that SAEs trained by saelab's lab load in SAELens and compute the same thing there.

    .venv/bin/python tools/check_lab_export.py      # after `cargo build --release`

Trains an SAE of each architecture with `saelab toy --save` (batchtopk is saved as jumprelu), loads each with SAELens's
`SAE.load_from_disk`, and compares `sae.encode(x)` and `sae(x)` with `saelab encode` /
`saelab reconstruct` on the same inputs (1e-5 absolute + 1e-4 relative). Prints one line per SAE
and exits non-zero on any mismatch.
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


def run(*args):
    subprocess.run([str(SAELAB), *map(str, args)], check=True, capture_output=True)


def main():
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        x = np.random.default_rng(0).normal(size=(50, 16)).astype(np.float32)
        np.save(tmp / "x.npy", x)
        for arch, extra in [
            ("topk", ["--k", "3"]),
            ("standard", ["--l1", "0.3"]),
            ("batchtopk", ["--k", "3"]),
            ("jumprelu", ["--l0", "0.05"]),
            ("gated", ["--l1", "1"]),
        ]:
            folder = tmp / arch
            run("toy", "--features", "24", "--dims", "16", "--p", "0.05", "--arch", arch, *extra, "--dict", "48",
                "--batch", "128", "--steps", "200", "--seed", "3", "--device", "cpu", "--save", folder)
            sae = SAE.load_from_disk(folder, device="cpu", dtype="float32")
            run("encode", "--sae", folder, "--input", tmp / "x.npy", "--output", tmp / "acts.npy", "--device", "cpu")
            run("reconstruct", "--sae", folder, "--input", tmp / "x.npy", "--output", tmp / "recon.npy", "--device", "cpu")
            with torch.no_grad():
                want_acts = sae.encode(torch.from_numpy(x)).numpy()
                want_recon = sae(torch.from_numpy(x)).numpy()
            ok = all(
                np.allclose(np.load(tmp / name), want, atol=1e-5, rtol=1e-4)
                for name, want in [("acts.npy", want_acts), ("recon.npy", want_recon)]
            )
            print(f"{arch}: SAELens loaded {type(sae).__name__} d_in={sae.cfg.d_in} d_sae={sae.cfg.d_sae}; "
                  f"encode and sae(x) {'match' if ok else 'DIFFER'}")
            failures += not ok
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
