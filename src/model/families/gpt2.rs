//! GPT-2 (`transformers`' `modeling_gpt2.py`): learned positions, pre-LayerNorm blocks, a plain
//! MLP with `activation_function` (gelu_new), biases everywhere, tied unembedding.

use super::super::decoder::{Activation, BlockLayout, DecoderConfig, LayerAttention, Mlp, Norm, NormKind, Positions};
use super::Fields;

pub fn describe(f: &Fields) -> Result<DecoderConfig, String> {
    let d_model = f.usize("n_embd")?.unwrap_or(768);
    let n_heads = f.usize("n_head")?.unwrap_or(12);
    let n_layers = f.usize("n_layer")?.unwrap_or(12);
    let d_head = f.derived_head_dim(d_model, n_heads)?;
    if f.bool("scale_attn_by_inverse_layer_idx")?.unwrap_or(false) || f.bool("reorder_and_upcast_attn")?.unwrap_or(false) {
        return Err("scale_attn_by_inverse_layer_idx and reorder_and_upcast_attn are not supported".into());
    }
    let scale = if f.bool("scale_attn_weights")?.unwrap_or(true) { 1.0 / (d_head as f32).sqrt() } else { 1.0 };
    let activation = f.string("activation_function")?.unwrap_or_else(|| "gelu_new".into());
    Ok(DecoderConfig {
        model_type: "gpt2".into(),
        vocab_size: f.usize("vocab_size")?.unwrap_or(50257),
        d_model,
        n_layers,
        n_heads,
        n_kv_heads: n_heads,
        d_head,
        d_mlp: f.usize("n_inner")?.unwrap_or(4 * d_model),
        max_positions: f.usize("n_positions")?.unwrap_or(1024),
        norm: Norm { kind: NormKind::LayerNorm, eps: f.f64("layer_norm_epsilon")?.unwrap_or(1e-5) as f32 },
        layout: BlockLayout::Sequential,
        activation: Activation::from_name("activation_function", &activation)?,
        mlp: Mlp::Plain,
        mlp_bias: true,
        qkv_bias: true,
        o_bias: true,
        qk_norm: false,
        attn_scale: scale,
        attn_softcap: None,
        final_softcap: None,
        layers: vec![LayerAttention::Global; n_layers],
        positions: Positions::Learned,
        embedding_scale: None,
        tied_embeddings: true,
    })
}
