"""Golden fixtures for the SAE formats SAELens converts, made with SAELens's real loaders.

    python3 -m venv .venv && .venv/bin/pip install sae-lens && .venv/bin/pip install --no-deps eai-sparsify dictionary-learning && .venv/bin/pip install natsort schedulefree
    .venv/bin/python tools/make_sae_format_fixtures.py   # writes tests/fixtures/hub/ and tests/fixtures/sae_formats/

For each format it writes one small SAE with random weights in that format's file layout into a
stand-in Hugging Face hub cache (`tests/fixtures/hub/models--ORG--NAME/snapshots/REV/...`, with
`refs/main`), lists it in a test registry (`tests/fixtures/hub/registry.json`, made by
`tools/make_registry.py`'s own `build_index` from yaml-shaped releases), and computes the reference
with SAELens itself: `SAE.from_pretrained(release, sae_id)` with `HF_HUB_CACHE` pointing at the
stand-in and `HF_HUB_OFFLINE=1`, so the real `hf_hub_download` reads the files from the cache
layout; only SAELens's registry lookup (`get_pretrained_saes_directory`) and its HTTP look-up of
safetensors shapes (`get_safetensors_tensor_shapes`) are replaced. Loaders that take sizes from
repository names (Gemma Scope's d_in/d_sae) get them through the release's `config_overrides`,
which SAELens merges into the loader's cfg.

The transcoders — Gemma Scope 2's (plain and affine, i.e. with a skip connection), Gemma Scope's
and mwhanna's — go through the same `SAE.from_pretrained`; their `sae(x)` is the transcoder's
prediction of its output hook.

The torch.save formats (dictionary_learning's `ae.pt`, Qwen Scope's `layerN.sae.pt`, the GPT-2
attention SAEs' `NAME.pt`, Goodfire's and qresearch's single files) are written by `torch.save` from the real classes where a library has
them (`dictionary_learning`'s AutoEncoder, GatedAutoEncoder, JumpReluAutoEncoder,
AutoEncoderTopK, BatchTopKSAE, MatryoshkaBatchTopKSAE: `pip install --no-deps
dictionary-learning`; its `nnsight` import is stubbed, nothing of it runs), one of them in bf16 and
one holding a transposed (strided) view, so the reader's dtypes and strides are exercised.
`evil-pickle/` is a dictionary_learning folder whose `ae.pt` pickles `os.system`: loading it must
be refused, never run.

sparsify is the exception: SAELens 6.54's loader transposes sparsify's `W_dec`, which is already
`[num_latents, d_in]`, so it cannot load a non-square SAE. Its reference comes from the format's
own library (`sparsify.SparseCoder.load_from_disk`, `encode`, `decode`).

Each case writes `tests/fixtures/sae_formats/CASE/`: `x.npy` (inputs), `encode.npy`, `recon.npy`
and `cfg.json` (`sae.cfg.to_dict()` of the loaded SAE).
"""

import json
import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parent.parent
HUB = ROOT / "tests" / "fixtures" / "hub"
OUT = ROOT / "tests" / "fixtures" / "sae_formats"
REVISION = "0123456789abcdef0123456789abcdef01234567"
# Read by huggingface_hub when it is first imported, so set before anything imports it.
os.environ["HF_HUB_CACHE"] = str(HUB)
os.environ["HF_HUB_OFFLINE"] = "1"
# sparsify decodes with a Triton kernel unless told not to; there is no GPU here.
os.environ["SPARSIFY_DISABLE_TRITON"] = "1"
D_IN, D_SAE, N = 24, 40, 12

rng = np.random.default_rng(14)


def f32(*shape, scale=1.0, gen=None):
    return ((gen or rng).standard_normal(shape) * scale).astype(np.float32)


def snapshot(repo: str) -> Path:
    repo_dir = HUB / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(REVISION)
    path = repo_dir / "snapshots" / REVISION
    path.mkdir(parents=True, exist_ok=True)
    return path


def jumprelu_params(d_in=D_IN, d_sae=D_SAE):
    return {
        "w_enc": f32(d_in, d_sae, scale=0.4),
        "w_dec": f32(d_sae, d_in, scale=0.3),
        "b_enc": f32(d_sae, scale=0.1),
        "b_dec": f32(d_in, scale=0.1),
        "threshold": np.abs(f32(d_sae, scale=0.3)),
    }


# ---- the releases, shaped as pretrained_saes.yaml's entries -------------------------------------

RELEASES = {}


def release(name, repo, model, conversion, saes, overrides=None):
    RELEASES[name] = {"repo_id": repo, "model": model, "conversion_func": conversion, "saes": saes}
    if overrides:
        RELEASES[name]["config_overrides"] = overrides


def make_files():
    if HUB.exists():
        shutil.rmtree(HUB)

    # Gemma Scope: params.npz; a residual SAE and an embedding SAE (rescaled by √d_in).
    repo = "google/gemma-scope-2b-pt-res"
    base = snapshot(repo)
    for folder in ["layer_3/width_16k/average_l0_9", "embedding/width_4k/average_l0_5"]:
        (base / folder).mkdir(parents=True)
        np.savez(base / folder / "params.npz", **jumprelu_params())
    release(
        "test-gemma-scope-2b-pt-res",
        repo,
        "gemma-2-2b",
        "gemma_2",
        [
            {"id": "layer_3/width_16k/average_l0_9", "path": "layer_3/width_16k/average_l0_9", "l0": 9, "neuronpedia": "gemma-2-2b/3-gemmascope-res-16k"},
            {"id": "embedding/width_4k/average_l0_5", "path": "embedding/width_4k/average_l0_5"},
        ],
        {"d_in": D_IN, "d_sae": D_SAE},
    )
    # The same files compressed (np.savez_compressed), to check the deflate path.
    repo = "google/gemma-scope-2b-pt-mlp"
    base = snapshot(repo)
    folder = "layer_1/width_16k/average_l0_20"
    (base / folder).mkdir(parents=True)
    np.savez_compressed(base / folder / "params.npz", **jumprelu_params())
    release("test-gemma-scope-2b-pt-mlp", repo, "gemma-2-2b", "gemma_2", [{"id": "layer_1/width_16k/average_l0_20", "path": folder}], {"d_in": D_IN, "d_sae": D_SAE})

    # Gemma Scope 2: params.safetensors, with and without config.json.
    repo = "google/gemma-scope-2-270m-pt"
    base = snapshot(repo)
    with_cfg, without_cfg = "resid_post/layer_5_width_16k_l0_small", "mlp_out/layer_2_width_16k_l0_big"
    for folder in [with_cfg, without_cfg]:
        (base / folder).mkdir(parents=True)
        save_file(jumprelu_params(), base / folder / "params.safetensors")
    (base / with_cfg / "config.json").write_text(
        json.dumps({"architecture": "jump_relu", "model_name": "gemma-v3-270m-pt", "hf_hook_point_in": "model.layers.5.output", "width": D_SAE})
    )
    release(
        "test-gemma-scope-2-270m-pt",
        repo,
        "google/gemma-3-270m",
        "gemma_3",
        [{"id": "layer_5_width_16k_l0_small", "path": with_cfg, "l0": 20, "neuronpedia": "gemma-3-270m/5-gemmascope-2-res-16k"}, {"id": "layer_2_mlp", "path": without_cfg}],
    )

    # Llama Scope: hyperparams.json + checkpoints/final.safetensors (nn.Linear layout).
    repo = "fnlp/Llama3_1-8B-Base-LXR-8x"
    base = snapshot(repo)
    folder = "Llama3_1-8B-Base-L7R-8x"
    (base / folder / "checkpoints").mkdir(parents=True)
    norm_in = 37.5
    (base / folder / "hyperparams.json").write_text(
        json.dumps({"d_model": D_IN, "d_sae": D_SAE, "hook_point_in": "blocks.7.hook_resid_post", "hook_point_out": "blocks.7.hook_resid_post",
                    "jump_relu_threshold": 0.35, "dataset_average_activation_norm": {"in": norm_in, "out": norm_in}})
    )
    save_file(
        {"encoder.weight": f32(D_SAE, D_IN, scale=2.0), "encoder.bias": f32(D_SAE, scale=0.1), "decoder.weight": f32(D_IN, D_SAE, scale=0.3), "decoder.bias": f32(D_IN, scale=0.1)},
        base / folder / "checkpoints" / "final.safetensors",
    )
    # The registry's factor, deliberately not the one hyperparams.json implies, so a test can tell
    # which was folded in.
    release("test-llama-scope-lxr-8x", repo, "meta-llama/Llama-3.1-8B", "llama_scope", [{"id": "l7r_8x", "path": folder, "norm_scaling_factor": 0.25}])

    # Llama Scope R1 Distill: config.json + sae_weights.safetensors with a log threshold.
    repo = "fnlp/Llama-Scope-R1-Distill"
    base = snapshot(repo)
    folder = "400M-Slimpajama-400M-OpenR1-Math-220k/L5R"
    (base / folder).mkdir(parents=True)
    (base / folder / "config.json").write_text(json.dumps({"d_model": D_IN, "expansion_factor": D_SAE // D_IN if D_SAE % D_IN == 0 else 0, "hook_point_in": "blocks.5.hook_resid_post"}))
    save_file(
        {"encoder.weight": f32(D_SAE, D_IN, scale=0.4), "encoder.bias": f32(D_SAE, scale=0.1), "decoder.weight": f32(D_IN, D_SAE, scale=0.3),
         "decoder.bias": f32(D_IN, scale=0.1), "log_jumprelu_threshold": f32(D_SAE, scale=0.3) - 1.5},
        base / folder / "sae_weights.safetensors",
    )
    release("test-llama-scope-r1-distill", repo, "deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "llama_scope_r1_distill",
            [{"id": "l5r_400m", "path": folder, "norm_scaling_factor": 1.75}], {"d_sae": D_SAE})

    # SAELens's own folder, with the registry's model_from_pretrained_kwargs.
    repo = "jbloom/GPT2-Small-SAEs-Reformatted"
    base = snapshot(repo)
    folder = "blocks.0.hook_resid_pre"
    (base / folder).mkdir(parents=True)
    p = jumprelu_params()
    (base / folder / "cfg.json").write_text(json.dumps({"architecture": "standard", "d_in": D_IN, "d_sae": D_SAE, "dtype": "float32", "apply_b_dec_to_input": True,
                                                        "normalize_activations": "none", "hook_point": folder, "model_name": "gpt2-small", "sae_lens_version": "2.1.3"}))
    save_file({"W_enc": p["w_enc"], "W_dec": p["w_dec"], "b_enc": p["b_enc"], "b_dec": p["b_dec"]}, base / folder / "sae_weights.safetensors")
    release("test-gpt2-small-res-jb", repo, "gpt2-small", None, [{"id": folder, "path": folder, "neuronpedia": "gpt2-small/0-res-jb"}],
            {"model_from_pretrained_kwargs": {"center_writing_weights": True}})

    # sparsify: cfg.json + sae.safetensors per layer, the run's config.json beside them.
    from sparsify import SparseCoder, SparseCoderConfig

    repo = "EleutherAI/sae-pythia-70m-deduped-32k"
    base = snapshot(repo)
    torch.manual_seed(14)
    coder = SparseCoder(D_IN, SparseCoderConfig(num_latents=D_SAE, k=5))
    with torch.no_grad():
        coder.encoder.weight.normal_(0, 0.4)
        coder.encoder.bias.normal_(0, 0.1)
        coder.W_dec.normal_(0, 0.3)
        coder.b_dec.normal_(0, 0.1)
    coder.save_to_disk(base / "layers.3")
    (base / "config.json").write_text(json.dumps({"model": "EleutherAI/pythia-70m-deduped", "ctx_len": 2048}))
    release("test-sparsify-pythia", repo, "pythia-70m-deduped", "sparsify", [{"id": "layers.3", "path": "layers.3"}])

    # dictionary_learning (SAEBench): config.json + ae.pt per trainer, one of each class.
    dl = dictionary_learning_classes()
    repo = "canrager/lm_sae"
    base = snapshot(repo)
    run = "pythia70m_sweep_test_0730/resid_post_layer_3"
    saes = []
    for i, (dict_class, make) in enumerate(dl.items()):
        folder = f"{run}/trainer_{i}"
        (base / folder).mkdir(parents=True)
        ae = make()
        randomise(ae)
        if dict_class == "JumpReluAutoEncoder":
            ae = ae.to(torch.bfloat16)  # a half-precision file: the reader widens bf16 storages
        torch.save(ae.state_dict(), base / folder / "ae.pt")
        trainer = {"dict_class": dict_class, "layer": 3, "lm_name": "EleutherAI/pythia-70m-deduped", "activation_dim": D_IN, "dict_size": D_SAE}
        if hasattr(ae, "k"):
            trainer["k"] = int(ae.k)
        (base / folder / "config.json").write_text(json.dumps({"trainer": trainer, "buffer": {"ctx_len": 128}}))
        saes.append({"id": f"blocks.3.hook_resid_post__trainer_{i}", "path": folder})
    release("test-saebench-pythia70m", repo, "pythia-70m-deduped", "dictionary_learning_1", saes)

    # A dictionary_learning folder whose ae.pt would run a command if unpickled by Python.
    evil = OUT.parent / "evil-pickle"
    evil.mkdir(parents=True, exist_ok=True)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo saelab-must-never-run-this",))

    torch.save({"W_enc": Evil()}, evil / "ae.pt")
    (evil / "config.json").write_text(json.dumps({"trainer": {"dict_class": "AutoEncoder", "layer": 0, "lm_name": "gpt2"}, "buffer": {}}))

    # Qwen Scope: one layerN.sae.pt, W_enc [d_sae, d_in] in bf16 and W_dec [d_in, d_sae] saved as a
    # transposed view; k (5) from the repository's name, the sizes from the registry's overrides
    # (SAELens builds the SAE from the name's width otherwise).
    repo = "Qwen/SAE-Res-Qwen3-1.7B-Base-W32K-L0_5"
    base = snapshot(repo)
    torch.save(
        {"W_enc": torch.from_numpy(f32(D_SAE, D_IN, scale=0.4)).to(torch.bfloat16), "W_dec": torch.from_numpy(f32(D_SAE, D_IN, scale=0.3)).T,
         "b_enc": torch.from_numpy(f32(D_SAE, scale=0.1)), "b_dec": torch.from_numpy(f32(D_IN, scale=0.1))},
        base / "layer3.sae.pt",
    )
    release("test-qwen-scope-1.7b", repo, "Qwen/Qwen3-1.7B-Base", "qwen_scope", [{"id": "layer3", "path": "layer3.sae.pt"}], {"d_in": D_IN, "d_sae": D_SAE})

    # GPT-2 small attention SAEs: NAME.pt (SAELens's names) + NAME_cfg.json.
    repo = "ckkissane/attn-saes-gpt2-small-all-layers"
    base = snapshot(repo)
    name = "gpt2-small_L1_Hcat_z_lr1.20e-03_l11.80e+00_ds40_v9"
    p = jumprelu_params()
    torch.save({"W_enc": torch.from_numpy(p["w_enc"]), "W_dec": torch.from_numpy(p["w_dec"]), "b_enc": torch.from_numpy(p["b_enc"]),
                "b_dec": torch.from_numpy(p["b_dec"])}, base / f"{name}.pt")
    (base / f"{name}_cfg.json").write_text(json.dumps({"act_name": "blocks.1.attn.hook_z", "act_size": D_IN, "dict_size": D_SAE, "layer": 1}))
    release("test-gpt2-small-hook-z-kk", repo, "gpt2-small", "connor_rob_hook_z", [{"id": "blocks.1.hook_z", "path": f"{name}.pt"}])

    # Gemma Scope 2's transcoders: the MLP's input (pre_feedforward_layernorm.output) to its output
    # (post_feedforward_layernorm.output); the affine ones add affine_skip_connection [d_in, d_out],
    # which the loader transposes to W_skip. One folder with config.json, one inferred from names.
    repo = "google/gemma-scope-2-270m-pt"
    base = snapshot(repo)
    plain, affine = "transcoder/layer_3_width_16k_l0_small", "transcoder/layer_4_width_16k_l0_big_affine"
    for folder in [plain, affine]:
        (base / folder).mkdir(parents=True)
        params = jumprelu_params()
        if folder == affine:
            params["affine_skip_connection"] = f32(D_IN, D_IN, scale=0.2)
        save_file(params, base / folder / "params.safetensors")
    (base / affine / "config.json").write_text(
        json.dumps({"architecture": "jump_relu", "model_name": "gemma-v3-270m-pt", "affine_connection": True, "width": D_SAE,
                    "hf_hook_point_in": "model.layers.4.pre_feedforward_layernorm.output", "hf_hook_point_out": "model.layers.4.post_feedforward_layernorm.output"})
    )
    release(
        "test-gemma-scope-2-270m-pt-transcoders",
        repo,
        "google/gemma-3-270m",
        "gemma_3",
        [{"id": "layer_3_width_16k_l0_small", "path": plain}, {"id": "layer_4_width_16k_l0_big_affine", "path": affine}],
    )

    # Gemma Scope's transcoders: params.npz, from ln2.hook_normalized to hook_mlp_out; the loader
    # takes d_sae from the folder's width and d_in from the repository's name, so the registry's
    # overrides give the test sizes.
    repo = "google/gemma-scope-2b-pt-transcoders"
    base = snapshot(repo)
    folder = "layer_6/width_16k/average_l0_70"
    (base / folder).mkdir(parents=True)
    np.savez(base / folder / "params.npz", **jumprelu_params())
    release("test-gemma-scope-2b-pt-transcoders", repo, "gemma-2-2b", "gemma_2_transcoder", [{"id": folder, "path": folder}],
            {"d_in": D_IN, "d_out": D_IN, "d_sae": D_SAE})

    # mwhanna's Qwen 3 transcoders: layer_L.safetensors at the root with W_enc [d_sae, d_in]; the
    # sizes from the wandb run's config (wandb's own layout, a nested d_model to skip), the model
    # from config.yaml — or, without one, from the repository's name, beside the misspelt
    # wanb-config.yaml (both as the 14B repositories have them).
    wandb = (
        "_wandb:\n  value:\n    cli_version: 0.19.8\n    d_model: 999\n"
        f"batch_size:\n  desc: null\n  value: 4096\nd_feature:\n  value: {D_SAE}\nd_model:\n  value: {D_IN}\nlr:\n  value: 0.0002\n"
    )
    for repo, layer, wandb_name, config in [
        ("mwhanna/qwen3-0.6b-transcoders-lowl0", 2, "wandb-config.yaml", "model_name: Qwen/Qwen3-0.6B\nfeature_input_hook: mlp.hook_in\n"),
        ("mwhanna/qwen3-14b-transcoders", 1, "wanb-config.yaml", None),
    ]:
        base = snapshot(repo)
        save_file({"W_enc": f32(D_SAE, D_IN, scale=0.4), "W_dec": f32(D_SAE, D_IN, scale=0.3), "b_enc": f32(D_SAE, scale=0.1) + 0.3,
                   "b_dec": f32(D_IN, scale=0.1)}, base / f"layer_{layer}.safetensors")
        (base / wandb_name).write_text(wandb)
        if config:
            (base / "config.yaml").write_text(config)
        release(f"test-{repo.split('/')[1]}", repo, repo.split("/")[1].split("-trans")[0], "mwhanna_transcoder",
                [{"id": f"layer_{layer}", "path": f"layer_{layer}.safetensors"}])

    # Goodfire's and qresearch's Llama SAEs: one torch.save'd file of two nn.Linear states. Their
    # loaders know the sizes from a table (Goodfire: by repository and file name) or write them in
    # (d_in 4096), so the registry's overrides give the test sizes. Their own generator keeps the
    # cases above as they were.
    own = np.random.default_rng(19)
    linear = lambda prefix: {  # noqa: E731
        f"{prefix[0]}.weight": torch.from_numpy(f32(D_SAE, D_IN, scale=0.4, gen=own)), f"{prefix[0]}.bias": torch.from_numpy(f32(D_SAE, scale=0.1, gen=own)),
        f"{prefix[1]}.weight": torch.from_numpy(f32(D_IN, D_SAE, scale=0.3, gen=own)), f"{prefix[1]}.bias": torch.from_numpy(f32(D_IN, scale=0.1, gen=own)),
    }
    repo, name = "Goodfire/Llama-3.1-8B-Instruct-SAE-l19", "Llama-3.1-8B-Instruct-SAE-l19.pth"
    torch.save(linear(("encoder_linear", "decoder_linear")), snapshot(repo) / name)
    release("test-goodfire-llama-3.1-8b-instruct", repo, "meta-llama/Llama-3.1-8B-Instruct", "goodfire",
            [{"id": "layer_19", "path": name, "neuronpedia": "llama3.1-8b-it/19-resid-post-gf"}], {"d_in": D_IN, "d_sae": D_SAE})
    repo, name = "qresearch/DeepSeek-R1-Distill-Llama-8B-SAE-l19", "DeepSeek-R1-Distill-Llama-8B-SAE-l19.pt"
    state = linear(("encoder", "decoder"))
    state["encoder.weight"] = state["encoder.weight"].to(torch.bfloat16)  # the loader says bfloat16; a half-precision storage
    torch.save(state, snapshot(repo) / name)
    release("test-deepseek-r1-distill-llama-8b-qresearch", repo, "deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "deepseek_r1",
            [{"id": "blocks.19.hook_resid_post", "path": name}], {"d_in": D_IN, "d_sae": D_SAE})


def dictionary_learning_classes():
    """dictionary_learning's SAE classes by `dict_class`, each a maker of one at the test sizes."""
    import types

    stub = types.ModuleType("nnsight")  # imported by dictionary_learning's buffer module, unused here
    stub.LanguageModel = object
    sys.modules.setdefault("nnsight", stub)
    from dictionary_learning.dictionary import AutoEncoder, GatedAutoEncoder, JumpReluAutoEncoder
    from dictionary_learning.trainers.batch_top_k import BatchTopKSAE
    from dictionary_learning.trainers.matryoshka_batch_top_k import MatryoshkaBatchTopKSAE
    from dictionary_learning.trainers.top_k import AutoEncoderTopK

    return {
        "AutoEncoderTopK": lambda: AutoEncoderTopK(D_IN, D_SAE, 5),
        "BatchTopKSAE": lambda: BatchTopKSAE(D_IN, D_SAE, 5),
        "MatryoshkaBatchTopKSAE": lambda: MatryoshkaBatchTopKSAE(D_IN, D_SAE, 5, [10, 30]),
        "JumpReluAutoEncoder": lambda: JumpReluAutoEncoder(D_IN, D_SAE),
        "GatedAutoEncoder": lambda: GatedAutoEncoder(D_IN, D_SAE),
        "AutoEncoder": lambda: AutoEncoder(D_IN, D_SAE),
    }


def randomise(module):
    """Random floating-point parameters and thresholds (integer buffers such as k are kept)."""
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point():
                continue
            if name == "threshold":
                value = np.abs(f32(*t.shape, scale=0.3)) + (0.2 if t.ndim == 0 else 0.0)
            elif name.endswith("weight") or name in ("W_enc", "W_dec"):
                value = f32(*t.shape, scale=0.4)
            else:
                value = f32(*t.shape, scale=0.1)
            t.copy_(torch.from_numpy(np.asarray(value, dtype=np.float32)))


def patch_saelens():
    """SAELens's registry replaced by the test releases; its HTTP shape look-up by a local read."""
    import sae_lens.loading.pretrained_sae_loaders as loaders
    import sae_lens.loading.pretrained_saes_directory as directory
    import sae_lens.saes.sae as sae_module

    real = directory.get_pretrained_saes_directory
    real.cache_clear()
    path = HUB / "test_pretrained_saes.yaml"

    def test_directory():
        import yaml

        saved = directory.files
        directory.files = lambda _package: type("P", (), {"joinpath": lambda self, _n: path})()
        try:
            return real.__wrapped__()
        finally:
            directory.files = saved

    for module in (directory, loaders, sae_module):
        module.get_pretrained_saes_directory = test_directory

    def local_shapes(repo_id, filename):
        from safetensors import safe_open

        with safe_open(snapshot(repo_id) / filename, framework="np") as f:
            return {k: list(f.get_slice(k).get_shape()) for k in f.keys()}

    loaders.get_safetensors_tensor_shapes = local_shapes


def save_case(name, x, encode, recon, cfg):
    out = OUT / name
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "x.npy", x.astype(np.float32))
    np.save(out / "encode.npy", encode.astype(np.float32))
    np.save(out / "recon.npy", recon.astype(np.float32))
    (out / "cfg.json").write_text(json.dumps(cfg, indent=1, default=str))


def main():
    import yaml

    make_files()
    (HUB / "test_pretrained_saes.yaml").write_text(yaml.safe_dump(RELEASES, sort_keys=False))
    sys.path.insert(0, str(ROOT / "tools"))
    from make_registry import build_index

    index = build_index(RELEASES)
    (HUB / "registry.json").write_text(json.dumps(index, separators=(",", ":")) + "\n")

    patch_saelens()
    from sae_lens import SAE

    if OUT.exists():
        shutil.rmtree(OUT)
    for rel, value in RELEASES.items():
        if value["conversion_func"] == "sparsify":
            continue
        for entry in value["saes"]:
            sae = SAE.from_pretrained(rel, entry["id"])
            d_in = sae.cfg.d_in
            # The cases added after the others draw from their own generator, so theirs stay as they were.
            gen = np.random.default_rng(20) if value["conversion_func"] in ("goodfire", "deepseek_r1") else rng
            x = gen.standard_normal((N, d_in)).astype(np.float32)
            with torch.no_grad():
                xt = torch.from_numpy(x)
                if sae.cfg.reshape_activations == "hook_z":
                    # SAELens takes hook_z as [..., n_heads, d_head] and flattens the heads; the
                    # fixture keeps them concatenated, as saelab's attn.hook_z is.
                    xt = xt.reshape(N, 4, d_in // 4)
                encode, recon = sae.encode(xt).numpy(), sae(xt).reshape(N, d_in).numpy()
            active = (encode > 0).sum(1)
            assert active.min() > 0 and (encode == 0).any(), f"{rel}/{entry['id']}: a degenerate fixture ({active})"
            case = f"{rel}--{entry['id']}".replace("/", "_")
            save_case(case, x, encode, recon, sae.cfg.to_dict())
            print(f"{case}: d_in {d_in}, d_sae {sae.cfg.d_sae}, mean L0 {active.mean():.1f}")

    # The Llama Scope folder opened by itself: no registry factor, so the one its hyperparams.json
    # gives (√d_model / dataset_average_activation_norm.in) is folded in.
    from sae_lens.loading.pretrained_sae_loaders import llama_scope_sae_huggingface_loader

    repo, folder = RELEASES["test-llama-scope-lxr-8x"]["repo_id"], RELEASES["test-llama-scope-lxr-8x"]["saes"][0]["path"]
    cfg_dict, state, _ = llama_scope_sae_huggingface_loader(repo, folder, cfg_overrides={"dtype": "float32"})
    from sae_lens.loading.pretrained_sae_loaders import handle_config_defaulting

    cfg_dict = handle_config_defaulting(cfg_dict)
    sae = SAE.get_sae_class_for_architecture(cfg_dict["architecture"])(SAE.get_sae_config_class_for_architecture(cfg_dict["architecture"]).from_dict(cfg_dict))
    sae.load_state_dict(state)
    sae.fold_activation_norm_scaling_factor(math.sqrt(D_IN) / 37.5)
    x = rng.standard_normal((N, D_IN)).astype(np.float32)
    with torch.no_grad():
        xt = torch.from_numpy(x)
        save_case("llama-scope-folder", x, sae.encode(xt).numpy(), sae(xt).numpy(), sae.cfg.to_dict())

    # sparsify, by its own library.
    from sparsify import SparseCoder

    coder = SparseCoder.load_from_disk(snapshot("EleutherAI/sae-pythia-70m-deduped-32k") / "layers.3")
    x = rng.standard_normal((N, D_IN)).astype(np.float32)
    with torch.no_grad():
        xt = torch.from_numpy(x)
        enc = coder.encode(xt)
        dense = torch.zeros(N, D_SAE).scatter_(1, enc.top_indices, enc.top_acts)
        recon = coder.decode(enc.top_acts, enc.top_indices)
    save_case("test-sparsify-pythia--layers.3", x, dense.numpy(), recon.numpy(), {"k": coder.cfg.k, "d_in": D_IN, "d_sae": coder.num_latents})
    print("sparsify: from sparsify.SparseCoder")


if __name__ == "__main__":
    main()
