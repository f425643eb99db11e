//! mwhanna's transcoders for Qwen 3 (`mwhanna_transcoder_huggingface_loader`): one
//! `layer_L.safetensors` per layer at the repository's root (`W_enc [d_sae, d_in]`, transposed to
//! SAELens's layout, `W_dec [d_sae, d_out]`, `b_enc`, `b_dec`), a ReLU transcoder from the MLP's
//! input (`blocks.L.mlp.hook_in`: after the norm and its weight, TransformerLens's `ln2.hook_out`)
//! to its output (`blocks.L.hook_mlp_out`). The sizes and the context come from the wandb run's
//! `wandb-config.yaml` (some repositories spell it `wanb-config.yaml`), the model from `config.yaml`
//! (`model_name`) or, where there is none (the 14B ones), from the repository's name (`qwen3-14b`).

use serde_json::json;

use super::{config_err, join, matrix_shape, object, tensor, transpose, Converted, SaeSource, Wanted};
use crate::formats::FormatError;

/// The wandb configs the loader tries, in its order, and the training config.
pub(super) const WANDB_CONFIGS: [&str; 2] = ["wandb-config.yaml", "wanb-config.yaml"];
const CONFIG: &str = "config.yaml";

/// The repository's root, where the configs sit beside the layers' files.
fn root(file: &str) -> &str {
    file.trim_matches('/').rsplit_once('/').map_or("", |(parent, _)| parent)
}

pub(super) fn wanted(file: &str) -> Vec<Wanted> {
    let file = file.trim_matches('/');
    let mut wanted = vec![Wanted { path: file.to_string(), required: true }];
    wanted.extend(WANDB_CONFIGS.iter().chain([&CONFIG]).map(|name| Wanted { path: join(root(file), name), required: false }));
    wanted
}

/// Whether `name` is a layer's file of this format: `layer_L.safetensors`.
pub(super) fn is_layer_file(name: &str) -> bool {
    name.strip_prefix("layer_")
        .and_then(|rest| rest.strip_suffix(".safetensors"))
        .is_some_and(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
}

/// The scalar a YAML mapping gives its top-level `key` — `key: value`, or wandb's `key:` with an
/// indented `value: …` under it — unquoted; `Ok(None)` when the key is not there. Only this subset
/// of YAML (what wandb and circuit-tracer write) is read; anything else under the key is an error
/// naming it.
pub(crate) fn top_level_scalar(file: &str, text: &str, key: &str) -> Result<Option<String>, FormatError> {
    let unquote = |v: &str| {
        let v = v.trim();
        let quoted = v.len() >= 2 && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')));
        if quoted {
            v[1..v.len() - 1].to_string()
        } else {
            v.to_string()
        }
    };
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix(key).and_then(|r| r.strip_prefix(':')) else { continue };
        let inline = rest.split(" #").next().unwrap_or("").trim();
        if !inline.is_empty() {
            return Ok(Some(unquote(inline)));
        }
        // wandb's layout: the key's block is the indented lines below it; its `value:` is at the
        // block's first indent.
        let mut indent = None;
        for line in lines.by_ref() {
            if line.trim().is_empty() {
                continue;
            }
            let depth = line.len() - line.trim_start().len();
            if depth == 0 {
                break;
            }
            let first = *indent.get_or_insert(depth);
            if depth == first {
                if let Some(value) = line.trim_start().strip_prefix("value:") {
                    let value = value.split(" #").next().unwrap_or("").trim();
                    if value.is_empty() {
                        return Err(config_err(file, format!("'{key}.value' is not a plain value")));
                    }
                    return Ok(Some(unquote(value)));
                }
            }
        }
        return Err(config_err(file, format!("'{key}' has no value")));
    }
    Ok(None)
}

fn wandb_usize(file: &str, text: &str, key: &str) -> Result<usize, FormatError> {
    let value = top_level_scalar(file, text, key)?.ok_or_else(|| config_err(file, format!("missing '{key}'")))?;
    value
        .parse()
        .ok()
        .filter(|&n: &usize| n > 0)
        .ok_or_else(|| config_err(file, format!("'{key}' must be a positive integer, found '{value}'")))
}

/// `Qwen/Qwen3-{N}B` from a repository named `…qwen3-{N}b…`, as the loader's regex reads it.
fn model_from_repo(repo: &str) -> Option<String> {
    let at = repo.find("qwen3-")? + "qwen3-".len();
    let size: String = repo[at..].chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let rest = &repo[at + size.len()..];
    (rest.starts_with('b') && size.chars().next().is_some_and(|c| c.is_ascii_digit()) && !size.ends_with('.'))
        .then(|| format!("Qwen/Qwen3-{size}B"))
}

pub(super) fn convert(source: &SaeSource<'_>) -> Result<Converted, FormatError> {
    let file = source.folder.trim_matches('/');
    let name = file.rsplit('/').next().unwrap_or(file);
    if !is_layer_file(name) {
        return Err(config_err(file, "an mwhanna transcoder's file is named layer_L.safetensors, and this one is not"));
    }
    let layer: usize = name["layer_".len()..name.len() - ".safetensors".len()]
        .parse()
        .map_err(|_| config_err(file, "the layer number in the file's name is too large"))?;
    let (wandb_path, wandb) =
        WANDB_CONFIGS.iter().map(|n| join(root(file), n)).find_map(|path| source.optional(&path).map(|bytes| (path, bytes))).ok_or_else(
            || FormatError::Io {
                file: join(root(file), WANDB_CONFIGS[0]),
                msg: "missing (nor wanb-config.yaml): the transcoder's sizes come from its wandb config".into(),
            },
        )?;
    let wandb = std::str::from_utf8(wandb).map_err(|_| config_err(&wandb_path, "not UTF-8 text"))?;
    let d_model = wandb_usize(&wandb_path, wandb, "d_model")?;
    let d_feature = wandb_usize(&wandb_path, wandb, "d_feature")?;
    let context = wandb_usize(&wandb_path, wandb, "batch_size")?;
    let config_path = join(root(file), CONFIG);
    let model_name = match source.optional(&config_path) {
        Some(bytes) => {
            let text = std::str::from_utf8(bytes).map_err(|_| config_err(&config_path, "not UTF-8 text"))?;
            top_level_scalar(&config_path, text, "model_name")?.ok_or_else(|| config_err(&config_path, "missing 'model_name'"))?
        }
        None => {
            let repo = source.repo_or("without config.yaml, an mwhanna transcoder's model")?;
            model_from_repo(repo)
                .ok_or_else(|| config_err(repo, "without config.yaml, the model comes from a repository name with qwen3-Nb in it"))?
        }
    };

    let tensors = source.safetensors(file)?;
    let mut out = Converted::default();
    let (shape, w_enc) = tensor(&tensors, file, "W_enc")?;
    let (rows, cols) = matrix_shape(&shape, file, "W_enc")?;
    out.insert("W_enc", vec![cols, rows], transpose(&w_enc, rows, cols));
    for name in ["W_dec", "b_enc", "b_dec"] {
        let (shape, values) = tensor(&tensors, file, name)?;
        out.insert(name, shape, values);
    }
    // The loader's sizes are the wandb run's; the tensors must agree with them.
    if (cols, rows) != (d_model, d_feature) {
        return Err(config_err(
            file,
            format!("'W_enc' is [{rows}, {cols}] but {wandb_path} says d_feature={d_feature}, d_model={d_model} (expected [{d_feature}, {d_model}])"),
        ));
    }
    out.cfg = object(json!({
        "architecture": "transcoder",
        "d_in": d_model,
        "d_out": d_model,
        "d_sae": d_feature,
        "dtype": "float32",
        "activation_fn": "relu",
        "normalize_activations": "none",
        "model_name": model_name,
        "hook_name": format!("blocks.{layer}.mlp.hook_in"),
        "hook_name_out": format!("blocks.{layer}.hook_mlp_out"),
        "dataset_path": "monology/pile-uncopyrighted",
        "context_size": context,
        "apply_b_dec_to_input": false,
        "model_from_pretrained_kwargs": { "fold_ln": false },
    }));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wandb_and_plain_yaml_scalars() {
        let wandb = "_wandb:\n  value:\n    cli_version: 0.19.8\n    d_model: 7\nd_model:\n  desc: null\n  value: 2560\nd_feature:\n  value: 163840 # a comment\nname: 'x'\n";
        let get = |key: &str| top_level_scalar("w", wandb, key).unwrap();
        assert_eq!(get("d_model").as_deref(), Some("2560"), "the top-level key, not _wandb's nested one");
        assert_eq!(get("d_feature").as_deref(), Some("163840"));
        assert_eq!(get("name").as_deref(), Some("x"));
        assert_eq!(get("batch_size"), None);
        assert_eq!(top_level_scalar("c", "model_name: \"Qwen/Qwen3-4B\"\n", "model_name").unwrap().as_deref(), Some("Qwen/Qwen3-4B"));
        // Truncated, and a key whose value is a mapping.
        let e = top_level_scalar("w", "d_model:\n", "d_model").unwrap_err().to_string();
        assert!(e.contains("'d_model' has no value"), "{e}");
        let e = top_level_scalar("w", "d_model:\n  value:\n    a: 1\n", "d_model").unwrap_err().to_string();
        assert!(e.contains("not a plain value"), "{e}");
        let e = wandb_usize("w", "d_model:\n  value: -3\n", "d_model").unwrap_err().to_string();
        assert!(e.contains("positive integer, found '-3'"), "{e}");
        assert!(wandb_usize("w", "d_model:\n  value: 99999999999999999999999\n", "d_model").is_err());
    }

    #[test]
    fn reads_the_model_from_the_repository_name_and_layer_files_by_name() {
        assert_eq!(model_from_repo("mwhanna/qwen3-14b-transcoders").as_deref(), Some("Qwen/Qwen3-14B"));
        assert_eq!(model_from_repo("mwhanna/qwen3-1.7b-transcoders-lowl0").as_deref(), Some("Qwen/Qwen3-1.7B"));
        assert_eq!(model_from_repo("mwhanna/qwen3-transcoders"), None);
        assert!(is_layer_file("layer_12.safetensors") && !is_layer_file("layer_.safetensors") && !is_layer_file("layer_1.pt"));
    }
}
