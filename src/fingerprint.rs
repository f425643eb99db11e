//! Identity checks, not security: FNV-1a over 32-bit words, to tell whether a saved training run
//! or saved dashboards were made from the model, SAE and text loaded now. Large weight tensors are
//! sampled with a stride (a changed model or SAE changes nearly every value, so a sample shows it).

use crate::model::Model;
use crate::sae::Sae;

const STRIDE: usize = 31;

/// FNV-1a (64-bit) over the words' little-endian bytes.
pub fn fnv1a(words: impl IntoIterator<Item = u32>) -> u64 {
    words.into_iter().flat_map(u32::to_le_bytes).fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Token ids, every one.
pub fn tokens(tokens: &[u32]) -> u64 {
    fnv1a(tokens.iter().copied())
}

/// A model: its sizes, a strided sample of its embeddings, its final norm (for GPT-2 the same
/// values as before the families, so existing checkpoints and dashboards still match).
pub fn model(model: &Model) -> u64 {
    let (c, w) = (&model.cfg, &model.weights);
    let sizes = [c.vocab_size, c.max_positions, c.d_model, c.n_layers, c.n_heads].map(|v| v as u32);
    let positions = w.pos_embed.iter().flat_map(|p| p.iter().step_by(STRIDE));
    let norm = w.final_norm.weight.iter().chain(w.final_norm.bias.iter().flatten());
    let sample = w.embed.iter().step_by(STRIDE).chain(positions).chain(norm);
    fnv1a(sizes.into_iter().chain(sample.map(|v| v.to_bits())))
}

/// An SAE: its sizes and hook, a strided sample of its encoder and decoder, and every per-feature
/// and per-dimension tensor (biases, thresholds, gates).
pub fn sae(sae: &Sae) -> u64 {
    let hook = sae.cfg.hook_name.as_deref().unwrap_or("").bytes().map(u32::from);
    let sizes = [sae.d_in(), sae.d_sae()].map(|v| v as u32);
    let w = sae.weights();
    let small = w.tensors().into_iter().filter(|(name, _)| !matches!(*name, "W_enc" | "W_dec")).flat_map(|(_, t)| t.iter());
    let weights = w.w_enc.iter().step_by(STRIDE).chain(w.w_dec.iter().step_by(STRIDE)).chain(small);
    fnv1a(sizes.into_iter().chain(hook).chain(weights.map(|v| v.to_bits())))
}
