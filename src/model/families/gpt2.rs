//! GPT-2 (`transformers`' `modeling_gpt2.py`): learned positions, pre-LayerNorm blocks, a plain
//! MLP with `activation_function` (gelu_new), biases everywhere, tied unembedding.

use super::super::decoder::{BlockLayout, DecoderConfig, LayerAttention, Mlp, Norm, NormKind, Positions, SpecialTokens};
use super::super::decoder_weights::{split_rows, transpose, DecoderWeights, LayerWeights, Linear, StoredTensor, TensorValues, Tensors};
use super::Fields;
use crate::formats::safetensors::FloatDtype;

pub fn describe(f: &Fields) -> Result<DecoderConfig, String> {
    let d_model = f.usize("n_embd")?.unwrap_or(768);
    let n_heads = f.usize("n_head")?.unwrap_or(12);
    let n_layers = f.usize("n_layer")?.unwrap_or(12);
    let d_head = f.derived_head_dim(d_model, n_heads)?;
    if f.bool("scale_attn_by_inverse_layer_idx")?.unwrap_or(false) || f.bool("reorder_and_upcast_attn")?.unwrap_or(false) {
        return Err("scale_attn_by_inverse_layer_idx and reorder_and_upcast_attn are not supported".into());
    }
    if f.bool("add_cross_attention")?.unwrap_or(false) {
        return Err("add_cross_attention (an encoder-decoder GPT-2) is not supported".into());
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
        // Older files name the context n_ctx.
        max_positions: f.usize("n_positions")?.or(f.usize("n_ctx")?).unwrap_or(1024),
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
        tied_embeddings: f.bool("tie_word_embeddings")?.unwrap_or(true),
        special_tokens: SpecialTokens::default(),
    })
}

/// `Conv1D` `{prefix}.weight` `[d_in, d_out]` (+ bias), as an `[out, in]` projection.
fn conv1d<E: StoredTensor>(t: &mut Tensors<E>, prefix: &str, d_in: usize, d_out: usize) -> Result<Linear<E::Values>, String> {
    let weight = t.take(&format!("{prefix}.weight"), &[d_in, d_out])?.transposed(d_in, d_out);
    Ok(Linear { d_in, d_out, weight, bias: Some(t.take(&format!("{prefix}.bias"), &[d_out])?) })
}

/// GPT-2's tensors (`transformer.wte`, `transformer.h.L.attn.c_attn`, …; `transformer.` optional).
pub fn weights<E: StoredTensor>(cfg: &DecoderConfig, t: &mut Tensors<E>) -> Result<DecoderWeights<E::Values>, String> {
    let p = super::prefix_of(t, "transformer.", "wte.weight");
    let d = cfg.d_model;
    let embed = t.take(&format!("{p}wte.weight"), &[cfg.vocab_size, d])?;
    let pos_embed = Some(t.take(&format!("{p}wpe.weight"), &[cfg.max_positions, d])?);
    let mut layers = Vec::new();
    for l in 0..cfg.n_layers {
        let b = format!("{p}h.{l}.");
        let [q, k, v]: [Linear<E::Values>; 3] =
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
    let unembed = super::unembed(cfg, t, &["lm_head.weight"])?;
    Ok(DecoderWeights { embed, pos_embed, layers, final_norm, unembed, dtype: FloatDtype::F32 })
}

/// A GPT-2 `config.json` of this shape (what `saelab random-model` writes, and the shapes tests and
/// benchmarks run).
pub fn config_json(vocab_size: usize, context: usize, d_model: usize, n_layers: usize, n_heads: usize, tied: bool) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function": "gelu_new",
        "vocab_size": vocab_size, "n_positions": context, "n_embd": d_model, "n_layer": n_layers,
        "n_head": n_heads, "n_inner": 4 * d_model, "layer_norm_epsilon": 1e-5,
        "scale_attn_weights": true, "tie_word_embeddings": tied,
        "bos_token_id": vocab_size - 1, "eos_token_id": vocab_size - 1,
    })
}

/// A GPT-2 of this shape, described as `config_json`'s file would be.
pub fn config(vocab_size: usize, context: usize, d_model: usize, n_layers: usize, n_heads: usize, tied: bool) -> DecoderConfig {
    let json = config_json(vocab_size, context, d_model, n_layers, n_heads, tied).to_string();
    super::describe(json.as_bytes()).expect("a GPT-2 config saelab writes describes")
}

/// `model`'s tensors as `GPT2LMHeadModel.save_pretrained` names and lays them out (`transformer.`
/// prefixes, `Conv1D` `[in, out]`, q/k/v fused); the model must be GPT-2-shaped.
pub fn tensors(model: &super::super::Model) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let (c, w) = (&model.cfg, &model.weights);
    let (d, m) = (c.d_model, c.d_mlp);
    let mut out = vec![("transformer.wte.weight".to_string(), vec![c.vocab_size, d], w.embed.clone())];
    if let Some(pos) = &w.pos_embed {
        out.push(("transformer.wpe.weight".into(), vec![c.max_positions, d], pos.clone()));
    }
    let conv = |l: &Linear| transpose(&l.weight, l.d_out, l.d_in);
    let bias = |l: &Linear| l.bias.clone().unwrap_or_else(|| vec![0.0; l.d_out]);
    for (layer, b) in w.layers.iter().enumerate() {
        let p = |s: &str| format!("transformer.h.{layer}.{s}");
        let norm_bias = |n: &super::super::decoder_weights::NormWeights| n.bias.clone().unwrap_or_else(|| vec![0.0; d]);
        // c_attn's [d, 3d]: each input row holds its q, k and v outputs in turn.
        let (q, k, v) = (conv(&b.q), conv(&b.k), conv(&b.v));
        let qkv: Vec<f32> = (0..d).flat_map(|i| [&q, &k, &v].into_iter().flat_map(move |t| t[i * d..(i + 1) * d].to_vec())).collect();
        out.extend([
            (p("ln_1.weight"), vec![d], b.attn_norm.weight.clone()),
            (p("ln_1.bias"), vec![d], norm_bias(&b.attn_norm)),
            (p("attn.c_attn.weight"), vec![d, 3 * d], qkv),
            (p("attn.c_attn.bias"), vec![3 * d], [bias(&b.q), bias(&b.k), bias(&b.v)].concat()),
            (p("attn.c_proj.weight"), vec![d, d], conv(&b.o)),
            (p("attn.c_proj.bias"), vec![d], bias(&b.o)),
            (p("ln_2.weight"), vec![d], b.mlp_norm.weight.clone()),
            (p("ln_2.bias"), vec![d], norm_bias(&b.mlp_norm)),
            (p("mlp.c_fc.weight"), vec![d, m], conv(&b.up)),
            (p("mlp.c_fc.bias"), vec![m], bias(&b.up)),
            (p("mlp.c_proj.weight"), vec![m, d], conv(&b.down)),
            (p("mlp.c_proj.bias"), vec![d], bias(&b.down)),
        ]);
    }
    out.push(("transformer.ln_f.weight".into(), vec![d], w.final_norm.weight.clone()));
    out.push(("transformer.ln_f.bias".into(), vec![d], w.final_norm.bias.clone().unwrap_or_else(|| vec![0.0; d])));
    if let Some(head) = &w.unembed {
        out.push(("lm_head.weight".into(), vec![c.vocab_size, d], head.clone()));
    }
    out
}
