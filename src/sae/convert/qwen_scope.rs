//! Qwen Scope (`qwen_scope_sae_huggingface_loader`): one `layerN.sae.pt` per layer, a
//! `torch.save`d dict with `W_enc [d_sae, d_in]`, `W_dec [d_in, d_sae]` (both transposed to
//! SAELens's layout), `b_enc`, `b_dec`; TopK at `blocks.N.hook_resid_post`, `b_dec` not
//! subtracted from the input. The model and k come from the repository's name
//! (`Qwen/SAE-Res-{model}-W{width}K-L0_{k}`), the layer from the file's; the sizes from the tensors.

use serde_json::json;

use super::{config_err, number_after, object, torch_matrix, torch_tensor, transpose, Converted, SaeSource};
use crate::formats::FormatError;

/// `(model, k)` from `Qwen/SAE-Res-{model}-W{N}K-L0_{k}` (`_parse_qwen_scope_repo_id`).
fn parse_repo(repo: &str) -> Option<(&str, usize)> {
    let rest = &repo[repo.find("SAE-Res-")? + "SAE-Res-".len()..];
    let (model, tail) = rest.rsplit_once("-W")?;
    let (width, k) = tail.split_once("K-L0_")?;
    let k_digits: String = k.chars().take_while(char::is_ascii_digit).collect();
    (!width.is_empty() && width.chars().all(|c| c.is_ascii_digit())).then_some(())?;
    Some((model, k_digits.parse().ok()?))
}

pub(super) fn convert(source: &SaeSource<'_>) -> Result<Converted, FormatError> {
    let file = source.folder;
    let layer = number_after(file, "layer")
        .filter(|_| file.ends_with(".sae.pt"))
        .ok_or_else(|| config_err(file, "a Qwen Scope file is named layerN.sae.pt, and this one is not"))?;
    let repo = source.repo_or("a Qwen Scope SAE's model and k")?;
    let (model, k) = parse_repo(repo).ok_or_else(|| config_err(repo, "not a Qwen Scope repository name (Qwen/SAE-Res-MODEL-WnK-L0_k)"))?;

    let sd = crate::formats::pytorch::read_state_dict(file, source.required(file)?)?;
    let mut out = Converted::default();
    let (d_sae, d_in, w_enc) = torch_matrix(&sd, file, "W_enc")?;
    out.insert("W_enc", vec![d_in, d_sae], transpose(&w_enc, d_sae, d_in));
    let (rows, cols, w_dec) = torch_matrix(&sd, file, "W_dec")?;
    out.insert("W_dec", vec![cols, rows], transpose(&w_dec, rows, cols));
    for name in ["b_enc", "b_dec"] {
        let (shape, values) = torch_tensor(&sd, file, name)?;
        out.insert(name, shape, values);
    }
    out.cfg = object(json!({
        "architecture": "topk",
        "activation_fn": "topk",
        "activation_fn_kwargs": { "k": k },
        "d_in": d_in,
        "d_sae": d_sae,
        "dtype": "float32",
        "context_size": 1024,
        "model_name": format!("Qwen/{model}"),
        "hook_name": format!("blocks.{layer}.hook_resid_post"),
        "hf_hook_name": format!("model.layers.{layer}"),
        "hook_head_index": null,
        "prepend_bos": true,
        "dataset_path": null,
        "sae_lens_training_version": null,
        "normalize_activations": "none",
        "apply_b_dec_to_input": false,
        "finetuning_scaling_factor": false,
    }));
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_model_and_k_from_the_repository_name() {
        assert_eq!(super::parse_repo("Qwen/SAE-Res-Qwen3-1.7B-Base-W32K-L0_50"), Some(("Qwen3-1.7B-Base", 50)));
        assert_eq!(super::parse_repo("Qwen/SAE-Res-Qwen3.5-27B-W80K-L0_100"), Some(("Qwen3.5-27B", 100)));
        assert_eq!(super::parse_repo("Qwen/SAE-Res-Qwen3-8B-Base-WK-L0_50"), None);
        assert_eq!(super::parse_repo("google/gemma-scope-2b-pt-res"), None);
    }
}
