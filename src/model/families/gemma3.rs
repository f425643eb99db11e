//! Gemma 3's text model (`modeling_gemma3.py`, `model_type` `gemma3_text`): the Gemma 2 block with
//! (1 + w) RMSNorms over each head's queries and keys, no soft-capping unless configured, the
//! local/global pattern from `layer_types` or `sliding_window_pattern` (every sixth layer
//! global), and its own RoPE base for local layers (`rope_local_base_freq`, 10 000; the global
//! layers' `rope_scaling` does not apply to them).

use serde_json::Value;

use super::super::decoder::{DecoderConfig, Positions};
use super::super::decoder_weights::{DecoderWeights, StoredTensor, Tensors};
use super::{gemma2, llama, Fields};

pub fn describe(f: &Fields) -> Result<DecoderConfig, String> {
    let pattern = f.usize("sliding_window_pattern")?.or(f.usize("_sliding_window_pattern")?).unwrap_or(6);
    if pattern == 0 {
        return Err("sliding_window_pattern is 0".into());
    }
    let mut cfg = gemma2::block(f, "gemma3_text", |layer| !(layer + 1).is_multiple_of(pattern), (None, None))?;
    cfg.qk_norm = true;
    let global = f.rope("full_attention", "rope_theta", 1_000_000.0, cfg.d_head)?;
    let local = f.rope("sliding_attention", "rope_local_base_freq", 10_000.0, cfg.d_head)?;
    cfg.positions = Positions::Rotary { global, local };
    Ok(cfg)
}

/// `Gemma3TextConfig`'s defaults (transformers 5.24, `configuration_gemma3.py`) for what a sparse
/// `text_config` leaves out; the RoPE bases' defaults are [`describe`]'s own.
const TEXT_DEFAULTS: &str = r#"{
    "vocab_size": 262208, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
    "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "hidden_activation": "gelu_pytorch_tanh",
    "max_position_embeddings": 131072, "rms_norm_eps": 1e-6, "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2,
    "tie_word_embeddings": true, "attention_bias": false, "query_pre_attn_scalar": 256, "sliding_window": 4096,
    "final_logit_softcapping": null, "attn_logit_softcapping": null
}"#;

/// Keys of the wrapper's own config that speak for the text model (the Hub's instruction-tuned
/// Gemma 3 lists its end-of-turn token among `eos_token_id` there).
const WRAPPER_TOKENS: [&str; 3] = ["bos_token_id", "eos_token_id", "pad_token_id"];

/// Gemma 3 from 4B up (`model_type` `gemma3`, `Gemma3ForConditionalGeneration`): the text model
/// its `text_config` describes, completed by `Gemma3TextConfig`'s defaults as transformers
/// completes the sparse `text_config` the Hub's checkpoints carry, with the wrapper's special
/// tokens where it names them. Only the text model runs: text-only input never reaches the vision
/// tower or its projector (`Gemma3Model.forward` merges image features only at image tokens), and
/// the SAEs read the text model's stream.
pub fn text_of_multimodal(f: &Fields) -> Result<Fields, String> {
    let mut text = f.object("text_config")?.ok_or("a 'gemma3' config without 'text_config' (the text model's config)")?;
    match text.string("model_type")?.as_deref() {
        None | Some("gemma3_text") => {}
        Some(other) => return Err(format!("text_config.model_type is '{other}', not gemma3_text")),
    }
    let Ok(Value::Object(defaults)) = serde_json::from_str(TEXT_DEFAULTS) else { unreachable!("TEXT_DEFAULTS is a JSON object") };
    for (key, default) in defaults {
        text.0.entry(key).or_insert(default);
    }
    for key in WRAPPER_TOKENS {
        if let Some(v) = f.0.get(key).filter(|v| !v.is_null()) {
            text.0.insert(key.to_string(), v.clone());
        }
    }
    Ok(text)
}

/// [`describe`] of the multimodal config's text model, as a `gemma3` model (its tensors are the
/// wrapper's: [`multimodal_weights`]).
pub fn describe_multimodal(f: &Fields) -> Result<DecoderConfig, String> {
    let mut cfg = describe(&text_of_multimodal(f)?)?;
    cfg.model_type = "gemma3".into();
    Ok(cfg)
}

/// The parts of `Gemma3ForConditionalGeneration`'s checkpoint that text never reaches, as
/// `save_pretrained` names them and as the module tree does.
const VISION_PARTS: [&str; 4] = ["vision_tower.", "multi_modal_projector.", "model.vision_tower.", "model.multi_modal_projector."];

/// The text model's tensors: `language_model.model.…` as `save_pretrained` writes them (the Hub's
/// checkpoints; transformers 5.24 still saves this layout), or `model.language_model.…` as the
/// module tree names them; the vision tower and projector are set aside unread.
pub fn multimodal_weights<E: StoredTensor>(cfg: &DecoderConfig, t: &mut Tensors<E>) -> Result<DecoderWeights<E::Values>, String> {
    t.set_aside(&VISION_PARTS);
    let p = super::prefix_of(t, "language_model.model.", "embed_tokens.weight");
    let p = if p.is_empty() { "model.language_model." } else { p };
    llama::weights_at(cfg, t, p, &["language_model.lm_head.weight", "lm_head.weight"])
}
