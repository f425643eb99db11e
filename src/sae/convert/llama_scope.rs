//! Llama Scope (`llama_scope_sae_huggingface_loader`: `hyperparams.json` +
//! `checkpoints/final.safetensors`) and Llama Scope R1 Distill
//! (`llama_scope_r1_distill_sae_huggingface_loader`: `config.json` + `sae_weights.safetensors`),
//! both by OpenMOSS: `encoder.weight [d_sae, d_in]` and `decoder.weight [d_in, d_sae]` (nn.Linear
//! layout, transposed to SAELens's), trained on inputs scaled to norm √d_model
//! (`normalize_activations: expected_average_only_in`; the factor is folded in by
//! [`super::convert`]).

use serde_json::{json, Map, Value};

use super::{config_err, matrix_shape, object, tensor, transpose, Converted, SaeSource};
use crate::formats::safetensors::TensorFile;
use crate::formats::FormatError;

const MODEL: &str = "meta-llama/Llama-3.1-8B";

fn number(cfg: &Map<String, Value>, path: &str, key: &str) -> Result<f64, FormatError> {
    cfg.get(key).and_then(Value::as_f64).ok_or_else(|| config_err(path, format!("missing the number '{key}'")))
}

fn string(cfg: &Map<String, Value>, path: &str, key: &str) -> Result<String, FormatError> {
    cfg.get(key).and_then(Value::as_str).map(str::to_string).ok_or_else(|| config_err(path, format!("missing the string '{key}'")))
}

/// `encoder.weight`, `decoder.weight` transposed, and both biases; returns `(d_in, d_sae)`.
fn linear_weights(file: &TensorFile, path: &str, out: &mut Converted) -> Result<(usize, usize), FormatError> {
    let (shape, encoder) = tensor(file, path, "encoder.weight")?;
    let (d_sae, d_in) = matrix_shape(&shape, path, "encoder.weight")?;
    out.insert("W_enc", vec![d_in, d_sae], transpose(&encoder, d_sae, d_in));
    let (shape, decoder) = tensor(file, path, "decoder.weight")?;
    let (rows, cols) = matrix_shape(&shape, path, "decoder.weight")?;
    out.insert("W_dec", vec![cols, rows], transpose(&decoder, rows, cols));
    for (from, to) in [("encoder.bias", "b_enc"), ("decoder.bias", "b_dec")] {
        let (shape, values) = tensor(file, path, from)?;
        out.insert(to, shape, values);
    }
    Ok((d_in, d_sae))
}

fn cfg(d_in: usize, d_sae: usize, hook_name: String) -> Map<String, Value> {
    object(json!({
        "architecture": "jumprelu",
        "d_in": d_in,
        "d_sae": d_sae,
        "dtype": "float32",
        "model_name": MODEL,
        "hook_name": hook_name,
        "hook_head_index": null,
        "activation_fn": "relu",
        "finetuning_scaling_factor": false,
        "sae_lens_training_version": null,
        "prepend_bos": true,
        "dataset_path": "cerebras/SlimPajama-627B",
        "context_size": 1024,
        "dataset_trust_remote_code": true,
        "apply_b_dec_to_input": false,
        "normalize_activations": "expected_average_only_in",
    }))
}

pub(super) fn convert(source: &SaeSource<'_>) -> Result<Converted, FormatError> {
    let hyper_path = source.path("hyperparams.json");
    let hyper = source.json(&hyper_path)?;
    let d_model = number(&hyper, &hyper_path, "d_model")?;
    let norm_in = hyper
        .get("dataset_average_activation_norm")
        .and_then(|n| n.get("in"))
        .and_then(Value::as_f64)
        .ok_or_else(|| config_err(&hyper_path, "missing 'dataset_average_activation_norm.in'"))?;
    // The loader scales the one JumpReLU threshold by the factor that folding puts into W_enc.
    let norm_scaling_factor = d_model.sqrt() / norm_in;
    let threshold = number(&hyper, &hyper_path, "jump_relu_threshold")? * norm_scaling_factor;

    let path = source.path("checkpoints/final.safetensors");
    let file = source.safetensors(&path)?;
    let mut out = Converted::default();
    let (d_in, d_sae) = linear_weights(&file, &path, &mut out)?;
    out.insert("threshold", vec![d_sae], vec![threshold as f32; d_sae]);
    out.cfg = cfg(d_in, d_sae, string(&hyper, &hyper_path, "hook_point_in")?);
    out.cfg.insert("jump_relu_threshold".into(), json!(threshold));
    // Used only when the registry gives no factor (a folder opened by itself).
    out.cfg.insert("saelab_norm_scaling_factor".into(), json!(norm_scaling_factor));
    Ok(out)
}

pub(super) fn convert_r1_distill(source: &SaeSource<'_>) -> Result<Converted, FormatError> {
    let config_path = source.path("config.json");
    let config = source.json(&config_path)?;
    let path = source.path(crate::sae::files::WEIGHTS_FILE);
    let file = source.safetensors(&path)?;
    let mut out = Converted::default();
    let (d_in, d_sae) = linear_weights(&file, &path, &mut out)?;
    let (shape, log_threshold) = tensor(&file, &path, "log_jumprelu_threshold")?;
    out.insert("threshold", shape, log_threshold.into_iter().map(f32::exp).collect());
    out.cfg = cfg(d_in, d_sae, string(&config, &config_path, "hook_point_in")?);
    Ok(out)
}
