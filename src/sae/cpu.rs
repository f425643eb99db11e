//! The CPU reference: what every GPU kernel must compute, written to be read. It follows SAELens
//! (`sae_lens/saes/sae.py` `process_sae_in`, `decode`, `run_time_activation_norm_fn_in/out`, and
//! each architecture's `encode` in `standard_sae.py`, `topk_sae.py`, `jumprelu_sae.py`,
//! `gated_sae.py`) line by line, in f32 like SAELens's default dtype.

use super::{EncoderTensors, Normalization, Sae, SaeWeights};
use crate::gemm::{self, Matrix};

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

/// [`process_input`] for every row of `x` (`[n, d_in]`): the rows the encoder reads, and how each
/// was normalised.
pub fn process_inputs(sae: &Sae, x: &[f32]) -> (Vec<f32>, Vec<RowNorm>) {
    let mut sae_in = Vec::with_capacity(x.len());
    let norms = x
        .chunks_exact(sae.d_in())
        .map(|row| {
            let (processed, norm) = process_input(sae, row);
            sae_in.extend(processed);
            norm
        })
        .collect();
    (sae_in, norms)
}

/// `sae_in @ W_enc` (no bias) for rows `[n, d_in]` → `[n, d_sae]`: one product on the host's GEMM.
/// Training's forward pass (`train::sae_train`) projects with it too.
pub fn project(weights: &SaeWeights, sae_in: &[f32]) -> Vec<f32> {
    let (d_in, d_sae) = (weights.d_in, weights.d_sae);
    gemm::matmul(Matrix::new(sae_in, sae_in.len() / d_in, d_in), Matrix::new(&weights.w_enc, d_in, d_sae))
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

/// One row's top-k as a dense row: relu(value) at the `k` largest (`top_k_indices`' choice,
/// ties to the lower index), 0 elsewhere — SAELens's TopK activation, and AuxK's selection among
/// dead latents (`calculate_topk_aux_loss`). Twin of topk.wgsl `dense_rows`.
pub fn top_k_dense(values: &[f32], k: usize) -> Vec<f32> {
    let mut dense = vec![0.0; values.len()];
    for j in top_k_indices(values, k) {
        dense[j] = values[j].max(0.0);
    }
    dense
}

/// Each architecture's `encode` after the product: one row's projection `sae_in @ W_enc`, turned
/// in place into its dense feature activations `[d_sae]`. `decoder_norms` is ‖W_dec[j]‖ where
/// TopK's `rescale_acts_by_decoder_norm` needs it (empty otherwise).
fn activate(sae: &Sae, pre: &mut [f32], decoder_norms: &[f32]) {
    match &sae.weights().encoder {
        EncoderTensors::Bias { b_enc } => {
            pre.iter_mut().zip(b_enc).for_each(|(p, b)| *p += b);
            let Some(k) = sae.cfg.architecture.topk() else {
                // StandardSAE
                pre.iter_mut().for_each(|p| *p = p.max(0.0));
                return;
            };
            // TopKSAE with rescale_acts_by_decoder_norm selects on pre * ‖W_dec‖.
            if sae.cfg.rescale_acts_by_decoder_norm {
                pre.iter_mut().zip(decoder_norms).for_each(|(p, n)| *p *= n);
            }
            let kept: Vec<(usize, f32)> = top_k_indices(pre, k).into_iter().map(|j| (j, pre[j].max(0.0))).collect();
            pre.fill(0.0);
            kept.into_iter().for_each(|(j, v)| pre[j] = v);
        }
        EncoderTensors::Threshold { b_enc, threshold } => {
            for ((p, b), t) in pre.iter_mut().zip(b_enc).zip(threshold) {
                let h = *p + b;
                *p = if h > *t { h.max(0.0) } else { 0.0 };
            }
        }
        EncoderTensors::Gated { b_gate, r_mag, b_mag } => {
            for (j, p) in pre.iter_mut().enumerate() {
                let gate_open = *p + b_gate[j] > 0.0;
                let magnitude = (*p * r_mag[j].exp() + b_mag[j]).max(0.0);
                *p = if gate_open { magnitude } else { 0.0 };
            }
        }
    }
}

/// Whether the decoder scales activations by 1 / ‖W_dec[j]‖ (TopK's `rescale_acts_by_decoder_norm`).
fn decoder_scale(sae: &Sae) -> bool {
    sae.cfg.rescale_acts_by_decoder_norm && sae.cfg.architecture.topk().is_some()
}

/// ‖W_dec[j]‖ where the SAE's encoder and decoder use it (see [`decoder_scale`]), else empty: one
/// pass over W_dec, made once per batch and shared by encode and decode.
fn scale_norms(sae: &Sae) -> Vec<f32> {
    if decoder_scale(sae) {
        sae.decoder_norms()
    } else {
        Vec::new()
    }
}

/// Encodes already-processed rows `[n, d_in]` into dense feature activations `[n, d_sae]`.
pub fn encode_rows(sae: &Sae, sae_in: &[f32]) -> Vec<f32> {
    encode_scaled(sae, sae_in, &scale_norms(sae))
}

fn encode_scaled(sae: &Sae, sae_in: &[f32], decoder_norms: &[f32]) -> Vec<f32> {
    let mut acts = project(sae.weights(), sae_in);
    acts.chunks_exact_mut(sae.d_sae()).for_each(|row| activate(sae, row, decoder_norms));
    acts
}

/// Decodes rows of dense activations `[n, d_sae]`, then undoes each row's normalisation.
pub fn decode_rows(sae: &Sae, acts: &[f32], norms: &[RowNorm]) -> Vec<f32> {
    decode_scaled(sae, acts, norms, &scale_norms(sae))
}

fn decode_scaled(sae: &Sae, acts: &[f32], norms: &[RowNorm], decoder_norms: &[f32]) -> Vec<f32> {
    let d_in = sae.d_in();
    let mut out = sae.b_dec().repeat(norms.len());
    if decoder_scale(sae) {
        let scaled: Vec<f32> = acts
            .chunks_exact(sae.d_sae())
            .flat_map(|row| row.iter().zip(decoder_norms).map(|(a, n)| if *a == 0.0 { 0.0 } else { a / n }))
            .collect();
        add_decoded(&mut out, &scaled, sae.w_dec(), d_in);
    } else {
        add_decoded(&mut out, acts, sae.w_dec(), d_in);
    }
    for (row, norm) in out.chunks_exact_mut(d_in).zip(norms) {
        row.iter_mut().for_each(|o| *o = *o * norm.out_scale + norm.shift);
    }
    out
}

/// Decodes one row of dense activations, then undoes the row's normalisation.
pub fn decode_row(sae: &Sae, acts: &[f32], norm: RowNorm) -> Vec<f32> {
    decode_rows(sae, acts, &[norm])
}

/// `out += acts · W_dec` for rows `out` `[n, d_in]` and `acts` `[n, d_sae]` (`W_dec` is
/// `[d_sae, d_in]`). Sparse rows (TopK's, L0 in the tens out of thousands) add only their active
/// decoder rows; denser ones go through one product, which does about twenty times the useful
/// multiply-adds per second of the row-by-row sum here, hence the 1/16 density cut. Training's
/// forward pass decodes with it too.
pub fn add_decoded(out: &mut [f32], acts: &[f32], w_dec: &[f32], d_in: usize) {
    let (n, d_sae) = (out.len() / d_in, w_dec.len() / d_in);
    let active = acts.iter().filter(|&&a| a != 0.0).count();
    if active * 16 >= n * d_sae {
        return gemm::matmul_into(Matrix::new(acts, n, d_sae), Matrix::new(w_dec, d_sae, d_in), out, true);
    }
    for (out_row, acts_row) in out.chunks_exact_mut(d_in).zip(acts.chunks_exact(d_sae)) {
        for (j, &a) in acts_row.iter().enumerate().filter(|(_, &a)| a != 0.0) {
            for (o, w) in out_row.iter_mut().zip(&w_dec[j * d_in..(j + 1) * d_in]) {
                *o += a * w;
            }
        }
    }
}

/// What SAELens's `sae.encode(x)` returns, for `n` rows: dense `[n, d_sae]`.
pub fn encode(sae: &Sae, x: &[f32]) -> Vec<f32> {
    encode_rows(sae, &process_inputs(sae, x).0)
}

/// Both `sae.encode(x)` and `sae(x)` (= decode(encode(x)), plus a skip transcoder's skip
/// connection) for every row.
pub fn forward(sae: &Sae, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (sae_in, norms) = process_inputs(sae, x);
    let decoder_norms = scale_norms(sae);
    let acts = encode_scaled(sae, &sae_in, &decoder_norms);
    let mut recon = decode_scaled(sae, &acts, &norms, &decoder_norms);
    if let Some(w_skip) = sae.w_skip() {
        add_skip(&mut recon, x, sae.d_in(), w_skip);
    }
    (acts, recon)
}

/// `out += x W_skipᵀ` for rows `x` `[n, d_in]` (`W_skip` is `[d_out, d_in]`): SAELens
/// `SkipTranscoder.forward`'s `x @ self.W_skip.T`, on the raw input.
pub fn add_skip(out: &mut [f32], x: &[f32], d_in: usize, w_skip: &[f32]) {
    let (n, d_out) = (x.len() / d_in, w_skip.len() / d_in);
    gemm::matmul_into(Matrix::new(x, n, d_in), Matrix::new(w_skip, d_out, d_in).t(), out, true);
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
