//! Gemma Scope 2 (`gemma_3_sae_huggingface_loader`): per SAE a `config.json` (inferred from the
//! repository and folder names when absent, as `_infer_gemma_3_raw_cfg_dict` does) and
//! `params.safetensors` (`w_enc [d_in, d_sae]`, `w_dec [d_sae, d_in]`, `b_enc`, `b_dec`,
//! `threshold`), JumpReLU; the hook comes from the folder's name (`resid_post/layer_12_width_16k_l0_small`).

use serde_json::{json, Value};

use super::{config_err, matrix_shape, number_after, object, tensor, Converted, SaeSource};
use crate::formats::FormatError;

pub(super) fn convert(source: &SaeSource<'_>) -> Result<Converted, FormatError> {
    let folder = source.folder;
    let layer = number_after(folder, "layer_")
        .ok_or_else(|| config_err(folder, "a Gemma Scope 2 folder name gives the layer (layer_N), and this one has none"))?;
    let (hook_name, hf_hook_in) = if folder.contains("resid_post") {
        (format!("blocks.{layer}.hook_resid_post"), format!("model.layers.{layer}.output"))
    } else if folder.contains("attn_out") {
        (format!("blocks.{layer}.attn.hook_z"), format!("model.layers.{layer}.self_attn.o_proj.input"))
    } else if folder.contains("mlp_out") {
        (format!("blocks.{layer}.hook_mlp_out"), format!("model.layers.{layer}.post_feedforward_layernorm.output"))
    } else {
        return Err(config_err(folder, "the folder name says no hook (resid_post, attn_out or mlp_out)"));
    };

    let config_path = source.path("config.json");
    let raw = match source.optional(&config_path) {
        Some(_) => source.json(&config_path)?,
        None => {
            let repo = source.repo_or("without config.json, a Gemma Scope 2 SAE's model")?;
            object(
                json!({ "architecture": "jump_relu", "model_name": repo.replace("gemma-scope-2", "gemma-3"), "hf_hook_point_in": hf_hook_in }),
            )
        }
    };
    match raw.get("architecture").and_then(Value::as_str) {
        Some("jump_relu") => {}
        other => return Err(config_err(&config_path, format!("architecture {other:?}: Gemma Scope 2 SAEs are jump_relu"))),
    }
    let mut model_name =
        raw.get("model_name").and_then(Value::as_str).ok_or_else(|| config_err(&config_path, "missing 'model_name'"))?.to_string();
    if !model_name.contains("google") {
        model_name = format!("google/{model_name}");
    }
    model_name = model_name.replace("-v3", "-3");
    if model_name.contains("270m") {
        // The loader's note: the 270m model on the Hub has no -pt suffix.
        model_name = model_name.replace("-pt", "");
    }

    let path = source.path("params.safetensors");
    let file = source.safetensors(&path)?;
    let (w_enc_shape, w_enc) = tensor(&file, &path, "w_enc")?;
    let (d_in, d_sae) = matrix_shape(&w_enc_shape, &path, "w_enc")?;
    let mut out = Converted::default();
    out.insert("W_enc", w_enc_shape, w_enc);
    for (from, to) in [("w_dec", "W_dec"), ("b_enc", "b_enc"), ("b_dec", "b_dec"), ("threshold", "threshold")] {
        let (shape, values) = tensor(&file, &path, from)?;
        out.insert(to, shape, values);
    }
    out.cfg = object(json!({
        "architecture": "jumprelu",
        "d_in": d_in,
        "d_sae": d_sae,
        "dtype": "float32",
        "model_name": model_name,
        "hook_name": hook_name,
        "hook_head_index": null,
        "finetuning_scaling_factor": false,
        "sae_lens_training_version": null,
        "prepend_bos": true,
        "dataset_path": "monology/pile-uncopyrighted",
        "context_size": 1024,
        "apply_b_dec_to_input": false,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "hf_hook_name": raw.get("hf_hook_point_in").cloned().unwrap_or(Value::Null),
    }));
    Ok(out)
}
