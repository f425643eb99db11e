//! The reference forward pass of any described decoder ([`DecoderConfig`]) in plain f32 Rust,
//! following `transformers`' modeling files (5.24) operation by operation: the norms (LayerNorm,
//! RMSNorm, Gemma's `(1 + w)`), rotary embeddings with `rotate_half` on the first `rotary_dim`
//! dimensions (`apply_rotary_pos_emb`), grouped-query attention with the causal and sliding-window
//! masks and soft-capping (`eager_attention_forward`), plain and gated MLPs, the three block
//! layouts, the final norm and the (capped) logits.

use super::decoder::{Activation, BlockLayout, DecoderConfig, LayerAttention, Mlp, NormKind, Positions, Rope, RopeScaling};
use super::decoder_weights::NormWeights;
use super::{BlockSite, HookPoint, Intervention, Model, ModelError};
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

/// A norm's first half over rows of `d`: `x / scale` (centred first for LayerNorm), what
/// TransformerLens's `hook_normalized` sees.
pub fn normalize(cfg: &DecoderConfig, x: &[f32], d: usize) -> Vec<f32> {
    let eps = cfg.norm.eps;
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(d) {
        let mean = if cfg.norm.kind == NormKind::LayerNorm { row.iter().sum::<f32>() / d as f32 } else { 0.0 };
        let inv = 1.0 / (row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32 + eps).sqrt();
        out.extend(row.iter().map(|v| (v - mean) * inv));
    }
    out
}

/// A norm's second half: `· w + b`, `· w`, or Gemma's `· (1 + w)`.
pub fn scale_shift(cfg: &DecoderConfig, w: &NormWeights, normalized: &[f32]) -> Vec<f32> {
    let unit = matches!(cfg.norm.kind, NormKind::RmsNorm { unit_offset: true });
    let d = w.weight.len();
    let mut out = Vec::with_capacity(normalized.len());
    for row in normalized.chunks_exact(d) {
        for (i, v) in row.iter().enumerate() {
            let scaled = v * if unit { 1.0 + w.weight[i] } else { w.weight[i] };
            out.push(scaled + w.bias.as_ref().map_or(0.0, |b| b[i]));
        }
    }
    out
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

/// The forward pass over `tokens`, with `hook(point, acts, width)` called at every hook point of
/// the model with the activation `[n, width]`: what the hook leaves there is what the model computes
/// on with, as with a TransformerLens hook that returns a new value (splicing, steering). Runs the
/// first `blocks` blocks; the final norm and the logits only when `to_the_end` (then it returns the
/// logits `[n, vocab]`, else nothing). Hook placement is TransformerLens's
/// (`TransformerBlock.forward`, 3.9): Gemma's post-norms come before `hook_attn_out` and
/// `hook_mlp_out`, so those are what the block adds to the residual stream; `hook_mlp_in` is a copy
/// the MLP alone reads; `ln2.hook_normalized` and `ln_final.hook_normalized` are the norms before
/// their weight.
pub fn forward_hooked(
    model: &Model,
    tokens: &[u32],
    hook: &mut dyn FnMut(HookPoint, &mut [f32], usize),
    blocks: usize,
    to_the_end: bool,
) -> Result<Vec<f32>, ModelError> {
    model.check_tokens(tokens)?;
    let (cfg, w) = (&model.cfg, &model.weights);
    let (n, d) = (tokens.len(), cfg.d_model);
    let mut x: Vec<f32> = tokens.iter().flat_map(|&t| w.embed[t as usize * d..(t as usize + 1) * d].iter().copied()).collect();
    // TransformerLens folds Gemma's √d into W_E, so hook_embed sees the scaled embedding
    // (convert_gemma_weights), as transformers' hidden_states[0] does.
    if let Some(scale) = cfg.embedding_scale {
        x.iter_mut().for_each(|v| *v *= scale);
    }
    hook(HookPoint::Embed, &mut x, d);
    if let Some(pos) = &w.pos_embed {
        let mut pos_embed = pos[..n * d].to_vec();
        hook(HookPoint::PosEmbed, &mut pos_embed, d);
        x.iter_mut().zip(&pos_embed).for_each(|(v, p)| *v += p);
    }
    let width_z = cfg.n_heads * cfg.d_head;
    for (layer, (attention_kind, lw)) in cfg.layers.iter().zip(&w.layers).enumerate().take(blocks) {
        let at = |site| HookPoint::block(layer, site);
        hook(at(BlockSite::ResidPre), &mut x, d);
        let h = norm(cfg, &lw.attn_norm, &x);
        let (mut q, mut k, v) = (lw.q.apply(&h), lw.k.apply(&h), lw.v.apply(&h));
        if let (Some(qn), Some(kn)) = (&lw.q_norm, &lw.k_norm) {
            q = norm(cfg, qn, &q);
            k = norm(cfg, kn, &k);
        }
        if let Positions::Rotary { global, local } = &cfg.positions {
            let rope = if matches!(attention_kind, LayerAttention::Sliding { .. }) { local } else { global };
            apply_rope(&mut q, cfg.n_heads, cfg.d_head, rope);
            apply_rope(&mut k, cfg.n_kv_heads, cfg.d_head, rope);
        }
        let mut z = attention(cfg, *attention_kind, &q, &k, &v, n);
        hook(at(BlockSite::AttnZ), &mut z, width_z);
        let mut attn = lw.o.apply(&z);
        if let Some(post) = &lw.post_attn_norm {
            attn = norm(cfg, post, &attn);
        }
        hook(at(BlockSite::AttnOut), &mut attn, d);
        // The residual the MLP reads, and the one the block adds its output to.
        let mut mid = match cfg.layout {
            BlockLayout::Parallel => None,
            BlockLayout::Sequential | BlockLayout::Sandwich => Some(add(&x, &attn)),
        };
        if let Some(mid) = &mut mid {
            hook(at(BlockSite::ResidMid), mid, d);
        }
        let mut mlp_in = mid.as_ref().unwrap_or(&x).clone();
        hook(at(BlockSite::MlpIn), &mut mlp_in, d);
        let mut normalized = normalize(cfg, &mlp_in, d);
        hook(at(BlockSite::Ln2Normalized), &mut normalized, d);
        let mut hm = scale_shift(cfg, &lw.mlp_norm, &normalized);
        hook(at(BlockSite::Ln2Out), &mut hm, d);
        let up = lw.up.apply(&hm);
        let act: Vec<f32> = match (&cfg.mlp, &lw.gate) {
            (Mlp::Gated, Some(gate)) => gate.apply(&hm).iter().zip(&up).map(|(g, u)| activation(cfg.activation, *g) * u).collect(),
            _ => up.iter().map(|&u| activation(cfg.activation, u)).collect(),
        };
        let mut mlp = lw.down.apply(&act);
        if let Some(post) = &lw.post_mlp_norm {
            mlp = norm(cfg, post, &mlp);
        }
        hook(at(BlockSite::MlpOut), &mut mlp, d);
        x = match mid {
            // TransformerLens's order: resid_pre + attn_out + mlp_out.
            None => add(&add(&x, &attn), &mlp),
            Some(mid) => add(&mid, &mlp),
        };
        hook(at(BlockSite::ResidPost), &mut x, d);
    }
    if !to_the_end {
        return Ok(Vec::new());
    }
    let mut normalized = normalize(cfg, &x, d);
    hook(HookPoint::FinalNormalized, &mut normalized, d);
    let normed = scale_shift(cfg, &w.final_norm, &normalized);
    Ok(logits(cfg, model.unembed(), &normed))
}

/// The final norm's output `[n, d_model]` through the unembedding (and Gemma 2's soft cap).
pub fn logits(cfg: &DecoderConfig, unembed: &[f32], normed: &[f32]) -> Vec<f32> {
    let d = cfg.d_model;
    let mut logits = Vec::with_capacity(normed.len() / d * cfg.vocab_size);
    for row in normed.chunks_exact(d) {
        for u in unembed.chunks_exact(d) {
            let mut l = row.iter().zip(u).map(|(a, b)| a * b).sum::<f32>();
            if let Some(cap) = cfg.final_softcap {
                l = (l / cap).tanh() * cap;
            }
            logits.push(l);
        }
    }
    logits
}

fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// The forward pass as `transformers` reports it: the residual stream entering each layer and the
/// final norm's output (`hidden_states`), and the logits.
pub fn forward(model: &Model, tokens: &[u32]) -> Result<DecoderOutput, ModelError> {
    let mut hidden = Vec::with_capacity(model.cfg.n_layers + 1);
    let mut last = Vec::new();
    let logits = forward_hooked(
        model,
        tokens,
        &mut |at, acts, _| match at {
            HookPoint::Block { site: BlockSite::ResidPre, .. } => hidden.push(acts.to_vec()),
            HookPoint::FinalNormalized => last = acts.to_vec(),
            _ => {}
        },
        model.cfg.n_layers,
        true,
    )?;
    hidden.push(scale_shift(&model.cfg, &model.weights.final_norm, &last));
    Ok(DecoderOutput { hidden, logits })
}

/// The forward pass with `interventions` applied, reading back the hook points `capture` (each
/// `[n, width]`, as the model computes with them: after any intervention there), with the logits.
pub fn run(
    model: &Model,
    tokens: &[u32],
    capture: &[HookPoint],
    interventions: &[Intervention<'_>],
) -> Result<(Vec<f32>, Vec<Vec<f32>>), ModelError> {
    for i in interventions {
        i.check(&model.cfg, tokens.len()).map_err(ModelError::Intervention)?;
    }
    if let Some(hook) = capture.iter().find(|h| !model.cfg.has_hook(**h)) {
        return Err(ModelError::Hook(format!("{hook} is not a hook point of this {} model", model.cfg.model_type)));
    }
    let mut captured: Vec<Vec<f32>> = vec![Vec::new(); capture.len()];
    let logits = forward_hooked(
        model,
        tokens,
        &mut |at, acts, width| {
            for i in interventions.iter().filter(|i| i.hook() == at) {
                i.apply(acts, width);
            }
            for (slot, &wanted) in captured.iter_mut().zip(capture) {
                if wanted == at {
                    *slot = acts.to_vec();
                }
            }
        },
        model.cfg.n_layers,
        true,
    )?;
    Ok((logits, captured))
}

/// The activations `[n, width]` at `hook`, running only the blocks needed to reach it and no
/// unembedding (harvesting activations for SAE training).
pub fn activations_at(model: &Model, tokens: &[u32], hook: HookPoint) -> Result<Vec<f32>, ModelError> {
    if !model.cfg.has_hook(hook) {
        return Err(ModelError::Hook(format!("{hook} is not a hook point of this {} model", model.cfg.model_type)));
    }
    let mut out = Vec::new();
    let (blocks, to_the_end) = model.cfg.extent_to_reach(hook);
    forward_hooked(
        model,
        tokens,
        &mut |at, acts, _| {
            if at == hook {
                out = acts.to_vec()
            }
        },
        blocks,
        to_the_end,
    )?;
    Ok(out)
}
