"""saelab's SAE registry index, made from SAELens's own `pretrained_saes.yaml`.

    python3 -m venv .venv && .venv/bin/pip install sae-lens
    .venv/bin/python tools/make_registry.py            # writes www/registry.json

The index keeps, per release, what `SAE.from_pretrained(release, sae_id)` reads from the yaml
(`sae_lens/loading/pretrained_saes_directory.py`: repo_id, model, conversion_func,
config_overrides, and per SAE its path, l0, variance_explained, neuronpedia id and
norm_scaling_factor), the release's links, and two things saelab needs to decide whether it can run
the model: the Hugging Face repository TransformerLens loads for the model name
(`transformer_lens.loading_from_pretrained.get_official_model_name`) and that model's
`config.json` `model_type` (from the table below: the Hub is not reachable from here, so the
model types are written down once, by hand, from the models' own config.json files).

Each SAE is a compact row: [id, path, l0, variance_explained, neuronpedia, norm_scaling_factor],
with `null` where the yaml has nothing (SAELens's defaults, l0 0 and variance explained 1, are not
written in). The row's path is `null` when it equals the id.
"""

import json
import re
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path

import yaml

OUT = Path(__file__).resolve().parent.parent / "www" / "registry.json"

# model_type of each model's Hugging Face config.json, by the official name's pattern, first match
# wins. Gemma 3 from 4B up is the multimodal `gemma3` (a vision tower around `gemma3_text`).
MODEL_TYPES = [
    (r"^(openai-community/)?gpt2", "gpt2"),
    (r"^EleutherAI/pythia", "gpt_neox"),
    (r"^openai/gpt-oss", "gpt_oss"),
    (r"^meta-llama/", "llama"),
    (r"^deepseek-ai/DeepSeek-R1-Distill-Llama", "llama"),
    (r"^mistralai/Mistral", "mistral"),
    (r"^Qwen/Qwen2\.5", "qwen2"),
    (r"^Qwen/Qwen3\.5-\d+B-A\d+B", "qwen3_5_moe"),
    (r"^Qwen/Qwen3\.5", "qwen3_5"),
    (r"^Qwen/Qwen3-\d+B-A\d+B", "qwen3_moe"),
    (r"^Qwen/Qwen3", "qwen3"),
    (r"^google/gemma-2b", "gemma"),
    (r"^google/gemma-2-", "gemma2"),
    (r"^google/gemma-3-(270m|1b)", "gemma3_text"),
    (r"^google/gemma-3-", "gemma3"),
]


def official_name(model: str) -> str:
    from transformer_lens.loading_from_pretrained import get_official_model_name

    try:
        return get_official_model_name(model)
    except ValueError:
        # Names TransformerLens does not list (Gemma 3, Qwen 3.5, ...) are Hub ids already.
        return model


def model_type(hf_model: str) -> str | None:
    for pattern, kind in MODEL_TYPES:
        if re.search(pattern, hf_model):
            return kind
    return None


def sae_row(sae: dict) -> list:
    path = sae["path"]
    path = str(path) if isinstance(path, int) else path
    return [
        sae["id"],
        None if path == sae["id"] else path,
        sae.get("l0"),
        sae.get("variance_explained"),
        sae.get("neuronpedia"),
        sae.get("norm_scaling_factor"),
    ]


def build_index(data: dict) -> dict:
    releases = []
    for release, value in data.items():
        hf_model = official_name(value["model"])
        releases.append(
            {
                "release": release,
                "model": value["model"],
                "hf_model": hf_model,
                "model_type": model_type(hf_model),
                "repo": value["repo_id"],
                "conversion": value.get("conversion_func") or "sae_lens",
                "overrides": value.get("config_overrides") or {},
                "links": value.get("links") or {},
                "saes": [sae_row(s) for s in value["saes"]],
            }
        )
    return {
        "source": f"sae-lens {version('sae-lens')} pretrained_saes.yaml",
        "columns": ["id", "path", "l0", "variance_explained", "neuronpedia", "norm_scaling_factor"],
        "releases": releases,
    }


def main() -> None:
    with files("sae_lens").joinpath("pretrained_saes.yaml").open() as f:
        data = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    index = build_index(data)
    OUT.write_text(json.dumps(index, separators=(",", ":")) + "\n")
    n = sum(len(r["saes"]) for r in index["releases"])
    print(f"{OUT}: {len(index['releases'])} releases, {n} SAEs, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
