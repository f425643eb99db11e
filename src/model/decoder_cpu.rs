//! The reference forward pass of any described decoder ([`DecoderConfig`]) in plain f32 Rust,
//! following `transformers`' modeling files (5.24) operation by operation: the norms (LayerNorm,
//! RMSNorm, Gemma's `(1 + w)`), rotary embeddings with `rotate_half` on the first `rotary_dim`
//! dimensions (`apply_rotary_pos_emb`), grouped-query attention with the causal and sliding-window
//! masks and soft-capping (`eager_attention_forward`), plain and gated MLPs, the three block
//! layouts, the final norm and the (capped) logits.

use super::decoder::{Activation, BlockLayout, DecoderConfig, LayerAttention, Mlp, NormKind, Positions, Rope, RopeScaling};
use super::decoder_weights::{DecoderWeights, NormWeights};
use crate::reference::model::{gelu_new, layer_norm};

/// What a forward pass returns: `hidden[l]` the residual stream entering layer `l` (`hidden[0]`
/// the scaled embeddings), `hidden[n_layers]` the final norm's output — `transformers`'
/// `hidden_states` — and the logits `[n, vocab]`.
pub struct DecoderOutput {
    pub hidden: Vec<Vec<f32>>,
    pub logits: Vec<f32>,
}

/// RMSNorm over rows of `weight.len()`: `x / √(mean(x²) + eps) · w`, or `· (1 + w)`.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, unit_offset: bool) -> Vec<f32> {
    let d = weight.len();
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(d) {
        let inv = 1.0 / (row.iter().map(|v| v * v).sum::<f32>() / d as f32 + eps).sqrt();
        out.extend(row.iter().zip(weight).map(|(v, w)| v * inv * if unit_offset { 1.0 + w } else { *w }));
    }
    out
}

fn norm(cfg: &DecoderConfig, w: &NormWeights, x: &[f32]) -> Vec<f32> {
    match cfg.norm.kind {
        NormKind::LayerNorm => match &w.bias {
            Some(bias) => layer_norm(x, &w.weight, bias, cfg.norm.eps),
            None => layer_norm(x, &w.weight, &vec![0.0; w.weight.len()], cfg.norm.eps),
        },
        NormKind::RmsNorm { unit_offset } => rms_norm(x, &w.weight, cfg.norm.eps, unit_offset),
    }
}

/// `erf` to within 1.5·10⁻⁷ (Abramowitz & Stegun 7.1.26), for the exact GELU.
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let y = 1.0 - poly * (-x * x).exp();
    if x >= 0.0 {
        y
    } else {
        -y
    }
}

pub fn activation(a: Activation, x: f32) -> f32 {
    match a {
        Activation::GeluTanh => gelu_new(x),
        Activation::GeluErf => (0.5 * x as f64 * (1.0 + erf(x as f64 / std::f64::consts::SQRT_2))) as f32,
        Activation::Silu => x / (1.0 + (-x).exp()),
        Activation::Relu => x.max(0.0),
    }
}

/// RoPE's inverse frequencies, `rotary_dim / 2` of them, with the scaling applied
/// (`_compute_default_rope_parameters`, `_compute_linear_scaling_rope_parameters`,
/// `_compute_llama3_parameters`).
pub fn inverse_frequencies(rope: &Rope) -> Vec<f64> {
    let dim = rope.rotary_dim;
    let base: Vec<f64> = (0..dim / 2).map(|i| 1.0 / rope.theta.powf((2 * i) as f64 / dim as f64)).collect();
    match rope.scaling {
        RopeScaling::None => base,
        RopeScaling::Linear { factor } => base.iter().map(|f| f / factor).collect(),
        RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings: old } => {
            let (low_wavelen, high_wavelen) = (old / low_freq_factor, old / high_freq_factor);
            base.iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect()
        }
    }
}

/// Rotates each head of `x` `[n, heads·d_head]` at positions `0..n`: the first `rotary_dim`
/// dimensions by `x·cos + rotate_half(x)·sin`, where `rotate_half` swaps the two halves and
/// negates the second; the rest pass through.
pub fn apply_rope(x: &mut [f32], n_heads: usize, d_head: usize, rope: &Rope) {
    let freqs = inverse_frequencies(rope);
    let half = rope.rotary_dim / 2;
    for (pos, row) in x.chunks_exact_mut(n_heads * d_head).enumerate() {
        // transformers computes the angles in f32.
        let angles: Vec<f32> = freqs.iter().map(|&f| (f as f32) * pos as f32).collect();
        for head in row.chunks_exact_mut(d_head) {
            for i in 0..half {
                let (cos, sin) = (angles[i].cos(), angles[i].sin());
                let (a, b) = (head[i], head[i + half]);
                head[i] = a * cos - b * sin;
                head[i + half] = b * cos + a * sin;
            }
        }
    }
}

/// Grouped-query causal attention: `z` `[n, n_heads·d_head]` from q `[n, n_heads·d_head]` and
/// k, v `[n, n_kv_heads·d_head]`; query head `h` reads key/value head `h / group`. Key `j` is
/// seen by query `i` when `j ≤ i` and, in a sliding window, `i − j < window`.
pub fn attention(cfg: &DecoderConfig, layer: LayerAttention, q: &[f32], k: &[f32], v: &[f32], n: usize) -> Vec<f32> {
    let (dh, heads, kv_heads) = (cfg.d_head, cfg.n_heads, cfg.n_kv_heads);
    let group = heads / kv_heads;
    let mut z = vec![0.0f32; n * heads * dh];
    let mut scores = vec![0.0f32; n];
    for h in 0..heads {
        let kvh = h / group;
        for i in 0..n {
            let first = match layer {
                LayerAttention::Global => 0,
                LayerAttention::Sliding { window } => (i + 1).saturating_sub(window),
            };
            let qi = &q[(i * heads + h) * dh..(i * heads + h + 1) * dh];
            let mut max = f32::NEG_INFINITY;
            for j in first..=i {
                let kj = &k[(j * kv_heads + kvh) * dh..(j * kv_heads + kvh + 1) * dh];
                let mut s = qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * cfg.attn_scale;
                if let Some(cap) = cfg.attn_softcap {
                    s = (s / cap).tanh() * cap;
                }
                scores[j] = s;
                max = max.max(s);
            }
            let mut total = 0.0f32;
            for s in &mut scores[first..=i] {
                *s = (*s - max).exp();
                total += *s;
            }
            let out = &mut z[(i * heads + h) * dh..(i * heads + h + 1) * dh];
            for j in first..=i {
                let p = scores[j] / total;
                let vj = &v[(j * kv_heads + kvh) * dh..(j * kv_heads + kvh + 1) * dh];
                out.iter_mut().zip(vj).for_each(|(o, x)| *o += p * x);
            }
        }
    }
    z
}

/// The forward pass over `tokens` (checked by the caller against the vocabulary and context).
pub fn forward(cfg: &DecoderConfig, w: &DecoderWeights, tokens: &[u32]) -> DecoderOutput {
    let (n, d) = (tokens.len(), cfg.d_model);
    let mut x: Vec<f32> = tokens.iter().flat_map(|&t| w.embed[t as usize * d..(t as usize + 1) * d].iter().copied()).collect();
    if let Some(scale) = cfg.embedding_scale {
        x.iter_mut().for_each(|v| *v *= scale);
    }
    if let Some(pos) = &w.pos_embed {
        x.iter_mut().zip(&pos[..n * d]).for_each(|(v, p)| *v += p);
    }
    let mut hidden = Vec::with_capacity(cfg.n_layers + 1);
    for (layer, lw) in cfg.layers.iter().zip(&w.layers) {
        hidden.push(x.clone());
        let h = norm(cfg, &lw.attn_norm, &x);
        let (mut q, mut k, v) = (lw.q.apply(&h), lw.k.apply(&h), lw.v.apply(&h));
        if let (Some(qn), Some(kn)) = (&lw.q_norm, &lw.k_norm) {
            q = norm(cfg, qn, &q);
            k = norm(cfg, kn, &k);
        }
        if let Positions::Rotary { global, local } = &cfg.positions {
            let rope = if matches!(layer, LayerAttention::Sliding { .. }) { local } else { global };
            apply_rope(&mut q, cfg.n_heads, cfg.d_head, rope);
            apply_rope(&mut k, cfg.n_kv_heads, cfg.d_head, rope);
        }
        let mut attn = lw.o.apply(&attention(cfg, *layer, &q, &k, &v, n));
        if let Some(post) = &lw.post_attn_norm {
            attn = norm(cfg, post, &attn);
        }
        let mlp = |input: &[f32]| {
            let hm = norm(cfg, &lw.mlp_norm, input);
            let up = lw.up.apply(&hm);
            let act: Vec<f32> = match (&cfg.mlp, &lw.gate) {
                (Mlp::Gated, Some(gate)) => gate.apply(&hm).iter().zip(&up).map(|(g, u)| activation(cfg.activation, *g) * u).collect(),
                _ => up.iter().map(|&u| activation(cfg.activation, u)).collect(),
            };
            let out = lw.down.apply(&act);
            match &lw.post_mlp_norm {
                Some(post) => norm(cfg, post, &out),
                None => out,
            }
        };
        x = match cfg.layout {
            BlockLayout::Parallel => {
                let m = mlp(&x);
                x.iter().zip(attn.iter().zip(&m)).map(|(r, (a, m))| r + a + m).collect()
            }
            BlockLayout::Sequential | BlockLayout::Sandwich => {
                let mid: Vec<f32> = x.iter().zip(&attn).map(|(r, a)| r + a).collect();
                let m = mlp(&mid);
                mid.iter().zip(&m).map(|(r, m)| r + m).collect()
            }
        };
    }
    let normed = norm(cfg, &w.final_norm, &x);
    let unembed = w.unembed.as_deref().unwrap_or(&w.embed);
    let mut logits = Vec::with_capacity(n * cfg.vocab_size);
    for row in normed.chunks_exact(d) {
        for u in unembed.chunks_exact(d) {
            let mut l = row.iter().zip(u).map(|(a, b)| a * b).sum::<f32>();
            if let Some(cap) = cfg.final_softcap {
                l = (l / cap).tanh() * cap;
            }
            logits.push(l);
        }
    }
    hidden.push(normed);
    DecoderOutput { hidden, logits }
}
