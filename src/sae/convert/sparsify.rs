//! EleutherAI sparsify (`sparsify_huggingface_loader`; the format's own library is pip
//! `eai-sparsify`, `SparseCoder`): per SAE `cfg.json` (sparsify's own keys, not SAELens's, under
//! SAELens's file name) and `sae.safetensors` (`encoder.weight [num_latents, d_in]`,
//! `encoder.bias`, `W_dec [num_latents, d_in]`, `b_dec`); the training run's `config.json` beside
//! the SAE folders names the model. Top-k of `relu(encoder(x − b_dec))`, decoded as `acts · W_dec + b_dec`.
//!
//! Where SAELens 6.54's loader and sparsify disagree this follows sparsify, as its `SparseCoder`
//! computes: `W_dec` is already `[num_latents, d_in]` (SAELens transposes it, which fails on every
//! non-square SAE), and `b_dec` is subtracted from the input whenever the coder is not a transcoder
//! (SAELens ties that to `normalize_decoder`, a training option).

use serde_json::{json, Value};

use super::{config_err, matrix_shape, number_after, object, tensor, transpose, Converted, SaeSource};
use crate::formats::FormatError;

pub(super) const WEIGHTS: &str = "sae.safetensors";

pub(super) fn convert(source: &SaeSource<'_>) -> Result<Converted, FormatError> {
    let cfg_path = source.path(crate::sae::files::CFG_FILE);
    let cfg = source.json(&cfg_path)?;
    let flag = |key: &str| cfg.get(key).and_then(Value::as_bool).unwrap_or(false);
    let activation = cfg.get("activation").and_then(Value::as_str).unwrap_or("topk");
    if activation != "topk" {
        return Err(config_err(&cfg_path, format!("sparsify activation '{activation}' is not supported (topk is)")));
    }
    if flag("transcode") || flag("skip_connection") {
        return Err(config_err(&cfg_path, "sparsify transcoders and skip connections are not supported yet"));
    }
    let k = cfg.get("k").and_then(Value::as_u64).ok_or_else(|| config_err(&cfg_path, "missing the integer 'k'"))?;

    let name = source.folder.trim_matches('/').rsplit('/').next().unwrap_or_default();
    let hook_name = if name == "embed_tokens" {
        "hook_embed".to_string()
    } else {
        let layer = number_after(name, "layers.")
            .or_else(|| number_after(name, "layers_"))
            .ok_or_else(|| config_err(source.folder, "a sparsify folder is named embed_tokens or after its layer (layers.N)"))?;
        format!("blocks.{layer}.hook_resid_post")
    };
    let parent = source.folder.trim_matches('/').rsplit_once('/').map_or("", |(p, _)| p);
    let run_config_path = super::join(parent, "config.json");
    let run_config = match source.optional(&run_config_path) {
        Some(_) => source.json(&run_config_path)?,
        None => Default::default(),
    };
    let model_name = run_config
        .get("model")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| parent.rsplit('/').next().filter(|p| !p.is_empty()).or(source.repo).unwrap_or_default().to_string());

    let path = source.path(WEIGHTS);
    let file = source.safetensors(&path)?;
    let (shape, encoder) = tensor(&file, &path, "encoder.weight")?;
    let (d_sae, d_in) = matrix_shape(&shape, &path, "encoder.weight")?;
    let mut out = Converted::default();
    out.insert("W_enc", vec![d_in, d_sae], transpose(&encoder, d_sae, d_in));
    for (from, to) in [("encoder.bias", "b_enc"), ("W_dec", "W_dec"), ("b_dec", "b_dec")] {
        let (shape, values) = tensor(&file, &path, from)?;
        out.insert(to, shape, values);
    }
    out.cfg = object(json!({
        "architecture": "standard",
        "d_in": d_in,
        "d_sae": d_sae,
        "dtype": "float32",
        "model_name": model_name,
        "hook_name": hook_name,
        "hook_head_index": null,
        "activation_fn_str": "topk",
        "activation_fn_kwargs": { "k": k, "signed": flag("signed") },
        "apply_b_dec_to_input": true,
        "dataset_path": run_config.get("dataset").cloned().unwrap_or(json!("togethercomputer/RedPajama-Data-1T-Sample")),
        "context_size": run_config.get("ctx_len").cloned().unwrap_or(json!(2048)),
        "finetuning_scaling_factor": false,
        "sae_lens_training_version": null,
        "prepend_bos": true,
        "dataset_trust_remote_code": true,
        "normalize_activations": "none",
        "neuronpedia_id": null,
    }));
    Ok(out)
}
