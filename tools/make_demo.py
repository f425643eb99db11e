"""The page's bundled demo: SAEs whose true features are known, saved by SAELens itself.

    .venv/bin/python tools/make_demo.py      # writes www/demo/ and tests/fixtures/demo_standard/

Activations are sparse sums of 128 random unit directions in 64 dimensions (each direction active
with probability 3%, magnitude ~ U(0.5, 2)) plus small noise, shifted by a constant offset. The
TopK SAE (k=6) and the standard SAE decode with the true directions (plus a little noise) and
encode with their transposes, so they reconstruct well but not perfectly: realistic figures to
show, not a trained model. `www/demo/` is what the page opens with; the standard SAE is the
"second SAE" the browser test loads through the file input.
"""

import shutil
from pathlib import Path

import numpy as np
import torch
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

ROOT = Path(__file__).resolve().parent.parent
D_IN, D_SAE, N, P = 64, 128, 512, 0.03


def main():
    gen = torch.Generator().manual_seed(7)
    features = torch.randn(D_SAE, D_IN, generator=gen)
    features /= features.norm(dim=-1, keepdim=True)
    active = torch.rand(N, D_SAE, generator=gen) < P
    magnitude = 0.5 + 1.5 * torch.rand(N, D_SAE, generator=gen)
    offset = 0.3 * torch.randn(D_IN, generator=gen)
    x = (active * magnitude) @ features + 0.05 * torch.randn(N, D_IN, generator=gen) + offset

    def fill(sae, bias):
        with torch.no_grad():
            sae.W_dec.copy_(features + 0.02 * torch.randn(D_SAE, D_IN, generator=gen))
            sae.W_enc.copy_(features.T)
            sae.b_dec.copy_(offset)
            sae.b_enc.fill_(bias)
        sae.cfg.metadata.hook_name = "synthetic"
        sae.cfg.metadata.model_name = "toy: 128 known features in 64 dimensions"

    demo = ROOT / "www" / "demo"
    topk = TopKSAE(TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=6))
    fill(topk, 0.0)
    standard = StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE))
    fill(standard, -0.5)
    for folder, sae in [(demo / "sae", topk), (ROOT / "tests" / "fixtures" / "demo_standard", standard)]:
        if folder.exists():
            shutil.rmtree(folder)
        sae.save_model(folder)
    np.save(demo / "activations.npy", x.float().numpy())
    with torch.no_grad():
        for name, sae in [("topk", topk), ("standard", standard)]:
            recon = sae(x.float())
            fvu = ((recon - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
            print(f"{name}: L0 {(sae.encode(x.float()) > 0).float().sum(-1).mean():.2f}, FVU {fvu:.4f}")


if __name__ == "__main__":
    main()
