//! Identity checks, not security: FNV-1a over 32-bit words, to tell whether a saved training run
//! or saved dashboards were made from the model, SAE and text loaded now. Large weight tensors are
//! sampled with a stride (a changed model or SAE changes nearly every value, so a sample shows it).

use crate::model::Gpt2;
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

/// A GPT-2: its sizes, a strided sample of its embeddings, its final LayerNorm.
pub fn model(model: &Gpt2) -> u64 {
    let c = &model.cfg;
    let sizes = [c.vocab_size, c.n_positions, c.d_model, c.n_layers, c.n_heads].map(|v| v as u32);
    let sample = model.wte.iter().step_by(STRIDE).chain(model.wpe.iter().step_by(STRIDE)).chain(&model.ln_f.weight).chain(&model.ln_f.bias);
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
