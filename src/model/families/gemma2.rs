//! Gemma 2 (`modeling_gemma2.py`): embeddings × √hidden_size, four (1 + w) RMSNorms per block
//! around attention and MLP, a GeGLU MLP (`gelu_pytorch_tanh`), attention scaled by
//! `query_pre_attn_scalar^-½`, attention and final logits soft-capped, and sliding-window
//! attention on every other layer (the first included), tied unembedding.

use super::super::decoder::{BlockLayout, DecoderConfig, Mlp, Norm, NormKind, Positions, SpecialTokens};
use super::Fields;

/// The Gemma block as `f` configures it; `default_sliding` says which layers slide when the file
/// has no `layer_types`.
/// `default_caps` are the family's (attention, final) soft caps when the file does not name them
/// (`null` in the file turns one off).
pub(super) fn block(
    f: &Fields,
    model_type: &str,
    default_sliding: impl Fn(usize) -> bool,
    default_caps: (Option<f64>, Option<f64>),
) -> Result<DecoderConfig, String> {
    let d_model = f.required("hidden_size")?;
    let n_heads = f.required("num_attention_heads")?;
    let n_layers = f.required("num_hidden_layers")?;
    let d_head = f.head_dim(256)?;
    // `hidden_activation` is Gemma's field; older files have only `hidden_act`.
    let field = if f.string("hidden_activation")?.is_some() { "hidden_activation" } else { "hidden_act" };
    let window = Some(f.usize("sliding_window")?.unwrap_or(4096));
    let scalar = f.f64("query_pre_attn_scalar")?.unwrap_or(256.0);
    if scalar.is_nan() || scalar <= 0.0 {
        return Err("query_pre_attn_scalar must be a positive number".into());
    }
    let rope = f.rope("full_attention", "rope_theta", 10000.0, d_head)?;
    let bias = f.bool("attention_bias")?.unwrap_or(false);
    Ok(DecoderConfig {
        model_type: model_type.into(),
        vocab_size: f.required("vocab_size")?,
        d_model,
        n_layers,
        n_heads,
        n_kv_heads: f.usize("num_key_value_heads")?.unwrap_or(n_heads),
        d_head,
        d_mlp: f.required("intermediate_size")?,
        max_positions: f.usize("max_position_embeddings")?.unwrap_or(8192),
        norm: Norm { kind: NormKind::RmsNorm { unit_offset: true }, eps: f.f64("rms_norm_eps")?.unwrap_or(1e-6) as f32 },
        layout: BlockLayout::Sandwich,
        activation: f.activation(field, "gelu_pytorch_tanh")?,
        mlp: Mlp::Gated,
        mlp_bias: false,
        qkv_bias: bias,
        o_bias: bias,
        qk_norm: false,
        attn_scale: scalar.powf(-0.5) as f32,
        attn_softcap: softcap(f, "attn_logit_softcapping", default_caps.0)?,
        final_softcap: softcap(f, "final_logit_softcapping", default_caps.1)?,
        layers: f.layer_types(n_layers, window, default_sliding)?,
        positions: Positions::Rotary { global: rope, local: rope },
        embedding_scale: Some((d_model as f32).sqrt()),
        tied_embeddings: f.bool("tie_word_embeddings")?.unwrap_or(true),
        special_tokens: SpecialTokens::default(),
    })
}

/// A soft cap: the file's, `None` where it says `null`, the family's default where it is silent.
fn softcap(f: &Fields, key: &str, default: Option<f64>) -> Result<Option<f32>, String> {
    let cap = if f.0.contains_key(key) { f.f64(key)? } else { default };
    Ok(cap.map(|c| c as f32))
}

pub fn describe(f: &Fields) -> Result<DecoderConfig, String> {
    // `Gemma2Config`: sliding on even layers, attention capped at 50 and logits at 30.
    block(f, "gemma2", |layer| layer % 2 == 0, (Some(50.0), Some(30.0)))
}
