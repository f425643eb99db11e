//! Kissane, Krzyzanowski et al.'s attention-output SAEs on GPT-2 small
//! (`connor_rob_hook_z_huggingface_loader`): `NAME.pt`, a `torch.save`d state dict already in
//! SAELens's names and layout (`W_enc [d_in, d_sae]`, `W_dec`, `b_enc`, `b_dec`), and beside it
//! `NAME_cfg.json` (`act_name` the hook, `act_size`, `dict_size`). A standard SAE on
//! `blocks.L.attn.hook_z` with the heads concatenated (`reshape_activations: hook_z`).

use serde_json::{json, Value};

use super::{config_err, object, torch_tensor, Converted, SaeSource};
use crate::formats::FormatError;

/// The config file beside `NAME.pt`: the loader's `folder_name.split(".pt")[0] + "_cfg.json"`.
pub(super) fn config_file(weights: &str) -> String {
    format!("{}_cfg.json", weights.split(".pt").next().unwrap_or(weights))
}

pub(super) fn convert(source: &SaeSource<'_>) -> Result<Converted, FormatError> {
    let weights = source.folder;
    let config_path = config_file(weights);
    let config = source.json(&config_path)?;
    let hook = config.get("act_name").and_then(Value::as_str).ok_or_else(|| config_err(&config_path, "missing 'act_name' (the hook)"))?;

    let sd = crate::formats::pytorch::read_state_dict(weights, source.required(weights)?)?;
    let mut out = Converted::default();
    for name in ["W_enc", "W_dec", "b_enc", "b_dec"] {
        let (shape, values) = torch_tensor(&sd, weights, name)?;
        out.insert(name, shape, values);
    }
    let (d_in, d_sae) = match out.tensors["W_enc"].0.as_slice() {
        [d_in, d_sae] => (*d_in, *d_sae),
        other => return Err(config_err(weights, format!("'W_enc' has shape {other:?}, expected a matrix"))),
    };
    for (key, have) in [("act_size", d_in), ("dict_size", d_sae)] {
        if let Some(want) = config.get(key).and_then(Value::as_u64) {
            if want != have as u64 {
                return Err(config_err(&config_path, format!("{key} is {want} but the weights have {have}")));
            }
        }
    }
    out.cfg = object(json!({
        "architecture": "standard",
        "d_in": d_in,
        "d_sae": d_sae,
        "dtype": "float32",
        "model_name": "gpt2-small",
        "hook_name": hook,
        "hook_head_index": null,
        "activation_fn": "relu",
        "apply_b_dec_to_input": true,
        "finetuning_scaling_factor": false,
        "sae_lens_training_version": null,
        "prepend_bos": true,
        "dataset_path": "Skylion007/openwebtext",
        "context_size": 128,
        "normalize_activations": "none",
        "dataset_trust_remote_code": true,
        "reshape_activations": "hook_z",
    }));
    Ok(out)
}
