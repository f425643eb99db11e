//! GPT-NeoX and Pythia (`modeling_gpt_neox.py`): LayerNorm, rotary embeddings on the first
//! `rotary_pct` of each head, a plain MLP, attention and MLP read the block's input in parallel when
//! `use_parallel_residual` (Pythia), untied unembedding.

use super::super::decoder::{BlockLayout, DecoderConfig, LayerAttention, Mlp, Norm, NormKind, Positions, SpecialTokens};
use super::super::decoder_weights::{DecoderWeights, LayerWeights, Linear, StoredTensor, TensorValues, Tensors};
use super::Fields;
use crate::formats::safetensors::FloatDtype;

pub fn describe(f: &Fields) -> Result<DecoderConfig, String> {
    let d_model = f.required("hidden_size")?;
    let n_heads = f.required("num_attention_heads")?;
    let n_layers = f.required("num_hidden_layers")?;
    let d_head = f.derived_head_dim(d_model, n_heads)?;
    // transformers 5 keeps the fraction in rope_parameters; older files in rotary_pct.
    let pct = match f.object("rope_parameters")?.map(|p| p.f64("partial_rotary_factor")).transpose()?.flatten() {
        Some(p) => p,
        None => f.f64("rotary_pct")?.unwrap_or(0.25),
    };
    // As `int(head_size * partial_rotary_factor)`.
    let rotary_dim = (d_head as f64 * pct) as usize;
    let rope = f.rope("full_attention", "rotary_emb_base", 10000.0, rotary_dim)?;
    let bias = f.bool("attention_bias")?.unwrap_or(true);
    let layout = if f.bool("use_parallel_residual")?.unwrap_or(true) { BlockLayout::Parallel } else { BlockLayout::Sequential };
    Ok(DecoderConfig {
        model_type: "gpt_neox".into(),
        vocab_size: f.required("vocab_size")?,
        d_model,
        n_layers,
        n_heads,
        n_kv_heads: n_heads,
        d_head,
        d_mlp: f.required("intermediate_size")?,
        max_positions: f.usize("max_position_embeddings")?.unwrap_or(2048),
        norm: Norm { kind: NormKind::LayerNorm, eps: f.f64("layer_norm_eps")?.unwrap_or(1e-5) as f32 },
        layout,
        activation: f.activation("hidden_act", "gelu")?,
        mlp: Mlp::Plain,
        mlp_bias: true,
        qkv_bias: bias,
        o_bias: bias,
        qk_norm: false,
        attn_scale: 1.0 / (d_head as f32).sqrt(),
        attn_softcap: None,
        final_softcap: None,
        layers: vec![LayerAttention::Global; n_layers],
        positions: Positions::Rotary { global: rope, local: rope },
        embedding_scale: None,
        tied_embeddings: f.bool("tie_word_embeddings")?.unwrap_or(false),
        special_tokens: SpecialTokens::default(),
    })
}

/// GPT-NeoX's tensors (`gpt_neox.embed_in`, `gpt_neox.layers.L.attention.query_key_value`, …,
/// `embed_out` or `lm_head`). The fused q/k/v projection holds each head's q, k and v rows in turn
/// (`qkv.view(…, heads, 3·head_size).chunk(3)`).
pub fn weights<E: StoredTensor>(cfg: &DecoderConfig, t: &mut Tensors<E>) -> Result<DecoderWeights<E::Values>, String> {
    let p = super::prefix_of(t, "gpt_neox.", "embed_in.weight");
    let (d, dh) = (cfg.d_model, cfg.d_head);
    let embed = t.take(&format!("{p}embed_in.weight"), &[cfg.vocab_size, d])?;
    let mut layers = Vec::new();
    for l in 0..cfg.n_layers {
        let b = format!("{p}layers.{l}.");
        let fused = t.linear(&format!("{b}attention.query_key_value"), d, 3 * d, cfg.qkv_bias)?;
        let part = |which: usize| {
            let rows = |h: usize| (h * 3 + which) * dh..(h * 3 + which + 1) * dh;
            let weight = TensorValues::concat((0..cfg.n_heads).map(|h| fused.weight.rows(rows(h), d)).collect());
            let bias = fused.bias.as_ref().map(|bias| TensorValues::concat((0..cfg.n_heads).map(|h| bias.rows(rows(h), 1)).collect()));
            Linear { d_in: d, d_out: d, weight, bias }
        };
        layers.push(LayerWeights {
            attn_norm: t.norm(&format!("{b}input_layernorm"), d, true)?,
            q: part(0),
            k: part(1),
            v: part(2),
            o: t.linear(&format!("{b}attention.dense"), d, d, cfg.o_bias)?,
            q_norm: None,
            k_norm: None,
            post_attn_norm: None,
            mlp_norm: t.norm(&format!("{b}post_attention_layernorm"), d, true)?,
            gate: None,
            up: t.linear(&format!("{b}mlp.dense_h_to_4h"), d, cfg.d_mlp, true)?,
            down: t.linear(&format!("{b}mlp.dense_4h_to_h"), cfg.d_mlp, d, true)?,
            post_mlp_norm: None,
        });
    }
    let final_norm = t.norm(&format!("{p}final_layer_norm"), d, true)?;
    let unembed = super::unembed(cfg, t, &["embed_out.weight", "lm_head.weight"])?;
    Ok(DecoderWeights { embed, pos_embed: None, layers, final_norm, unembed, dtype: FloatDtype::F32 })
}
