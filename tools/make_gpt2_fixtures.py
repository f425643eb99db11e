"""Golden fixtures for saelab's GPT-2 forward pass, made with Hugging Face `transformers`.

    .venv/bin/pip install transformers torch safetensors
    .venv/bin/python tools/make_gpt2_fixtures.py

Writes tests/fixtures/gpt2/<case>/ with a model folder in Hugging Face layout (`config.json`,
`model.safetensors`), `tokens.npy` (int64) and `expected.safetensors`: the logits and every
TransformerLens hook point the forward exposes, each `[n_tokens, d]` float32, captured from
`GPT2LMHeadModel` with forward hooks (so they are HF's own numbers, not a re-implementation):

  hook_embed, hook_pos_embed               wte(tokens), wpe(positions)
  blocks.L.hook_resid_pre                  the input of block L
  blocks.L.attn.hook_z                     the heads' outputs before c_proj, heads concatenated
  blocks.L.hook_attn_out                   attention's output (after c_proj)
  blocks.L.hook_resid_mid                  resid_pre + attn_out
  blocks.L.hook_mlp_out                    the MLP's output
  blocks.L.hook_resid_post                 the output of block L
  ln_final.hook_normalized                 ln_f's output (with its weight and bias)

Cases (small random weights, sizes that are multiples of nothing):
  tied_f32        save_pretrained layout: `transformer.` prefixes, lm_head tied to wte, float32
  bare_f16        GPT2Model-style names (no prefix, like the `gpt2` repo), weights stored in float16
  untied_bf16     a separate `lm_head.weight`, weights stored in bfloat16
Reference values are computed in float32 from the very weights stored (rounded to f16/bf16 first).
"""

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "gpt2"


def make(case, seed, dtype, prefix, tied):
    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=211, n_positions=40, n_embd=60, n_layer=3, n_head=5,
        activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        tie_word_embeddings=tied, layer_norm_epsilon=1e-5, bos_token_id=0, eos_token_id=0,
    )
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        # Larger than HF's init (std 0.02), and random LayerNorm parameters, so every term matters.
        for name, p in model.named_parameters():
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            else:
                p.copy_(0.15 * torch.randn_like(p))
        # Round the weights to the stored dtype, so the reference computes with what the file holds.
        for p in model.parameters():
            p.copy_(p.to(dtype).to(torch.float32))
    folder = OUT / case
    folder.mkdir(parents=True, exist_ok=True)
    state = {}
    for name, p in model.state_dict().items():
        if name == "lm_head.weight" and tied:
            continue
        if name.endswith(".attn.bias") or name.endswith(".attn.masked_bias"):
            continue
        key = name if prefix else name.removeprefix("transformer.")
        state[key] = p.detach().to(dtype).contiguous()
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    config = cfg.to_dict()
    config["architectures"] = ["GPT2LMHeadModel"]
    config.pop("transformers_version", None)
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    tokens = torch.tensor([(37 * i + 5 * seed) % cfg.vocab_size for i in range(23)], dtype=torch.long)
    tokens[0] = 0
    np.save(folder / "tokens.npy", tokens.numpy().astype(np.int64))

    captured = {}
    handles = []
    t = model.transformer
    handles.append(t.wte.register_forward_hook(lambda m, i, o: captured.__setitem__("hook_embed", o)))
    handles.append(t.wpe.register_forward_hook(lambda m, i, o: captured.__setitem__("hook_pos_embed", o)))
    for layer, block in enumerate(t.h):
        def pre(m, args, kwargs, layer=layer):
            x = args[0] if args else kwargs["hidden_states"]
            captured[f"blocks.{layer}.hook_resid_pre"] = x
        handles.append(block.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(block.attn.c_proj.register_forward_pre_hook(
            lambda m, args, layer=layer: captured.__setitem__(f"blocks.{layer}.attn.hook_z", args[0])))
        handles.append(block.attn.register_forward_hook(
            lambda m, i, o, layer=layer: captured.__setitem__(f"blocks.{layer}.hook_attn_out", o[0])))
        handles.append(block.mlp.register_forward_hook(
            lambda m, i, o, layer=layer: captured.__setitem__(f"blocks.{layer}.hook_mlp_out", o)))
        def post(m, i, o, layer=layer):
            captured[f"blocks.{layer}.hook_resid_post"] = o[0] if isinstance(o, tuple) else o
        handles.append(block.register_forward_hook(post))
    handles.append(t.ln_f.register_forward_hook(lambda m, i, o: captured.__setitem__("ln_final.hook_normalized", o)))
    with torch.no_grad():
        out = model(tokens[None, :])
    for h in handles:
        h.remove()
    expected = {"logits": out.logits[0]}
    for name, value in captured.items():
        v = value[0] if value.dim() == 3 else value
        expected[name] = v
    for layer in range(cfg.n_layer):
        expected[f"blocks.{layer}.hook_resid_mid"] = (
            expected[f"blocks.{layer}.hook_resid_pre"] + expected[f"blocks.{layer}.hook_attn_out"])
    expected = {k: v.detach().to(torch.float32).clone().contiguous() for k, v in expected.items()}
    save_file(expected, folder / "expected.safetensors")
    print(f"{case}: {len(state)} tensors, {len(expected)} expected arrays, logits {tuple(expected['logits'].shape)}")


def main():
    make("tied_f32", 1, torch.float32, prefix=True, tied=True)
    make("bare_f16", 2, torch.float16, prefix=False, tied=True)
    make("untied_bf16", 3, torch.bfloat16, prefix=True, tied=False)


if __name__ == "__main__":
    main()
