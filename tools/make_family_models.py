#!/usr/bin/env python3
"""Writes a tiny random-weight model beside every config of tests/fixtures/families/ (run
tools/make_model_configs.py first), with what `transformers` computes on a fixed token sequence:
`model.safetensors` (f32, as `save_pretrained` writes it: a tied unembedding is not stored twice)
(for gemma3_hub also `sharded/`, the same weights as `save_pretrained` shards them) and
`outputs.safetensors` with the logits `[T, vocab]` and the residual stream entering each layer
and the final norm's output (`hidden.{i}` = transformers' `hidden_states[i]`, `[T, d_model]`).

Every parameter is drawn from N(0, 0.2²) (norm weights included, so that they matter), with eager
attention (soft-capping needs it). The sequence is longer than the sliding windows of the configs
that have one.

    .venv/bin/python tools/make_family_models.py          # every folder
    .venv/bin/python tools/make_family_models.py NAME...  # only these

`gemma3_multimodal` is saved by `save_pretrained` (Gemma3ForConditionalGeneration's checkpoint
layout: `language_model.model.…`, the vision tower beside it); `gemma3_multimodal_hub` is a config
only (a 4B model).

Made with transformers 5.24.0 and torch 2.15.0.
"""

import shutil
import sys
import tempfile
from pathlib import Path

import torch
import transformers as tf
from safetensors.torch import save_file

FAMILIES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "families"
TOKENS = [3, 17, 42, 99, 5, 64, 23, 8, 77, 12, 50, 1, 31, 88]
CONFIG_ONLY = {"gemma3_multimodal_hub"}


def main():
    made = 0
    for folder in sorted(FAMILIES.iterdir()):
        if (folder / "refused.txt").exists() or folder.name in CONFIG_ONLY or (sys.argv[1:] and folder.name not in sys.argv[1:]):
            continue
        cfg = tf.AutoConfig.from_pretrained(folder)
        cfg._attn_implementation = "eager"
        torch.manual_seed(sum(map(ord, folder.name)))
        model = tf.AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float32).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.2)
            out = model(torch.tensor([TOKENS]), output_hidden_states=True)
        # As save_pretrained writes it: a tied unembedding is the embedding, stored once.
        if folder.name == "gemma3_multimodal":
            with tempfile.TemporaryDirectory() as tmp:
                model.save_pretrained(tmp)
                shutil.copy(Path(tmp) / "model.safetensors", folder / "model.safetensors")
        else:
            state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
            if model.config.get_text_config().tie_word_embeddings:
                state.pop("lm_head.weight")
            save_file(state, str(folder / "model.safetensors"))
        tensors = {"logits": out.logits[0].contiguous(), "tokens": torch.tensor(TOKENS, dtype=torch.float32)}
        for i, h in enumerate(out.hidden_states):
            tensors[f"hidden.{i}"] = h[0].contiguous()
        save_file(tensors, str(folder / "outputs.safetensors"))
        if folder.name == "gemma3_hub":
            # One checkpoint sharded as save_pretrained shards it: index + model-0000N-of-0000M.
            with tempfile.TemporaryDirectory() as tmp:
                model.save_pretrained(tmp, max_shard_size="150KB")
                (folder / "sharded").mkdir(exist_ok=True)
                for f in Path(tmp).iterdir():
                    if f.name.startswith("model"):
                        shutil.copy(f, folder / "sharded" / f.name)
        made += 1
    print(f"wrote {made} models")


if __name__ == "__main__":
    main()
