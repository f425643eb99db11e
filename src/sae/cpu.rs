//! The CPU reference: what every GPU kernel must compute, written to be read. It follows SAELens
//! (`sae_lens/saes/sae.py` `process_sae_in`, `decode`, `run_time_activation_norm_fn_in/out`, and
//! each architecture's `encode` in `standard_sae.py`, `topk_sae.py`, `jumprelu_sae.py`,
//! `gated_sae.py`) line by line, in f32 like SAELens's default dtype.

use super::{EncoderTensors, Normalization, Sae, SaeWeights};

/// SAELens's epsilon in `run_time_activation_ln_in`.
pub const LAYER_NORM_EPS: f32 = 1e-5;

/// How one row was normalised, so that decode can undo it:
/// `sae_in = (x - shift) * in_scale [- b_dec]`, `out = recon * out_scale + shift`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowNorm {
    pub shift: f32,
    pub in_scale: f32,
    pub out_scale: f32,
}

impl RowNorm {
    pub const IDENTITY: RowNorm = RowNorm { shift: 0.0, in_scale: 1.0, out_scale: 1.0 };
}

/// The normalisation of one row (`run_time_activation_norm_fn_in`).
pub fn row_norm(normalization: Normalization, x: &[f32]) -> RowNorm {
    let d = x.len() as f32;
    match normalization {
        Normalization::None | Normalization::ExpectedAverageOnlyIn => RowNorm::IDENTITY,
        Normalization::LayerNorm => {
            // mu = x.mean(-1); x = x - mu; std = x.std(-1) (unbiased); x = x / (std + eps).
            // Undone by x * std + mu (no epsilon), as in run_time_activation_ln_out.
            let mean = x.iter().sum::<f32>() / d;
            let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / (d - 1.0).max(1.0);
            let std = var.sqrt();
            RowNorm { shift: mean, in_scale: 1.0 / (std + LAYER_NORM_EPS), out_scale: std }
        }
        Normalization::ConstantNormRescale => {
            // x * sqrt(d_in) / ‖x‖, undone by dividing by the same factor.
            let norm = x.iter().map(|v| v * v).sum::<f32>().sqrt();
            let scale = d.sqrt() / norm;
            RowNorm { shift: 0.0, in_scale: scale, out_scale: 1.0 / scale }
        }
    }
}

/// `process_sae_in` for one row: normalise, then subtract `b_dec` if `apply_b_dec_to_input`.
pub fn process_input(sae: &Sae, x: &[f32]) -> (Vec<f32>, RowNorm) {
    let norm = row_norm(sae.cfg.normalization, x);
    let b_dec_weight = if sae.cfg.apply_b_dec_to_input { 1.0 } else { 0.0 };
    let sae_in = x.iter().zip(sae.b_dec()).map(|(v, b)| (v - norm.shift) * norm.in_scale - b * b_dec_weight).collect();
    (sae_in, norm)
}

/// `sae_in @ W_enc` for one row (no bias), accumulated in f32 in input order. Training's forward
/// pass (`train::sae_train`) projects with it too.
pub fn project(weights: &SaeWeights, sae_in: &[f32]) -> Vec<f32> {
    let d_sae = weights.d_sae;
    let mut acc = vec![0.0f32; d_sae];
    for (i, &xi) in sae_in.iter().enumerate() {
        let w_row = &weights.w_enc[i * d_sae..(i + 1) * d_sae];
        for (a, w) in acc.iter_mut().zip(w_row) {
            *a += xi * w;
        }
    }
    acc
}

/// Indices of the `k` largest values, largest first; ties go to the lower index.
pub fn top_k_indices(values: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    let key = |i: &usize| (std::cmp::Reverse(sortable_key(values[*i])), *i);
    if k < order.len() {
        order.select_nth_unstable_by_key(k, key);
        order.truncate(k);
    }
    order.sort_by_key(key);
    order
}

/// Encodes one already-processed row into dense feature activations `[d_sae]`.
pub fn encode_row(sae: &Sae, sae_in: &[f32]) -> Vec<f32> {
    let mut pre = project(sae.weights(), sae_in);
    match &sae.weights().encoder {
        EncoderTensors::Bias { b_enc } => {
            for (p, b) in pre.iter_mut().zip(b_enc) {
                *p += b;
            }
            let Some(k) = sae.cfg.architecture.topk() else {
                // StandardSAE
                pre.iter_mut().for_each(|p| *p = p.max(0.0));
                return pre;
            };
            // TopKSAE with rescale_acts_by_decoder_norm selects on pre * ‖W_dec‖.
            let selection_values = if sae.cfg.rescale_acts_by_decoder_norm {
                pre.iter().zip(sae.decoder_norms()).map(|(p, n)| p * n).collect()
            } else {
                pre.clone()
            };
            let mut acts = vec![0.0; pre.len()];
            for j in top_k_indices(&selection_values, k) {
                acts[j] = selection_values[j].max(0.0);
            }
            acts
        }
        EncoderTensors::Threshold { b_enc, threshold } => {
            for ((p, b), t) in pre.iter_mut().zip(b_enc).zip(threshold) {
                let h = *p + b;
                *p = if h > *t { h.max(0.0) } else { 0.0 };
            }
            pre
        }
        EncoderTensors::Gated { b_gate, r_mag, b_mag } => {
            for (j, p) in pre.iter_mut().enumerate() {
                let gate_open = *p + b_gate[j] > 0.0;
                let magnitude = (*p * r_mag[j].exp() + b_mag[j]).max(0.0);
                *p = if gate_open { magnitude } else { 0.0 };
            }
            pre
        }
    }
}

/// Decodes one row of dense activations, then undoes the row's normalisation.
pub fn decode_row(sae: &Sae, acts: &[f32], norm: RowNorm) -> Vec<f32> {
    let d_in = sae.d_in();
    let mut out = sae.b_dec().to_vec();
    let decoder_scale = sae.cfg.rescale_acts_by_decoder_norm && sae.cfg.architecture.topk().is_some();
    let norms = if decoder_scale { sae.decoder_norms() } else { Vec::new() };
    if decoder_scale {
        let scaled: Vec<f32> = acts.iter().zip(&norms).map(|(a, n)| if *a == 0.0 { 0.0 } else { a / n }).collect();
        add_decoded(&mut out, &scaled, sae.w_dec(), d_in);
    } else {
        add_decoded(&mut out, acts, sae.w_dec(), d_in);
    }
    for o in out.iter_mut() {
        *o = *o * norm.out_scale + norm.shift;
    }
    out
}

/// `out += Σ_j acts[j] · W_dec[j]` over the active latents of one row (`W_dec` is `[d_sae, d_in]`).
/// Training's forward pass decodes with it too.
pub fn add_decoded(out: &mut [f32], acts: &[f32], w_dec: &[f32], d_in: usize) {
    for (j, &a) in acts.iter().enumerate().filter(|(_, &a)| a != 0.0) {
        for (o, w) in out.iter_mut().zip(&w_dec[j * d_in..(j + 1) * d_in]) {
            *o += a * w;
        }
    }
}

/// What SAELens's `sae.encode(x)` returns, for `n` rows: dense `[n, d_sae]`.
pub fn encode(sae: &Sae, x: &[f32]) -> Vec<f32> {
    x.chunks_exact(sae.d_in()).flat_map(|row| encode_row(sae, &process_input(sae, row).0)).collect()
}

/// Both `sae.encode(x)` and `sae(x)` (= decode(encode(x)), plus a skip transcoder's skip
/// connection) for every row.
pub fn forward(sae: &Sae, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut acts = Vec::with_capacity(x.len() / sae.d_in() * sae.d_sae());
    let mut recon = Vec::with_capacity(x.len());
    for row in x.chunks_exact(sae.d_in()) {
        let (sae_in, norm) = process_input(sae, row);
        let a = encode_row(sae, &sae_in);
        let mut out = decode_row(sae, &a, norm);
        if let Some(w_skip) = sae.w_skip() {
            add_skip(&mut out, row, w_skip);
        }
        recon.extend(out);
        acts.extend(a);
    }
    (acts, recon)
}

/// `out += x W_skipᵀ` for one row (`W_skip` is `[d_out, d_in]`): SAELens `SkipTranscoder.forward`'s
/// `x @ self.W_skip.T`, on the raw input.
pub fn add_skip(out: &mut [f32], x: &[f32], w_skip: &[f32]) {
    for (o, w_row) in out.iter_mut().zip(w_skip.chunks_exact(x.len())) {
        *o += x.iter().zip(w_row).map(|(a, b)| a * b).sum::<f32>();
    }
}

/// Order-preserving map from f32 to u32: `a < b` ⇔ `key(a) < key(b)` for non-NaN values.
/// The CPU twin of `sortable_key` in `shaders/topk.wgsl`; the CPU TopK breaks ties with it the same way.
pub fn sortable_key(v: f32) -> u32 {
    let bits = v.to_bits();
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sortable_key_preserves_order() {
        let values = [f32::NEG_INFINITY, -3.5, -1e-30, 0.0, 1e-30, 2.0, 7.25, f32::INFINITY];
        for w in values.windows(2) {
            assert!(sortable_key(w[0]) < sortable_key(w[1]), "{} vs {}", w[0], w[1]);
        }
    }
}
