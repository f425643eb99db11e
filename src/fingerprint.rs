//! Identity checks, not security: FNV-1a over 32-bit words, to tell whether a saved training run
//! or saved dashboards were made from the model, SAE and text loaded now. Large weight tensors are
//! sampled (a changed model or SAE changes nearly every value, so a sample shows it): an SAE's
//! with a stride, a model's by whole embedding rows, which a model kept only on the GPU can read
//! back. (Models' fingerprints changed with that: runs and dashboards saved before are not
//! matched, and are recomputed.)

use crate::model::decoder::DecoderConfig;
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

/// The rows of an embedding (tokens, or learned positions) a model's fingerprint samples: 16
/// spread evenly over its `count` rows, the first and the last included (few enough to read back
/// from a model that lives on the GPU).
pub fn sampled_rows(count: usize) -> Vec<usize> {
    let mut rows: Vec<usize> = (0..16).map(|i| i * count.saturating_sub(1) / 15).collect();
    rows.dedup();
    rows
}

/// A model from what identifies it: its sizes, the sampled rows (`sampled_rows`, in order) of its
/// token embedding and of its learned positions (none for rotary models), and its final norm's
/// weight and bias.
pub fn model_from(cfg: &DecoderConfig, embedding_rows: &[f32], position_rows: &[f32], final_norm: &[f32]) -> u64 {
    let sizes = [cfg.vocab_size, cfg.max_positions, cfg.d_model, cfg.n_layers, cfg.n_heads].map(|v| v as u32);
    fnv1a(sizes.into_iter().chain(embedding_rows.iter().chain(position_rows).chain(final_norm).map(|v| v.to_bits())))
}

/// A model on the host (`model_from` of its values).
pub fn model(model: &Model) -> u64 {
    let (c, w) = (&model.cfg, &model.weights);
    let d = c.d_model;
    let rows = |table: &[f32]| {
        sampled_rows(table.len() / d.max(1)).into_iter().flat_map(|r| table[r * d..(r + 1) * d].to_vec()).collect::<Vec<f32>>()
    };
    let positions = w.pos_embed.as_deref().map(rows).unwrap_or_default();
    let norm: Vec<f32> = w.final_norm.weight.iter().chain(w.final_norm.bias.iter().flatten()).copied().collect();
    model_from(c, &rows(&w.embed), &positions, &norm)
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
