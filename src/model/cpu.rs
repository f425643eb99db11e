//! The reference forward pass of any described decoder ([`DecoderConfig`]) in plain f32 Rust,
//! following `transformers`' modeling files (5.24) operation by operation — the norms, rotary
//! embeddings on the first `rotary_dim` dimensions, grouped-query attention with the causal and
//! sliding-window masks and soft-capping, plain and gated MLPs, the three block layouts, the final
//! norm and the (capped) logits — composed from model.wgsl's twins in `reference::model`, with
//! TransformerLens's hook points. The GPU forward (`gpu::model_runner`) records the same steps.
//!
//! At every hook point the caller's `hook(point, acts, width)` sees the activation `[n_tokens,
//! width]` and may change it in place: what it leaves there is what the model computes on with, as
//! with a TransformerLens hook that returns a new value (this is how splicing and steering work).

use super::decoder::{BlockLayout, DecoderConfig, LayerAttention, Mlp, NormKind, Positions, Rope, RopeScaling};
use super::decoder_weights::NormWeights;
use super::{BlockSite, HookPoint, Intervention, Model, ModelError};
use crate::reference::model::{self as twin, Affine, AttentionSpec, NormSpec};

/// What a forward pass returns: `hidden[l]` the residual stream entering layer `l` (`hidden[0]`
/// the scaled embeddings), `hidden[n_layers]` the final norm's output — `transformers`'
/// `hidden_states` — and the logits `[n, vocab]`.
pub struct DecoderOutput {
    pub hidden: Vec<Vec<f32>>,
    pub logits: Vec<f32>,
}

/// The norm's description for model.wgsl's `norm`.
pub fn norm_spec(cfg: &DecoderConfig) -> NormSpec {
    match cfg.norm.kind {
        NormKind::LayerNorm => NormSpec { center: true, unit_offset: false, eps: cfg.norm.eps },
        NormKind::RmsNorm { unit_offset } => NormSpec { center: false, unit_offset, eps: cfg.norm.eps },
    }
}

fn affine(w: &NormWeights) -> Affine<'_> {
    Affine { weight: &w.weight, bias: w.bias.as_deref() }
}

/// A whole norm (normalise, then the weight) over rows of the weight's width.
fn norm(cfg: &DecoderConfig, w: &NormWeights, x: &[f32]) -> Vec<f32> {
    twin::norm(x, w.weight.len(), norm_spec(cfg), Some(affine(w)))
}

/// The norm's second half on an already normalised `x`.
fn scale_shift(cfg: &DecoderConfig, w: &NormWeights, normalized: &[f32]) -> Vec<f32> {
    twin::scale_shift(normalized, affine(w), norm_spec(cfg).unit_offset)
}

/// The attention of one layer as model.wgsl's `attention` takes it.
pub fn attention_spec(cfg: &DecoderConfig, layer: LayerAttention) -> AttentionSpec {
    AttentionSpec {
        n_heads: cfg.n_heads,
        n_kv_heads: cfg.n_kv_heads,
        d_head: cfg.d_head,
        scale: cfg.attn_scale,
        window: match layer {
            LayerAttention::Global => None,
            LayerAttention::Sliding { window } => Some(window),
        },
        softcap: cfg.attn_softcap,
    }
}

/// The RoPE a layer uses (Gemma 3's sliding layers have their own base), if positions are rotary.
pub fn layer_rope(cfg: &DecoderConfig, layer: LayerAttention) -> Option<&Rope> {
    match &cfg.positions {
        Positions::Learned => None,
        Positions::Rotary { global, local } => Some(if matches!(layer, LayerAttention::Sliding { .. }) { local } else { global }),
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
    let mut x = vec![0.0f32; n * d];
    // TransformerLens folds Gemma's √d into W_E, so hook_embed sees the scaled embedding
    // (convert_gemma_weights), as transformers' hidden_states[0] does.
    twin::gather_rows(&w.embed, 0, d, tokens, cfg.embedding_scale.unwrap_or(1.0), &mut x);
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
        if let Some(rope) = layer_rope(cfg, *attention_kind) {
            let (cos, sin) = twin::rope_tables(&inverse_frequencies(rope), n);
            twin::rope(&mut q, cfg.n_heads, cfg.d_head, &cos, &sin);
            twin::rope(&mut k, cfg.n_kv_heads, cfg.d_head, &cos, &sin);
        }
        let mut z = twin::attention(attention_spec(cfg, *attention_kind), &q, &k, &v, n);
        hook(at(BlockSite::AttnZ), &mut z, width_z);
        let mut attn = lw.o.apply(&z);
        if let Some(post) = &lw.post_attn_norm {
            attn = norm(cfg, post, &attn);
        }
        hook(at(BlockSite::AttnOut), &mut attn, d);
        // The residual the MLP reads, and the one the block adds its output to.
        let mut mid = match cfg.layout {
            BlockLayout::Parallel => None,
            BlockLayout::Sequential | BlockLayout::Sandwich => Some(twin::add(&x, &attn)),
        };
        if let Some(mid) = &mut mid {
            hook(at(BlockSite::ResidMid), mid, d);
        }
        let mut mlp_in = mid.as_ref().unwrap_or(&x).clone();
        hook(at(BlockSite::MlpIn), &mut mlp_in, d);
        let mut normalized = twin::norm(&mlp_in, d, norm_spec(cfg), None);
        hook(at(BlockSite::Ln2Normalized), &mut normalized, d);
        let mut hm = scale_shift(cfg, &lw.mlp_norm, &normalized);
        hook(at(BlockSite::Ln2Out), &mut hm, d);
        let up = lw.up.apply(&hm);
        let act: Vec<f32> = match (&cfg.mlp, &lw.gate) {
            (Mlp::Gated, Some(gate)) => twin::gated_activation(cfg.activation, &gate.apply(&hm), &up),
            _ => up.iter().map(|&u| cfg.activation.apply(u)).collect(),
        };
        let mut mlp = lw.down.apply(&act);
        if let Some(post) = &lw.post_mlp_norm {
            mlp = norm(cfg, post, &mlp);
        }
        hook(at(BlockSite::MlpOut), &mut mlp, d);
        x = match mid {
            // TransformerLens's order: resid_pre + attn_out + mlp_out.
            None => twin::add(&twin::add(&x, &attn), &mlp),
            Some(mid) => twin::add(&mid, &mlp),
        };
        hook(at(BlockSite::ResidPost), &mut x, d);
    }
    if !to_the_end {
        return Ok(Vec::new());
    }
    let mut normalized = twin::norm(&x, d, norm_spec(cfg), None);
    hook(HookPoint::FinalNormalized, &mut normalized, d);
    let normed = scale_shift(cfg, &w.final_norm, &normalized);
    Ok(logits(cfg, model.unembed(), &normed))
}

/// The final norm's output `[n, d_model]` through the unembedding (and Gemma 2's soft cap).
pub fn logits(cfg: &DecoderConfig, unembed: &[f32], normed: &[f32]) -> Vec<f32> {
    let d = cfg.d_model;
    let mut logits = crate::gemm::linear(normed, d, unembed, cfg.vocab_size, None);
    if let Some(cap) = cfg.final_softcap {
        twin::softcap(&mut logits, cap);
    }
    logits
}

/// The whole forward pass with `hook` at every hook point; the logits `[n, vocab]`.
pub fn forward(model: &Model, tokens: &[u32], hook: &mut dyn FnMut(HookPoint, &mut [f32], usize)) -> Result<Vec<f32>, ModelError> {
    forward_hooked(model, tokens, hook, model.cfg.n_layers, true)
}

/// The forward pass reading back the hook points `capture`, with the logits.
pub fn run_with_hooks(model: &Model, tokens: &[u32], capture: &[HookPoint]) -> Result<(Vec<f32>, Vec<Vec<f32>>), ModelError> {
    run(model, tokens, capture, &[])
}

/// The forward pass as `transformers` reports it: the residual stream entering each layer and the
/// final norm's output (`hidden_states`), and the logits.
pub fn hidden_states(model: &Model, tokens: &[u32]) -> Result<DecoderOutput, ModelError> {
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
