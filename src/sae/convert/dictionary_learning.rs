//! dictionary_learning (Marks et al.'s library, SAEBench's SAEs; `dictionary_learning_sae_huggingface_loader_1`):
//! per SAE a `config.json` (the trainer's settings: `trainer.dict_class`, `layer`, `k`,
//! `lm_name`; `buffer.ctx_len`) and `ae.pt`, a `torch.save`d state dict read by
//! [`crate::formats::pytorch`] without running its pickle. Keys are renamed as the loader does:
//! `W_enc` or `encoder.weight`ᵀ, `W_dec` or `decoder.weight`ᵀ, `b_dec` from `b_dec`, `bias` or
//! `decoder_bias`, `b_enc` from `encoder.bias` or `b_enc`, the gated SAE's `mag_bias`,
//! `gate_bias`, `r_mag`, and a threshold (one value for the whole dictionary in BatchTopK's
//! files, broadcast to every latent) for the JumpReLU classes. The hook is always
//! `blocks.{layer}.hook_resid_post`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{config_err, object, torch_matrix, torch_tensor, transpose, Converted, SaeSource};
use crate::formats::pytorch::TorchTensor;
use crate::formats::FormatError;

pub(super) const WEIGHTS: &str = "ae.pt";

fn section<'c>(config: &'c Map<String, Value>, path: &str, key: &str) -> Result<&'c Map<String, Value>, FormatError> {
    config.get(key).and_then(Value::as_object).ok_or_else(|| config_err(path, format!("missing the object '{key}'")))
}

fn integer(map: &Map<String, Value>, path: &str, key: &str) -> Result<u64, FormatError> {
    map.get(key).and_then(Value::as_u64).ok_or_else(|| config_err(path, format!("missing the integer '{key}'")))
}

/// `W_enc` (`[d_in, d_sae]`) as stored, or `encoder.weight` (`[d_sae, d_in]`, nn.Linear's) transposed.
fn oriented(
    sd: &BTreeMap<String, TorchTensor<'_>>,
    path: &str,
    saelens: &str,
    linear: &str,
) -> Result<(Vec<usize>, Vec<f32>), FormatError> {
    if sd.contains_key(saelens) {
        return torch_tensor(sd, path, saelens);
    }
    let (rows, cols, values) = torch_matrix(sd, path, linear)?;
    Ok((vec![cols, rows], transpose(&values, rows, cols)))
}

pub(super) fn convert(source: &SaeSource<'_>) -> Result<Converted, FormatError> {
    let config_path = source.path("config.json");
    let config = source.json(&config_path)?;
    let trainer = section(&config, &config_path, "trainer")?;
    let buffer = section(&config, &config_path, "buffer")?;
    let dict_class =
        trainer.get("dict_class").and_then(Value::as_str).ok_or_else(|| config_err(&config_path, "missing 'trainer.dict_class'"))?;
    let layer = integer(trainer, &config_path, "layer")?;
    let lm_name = trainer.get("lm_name").and_then(Value::as_str).ok_or_else(|| config_err(&config_path, "missing 'trainer.lm_name'"))?;

    let topk = dict_class == "AutoEncoderTopK";
    let kwargs = if topk { json!({ "k": integer(trainer, &config_path, "k")? }) } else { json!({}) };
    let (architecture, apply_b_dec_to_input) = match dict_class {
        "GatedAutoEncoder" => ("gated", true),
        "MatryoshkaBatchTopKSAE" | "BatchTopKSAE" => ("jumprelu", true),
        // dictionary_learning's JumpReluAutoEncoder does not subtract b_dec before encoding.
        "JumpReluAutoEncoder" => ("jumprelu", false),
        _ => ("standard", true),
    };

    let path = source.path(WEIGHTS);
    let sd = crate::formats::pytorch::read_state_dict(&path, source.required(&path)?)?;
    let mut out = Converted::default();
    let (w_enc_shape, w_enc) = oriented(&sd, &path, "W_enc", "encoder.weight")?;
    let (d_in, d_sae) = (w_enc_shape[0], w_enc_shape[1]);
    out.insert("W_enc", w_enc_shape, w_enc);
    let (shape, values) = oriented(&sd, &path, "W_dec", "decoder.weight")?;
    out.insert("W_dec", shape, values);
    let b_dec = ["b_dec", "bias", "decoder_bias"]
        .into_iter()
        .find(|k| sd.contains_key(*k))
        .ok_or_else(|| FormatError::Safetensors { file: path.clone(), msg: "no decoder bias (b_dec, bias or decoder_bias)".into() })?;
    // The loader's later assignments win: `b_enc` over `encoder.bias`.
    let renames = [
        (b_dec, "b_dec"),
        ("encoder.bias", "b_enc"),
        ("b_enc", "b_enc"),
        ("mag_bias", "b_mag"),
        ("gate_bias", "b_gate"),
        ("r_mag", "r_mag"),
    ];
    for (from, to) in renames {
        if sd.contains_key(from) {
            let (shape, values) = torch_tensor(&sd, &path, from)?;
            out.insert(to, shape, values);
        }
    }
    // AutoEncoderTopK saves a threshold too, but encodes by per-token top-k.
    if architecture == "jumprelu" && sd.contains_key("threshold") {
        let (shape, values) = torch_tensor(&sd, &path, "threshold")?;
        let threshold = match (shape.as_slice(), values.as_slice()) {
            ([], [t]) => vec![*t; d_sae],
            _ => values,
        };
        out.insert("threshold", vec![threshold.len()], threshold);
    }

    // The trainer's sizes must be the tensors' (SAELens builds the SAE from them, then loads).
    for (key, have) in [("activation_dim", d_in), ("dict_size", d_sae)] {
        if let Some(want) = trainer.get(key).and_then(Value::as_u64) {
            if want != have as u64 {
                return Err(config_err(&config_path, format!("trainer.{key} is {want} but {WEIGHTS}'s weights have {have}")));
            }
        }
    }
    out.cfg = object(json!({
        "architecture": architecture,
        "d_in": d_in,
        "d_sae": d_sae,
        "dtype": "float32",
        "model_name": lm_name.rsplit('/').next().unwrap_or(lm_name),
        "hook_name": format!("blocks.{layer}.hook_resid_post"),
        "hook_head_index": null,
        "activation_fn": if topk { "topk" } else { "relu" },
        "activation_fn_kwargs": kwargs,
        "apply_b_dec_to_input": apply_b_dec_to_input,
        "finetuning_scaling_factor": false,
        "sae_lens_training_version": null,
        "prepend_bos": true,
        "dataset_path": "monology/pile-uncopyrighted",
        "context_size": buffer.get("ctx_len").cloned().unwrap_or(Value::Null),
        "normalize_activations": "none",
        "neuronpedia_id": null,
        "dataset_trust_remote_code": true,
    }));
    Ok(out)
}
