//! Gemma Scope's transcoders (`gemma_2_transcoder_huggingface_loader`): one `params.npz` per
//! transcoder (`w_enc [d_in, d_sae]`, `w_dec [d_sae, d_out]`, `b_enc`, `b_dec`, `threshold`; the
//! loader also accepts `wenc`/`w_e` and the like, case-insensitively), JumpReLU, from
//! `blocks.L.ln2.hook_normalized` (the MLP's norm before its weight, as TransformerLens hooks it)
//! to `blocks.L.hook_mlp_out`. The model comes from the repository's name
//! (`google/gemma-scope-2b-pt-transcoders`), the layer from the folder's or else the repository's.

use serde_json::json;

use super::gemma_2::MODELS;
use super::{config_err, matrix_shape, number_after, object, Converted, SaeSource};
use crate::formats::npy::read_npz;
use crate::formats::FormatError;

/// The loader's key spellings, lowercased, and SAELens's names.
const NAMES: [(&[&str], &str); 5] = [
    (&["w_enc", "wenc", "w_e"], "W_enc"),
    (&["w_dec", "wdec", "w_d"], "W_dec"),
    (&["b_enc", "benc", "b_e"], "b_enc"),
    (&["b_dec", "bdec", "b_d"], "b_dec"),
    (&["threshold"], "threshold"),
];

pub(super) fn convert(source: &SaeSource<'_>) -> Result<Converted, FormatError> {
    let folder = source.folder;
    let repo = source.repo_or("a Gemma Scope transcoder's model")?;
    let layer = number_after(folder, "layer_").or_else(|| number_after(repo, "layer_")).ok_or_else(|| {
        config_err(folder, "a Gemma Scope transcoder's folder (or repository) name gives the layer (layer_N), and this one has none")
    })?;
    let model_name = MODELS
        .iter()
        .find(|(key, _)| repo.contains(key))
        .map(|(_, name)| *name)
        .ok_or_else(|| config_err(repo, "no Gemma 2 model size (2b, 9b, 27b) in the repository name"))?;

    let path = source.path("params.npz");
    let mut out = Converted::default();
    for (key, array) in read_npz(&path, source.required(&path)?)? {
        // Arrays of other names are left out, as the loader leaves them.
        if let Some((_, name)) = NAMES.iter().find(|(spellings, _)| spellings.contains(&key.to_lowercase().as_str())) {
            out.insert(name, array.shape, array.data);
        }
    }
    let (d_in, d_sae) = match out.tensors.get("W_enc") {
        Some((shape, _)) => matrix_shape(shape, &path, "w_enc")?,
        None => return Err(FormatError::Npy { file: path, msg: "missing the array 'w_enc'".into() }),
    };
    let d_out = out.tensors.get("W_dec").and_then(|(shape, _)| shape.last().copied()).unwrap_or(0);
    out.cfg = object(json!({
        "architecture": "jumprelu_transcoder",
        "d_in": d_in,
        "d_out": d_out,
        "d_sae": d_sae,
        "dtype": "float32",
        "activation_fn": "relu",
        "normalize_activations": "none",
        "model_name": model_name,
        "hook_name": format!("blocks.{layer}.ln2.hook_normalized"),
        "hook_name_out": format!("blocks.{layer}.hook_mlp_out"),
        "hook_head_index": null,
        "hook_head_index_out": null,
        "prepend_bos": true,
        "dataset_path": "monology/pile-uncopyrighted",
        "context_size": 1024,
        "apply_b_dec_to_input": false,
    }));
    Ok(out)
}
