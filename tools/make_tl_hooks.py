#!/usr/bin/env python3
"""Writes what TransformerLens computes at every hook point of the random-weight models of
tests/fixtures/families/ (run tools/make_family_models.py first), as SAELens loads a model:
`HookedTransformer` built from the same Hugging Face weights with no weight processing
(`from_pretrained_no_processing`: no fold_ln, no centring), `use_hook_mlp_in` on.

For each model, `tl_hooks.safetensors`: `logits`, `hook_embed`, `hook_pos_embed` (learned
positions only), `ln_final.hook_normalized` and per layer `blocks.L.{hook_resid_pre, attn.hook_z
(heads flattened), hook_attn_out, hook_resid_mid (not for parallel blocks), hook_mlp_in,
ln2.hook_normalized, hook_mlp_out, hook_resid_post}`, each `[T, width]` — for Gemma 1
`tl_hooks_exact_gelu.safetensors`, because TransformerLens's google/gemma-2b branch computes the
exact GELU where transformers computes the tanh one (the script checks that the GELU is the only
difference). For gpt2 and llama3_scaled
also `tl_hooks_centered.safetensors`: the same with `center_writing_weights=True` (what SAELens's
registry asks for gpt2-small-res-jb) and `center_unembed=True`, and `tl_hooks_folded.safetensors`
with `fold_ln=True` alone.

The HookedTransformerConfig is built from the model's config.json as TransformerLens's
`convert_hf_model_config` does for the architecture (for Gemma, whose branches there are keyed
on the official names and sizes, the same keys with this model's sizes), and the weights go
through TransformerLens's own `convert_*_weights`.

    /work/.venv-hf/bin/python tools/make_tl_hooks.py

Made with transformer-lens 3.9.0 (SAELens 6.54 needs < 4), transformers 5.24.0, torch 2.15.0.
"""

import json
import tempfile
from pathlib import Path

import torch
import transformers as tf
from safetensors.torch import save_file
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.loading_from_pretrained import convert_hf_model_config
from transformer_lens.pretrained import weight_conversions as wc

FAMILIES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "families"
TOKENS = [3, 17, 42, 99, 5, 64, 23, 8, 77, 12, 50, 1, 31, 88]
CONVERT = {
    "gpt2": wc.convert_gpt2_weights,
    "gpt_neox": wc.convert_neox_weights,
    "llama": wc.convert_llama_weights,
    "mistral": wc.convert_mistral_weights,
    "gemma": wc.convert_gemma_weights,
    "qwen2": wc.convert_qwen2_weights,
    "qwen3": wc.convert_qwen3_weights,
    "gemma2": wc.convert_gemma_weights,
    "gemma3_text": wc.convert_gemma_weights,
}


def gemma_1_cfg(hf) -> dict:
    """transformer_lens's google/gemma-2b branch, with hf's sizes. Its act_fn is the exact GELU,
    where transformers' Gemma uses the tanh approximation (GemmaConfig.hidden_activation)."""
    return {
        "d_model": hf.hidden_size,
        "d_head": hf.head_dim,
        "n_heads": hf.num_attention_heads,
        "d_mlp": hf.intermediate_size,
        "n_layers": hf.num_hidden_layers,
        "n_ctx": hf.max_position_embeddings,
        "eps": hf.rms_norm_eps,
        "d_vocab": hf.vocab_size,
        "act_fn": "gelu",
        "normalization_type": "RMS",
        "rotary_base": hf.rope_parameters["rope_theta"],
        "rotary_dim": hf.head_dim,
        "positional_embedding_type": "rotary",
        "use_attn_scale": True,
        "n_key_value_heads": hf.num_key_value_heads,
        "gated_mlp": True,
        "final_rms": True,
        "original_architecture": "GemmaForCausalLM",
    }


def gemma_cfg(hf) -> dict:
    """transformer_lens's google/gemma-2-2b and google/gemma-3-270m branches, with hf's sizes."""
    if hf.model_type == "gemma":
        return gemma_1_cfg(hf)
    types = ["local" if t == "sliding_attention" else "global" for t in hf.layer_types]
    cfg = {
        "d_model": hf.hidden_size,
        "d_head": hf.head_dim,
        "n_heads": hf.num_attention_heads,
        "d_mlp": hf.intermediate_size,
        "n_layers": hf.num_hidden_layers,
        "n_ctx": hf.max_position_embeddings,
        "eps": hf.rms_norm_eps,
        "d_vocab": hf.vocab_size,
        "act_fn": hf.hidden_activation,
        "normalization_type": "RMS",
        "positional_embedding_type": "rotary",
        "use_attn_scale": True,
        # TransformerLens divides by attn_scale; its 27B branch sets √query_pre_attn_scalar.
        "attn_scale": hf.query_pre_attn_scalar**0.5,
        "n_key_value_heads": hf.num_key_value_heads,
        "window_size": hf.sliding_window,
        "use_local_attn": True,
        "attn_types": types,
        "gated_mlp": True,
        "final_rms": True,
        "use_normalization_before_and_after": True,
    }
    rope = hf.rope_parameters
    if hf.model_type == "gemma2":
        cfg.update(rotary_base=rope["rope_theta"], attn_scores_soft_cap=hf.attn_logit_softcapping,
                   output_logits_soft_cap=hf.final_logit_softcapping, original_architecture="Gemma2ForCausalLM")
    else:
        cfg.update(rotary_base=rope["full_attention"]["rope_theta"], rotary_base_local=rope["sliding_attention"]["rope_theta"],
                   use_qk_norm=True, original_architecture="Gemma3ForCausalLM")
        scaling = rope["full_attention"]
        if scaling.get("rope_type") == "linear":
            # Gemma 3 4B's branch: linear scaling on the global layers only.
            cfg["rotary_scaling_factor"] = scaling["factor"]
    return cfg


def tl_cfg(folder: Path, hf, architecture: str) -> HookedTransformerConfig:
    if hf.model_type.startswith("gemma"):
        cfg = gemma_cfg(hf)
    else:
        # convert_hf_model_config picks some architectures by the path's name ("llama" in it):
        # read the config from a folder named for nothing.
        with tempfile.TemporaryDirectory() as tmp:
            config = json.loads((folder / "config.json").read_text())
            config.setdefault("architectures", [architecture])
            # TransformerLens's GPT-2 branch reads n_ctx, which transformers 5 no longer writes.
            config.setdefault("n_ctx", config.get("n_positions"))
            (Path(tmp) / "config.json").write_text(json.dumps(config))
            cfg = convert_hf_model_config(tmp)
    cfg.pop("tokenizer_name", None)
    return HookedTransformerConfig(**cfg)


def hooks_of(model: HookedTransformer, parallel: bool) -> list[str]:
    names = ["hook_embed"] + (["hook_pos_embed"] if model.cfg.positional_embedding_type == "standard" else [])
    for layer in range(model.cfg.n_layers):
        sites = ["hook_resid_pre", "attn.hook_z", "hook_attn_out"] + ([] if parallel else ["hook_resid_mid"])
        sites += ["hook_mlp_in", "ln2.hook_normalized", "hook_mlp_out", "hook_resid_post"]
        names += [f"blocks.{layer}.{s}" for s in sites]
    return names + ["ln_final.hook_normalized"]


def run(folder: Path, hf_model, hf, centred: bool, folded: bool = False, act_fn: str | None = None) -> dict:
    cfg = tl_cfg(folder, hf, type(hf_model).__name__)
    if act_fn:
        cfg.act_fn = act_fn
    model = HookedTransformer(cfg, move_to_device=False)
    state = CONVERT[hf.model_type](hf_model, cfg)
    model.load_and_process_state_dict(state, fold_ln=folded, center_writing_weights=centred, center_unembed=centred,
                                      fold_value_biases=False, refactor_factored_attn_matrices=False)
    model.set_use_hook_mlp_in(True)
    model.eval()
    with torch.no_grad():
        logits, cache = model.run_with_cache(torch.tensor([TOKENS]))
    out = {"logits": logits[0].contiguous()}
    for name in hooks_of(model, bool(cfg.parallel_attn_mlp)):
        value = cache[name][0]
        out[name] = value.reshape(value.shape[0], -1).clone()
    return out


def check_against_transformers(folder: Path, tl: dict) -> float:
    """TransformerLens's logits against transformers' on the same weights (outputs.safetensors)."""
    from safetensors.torch import load_file

    return (tl["logits"] - load_file(folder / "outputs.safetensors")["logits"]).abs().max().item()


def main():
    made = 0
    for folder in sorted(FAMILIES.iterdir()):
        if not (folder / "model.safetensors").exists():
            continue
        hf = tf.AutoConfig.from_pretrained(folder)
        if hf.model_type not in CONVERT:
            continue
        hf._attn_implementation = "eager"
        hf_model = tf.AutoModelForCausalLM.from_pretrained(folder, config=hf, torch_dtype=torch.float32).eval()
        hooks = run(folder, hf_model, hf, False)
        if hf.model_type == "gemma":
            # TransformerLens's Gemma 1 computes the exact GELU where transformers' uses the tanh
            # one: its hooks are kept apart, and the GELU is shown to be the only difference.
            tanh = run(folder, hf_model, hf, False, act_fn="gelu_pytorch_tanh")
            assert check_against_transformers(folder, tanh) < 1e-4, folder.name
            print(f"{folder.name}: TransformerLens's exact GELU moves the logits by {check_against_transformers(folder, hooks):.2e}")
            save_file(hooks, str(folder / "tl_hooks_exact_gelu.safetensors"))
            made += 1
            continue
        gap = check_against_transformers(folder, hooks)
        if gap > 1e-4:
            # TransformerLens computes another model from these weights (its Llama conversion
            # drops attention_bias/mlp_bias): no golden hooks from it; say so.
            print(f"{folder.name}: TransformerLens's logits differ from transformers' by {gap:.2e}, skipped")
            (folder / "tl_hooks.safetensors").unlink(missing_ok=True)
            continue
        save_file(hooks, str(folder / "tl_hooks.safetensors"))
        if folder.name in ("gpt2", "llama3_scaled"):
            save_file(run(folder, hf_model, hf, True), str(folder / "tl_hooks_centered.safetensors"))
            save_file(run(folder, hf_model, hf, False, folded=True), str(folder / "tl_hooks_folded.safetensors"))
        made += 1
    print(f"wrote {made} models' hooks")


if __name__ == "__main__":
    main()
