//! GPT-2 (`transformers`' `modeling_gpt2.py`): learned positions, pre-LayerNorm blocks, a plain
//! MLP with `activation_function` (gelu_new), biases everywhere, tied unembedding.

use super::super::decoder::{BlockLayout, DecoderConfig, LayerAttention, Mlp, Norm, NormKind, Positions};
use super::super::decoder_weights::{split_rows, transpose, DecoderWeights, LayerWeights, Linear, Tensors};
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
        activation: f.activation("activation_function", "gelu_new")?,
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

/// `Conv1D` `{prefix}.weight` `[d_in, d_out]` (+ bias), as an `[out, in]` projection.
fn conv1d(t: &mut Tensors, prefix: &str, d_in: usize, d_out: usize) -> Result<Linear, String> {
    let weight = transpose(&t.take(&format!("{prefix}.weight"), &[d_in, d_out])?, d_in, d_out);
    Ok(Linear { d_in, d_out, weight, bias: Some(t.take(&format!("{prefix}.bias"), &[d_out])?) })
}

/// GPT-2's tensors (`transformer.wte`, `transformer.h.L.attn.c_attn`, …; `transformer.` optional).
pub fn weights(cfg: &DecoderConfig, t: &mut Tensors) -> Result<DecoderWeights, String> {
    let p = super::prefix_of(t, "transformer.", "wte.weight");
    let d = cfg.d_model;
    let embed = t.take(&format!("{p}wte.weight"), &[cfg.vocab_size, d])?;
    let pos_embed = Some(t.take(&format!("{p}wpe.weight"), &[cfg.max_positions, d])?);
    let mut layers = Vec::new();
    for l in 0..cfg.n_layers {
        let b = format!("{p}h.{l}.");
        let [q, k, v]: [Linear; 3] =
            split_rows(conv1d(t, &format!("{b}attn.c_attn"), d, 3 * d)?, &[d, d, d]).try_into().expect("three parts");
        layers.push(LayerWeights {
            attn_norm: t.norm(&format!("{b}ln_1"), d, true)?,
            q,
            k,
            v,
            o: conv1d(t, &format!("{b}attn.c_proj"), d, d)?,
            q_norm: None,
            k_norm: None,
            post_attn_norm: None,
            mlp_norm: t.norm(&format!("{b}ln_2"), d, true)?,
            gate: None,
            up: conv1d(t, &format!("{b}mlp.c_fc"), d, cfg.d_mlp)?,
            down: conv1d(t, &format!("{b}mlp.c_proj"), cfg.d_mlp, d)?,
            post_mlp_norm: None,
        });
    }
    let final_norm = t.norm(&format!("{p}ln_f"), d, true)?;
    Ok(DecoderWeights { embed, pos_embed, layers, final_norm, unembed: None })
}
