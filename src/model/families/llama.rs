//! Llama 2 and 3 (`modeling_llama.py`): RMSNorm, RoPE (with `rope_scaling` `linear` or `llama3`),
//! grouped-query attention, a SwiGLU MLP, optional attention and MLP biases. Qwen 2 and 3 are
//! this block with their own biases and norms (`qwen2.rs`, `qwen3.rs`).

use super::super::decoder::{BlockLayout, DecoderConfig, Mlp, Norm, NormKind, Positions, SpecialTokens};
use super::super::decoder_weights::{DecoderWeights, StoredTensor, Tensors};
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
pub fn weights<E: StoredTensor>(cfg: &DecoderConfig, t: &mut Tensors<E>) -> Result<DecoderWeights<E::Values>, String> {
    let p = super::prefix_of(t, "model.", "embed_tokens.weight");
    weights_at(cfg, t, p, &["lm_head.weight"])
}

/// The model's tensors under `prefix` (`model.`, or a multimodal wrapper's text model), the
/// unembedding the first of `unembed_names` present when untied.
pub(super) fn weights_at<E: StoredTensor>(
    cfg: &DecoderConfig,
    t: &mut Tensors<E>,
    p: &str,
    unembed_names: &[&str],
) -> Result<DecoderWeights<E::Values>, String> {
    let embed = t.take(&format!("{p}embed_tokens.weight"), &[cfg.vocab_size, cfg.d_model])?;
    let layers = (0..cfg.n_layers).map(|l| super::hf_block(cfg, t, &format!("{p}layers.{l}."))).collect::<Result<_, _>>()?;
    let final_norm = t.norm(&format!("{p}norm"), cfg.d_model, false)?;
    let unembed = super::unembed(cfg, t, unembed_names)?;
    Ok(DecoderWeights { embed, pos_embed: None, layers, final_norm, unembed, dtype: FloatDtype::F32 })
}

/// `model`'s tensors as `LlamaForCausalLM` / `Gemma2ForCausalLM` / `Gemma3ForCausalLM`
/// (`save_pretrained`) name them — the inverse of `weights`: projections `[out, in]`, Gemma's norm
/// weights as stored (the `1 + w` is the forward's), `lm_head.weight` only when untied.
pub fn tensors(model: &super::super::Model) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    use super::super::decoder_weights::{Linear, NormWeights};
    let (c, w) = (&model.cfg, &model.weights);
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![c.vocab_size, c.d_model], w.embed.clone())];
    let linear = |out: &mut Vec<(String, Vec<usize>, Vec<f32>)>, name: String, l: &Linear| {
        out.push((format!("{name}.weight"), vec![l.d_out, l.d_in], l.weight.clone()));
        if let Some(b) = &l.bias {
            out.push((format!("{name}.bias"), vec![l.d_out], b.clone()));
        }
    };
    let norm = |out: &mut Vec<(String, Vec<usize>, Vec<f32>)>, name: String, n: &NormWeights| {
        out.push((format!("{name}.weight"), vec![n.weight.len()], n.weight.clone()));
    };
    for (i, l) in w.layers.iter().enumerate() {
        let p = |s: &str| format!("model.layers.{i}.{s}");
        norm(&mut out, p("input_layernorm"), &l.attn_norm);
        for (name, proj) in [("q_proj", &l.q), ("k_proj", &l.k), ("v_proj", &l.v), ("o_proj", &l.o)] {
            linear(&mut out, p(&format!("self_attn.{name}")), proj);
        }
        if let (Some(q), Some(k)) = (&l.q_norm, &l.k_norm) {
            norm(&mut out, p("self_attn.q_norm"), q);
            norm(&mut out, p("self_attn.k_norm"), k);
        }
        match (&l.post_attn_norm, &l.post_mlp_norm) {
            (Some(post_attn), Some(post_mlp)) => {
                norm(&mut out, p("post_attention_layernorm"), post_attn);
                norm(&mut out, p("pre_feedforward_layernorm"), &l.mlp_norm);
                norm(&mut out, p("post_feedforward_layernorm"), post_mlp);
            }
            _ => norm(&mut out, p("post_attention_layernorm"), &l.mlp_norm),
        }
        if let Some(gate) = &l.gate {
            linear(&mut out, p("mlp.gate_proj"), gate);
        }
        linear(&mut out, p("mlp.up_proj"), &l.up);
        linear(&mut out, p("mlp.down_proj"), &l.down);
    }
    norm(&mut out, "model.norm".into(), &w.final_norm);
    if let Some(u) = &w.unembed {
        out.push(("lm_head.weight".into(), vec![c.vocab_size, c.d_model], u.clone()));
    }
    out
}
