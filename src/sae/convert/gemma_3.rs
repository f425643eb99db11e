//! Gemma Scope 2 (`gemma_3_sae_huggingface_loader`): per SAE a `config.json` (inferred from the
//! repository and folder names when absent, as `_infer_gemma_3_raw_cfg_dict` does) and
//! `params.safetensors` (`w_enc [d_in, d_sae]`, `w_dec [d_sae, d_out]`, `b_enc`, `b_dec`,
//! `threshold`), JumpReLU; the hook comes from the folder's name (`resid_post/layer_12_width_16k_l0_small`).
//! Transcoders (`transcoder/layer_9_width_16k_l0_small[_affine]`) read the MLP's normalised input
//! (`pre_feedforward_layernorm.output`) and write its output (`post_feedforward_layernorm.output`);
//! the affine ones add a skip connection (`affine_skip_connection [d_in, d_out]`, transposed to
//! SAELens's `W_skip`). The cross-layer transcoders (`clt`) are refused by [`super::Conversion`].

use serde_json::{json, Value};

use super::{config_err, matrix_shape, number_after, object, tensor, transpose, Converted, SaeSource};
use crate::formats::FormatError;

pub(super) fn convert(source: &SaeSource<'_>) -> Result<Converted, FormatError> {
    let folder = source.folder;
    let layer = number_after(folder, "layer_")
        .ok_or_else(|| config_err(folder, "a Gemma Scope 2 folder name gives the layer (layer_N), and this one has none"))?;
    let transcoder = folder.contains("transcoder") || folder.contains("clt");
    // The loader's order of tests: a transcoder folder may also name resid_post etc.
    let (hook_name, hf_hook_in) = if transcoder {
        (format!("blocks.{layer}.hook_mlp_in"), format!("model.layers.{layer}.pre_feedforward_layernorm.output"))
    } else if folder.contains("resid_post") {
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
            let mut raw = object(
                json!({ "architecture": "jump_relu", "model_name": repo.replace("gemma-scope-2", "gemma-3"), "hf_hook_point_in": hf_hook_in }),
            );
            if transcoder {
                raw.insert("affine_connection".into(), json!(folder.contains("affine")));
                raw.insert("hf_hook_point_out".into(), json!(format!("model.layers.{layer}.post_feedforward_layernorm.output")));
            }
            raw
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
    let affine = transcoder && raw.get("affine_connection").and_then(Value::as_bool).unwrap_or(false);
    if file.tensors.contains_key("affine_skip_connection") {
        // Stored [d_in, d_out]; SAELens's W_skip is [d_out, d_in].
        let (shape, values) = tensor(&file, &path, "affine_skip_connection")?;
        let (rows, cols) = matrix_shape(&shape, &path, "affine_skip_connection")?;
        out.insert("W_skip", vec![cols, rows], transpose(&values, rows, cols));
    }
    let architecture = match (transcoder, affine) {
        (false, _) => "jumprelu",
        (true, false) => "jumprelu_transcoder",
        (true, true) => "jumprelu_skip_transcoder",
    };
    out.cfg = object(json!({
        "architecture": architecture,
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
    if transcoder {
        let d_out = out.tensors["W_dec"].0.last().copied().unwrap_or(0);
        out.cfg.insert("hook_name_out".into(), json!(format!("blocks.{layer}.hook_mlp_out")));
        out.cfg.insert("hf_hook_name_out".into(), raw.get("hf_hook_point_out").cloned().unwrap_or(Value::Null));
        out.cfg.insert("d_out".into(), json!(d_out));
    }
    Ok(out)
}
