//! Gemma 1 (`modeling_gemma.py`): the Llama block with Gemma's (1 + w) RMSNorm, embeddings ×
//! √hidden_size, a GeGLU MLP, `head_dim` 256 unless given, tied unembedding — and the MLP's GELU
//! exact, as TransformerLens runs Gemma 1, where transformers uses the tanh approximation.

use serde_json::Value;

use super::super::decoder::{Activation, DecoderConfig, NormKind};
use super::{llama, Fields};

pub fn describe(f: &Fields) -> Result<DecoderConfig, String> {
    // An absent `hidden_act` is a GELU (GemmaConfig's default), not the Llama block's SiLU.
    let mut fields = Fields(f.0.clone());
    if f.string("hidden_act")?.is_none() {
        fields.0.insert("hidden_act".into(), Value::from("gelu"));
    }
    let mut cfg = llama::block(&fields, "gemma", Some(256))?;
    // TransformerLens 3.9's `google/gemma-2b` branch (`convert_hf_model_config`) sets `act_fn:
    // "gelu"`, the exact GELU, whatever the checkpoint says (transformers reads the releases'
    // legacy `hidden_act: "gelu"` as the tanh one, `GemmaConfig.__post_init__`); every Gemma 1 SAE there is
    // (`gemma-2b-res-jb`, `gemma-2b-it-res-jb`) was trained on those activations, and TransformerLens
    // is the reference for hook values. transformers' forward differs only by the GELU (tested both
    // ways: tests/families.rs).
    if matches!(cfg.activation, Activation::GeluTanh | Activation::GeluErf) {
        cfg.activation = Activation::GeluErf;
    }
    cfg.norm.kind = NormKind::RmsNorm { unit_offset: true };
    cfg.embedding_scale = Some((cfg.d_model as f32).sqrt());
    cfg.tied_embeddings = f.bool("tie_word_embeddings")?.unwrap_or(true);
    cfg.max_positions = f.usize("max_position_embeddings")?.unwrap_or(8192);
    Ok(cfg)
}
