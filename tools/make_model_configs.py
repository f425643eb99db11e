#!/usr/bin/env python3
"""Writes tests/fixtures/families/: a Hugging Face config.json for every model family and variant
saelab describes, and, beside each, what transformers itself reads from it (expected.json), so that
`tests/families.rs` checks saelab's reading of the file against transformers' own.

Two styles of file are written per family where they differ: the one transformers 5.x saves
(`rope_parameters`, `layer_types`) and the one the Hub's checkpoints carry, written by older
versions (`rope_theta`, `rope_scaling`, `rope_local_base_freq`, `sliding_window_pattern`). The
second kind is written by hand below, with the keys as those files have them, and read back through
transformers so that expected.json is transformers' reading, not ours. Configs saelab must refuse
(mixture of experts, a vision tower, an unknown activation or RoPE type) are written too, with the
field the refusal must name.

    python3 -m venv .venv && .venv/bin/pip install transformers torch
    .venv/bin/python tools/make_model_configs.py          # all of them (the folder is remade)
    .venv/bin/python tools/make_model_configs.py NAME...  # only these (the others are left as they are)

Made with transformers 5.24.0.
"""

import json
import shutil
import sys
from pathlib import Path

import transformers as tf

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "families"

ONLY = set(sys.argv[1:])

SMALL = dict(hidden_size=48, intermediate_size=80, num_hidden_layers=4, num_attention_heads=6, vocab_size=101)


def rope_of(cfg, layer_type=None):
    """transformers' RoPE parameters for a layer type, as a plain dict (None: no rotary)."""
    params = getattr(cfg, "rope_parameters", None)
    if params is None:
        return None
    if layer_type is not None and layer_type in params:
        params = params[layer_type]
    keep = ["rope_type", "rope_theta", "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings", "partial_rotary_factor"]
    return {k: params[k] for k in keep if k in params and params[k] is not None}


def expected(cfg):
    """What transformers reads from the config, in the names tests/families.rs compares."""
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    n_heads = text.num_attention_heads
    d_model = text.hidden_size
    head_dim = getattr(text, "head_dim", None) or d_model // n_heads
    layer_types = getattr(text, "layer_types", None)
    out = {
        "model_type": cfg.model_type,
        "vocab_size": text.vocab_size,
        "d_model": d_model,
        "n_layers": text.num_hidden_layers,
        "n_heads": n_heads,
        "n_kv_heads": getattr(text, "num_key_value_heads", None) or n_heads,
        "d_head": head_dim,
        "d_mlp": getattr(text, "intermediate_size", None) or getattr(text, "n_inner", None) or 4 * d_model,
        "tied_embeddings": bool(text.tie_word_embeddings),
        "layer_types": layer_types,
        "sliding_window": getattr(text, "sliding_window", None),
    }
    if layer_types:
        out["rope"] = {t: rope_of(text, t) for t in sorted(set(layer_types))}
    else:
        out["rope"] = {"full_attention": rope_of(text)}
    if layer_types is None and text.model_type == "mistral" and text.sliding_window:
        # MistralAttention passes config.sliding_window to every layer (modeling_mistral.py), one RoPE.
        out["layer_types"] = ["sliding_attention"] * text.num_hidden_layers
    for key in ["rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon", "query_pre_attn_scalar", "attn_logit_softcapping",
                "final_logit_softcapping", "use_parallel_residual", "attention_bias", "mlp_bias", "hidden_act",
                "hidden_activation", "activation_function", "rotary_pct"]:
        if hasattr(text, key):
            out[key] = getattr(text, key)
    return out


def write(name, config, refuse=None):
    if ONLY and name not in ONLY:
        return
    folder = OUT / name
    if ONLY and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if refuse:
        (folder / "refused.txt").write_text(refuse + "\n")
    else:
        read = tf.AutoConfig.from_pretrained(folder)
        (folder / "expected.json").write_text(json.dumps(expected(read), indent=2, sort_keys=True) + "\n")


def saved(cls, **kw):
    """A config as transformers 5.x saves it."""
    return json.loads(cls(**kw).to_json_string())


def main():
    if OUT.exists() and not ONLY:
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True, exist_ok=True)

    # --- as transformers 5.x saves them ---
    write("gpt2", saved(tf.GPT2Config, n_embd=48, n_layer=3, n_head=6, vocab_size=101, n_positions=64))
    write("gpt_neox_parallel", saved(tf.GPTNeoXConfig, **SMALL, rotary_pct=0.25, use_parallel_residual=True, max_position_embeddings=64))
    write("gpt_neox_sequential", saved(tf.GPTNeoXConfig, **SMALL, rotary_pct=0.5, use_parallel_residual=False, tie_word_embeddings=False))
    write("llama_gqa", saved(tf.LlamaConfig, **SMALL, num_key_value_heads=2, attention_bias=True, mlp_bias=True))
    write("llama3_scaled", saved(tf.LlamaConfig, **SMALL, num_key_value_heads=3, max_position_embeddings=256,
                                 rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                               "original_max_position_embeddings": 64, "rope_theta": 500000.0}))
    write("mistral", saved(tf.MistralConfig, **SMALL, num_key_value_heads=2, sliding_window=8))
    write("qwen2", saved(tf.Qwen2Config, **SMALL, num_key_value_heads=2))
    write("qwen3", saved(tf.Qwen3Config, **SMALL, num_key_value_heads=2, head_dim=12))
    write("gemma", saved(tf.GemmaConfig, **SMALL, num_key_value_heads=1, head_dim=16))
    write("gemma2", saved(tf.Gemma2Config, **SMALL, num_key_value_heads=3, head_dim=16, sliding_window=8, query_pre_attn_scalar=16,
                          attn_logit_softcapping=50.0, final_logit_softcapping=30.0))
    write("gemma3", saved(tf.Gemma3TextConfig, hidden_size=48, intermediate_size=80, num_hidden_layers=7, num_attention_heads=4,
                          num_key_value_heads=2, head_dim=16, vocab_size=101, sliding_window=8, query_pre_attn_scalar=16))

    # --- as the Hub's checkpoints carry them (older transformers) ---
    write("llama3_hub", {
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 48, "intermediate_size": 80,
        "num_hidden_layers": 2, "num_attention_heads": 6, "num_key_value_heads": 2, "vocab_size": 101, "hidden_act": "silu",
        "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": True,
        "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 64,
                         "rope_type": "llama3"},
        "torch_dtype": "bfloat16", "bos_token_id": 100, "eos_token_id": 100})
    # gemma-2b's config.json: the legacy hidden_act "gelu" (the tanh GELU), multi-query attention.
    write("gemma_hub", {
        "model_type": "gemma", "architectures": ["GemmaForCausalLM"], "hidden_size": 48, "intermediate_size": 80,
        "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16, "vocab_size": 101,
        "hidden_act": "gelu", "max_position_embeddings": 8192, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "torch_dtype": "bfloat16", "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0})
    write("gemma2_hub", {
        "model_type": "gemma2", "architectures": ["Gemma2ForCausalLM"], "hidden_size": 48, "intermediate_size": 80,
        "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 101,
        "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "query_pre_attn_scalar": 16, "sliding_window": 8,
        "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0, "cache_implementation": "hybrid",
        "torch_dtype": "float32", "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0})
    write("gemma3_hub", {
        "model_type": "gemma3_text", "architectures": ["Gemma3ForCausalLM"], "hidden_size": 48, "intermediate_size": 80,
        "num_hidden_layers": 7, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16, "vocab_size": 101,
        "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "rope_scaling": None, "query_pre_attn_scalar": 16,
        "sliding_window": 8, "sliding_window_pattern": 6, "attn_logit_softcapping": None, "final_logit_softcapping": None,
        "torch_dtype": "bfloat16", "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0})
    # gemma-3-4b and larger: linear RoPE scaling on the global layers.
    write("gemma3_hub_scaled", {
        "model_type": "gemma3_text", "hidden_size": 48, "intermediate_size": 80, "num_hidden_layers": 6,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 101,
        "hidden_activation": "gelu_pytorch_tanh", "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "query_pre_attn_scalar": 16, "sliding_window": 8,
        "sliding_window_pattern": 3, "rms_norm_eps": 1e-6})
    write("pythia_hub", {
        "model_type": "gpt_neox", "architectures": ["GPTNeoXForCausalLM"], "hidden_size": 64, "intermediate_size": 256,
        "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 101, "hidden_act": "gelu", "max_position_embeddings": 64,
        "layer_norm_eps": 1e-5, "rotary_emb_base": 10000, "rotary_pct": 0.25, "use_parallel_residual": True,
        "tie_word_embeddings": False, "torch_dtype": "float16", "bos_token_id": 0, "eos_token_id": 0})

    # --- refused, with the field the message must name ---
    write("refuse_mixtral", saved(tf.MixtralConfig, **SMALL, num_key_value_heads=2, num_local_experts=4), refuse="model_type")
    write("refuse_qwen2_moe", saved(tf.Qwen2MoeConfig, **SMALL, num_key_value_heads=2), refuse="model_type")
    # Gemma 3 from 4B up is multimodal (Gemma3ForConditionalGeneration): its text model runs. A tiny
    # one as transformers 5.x saves it (a model is made for it), and one shaped as the Hub's 4B
    # config.json is, whose sparse text_config transformers completes with Gemma3TextConfig's
    # defaults (read only); another family's vision tower is refused.
    tiny_vision = dict(hidden_size=32, intermediate_size=40, num_hidden_layers=1, num_attention_heads=2, image_size=28, patch_size=14)
    write("gemma3_multimodal", saved(tf.Gemma3Config, text_config=dict(
        hidden_size=48, intermediate_size=80, num_hidden_layers=7, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        vocab_size=101, sliding_window=8, query_pre_attn_scalar=16, rope_scaling={"rope_type": "linear", "factor": 8.0}),
        vision_config=tiny_vision, mm_tokens_per_image=4, image_token_index=100, boi_token_index=98, eoi_token_index=99))
    write("gemma3_multimodal_hub", {
        "architectures": ["Gemma3ForConditionalGeneration"], "boi_token_index": 255999, "eoi_token_index": 256000,
        "eos_token_id": [1, 106], "image_token_index": 262144, "initializer_range": 0.02, "mm_tokens_per_image": 256,
        "model_type": "gemma3",
        "text_config": {"hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text", "num_hidden_layers": 34,
                        "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024},
        "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0",
        "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304, "model_type": "siglip_vision_model",
                          "num_attention_heads": 16, "num_hidden_layers": 27, "patch_size": 14, "vision_use_head": False}})
    write("refuse_llava_vision", saved(tf.LlavaConfig), refuse="vision_config")
    bad_act = saved(tf.LlamaConfig, **SMALL, num_key_value_heads=2)
    bad_act["hidden_act"] = "swiglu_oai"
    write("refuse_activation", bad_act, refuse="hidden_act")
    yarn = saved(tf.Qwen3Config, **SMALL, num_key_value_heads=2, rope_scaling={"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e6,
                                                                                "original_max_position_embeddings": 32})
    write("refuse_yarn", yarn, refuse="rope_type")
    print(f"wrote {sum(1 for _ in OUT.iterdir())} configs to {OUT}")


if __name__ == "__main__":
    main()
