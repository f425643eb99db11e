//! Llama 2 and 3 (`modeling_llama.py`): RMSNorm, RoPE (with `rope_scaling` `linear` or `llama3`),
//! grouped-query attention, a SwiGLU MLP, optional attention and MLP biases. Qwen 2 and 3 are
//! this block with their own biases and norms (`qwen2.rs`, `qwen3.rs`).

use super::super::decoder::{BlockLayout, DecoderConfig, Mlp, Norm, NormKind, Positions, SpecialTokens};
use super::super::decoder_weights::{DecoderWeights, Tensors};
use super::Fields;
use crate::formats::safetensors::FloatDtype;

/// The Llama block as `f` configures it, for `model_type`. `default_head_dim` is the family's
/// when `head_dim` is absent (Llama: hidden_size / heads; Qwen 3: 128).
pub(super) fn block(f: &Fields, model_type: &str, default_head_dim: Option<usize>) -> Result<DecoderConfig, String> {
    let d_model = f.required("hidden_size")?;
    let n_heads = f.required("num_attention_heads")?;
    let n_layers = f.required("num_hidden_layers")?;
    let d_head = match default_head_dim {
        Some(d) => f.head_dim(d)?,
        None => match f.usize("head_dim")? {
            Some(d) => d,
            None => f.derived_head_dim(d_model, n_heads)?,
        },
    };
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
        max_positions: f.usize("max_position_embeddings")?.unwrap_or(2048),
        norm: Norm { kind: NormKind::RmsNorm { unit_offset: false }, eps: f.f64("rms_norm_eps")?.unwrap_or(1e-6) as f32 },
        layout: BlockLayout::Sequential,
        activation: f.activation("hidden_act", "silu")?,
        mlp: Mlp::Gated,
        mlp_bias: f.bool("mlp_bias")?.unwrap_or(false),
        qkv_bias: bias,
        o_bias: bias,
        qk_norm: false,
        attn_scale: 1.0 / (d_head as f32).sqrt(),
        attn_softcap: None,
        final_softcap: None,
        layers: f.layer_types(n_layers, None, |_| false)?,
        positions: Positions::Rotary { global: rope, local: rope },
        embedding_scale: None,
        tied_embeddings: f.bool("tie_word_embeddings")?.unwrap_or(false),
        special_tokens: SpecialTokens::default(),
    })
}

pub fn describe(f: &Fields) -> Result<DecoderConfig, String> {
    block(f, "llama", None)
}

/// The tensors of Llama, Qwen 2/3 and Gemma 2/3 checkpoints (`model.embed_tokens`,
/// `model.layers.L.…`, `model.norm`, `lm_head`).
pub fn weights(cfg: &DecoderConfig, t: &mut Tensors) -> Result<DecoderWeights, String> {
    let p = super::prefix_of(t, "model.", "embed_tokens.weight");
    let embed = t.take(&format!("{p}embed_tokens.weight"), &[cfg.vocab_size, cfg.d_model])?;
    let layers = (0..cfg.n_layers).map(|l| super::hf_block(cfg, t, &format!("{p}layers.{l}."))).collect::<Result<_, _>>()?;
    let final_norm = t.norm(&format!("{p}norm"), cfg.d_model, false)?;
    let unembed = super::unembed(cfg, t, &["lm_head.weight"])?;
    Ok(DecoderWeights { embed, pos_embed: None, layers, final_norm, unembed, dtype: FloatDtype::F32 })
}
