//! GPT-NeoX and Pythia (`modeling_gpt_neox.py`): LayerNorm, rotary embeddings on the first
//! `rotary_pct` of each head, a plain MLP, attention and MLP read the block's input in parallel when
//! `use_parallel_residual` (Pythia), untied unembedding.

use super::super::decoder::{Activation, BlockLayout, DecoderConfig, LayerAttention, Mlp, Norm, NormKind, Positions};
use super::Fields;

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
        activation: Activation::from_name("hidden_act", &f.string("hidden_act")?.unwrap_or_else(|| "gelu".into()))?,
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
    })
}
