"""Golden fixtures for saelab's SAE parity tests, made with the real SAELens package.

    python3 -m venv .venv && .venv/bin/pip install sae-lens
    .venv/bin/python tools/make_sae_fixtures.py          # writes tests/fixtures/sae/

For every architecture (standard, topk, jumprelu, gated, and a BatchTopK SAE exported the way
SAELens exports it: as jumprelu) × apply_b_dec_to_input on/off × normalize_activations
none/layer_norm, it saves a small SAE with random weights through SAELens's own `save_model` /
`save_inference_model`, reloads it with `SAE.load_from_disk`, and records inputs `x.npy`,
`sae.encode(x)` as `encode.npy` and `sae(x)` as `recon.npy`. Two more cases store the weights in
float16 and bfloat16 (the references are computed by SAELens from those files, upcast to f32).
"""

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sae_lens import SAE
from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
from sae_lens.saes.gated_sae import GatedSAE, GatedSAEConfig
from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "sae"
D_IN, D_SAE, K, N = 24, 80, 6, 10


def perturb(sae, gen):
    """Random non-zero values in every parameter, so that biases and thresholds matter."""
    with torch.no_grad():
        for name, p in sae.named_parameters():
            if name in ("W_enc", "W_dec"):
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
            elif name == "threshold":
                p.copy_(0.6 * torch.rand(p.shape, generator=gen))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))


def make(arch, apply_b_dec, norm, gen):
    common = dict(d_in=D_IN, d_sae=D_SAE, apply_b_dec_to_input=apply_b_dec, normalize_activations=norm)
    if arch == "standard":
        return StandardSAE(StandardSAEConfig(**common)), False
    if arch == "topk":
        return TopKSAE(TopKSAEConfig(k=K, **common)), False
    if arch == "jumprelu":
        return JumpReLUSAE(JumpReLUSAEConfig(**common)), False
    if arch == "gated":
        return GatedSAE(GatedSAEConfig(**common)), False
    if arch == "batchtopk":
        cfg = BatchTopKTrainingSAEConfig(k=K, rescale_acts_by_decoder_norm=False, **common)
        sae = BatchTopKTrainingSAE(cfg)
        sae.topk_threshold = torch.tensor(0.25)
        return sae, True
    raise ValueError(arch)


def write_case(name, sae, training, gen, convert_dtype=None):
    folder = OUT / name
    if folder.exists():
        shutil.rmtree(folder)
    perturb(sae, gen)
    # A BatchTopK training SAE is exported for inference as jumprelu, exactly as SAELens does.
    (sae.save_inference_model if training else sae.save_model)(folder)
    if convert_dtype is not None:
        weights = load_file(folder / "sae_weights.safetensors")
        save_file({k: v.to(convert_dtype) for k, v in weights.items()}, folder / "sae_weights.safetensors")
        cfg = json.loads((folder / "cfg.json").read_text())
        cfg["dtype"] = str(convert_dtype).replace("torch.", "")
        (folder / "cfg.json").write_text(json.dumps(cfg))
    loaded = SAE.load_from_disk(folder, device="cpu", dtype="float32")
    x = (torch.randn(N, D_IN, generator=gen) * 1.5 + torch.randn(D_IN, generator=gen)).float()
    with torch.no_grad():
        acts = loaded.encode(x)
        recon = loaded(x)
    np.save(folder / "x.npy", x.numpy())
    np.save(folder / "encode.npy", acts.numpy())
    np.save(folder / "recon.npy", recon.numpy())
    print(f"{name}: arch={loaded.cfg.architecture()} l0={(acts > 0).float().sum(-1).mean():.2f}")


def main():
    gen = torch.Generator().manual_seed(1234)
    torch.manual_seed(1234)
    for arch in ["standard", "topk", "jumprelu", "gated", "batchtopk"]:
        for apply_b_dec in [True, False]:
            for norm in ["none", "layer_norm"]:
                sae, training = make(arch, apply_b_dec, norm, gen)
                write_case(f"{arch}_bdec{int(apply_b_dec)}_{norm}", sae, training, gen)
    for dtype in [torch.float16, torch.bfloat16]:
        sae, training = make("topk", True, "none", gen)
        write_case(f"topk_{str(dtype).replace('torch.', '')}", sae, training, gen, convert_dtype=dtype)
    (OUT / "VERSION").write_text(f"sae-lens {__import__('sae_lens').__version__}, torch {torch.__version__}\n")


if __name__ == "__main__":
    main()
