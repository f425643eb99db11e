//! The plain-Rust reference forward pass of GPT-2 (Radford et al. 2019; Hugging Face
//! `GPT2LMHeadModel` in eval mode), with TransformerLens hook points. GPU kernels for the forward
//! must reproduce it; tests check it against Hugging Face `transformers` (tools/make_gpt2_fixtures.py).
//!
//! At every hook point the caller's `hook(point, acts, width)` sees the activation `[n_tokens,
//! width]` and may change it in place: what it leaves there is what the model computes on with, as
//! with a TransformerLens hook that returns a new value (this is how splicing and steering work).

use super::{check_tokens, BlockSite, Gpt2, HookPoint, Intervention, LayerNorm, ModelError};
use crate::reference::model::{add, attention_z, gather_rows, gelu_new};

/// torch.nn.LayerNorm with `ln`'s weight and bias (`reference::model::layer_norm`).
fn layer_norm(x: &[f32], ln: &LayerNorm, eps: f32) -> Vec<f32> {
    crate::reference::model::layer_norm(x, &ln.weight, &ln.bias, eps)
}

/// `out[n, m] = a[n, k] · w[k, m] + bias[m]` (i-k-j order: rows of `w` stream through the cache).
fn matmul_bias(a: &[f32], w: &[f32], bias: &[f32], k: usize, m: usize) -> Vec<f32> {
    let n = a.len() / k;
    let mut out = Vec::with_capacity(n * m);
    for row in a.chunks_exact(k) {
        let start = out.len();
        out.extend_from_slice(bias);
        let o = &mut out[start..];
        for (i, &av) in row.iter().enumerate() {
            if av != 0.0 {
                for (ov, wv) in o.iter_mut().zip(&w[i * m..(i + 1) * m]) {
                    *ov += av * wv;
                }
            }
        }
    }
    out
}

/// Runs `tokens` through the model and returns the logits `[n_tokens, vocab]`. `hook` is called
/// at every hook point (see the module comment).
pub fn forward(model: &Gpt2, tokens: &[u32], hook: &mut dyn FnMut(HookPoint, &mut [f32], usize)) -> Result<Vec<f32>, ModelError> {
    forward_partial(model, tokens, hook, model.cfg.n_layers, true)
}

/// The activations `[n_tokens, d]` at `hook`, running only the blocks needed to reach it and
/// no unembedding (harvesting activations for SAE training).
pub fn activations_at(model: &Gpt2, tokens: &[u32], hook: HookPoint) -> Result<Vec<f32>, ModelError> {
    if !model.cfg.has_hook(hook) {
        return Err(ModelError::Hook(format!("{hook} is not a hook point of this model ({} layers)", model.cfg.n_layers)));
    }
    let mut out = Vec::new();
    let (blocks, at_end) = model.cfg.extent_to_reach(hook);
    forward_partial(
        model,
        tokens,
        &mut |at, acts, _| {
            if at == hook {
                out = acts.to_vec()
            }
        },
        blocks,
        at_end,
    )?;
    Ok(out)
}

/// `forward` through the first `blocks` blocks; the final LayerNorm and logits only when
/// `to_the_end` (then it returns the logits, else nothing).
fn forward_partial(
    model: &Gpt2,
    tokens: &[u32],
    hook: &mut dyn FnMut(HookPoint, &mut [f32], usize),
    blocks: usize,
    to_the_end: bool,
) -> Result<Vec<f32>, ModelError> {
    let cfg = &model.cfg;
    check_tokens(cfg, tokens)?;
    let (n, d, eps) = (tokens.len(), cfg.d_model, cfg.layer_norm_eps);
    let mut embed = vec![0.0f32; n * d];
    gather_rows(&model.wte, 0, d, tokens, &mut embed);
    hook(HookPoint::Embed, &mut embed, d);
    let mut pos_embed = model.wpe[..n * d].to_vec();
    hook(HookPoint::PosEmbed, &mut pos_embed, d);
    let mut resid = add(&embed, &pos_embed);
    let scale = if cfg.scale_attn_weights { 1.0 / (cfg.d_head() as f32).sqrt() } else { 1.0 };
    for (layer, block) in model.blocks.iter().enumerate().take(blocks) {
        let at = |site| HookPoint::block(layer, site);
        hook(at(BlockSite::ResidPre), &mut resid, d);
        let h = layer_norm(&resid, &block.ln_1, eps);
        let qkv = matmul_bias(&h, &block.qkv_weight, &block.qkv_bias, d, 3 * d);
        let mut z = attention_z(&qkv, n, d, cfg.n_heads, scale);
        hook(at(BlockSite::AttnZ), &mut z, d);
        let mut attn_out = matmul_bias(&z, &block.attn_out_weight, &block.attn_out_bias, d, d);
        hook(at(BlockSite::AttnOut), &mut attn_out, d);
        let mut resid_mid = add(&resid, &attn_out);
        hook(at(BlockSite::ResidMid), &mut resid_mid, d);
        let h = layer_norm(&resid_mid, &block.ln_2, eps);
        let mut hidden = matmul_bias(&h, &block.mlp_in_weight, &block.mlp_in_bias, d, cfg.d_mlp);
        hidden.iter_mut().for_each(|v| *v = gelu_new(*v));
        let mut mlp_out = matmul_bias(&hidden, &block.mlp_out_weight, &block.mlp_out_bias, cfg.d_mlp, d);
        hook(at(BlockSite::MlpOut), &mut mlp_out, d);
        resid = add(&resid_mid, &mlp_out);
        hook(at(BlockSite::ResidPost), &mut resid, d);
    }
    if !to_the_end {
        return Ok(Vec::new());
    }
    let mut normalized = layer_norm(&resid, &model.ln_f, eps);
    hook(HookPoint::FinalNormalized, &mut normalized, d);
    let unembed = model.unembed();
    let mut logits = Vec::with_capacity(n * cfg.vocab_size);
    for row in normalized.chunks_exact(d) {
        logits.extend(unembed.chunks_exact(d).map(|u| u.iter().zip(row).map(|(a, b)| a * b).sum::<f32>()));
    }
    Ok(logits)
}

/// The forward pass with `interventions` applied, reading back the named hook points (each
/// `[n_tokens, d]`, as the model computes with them: after any intervention there), with the
/// logits.
pub fn run(
    model: &Gpt2,
    tokens: &[u32],
    capture: &[HookPoint],
    interventions: &[Intervention<'_>],
) -> Result<(Vec<f32>, Vec<Vec<f32>>), ModelError> {
    for i in interventions {
        i.check(&model.cfg, tokens.len()).map_err(ModelError::Intervention)?;
    }
    if let Some(hook) = capture.iter().find(|h| !model.cfg.has_hook(**h)) {
        return Err(ModelError::Hook(format!("{hook} is not a hook point of this model ({} layers)", model.cfg.n_layers)));
    }
    let mut captured: Vec<Vec<f32>> = vec![Vec::new(); capture.len()];
    let logits = forward(model, tokens, &mut |at, acts, width| {
        for i in interventions.iter().filter(|i| i.hook() == at) {
            i.apply(acts, width);
        }
        for (slot, &wanted) in captured.iter_mut().zip(capture) {
            if wanted == at {
                *slot = acts.to_vec();
            }
        }
    })?;
    Ok((logits, captured))
}

/// The forward pass reading back the hook points `capture` (each `[n_tokens, d]`), with the logits.
pub fn run_with_hooks(model: &Gpt2, tokens: &[u32], capture: &[HookPoint]) -> Result<(Vec<f32>, Vec<Vec<f32>>), ModelError> {
    run(model, tokens, capture, &[])
}
