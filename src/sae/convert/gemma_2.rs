//! Gemma Scope (`gemma_2_sae_huggingface_loader`): one `params.npz` per SAE (`w_enc [d_in, d_sae]`,
//! `w_dec [d_sae, d_in]`, `b_enc`, `b_dec`, `threshold`), JumpReLU, with the model and hook read
//! from the repository's name (`google/gemma-scope-2b-pt-res`) and the layer from the folder's
//! (`layer_12/width_16k/average_l0_82`; `embedding/...` is `hook_embed`).

use serde_json::json;

use super::{config_err, matrix_shape, number_after, object, Converted, SaeSource};
use crate::formats::npy::read_npz;
use crate::formats::FormatError;

/// The loader's `model_params`, in its order (the first key the repository name contains wins).
pub(super) const MODELS: &[(&str, &str)] = &[
    ("2b-it", "gemma-2-2b-it"),
    ("9b-it", "gemma-2-9b-it"),
    ("27b-it", "gemma-2-27b-it"),
    ("2b", "gemma-2-2b"),
    ("9b", "gemma-2-9b"),
    ("27b", "gemma-2-27b"),
];

pub(super) fn convert(source: &SaeSource<'_>) -> Result<Converted, FormatError> {
    let folder = source.folder;
    let embedding = folder.contains("embedding");
    let layer = match number_after(folder, "layer_") {
        Some(l) => l,
        None if embedding => 0,
        None => return Err(config_err(folder, "a Gemma Scope folder name gives the layer (layer_N), and this one has none")),
    };
    let repo = source.repo_or("a Gemma Scope SAE's model and hook")?;
    let model_name = MODELS
        .iter()
        .find(|(key, _)| repo.contains(key))
        .map(|(_, name)| *name)
        .ok_or_else(|| config_err(repo, "no Gemma 2 model size (2b, 9b, 27b) in the repository name"))?;
    // The loader's order of tests, on the repository's name.
    let hook_name = if repo.contains("res") && !embedding {
        format!("blocks.{layer}.hook_resid_post")
    } else if repo.contains("res") {
        "hook_embed".to_string()
    } else if repo.contains("mlp") {
        format!("blocks.{layer}.hook_mlp_out")
    } else if repo.contains("att") {
        format!("blocks.{layer}.attn.hook_z")
    } else {
        return Err(config_err(repo, "the repository name says no hook (res, mlp or att)"));
    };

    let path = source.path("params.npz");
    let arrays = read_npz(&path, source.required(&path)?)?;
    let (mut d_in, mut d_sae) = (0, 0);
    let mut out = Converted::default();
    for (key, array) in arrays {
        let name = match key.strip_prefix("w_") {
            Some(rest) => format!("W_{rest}"),
            None => key,
        };
        if name == "W_enc" {
            (d_in, d_sae) = matrix_shape(&array.shape, &path, "w_enc")?;
        }
        out.insert(&name, array.shape, array.data);
    }
    if d_in == 0 {
        return Err(FormatError::Npy { file: path, msg: "missing the array 'w_enc'".into() });
    }
    // A scaling factor of ones is dropped; any other makes SAELens refuse (finetuning_scaling_factor
    // is false for Gemma Scope).
    if let Some((_, factor)) = out.tensors.remove("scaling_factor") {
        if factor.iter().any(|&v| v != 1.0) {
            return Err(FormatError::Npy { file: path, msg: "a scaling_factor other than ones (SAELens refuses it too)".into() });
        }
    }
    // Embedding SAEs were trained on the embedding scaled by √d_model (Gemma's embedding scale);
    // SAELens folds it back so they read hook_embed as TransformerLens gives it.
    if embedding {
        let root = (d_in as f64).sqrt() as f32;
        if let Some((_, w_enc)) = out.tensors.get_mut("W_enc") {
            w_enc.iter_mut().for_each(|v| *v /= root);
        }
        if let Some((_, w_dec)) = out.tensors.get_mut("W_dec") {
            w_dec.iter_mut().for_each(|v| *v *= root);
        }
    }
    out.cfg = object(json!({
        "architecture": "jumprelu",
        "d_in": d_in,
        "d_sae": d_sae,
        "dtype": "float32",
        "model_name": model_name,
        "hook_name": hook_name,
        "hook_head_index": null,
        "activation_fn": "relu",
        "finetuning_scaling_factor": false,
        "sae_lens_training_version": null,
        "prepend_bos": true,
        "dataset_path": "monology/pile-uncopyrighted",
        "context_size": 1024,
        "dataset_trust_remote_code": true,
        "apply_b_dec_to_input": false,
        "normalize_activations": null,
    }));
    Ok(out)
}
