//! Gemma 1 (`modeling_gemma.py`): the Llama block with Gemma's (1 + w) RMSNorm, embeddings ×
//! √hidden_size, a GeGLU MLP with the tanh GELU, `head_dim` 256 unless given, tied unembedding.

use serde_json::Value;

use super::super::decoder::{DecoderConfig, NormKind};
use super::{llama, Fields};

pub fn describe(f: &Fields) -> Result<DecoderConfig, String> {
    // `GemmaConfig.__post_init__`: the official releases' legacy `hidden_act: "gelu"` means the tanh
    // approximation, and so does an absent one.
    let mut fields = Fields(f.0.clone());
    match f.string("hidden_act")?.as_deref() {
        None | Some("gelu") => {
            fields.0.insert("hidden_act".into(), Value::from("gelu_pytorch_tanh"));
        }
        Some(_) => {}
    }
    let mut cfg = llama::block(&fields, "gemma", Some(256))?;
    cfg.norm.kind = NormKind::RmsNorm { unit_offset: true };
    cfg.embedding_scale = Some((cfg.d_model as f32).sqrt());
    cfg.tied_embeddings = f.bool("tie_word_embeddings")?.unwrap_or(true);
    cfg.max_positions = f.usize("max_position_embeddings")?.unwrap_or(8192);
    Ok(cfg)
}
