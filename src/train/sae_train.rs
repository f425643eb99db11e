//! Training an SAE: the CPU reference of one step (forward, loss, backward), Adam, and the decoder
//! constraints. GPU training kernels (`train::gpu_trainer`) must reproduce these functions.
//!
//! Losses, per batch of B rows (SAELens `TrainingSAE.training_forward_pass` and each
//! architecture's `calculate_aux_loss`); `s` is the sparsity coefficient's warm-up factor:
//! - reconstruction, all: `mse = (1/B) Σ_b ‖x̂_b − x_b‖²` (summed over d_in, averaged over the batch);
//! - standard: `+ λ s (1/B) Σ_b Σ_j f_bj ‖W_dec[j]‖` — L1 weighted by decoder norm (SAELens
//!   `StandardTrainingSAE`, after Anthropic's April 2024 update);
//! - topk and batchtopk: `+ α · scale · (1/B) Σ_b ‖ê_b − e_b‖²` — AuxK (Gao et al. 2024, "Scaling
//!   and evaluating sparse autoencoders", App. B.1): the residual `e = x − x̂` (held constant) is
//!   reconstructed from the top `k_aux = d_in/2` pre-activations among dead latents,
//!   `scale = min(dead/k_aux, 1)` as in SAELens `calculate_topk_aux_loss`, α = 1/32 as in the paper;
//! - jumprelu: `+ λ₀ s (1/B) Σ_b Σ_j H(pre_bj − θ_j)` — the L0 penalty of Rajamanoharan et al.
//!   2024, "Jumping Ahead" (SAELens `JumpReLUTrainingSAE`, sparsity mode "step"). H and the jump
//!   have no useful gradient, so θ learns through SAELens's straight-through estimators with a
//!   rectangle kernel of width `bandwidth` (`Step.backward`, `JumpReLU.backward`, with
//!   `jumprelu_ste_to_input = False`, DeepMind's setting): the encoder sees only `(pre > θ)·g`;
//!   θ is kept ≥ 0;
//! - gated: `+ λ s (1/B) Σ_b Σ_j relu(π_gate)_bj ‖W_dec[j]‖ + (1/B) Σ_b ‖relu(π_gate)_b W_dec + b_dec − x_b‖²`
//!   (Rajamanoharan et al. 2024, "Improving Dictionary Learning with Gated Sparse Autoencoders";
//!   SAELens `GatedTrainingSAE`): the gate's L1 and the auxiliary reconstruction through the gate
//!   alone; the Heaviside gate itself passes no gradient.
//!
//! TopK and BatchTopK decoders are kept at unit row norm as in Gao et al.: the gradient parallel to
//! each row is removed before the update and rows are renormalised after it.

use crate::gemm::{self, Matrix};
use crate::random::Rng;
use crate::sae::cpu::{add_decoded, project, top_k_indices};
use crate::sae::{EncoderKind, EncoderTensors, SaeWeights};

/// AuxK's weight in the loss (Gao et al. 2024).
pub const AUXK_COEFFICIENT: f32 = 1.0 / 32.0;
/// SAELens `jumprelu_init_threshold`.
pub const JUMPRELU_INIT_THRESHOLD: f32 = 0.01;
/// How many dead latents AuxK reconstructs the residual from: `d_in / 2` (Gao et al. 2024,
/// App. B.1; SAELens `TopKTrainingSAE.calculate_topk_aux_loss`), at least 1.
pub fn k_aux(d_in: usize) -> usize {
    (d_in / 2).max(1)
}

/// SAELens `topk_threshold_lr`: the rate of BatchTopK's running threshold.
pub const BATCHTOPK_THRESHOLD_LR: f64 = 0.01;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum TrainArch {
    Standard {
        l1: f32,
    },
    TopK {
        k: usize,
    },
    /// The k·B largest activations of the whole batch (Bussmann et al. 2024, "BatchTopK Sparse
    /// Autoencoders"); saved as JumpReLU with a running threshold, as SAELens does.
    BatchTopK {
        k: usize,
    },
    JumpRelu {
        l0: f32,
        bandwidth: f32,
    },
    Gated {
        l1: f32,
    },
}

impl TrainArch {
    /// The architecture named as `arch=` spells it (`standard`, `topk`, `batchtopk`, `jumprelu`,
    /// `gated`), with its sparsity settings.
    pub fn from_name(name: &str, k: usize, l1: f32, l0: f32, bandwidth: f32) -> Result<TrainArch, String> {
        Ok(match name {
            "standard" => TrainArch::Standard { l1 },
            "topk" => TrainArch::TopK { k },
            "batchtopk" => TrainArch::BatchTopK { k },
            "jumprelu" => TrainArch::JumpRelu { l0, bandwidth },
            "gated" => TrainArch::Gated { l1 },
            other => return Err(format!("unknown architecture '{other}' (standard, topk, batchtopk, jumprelu or gated)")),
        })
    }

    /// The name SAELens gives the architecture when training.
    pub fn name(&self) -> &'static str {
        match self {
            TrainArch::Standard { .. } => "standard",
            TrainArch::TopK { .. } => "topk",
            TrainArch::BatchTopK { .. } => "batchtopk",
            TrainArch::JumpRelu { .. } => "jumprelu",
            TrainArch::Gated { .. } => "gated",
        }
    }

    /// Decoder rows kept at unit norm (Gao et al. 2024).
    pub fn unit_decoder(&self) -> bool {
        matches!(self, TrainArch::TopK { .. } | TrainArch::BatchTopK { .. })
    }

    /// Dead latents learn through AuxK.
    pub fn uses_auxk(&self) -> bool {
        self.unit_decoder()
    }

    /// The tensors it trains: BatchTopK trains a plain bias (its running threshold is one number,
    /// kept by the trainer) and is saved with a threshold.
    pub fn encoder_kind(&self) -> EncoderKind {
        match self {
            TrainArch::Standard { .. } | TrainArch::TopK { .. } | TrainArch::BatchTopK { .. } => EncoderKind::Bias,
            TrainArch::JumpRelu { .. } => EncoderKind::Threshold,
            TrainArch::Gated { .. } => EncoderKind::Gated,
        }
    }
}

/// SAELens's initialisation of the weights `arch` trains: random decoder rows (here unit-norm),
/// `W_enc = W_decᵀ`, zero biases; JumpReLU thresholds at `jumprelu_init_threshold`, gated
/// `r_mag = b_mag = 0`.
pub fn init_weights(arch: TrainArch, d_in: usize, d_sae: usize, seed: u64) -> SaeWeights {
    let mut rng = Rng::new(seed);
    let mut p = SaeWeights::zeros(arch.encoder_kind(), d_in, d_sae);
    for row in p.w_dec.chunks_exact_mut(d_in) {
        let v = rng.normals(d_in, 1.0);
        let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().zip(v).for_each(|(r, a)| *r = a / norm);
    }
    for i in 0..d_in {
        for j in 0..d_sae {
            p.w_enc[i * d_sae + j] = p.w_dec[j * d_in + i];
        }
    }
    if let EncoderTensors::Threshold { threshold, .. } = &mut p.encoder {
        threshold.iter_mut().for_each(|t| *t = JUMPRELU_INIT_THRESHOLD);
    }
    p
}

/// What one step measured.
#[derive(Debug, Clone, PartialEq)]
pub struct StepStats {
    pub loss: f32,
    pub mse: f32,
    /// The sparsity and auxiliary terms as added to the loss: L1 (standard), AuxK (topk,
    /// batchtopk), L0 (jumprelu), gate L1 + gate reconstruction (gated).
    pub aux: f32,
    /// Mean active latents per row.
    pub l0: f32,
    /// Which latents fired on at least one row.
    pub fired: Vec<bool>,
    /// The residual x − x̂ per row (AuxK's target), `[B, d_in]`.
    pub residual: Vec<f32>,
    /// BatchTopK: the smallest activation kept in this batch (SAELens `update_topk_threshold`'s
    /// `min_positive`), if any was kept.
    pub batch_min_act: Option<f32>,
}

/// BatchTopK's selection threshold: the `count`-th largest strictly positive value of `values`
/// (all positive values when fewer than `count` are), or 0 when none is positive. An activation
/// `v` is kept when `v > 0 && v ≥ threshold`: the batch's `count` largest, as `torch.topk` over the
/// flattened batch in SAELens's `BatchTopK.forward`, except that exact ties at the threshold are
/// all kept (the GPU's radix select finds a value, not a position). GPU twin: batch_topk.wgsl.
pub fn batch_topk_threshold(values: &[f32], count: usize) -> f32 {
    let mut positive: Vec<f32> = values.iter().copied().filter(|&v| v > 0.0).collect();
    if positive.is_empty() || count == 0 {
        return if positive.is_empty() { 0.0 } else { f32::INFINITY };
    }
    let nth = count.min(positive.len()) - 1;
    let (_, &mut t, _) = positive.select_nth_unstable_by(nth, |a, b| b.total_cmp(a));
    t
}

/// SAELens `rectangle`: 1 on (−½, ½).
fn rectangle(x: f32) -> f32 {
    if x > -0.5 && x < 0.5 {
        1.0
    } else {
        0.0
    }
}

/// The forward pass with everything backward needs.
pub(crate) struct Forward {
    /// `x − b_dec`
    sae_in: Vec<f32>,
    /// `sae_in·W_enc + b_enc`: the pre-activations (gated: the gate's, π_gate).
    pre: Vec<f32>,
    /// Gated: `sae_in·W_enc·exp(r_mag) + b_mag`; empty otherwise.
    mag_pre: Vec<f32>,
    pub(crate) acts: Vec<f32>,
    recon: Vec<f32>,
    /// The auxiliary path's activations and reconstruction: AuxK's (topk, batchtopk; dense, zero
    /// outside the chosen dead latents; no b_dec) or the gate's `relu(π_gate)` and
    /// `relu(π_gate)·W_dec + b_dec` (gated). Zero for other architectures.
    pub(crate) aux_acts: Vec<f32>,
    aux_recon: Vec<f32>,
    aux_scale: f32,
    batch_min_act: Option<f32>,
    /// JumpReLU: how many pre-activations of the batch are above their threshold (the L0 term).
    above_threshold: usize,
}

/// The non-linearity is the one the weights' encoder tensors imply (relu with a bias, a threshold,
/// a gate); `arch` gives its settings (k) and the losses'. The trainers check that the two agree.
pub(crate) fn forward(p: &SaeWeights, arch: TrainArch, x: &[f32], dead: &[bool]) -> Forward {
    let (d, m) = (p.d_in, p.d_sae);
    let batch = x.len() / d;
    let gated = matches!(p.encoder, EncoderTensors::Gated { .. });
    let pre_bias = p.encoder.pre_bias();
    let mut f = Forward {
        sae_in: x.chunks_exact(d).flat_map(|row| row.iter().zip(&p.b_dec).map(|(v, bd)| v - bd)).collect(),
        pre: vec![0.0; batch * m],
        mag_pre: vec![0.0; if gated { batch * m } else { 0 }],
        acts: vec![0.0; batch * m],
        recon: p.b_dec.repeat(batch),
        aux_acts: vec![0.0; batch * m],
        // The gate's reconstruction starts from b_dec; AuxK's has none.
        aux_recon: if gated { p.b_dec.repeat(batch) } else { vec![0.0; x.len()] },
        aux_scale: 0.0,
        batch_min_act: None,
        above_threshold: 0,
    };
    // sae_in·W_enc first (one product for the batch), then the biases (the GPU adds them in the
    // same order).
    let projected_rows = project(p, &f.sae_in);
    for (b, projected) in projected_rows.chunks_exact(m).enumerate() {
        let pre = &mut f.pre[b * m..(b + 1) * m];
        pre.iter_mut().zip(projected.iter().zip(pre_bias)).for_each(|(o, (v, bias))| *o = v + bias);
        let acts = &mut f.acts[b * m..(b + 1) * m];
        match &p.encoder {
            EncoderTensors::Bias { .. } => match arch {
                TrainArch::TopK { k } => {
                    for j in top_k_indices(pre, k) {
                        acts[j] = pre[j].max(0.0);
                    }
                }
                // Selected over the whole batch below.
                TrainArch::BatchTopK { .. } => {}
                _ => acts.iter_mut().zip(pre.iter()).for_each(|(a, &h)| *a = h.max(0.0)),
            },
            EncoderTensors::Threshold { threshold, .. } => {
                for (a, (&h, &t)) in acts.iter_mut().zip(pre.iter().zip(threshold)) {
                    *a = if h > t { h } else { 0.0 };
                    f.above_threshold += usize::from(h > t);
                }
            }
            EncoderTensors::Gated { r_mag, b_mag, .. } => {
                let mag_pre = &mut f.mag_pre[b * m..(b + 1) * m];
                for j in 0..m {
                    mag_pre[j] = projected[j] * r_mag[j].exp() + b_mag[j];
                    acts[j] = if pre[j] > 0.0 { mag_pre[j].max(0.0) } else { 0.0 };
                    f.aux_acts[b * m + j] = pre[j].max(0.0);
                }
            }
        }
    }
    if let TrainArch::BatchTopK { k } = arch {
        let t = batch_topk_threshold(&f.pre, k * batch);
        for (a, &h) in f.acts.iter_mut().zip(&f.pre) {
            *a = if h > 0.0 && h >= t { h } else { 0.0 };
        }
        f.batch_min_act = f.acts.iter().any(|&a| a > 0.0).then_some(t);
    }
    add_decoded(&mut f.recon, &f.acts, &p.w_dec, d);
    if gated {
        add_decoded(&mut f.aux_recon, &f.aux_acts, &p.w_dec, d);
    }
    // AuxK: only with dead latents.
    let num_dead = dead.iter().filter(|&&dd| dd).count();
    if arch.uses_auxk() && num_dead > 0 {
        let k_aux_full = k_aux(d);
        f.aux_scale = (num_dead as f32 / k_aux_full as f32).min(1.0);
        let k_aux_used = k_aux_full.min(num_dead);
        let dead_index: Vec<usize> = (0..m).filter(|&j| dead[j]).collect();
        for b in 0..batch {
            let pre = &f.pre[b * m..(b + 1) * m];
            let dead_pre: Vec<f32> = dead_index.iter().map(|&j| pre[j]).collect();
            for t in top_k_indices(&dead_pre, k_aux_used) {
                let j = dead_index[t];
                f.aux_acts[b * m + j] = pre[j].max(0.0);
            }
        }
        add_decoded(&mut f.aux_recon, &f.aux_acts, &p.w_dec, d);
    }
    f
}

/// The loss at `p` (with AuxK's residual held at `residual`), for finite-difference checks.
pub fn loss(p: &SaeWeights, arch: TrainArch, x: &[f32], dead: &[bool], sparsity_scale: f32, residual: &[f32]) -> f32 {
    let f = forward(p, arch, x, dead);
    terms(p, arch, x, &f, sparsity_scale, residual).0
}

/// (loss, mse, aux) from a forward pass.
fn terms(p: &SaeWeights, arch: TrainArch, x: &[f32], f: &Forward, sparsity_scale: f32, residual: &[f32]) -> (f32, f32, f32) {
    let batch = (x.len() / p.d_in) as f32;
    let sq_dist = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(u, v)| (u - v) * (u - v)).sum::<f32>();
    let norm_weighted = |acts: &[f32]| {
        let norms = p.decoder_norms();
        acts.chunks_exact(p.d_sae).map(|row| row.iter().zip(&norms).map(|(a, n)| a * n).sum::<f32>()).sum::<f32>()
    };
    let mse = sq_dist(&f.recon, x) / batch;
    let aux = match arch {
        TrainArch::Standard { l1 } => l1 * sparsity_scale * norm_weighted(&f.acts) / batch,
        TrainArch::TopK { .. } | TrainArch::BatchTopK { .. } => AUXK_COEFFICIENT * f.aux_scale * sq_dist(&f.aux_recon, residual) / batch,
        TrainArch::JumpRelu { l0, .. } => l0 * sparsity_scale * f.above_threshold as f32 / batch,
        TrainArch::Gated { l1 } => (l1 * sparsity_scale * norm_weighted(&f.aux_acts) + sq_dist(&f.aux_recon, x)) / batch,
    };
    (mse + aux, mse, aux)
}

/// One step's loss and gradients. `dead` marks latents counted dead (AuxK); `sparsity_scale` is
/// the warm-up factor in [0, 1] of the L1 or L0 coefficient. For JumpReLU's θ the "gradient" is
/// SAELens's straight-through estimate.
// Index loops mirror the formulas: several tensors are addressed by the same (b, j).
#[allow(clippy::needless_range_loop)]
pub fn loss_and_grads(p: &SaeWeights, arch: TrainArch, x: &[f32], dead: &[bool], sparsity_scale: f32) -> (StepStats, SaeWeights) {
    let (d, m) = (p.d_in, p.d_sae);
    let batch = x.len() / d;
    let f = forward(p, arch, x, dead);
    let residual: Vec<f32> = x.iter().zip(&f.recon).map(|(v, r)| v - r).collect();
    let (loss, mse, aux) = terms(p, arch, x, &f, sparsity_scale, &residual);
    let mut g = p.zeros_like();
    // The gradients of the encoder's own tensors, put into `g.encoder` at the end.
    let mut g_pre_bias = vec![0.0f32; m];
    let (mut g_threshold, mut g_r_mag, mut g_b_mag) = (vec![0.0f32; m], vec![0.0f32; m], vec![0.0f32; m]);
    let threshold = match &p.encoder {
        EncoderTensors::Threshold { threshold, .. } => Some(&threshold[..]),
        _ => None,
    };
    let gate = match &p.encoder {
        EncoderTensors::Gated { r_mag, b_mag, .. } => Some((&r_mag[..], &b_mag[..])),
        _ => None,
    };
    let inv_b = 1.0 / batch as f32;
    let norms = p.decoder_norms();
    // The L1 coefficient per row (standard, gated).
    let l1_row = match arch {
        TrainArch::Standard { l1 } | TrainArch::Gated { l1 } => l1 * sparsity_scale * inv_b,
        _ => 0.0,
    };
    // d mse / d recon = 2 (recon − x) / B, every row's.
    let g_recon: Vec<f32> = f.recon.iter().zip(x).map(|(r, v)| 2.0 * (r - v) * inv_b).collect();
    // d aux / d aux_recon: AuxK's 2 α scale (ê − e) / B, or the gate reconstruction's 2 (x̂_gate − x) / B.
    let g_aux: Vec<f32> = match arch {
        TrainArch::Gated { .. } => f.aux_recon.iter().zip(x).map(|(r, v)| 2.0 * (r - v) * inv_b).collect(),
        _ => f.aux_recon.iter().zip(&residual).map(|(r, e)| 2.0 * AUXK_COEFFICIENT * f.aux_scale * (r - e) * inv_b).collect(),
    };
    let gated = matches!(arch, TrainArch::Gated { .. });
    for row in g_recon.chunks_exact(d) {
        g.b_dec.iter_mut().zip(row).for_each(|(gb, gr)| *gb += gr);
    }
    if gated {
        for row in g_aux.chunks_exact(d) {
            g.b_dec.iter_mut().zip(row).for_each(|(gb, ga)| *gb += ga);
        }
    }
    // JumpReLU's threshold also needs d loss / d acts where the rectangle kernel is non-zero.
    let in_kernel = |i: usize| match (arch, threshold) {
        (TrainArch::JumpRelu { bandwidth, .. }, Some(threshold)) => rectangle((f.pre[i] - threshold[i % m]) / bandwidth) != 0.0,
        _ => false,
    };
    // Through the decoder: g_acts = g_recon·W_decᵀ and W_dec += actsᵀ·g_recon (and the same for
    // the auxiliary path).
    let g_acts = decoder_backward(&f.acts, &g_recon, &p.w_dec, d, &mut g.w_dec, |i| f.acts[i] > 0.0 || in_kernel(i));
    let g_aux_acts = decoder_backward(&f.aux_acts, &g_aux, &p.w_dec, d, &mut g.w_dec, |i| f.aux_acts[i] > 0.0);
    // Σ_b of the activations each L1 term weights ‖W_dec[j]‖ by, for its decoder gradient.
    let (mut l1_acts, mut l1_aux_acts) = (vec![0.0f32; m], vec![0.0f32; m]);
    // g_projected: the gradient at sae_in·W_enc, every row's, for two products after the loop.
    let mut g_projected_rows = vec![0.0f32; batch * m];
    for (b, g_projected) in g_projected_rows.chunks_exact_mut(m).enumerate() {
        let row = b * m..(b + 1) * m;
        let (acts, aux_acts, pre) = (&f.acts[row.clone()], &f.aux_acts[row.clone()], &f.pre[row.clone()]);
        let (g_acts, g_aux_acts) = (&g_acts[row.clone()], &g_aux_acts[row]);
        for j in 0..m {
            // g_pre: the gradient at the pre-activation, projected + b_enc.
            let mut g_pre = 0.0;
            if acts[j] > 0.0 {
                let ga = g_acts[j];
                match (gate, arch) {
                    (Some((r_mag, b_mag)), _) => {
                        // Magnitude path: mag_pre = projected·exp(r_mag) + b_mag.
                        g_projected[j] += ga * r_mag[j].exp();
                        g_r_mag[j] += ga * (f.mag_pre[b * m + j] - b_mag[j]);
                        g_b_mag[j] += ga;
                    }
                    (None, TrainArch::Standard { .. }) => {
                        g_pre += ga + l1_row * norms[j];
                        l1_acts[j] += acts[j];
                    }
                    _ => g_pre += ga,
                }
            }
            if let (TrainArch::JumpRelu { l0, bandwidth }, Some(threshold)) = (arch, threshold) {
                // SAELens JumpReLU.backward and Step.backward: −(θ/ε)·K((pre−θ)/ε)·g for the jump,
                // −(1/ε)·K(…)·λ₀s/B for the L0 term.
                let t = threshold[j];
                let kernel = rectangle((pre[j] - t) / bandwidth);
                if kernel != 0.0 {
                    g_threshold[j] -= kernel * (t / bandwidth * g_acts[j] + l0 * sparsity_scale * inv_b / bandwidth);
                }
            }
            if aux_acts[j] > 0.0 {
                g_pre += g_aux_acts[j];
                if gated {
                    // The gate's L1, weighted by decoder norm.
                    g_pre += l1_row * norms[j];
                    l1_aux_acts[j] += aux_acts[j];
                }
            }
            g_projected[j] += g_pre;
            g_pre_bias[j] += g_pre;
        }
    }
    // The L1 terms' decoder gradient: d (a·‖w‖) / dw = a·w/‖w‖, summed over the batch.
    for (j, (gw, w)) in g.w_dec.chunks_exact_mut(d).zip(p.w_dec.chunks_exact(d)).enumerate() {
        let scale = l1_row * (l1_acts[j] + l1_aux_acts[j]) / norms[j].max(1e-12);
        if scale != 0.0 {
            gw.iter_mut().zip(w).for_each(|(g, w)| *g += scale * w);
        }
    }
    // W_enc's gradient sae_inᵀ·G and, as sae_in = x − b_dec, b_dec's −Σ_b (G·W_encᵀ)[b].
    let g_projected = Matrix::new(&g_projected_rows, batch, m);
    gemm::matmul_into(Matrix::new(&f.sae_in, batch, d).t(), g_projected, &mut g.w_enc, false);
    let g_sae_in = gemm::matmul(g_projected, Matrix::new(&p.w_enc, d, m).t());
    for row in g_sae_in.chunks_exact(d) {
        g.b_dec.iter_mut().zip(row).for_each(|(gb, gi)| *gb -= gi);
    }
    g.encoder = match p.encoder.kind() {
        EncoderKind::Bias => EncoderTensors::Bias { b_enc: g_pre_bias },
        EncoderKind::Threshold => EncoderTensors::Threshold { b_enc: g_pre_bias, threshold: g_threshold },
        EncoderKind::Gated => EncoderTensors::Gated { b_gate: g_pre_bias, r_mag: g_r_mag, b_mag: g_b_mag },
    };
    let fired = (0..m).map(|j| (0..batch).any(|b| f.acts[b * m + j] > 0.0)).collect();
    let l0 = f.acts.iter().filter(|&&a| a > 0.0).count() as f32 / batch as f32;
    (StepStats { loss, mse, aux, l0, fired, residual, batch_min_act: f.batch_min_act }, g)
}

/// The backward of `out += acts·W_dec` (`acts` `[B, m]`, `W_dec` `[m, d]`, `g_out` `[B, d]`):
/// adds actsᵀ·g_out to `g_w_dec` and returns g_acts = g_out·W_decᵀ `[B, m]`, computed at least
/// wherever `needed(b·m + j)` (elsewhere it may be 0). Two products when at least 1/16 of the
/// activations are non-zero (as `add_decoded` decides), per active entry otherwise.
fn decoder_backward(acts: &[f32], g_out: &[f32], w_dec: &[f32], d: usize, g_w_dec: &mut [f32], needed: impl Fn(usize) -> bool) -> Vec<f32> {
    let m = w_dec.len() / d.max(1);
    let batch = g_out.len() / d.max(1);
    let active = acts.iter().filter(|&&a| a != 0.0).count();
    if active * 16 >= acts.len() && active > 0 {
        gemm::matmul_into(Matrix::new(acts, batch, m).t(), Matrix::new(g_out, batch, d), g_w_dec, true);
        return gemm::matmul(Matrix::new(g_out, batch, d), Matrix::new(w_dec, m, d).t());
    }
    let mut g_acts = vec![0.0f32; batch * m];
    for (b, (g_row, acts_row)) in g_out.chunks_exact(d).zip(acts.chunks_exact(m)).enumerate() {
        for (j, &a) in acts_row.iter().enumerate() {
            let w = &w_dec[j * d..(j + 1) * d];
            if a != 0.0 {
                g_w_dec[j * d..(j + 1) * d].iter_mut().zip(g_row).for_each(|(gw, gr)| *gw += a * gr);
            }
            if needed(b * m + j) {
                g_acts[b * m + j] = g_row.iter().zip(w).map(|(u, v)| u * v).sum();
            }
        }
    }
    g_acts
}

/// Removes from each decoder-row gradient its component along the (unit) row, so that a step
/// moves along the sphere (SAELens `remove_gradient_parallel_to_decoder_directions`).
pub fn remove_parallel_decoder_grad(p: &SaeWeights, g: &mut SaeWeights) {
    let d = p.d_in;
    for (w, gw) in p.w_dec.chunks_exact(d).zip(g.w_dec.chunks_exact_mut(d)) {
        let dot: f32 = w.iter().zip(gw.iter()).map(|(a, b)| a * b).sum();
        let nn: f32 = w.iter().map(|a| a * a).sum::<f32>().max(1e-12);
        gw.iter_mut().zip(w).for_each(|(gv, wv)| *gv -= dot / nn * wv);
    }
}

/// Scales every decoder row to unit norm.
pub fn normalize_decoder(p: &mut SaeWeights) {
    let d = p.d_in;
    for row in p.w_dec.chunks_exact_mut(d) {
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= n);
    }
}

/// The constraints applied after each update: unit decoder rows (topk, batchtopk) and JumpReLU
/// thresholds ≥ 0 (SAELens clamps them before each forward pass; clamping after each update gives
/// the same steps and also a clamped final threshold).
pub fn apply_constraints(arch: TrainArch, p: &mut SaeWeights) {
    if arch.unit_decoder() {
        normalize_decoder(p);
    }
    if let EncoderTensors::Threshold { threshold, .. } = &mut p.encoder {
        threshold.iter_mut().for_each(|t| *t = t.max(0.0));
    }
}

/// Re-initialises latent `j` to point at `direction` (Bricken et al. 2023, "Towards
/// Monosemanticity", resampling): decoder row = the unit direction, encoder column = the direction
/// times `encoder_norm`, encoder (gate) bias 0, JumpReLU threshold back to its initial value, gated
/// `r_mag = b_mag = 0`, and the Adam moments of those entries 0 (in `moments`).
// Index loops: W_dec[j, i] and W_enc[i, j] are written together, by the same (i, j).
#[allow(clippy::needless_range_loop)]
pub fn resample_latent(p: &mut SaeWeights, moments: [&mut SaeWeights; 2], j: usize, direction: &[f32], encoder_norm: f32) {
    let (d, m) = (p.d_in, p.d_sae);
    let norm = direction.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    for i in 0..d {
        p.w_dec[j * d + i] = direction[i] / norm;
        p.w_enc[i * m + j] = direction[i] / norm * encoder_norm;
    }
    p.encoder = reset_feature(&p.encoder, j, JUMPRELU_INIT_THRESHOLD);
    for state in moments {
        for i in 0..d {
            state.w_dec[j * d + i] = 0.0;
            state.w_enc[i * m + j] = 0.0;
        }
        state.encoder = reset_feature(&state.encoder, j, 0.0);
    }
}

/// The encoder tensors with feature `j` at 0 (its threshold at `threshold`).
fn reset_feature(encoder: &EncoderTensors, j: usize, threshold: f32) -> EncoderTensors {
    let mut e = encoder.clone();
    match &mut e {
        EncoderTensors::Bias { b_enc } => b_enc[j] = 0.0,
        EncoderTensors::Threshold { b_enc, threshold: t } => (b_enc[j], t[j]) = (0.0, threshold),
        EncoderTensors::Gated { b_gate, r_mag, b_mag } => (b_gate[j], r_mag[j], b_mag[j]) = (0.0, 0.0, 0.0),
    }
    e
}

/// Adam (Kingma & Ba 2015) with bias correction, as `torch.optim.Adam`.
#[derive(Debug, Clone)]
pub struct Adam {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub m: SaeWeights,
    pub v: SaeWeights,
    /// β₁ᵗ and β₂ᵗ as running products (not `powi`, whose rounding is platform-dependent).
    beta1_t: f32,
    beta2_t: f32,
}

impl Adam {
    /// Moments shaped like `p`.
    pub fn new(p: &SaeWeights) -> Adam {
        Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, m: p.zeros_like(), v: p.zeros_like(), beta1_t: 1.0, beta2_t: 1.0 }
    }

    /// Moments `m`, `v` and the running products β₁ᵗ, β₂ᵗ of an optimizer that has already
    /// taken steps (a resumed checkpoint, or moments carried over from the GPU).
    pub fn resumed(m: SaeWeights, v: SaeWeights, beta_t: (f32, f32)) -> Adam {
        Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, m, v, beta1_t: beta_t.0, beta2_t: beta_t.1 }
    }

    /// β₁ᵗ and β₂ᵗ after the steps taken so far.
    pub fn beta_t(&self) -> (f32, f32) {
        (self.beta1_t, self.beta2_t)
    }

    pub fn step(&mut self, p: &mut SaeWeights, g: &SaeWeights, lr: f32) {
        self.beta1_t *= self.beta1;
        self.beta2_t *= self.beta2;
        let (c1, c2) = (1.0 - self.beta1_t, 1.0 - self.beta2_t);
        let (b1, b2, eps) = (self.beta1, self.beta2, self.eps);
        let tensors = p.tensors_mut().into_iter().zip(g.tensors()).zip(self.m.tensors_mut()).zip(self.v.tensors_mut());
        for ((((_, pt), (_, gt)), (_, mt)), (_, vt)) in tensors {
            for (((pv, &gv), mv), vv) in pt.iter_mut().zip(gt.iter()).zip(mt.iter_mut()).zip(vt.iter_mut()) {
                *mv = b1 * *mv + (1.0 - b1) * gv;
                *vv = b2 * *vv + (1.0 - b2) * gv * gv;
                *pv -= lr * (*mv / c1) / ((*vv / c2).sqrt() + eps);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(arch: TrainArch, seed: u64) -> (SaeWeights, Vec<f32>) {
        let (d, m, batch) = (5, 9, 6);
        let mut rng = Rng::new(seed);
        let mut p = init_weights(arch, d, m, seed);
        *p.encoder.pre_bias_mut() = rng.normals(m, 0.3);
        p.b_dec = rng.normals(d, 0.3);
        p.w_enc.iter_mut().for_each(|w| *w += 0.2 * rng.normal());
        p.w_dec.iter_mut().for_each(|w| *w *= 0.7 + 0.6 * rng.uniform());
        if let Some(t) = p.tensor_mut("threshold") {
            t.iter_mut().for_each(|t| *t = 0.3 * rng.uniform());
        }
        for name in ["r_mag", "b_mag"] {
            if let Some(t) = p.tensor_mut(name) {
                t.iter_mut().for_each(|v| *v = 0.3 * rng.normal());
            }
        }
        (p, rng.normals(batch * d, 1.0))
    }

    fn threshold(w: &SaeWeights) -> &[f32] {
        w.tensor("threshold").expect("a jumprelu SAE")
    }

    /// Analytic gradients against central differences in every parameter (JumpReLU's θ has a
    /// straight-through estimate instead, checked by hand below).
    fn check_gradients(arch: TrainArch, dead: &[bool], seed: u64) {
        let (p, x) = problem(arch, seed);
        let (stats, g) = loss_and_grads(&p, arch, &x, dead, 0.7);
        let h = 1e-2f32;
        let (mut checked, mut total) = (0, 0);
        for t in SaeWeights::tensor_names(p.encoder.kind()) {
            if t == "threshold" {
                continue;
            }
            for i in 0..p.tensor(t).unwrap().len() {
                total += 1;
                let mut plus = p.clone();
                plus.tensor_mut(t).unwrap()[i] += h;
                let mut minus = p.clone();
                minus.tensor_mut(t).unwrap()[i] -= h;
                // Skip coordinates where the step changes a selection, a ReLU's side or a gate.
                let pattern = |q: &SaeWeights| {
                    let f = forward(q, arch, &x, dead);
                    let gate = if matches!(arch, TrainArch::Gated { .. }) { &f.pre[..] } else { &[] };
                    f.acts.iter().chain(&f.aux_acts).chain(gate).map(|&a| a > 0.0).collect::<Vec<_>>()
                };
                let base = pattern(&p);
                if pattern(&plus) != base || pattern(&minus) != base {
                    continue;
                }
                let numeric =
                    (loss(&plus, arch, &x, dead, 0.7, &stats.residual) - loss(&minus, arch, &x, dead, 0.7, &stats.residual)) / (2.0 * h);
                let analytic = g.tensor(t).unwrap()[i];
                assert!(
                    (numeric - analytic).abs() <= 2e-2 * analytic.abs().max(0.05),
                    "{arch:?} {t} index {i}: analytic {analytic}, numeric {numeric}"
                );
                checked += 1;
            }
        }
        // Most coordinates must be away from a selection change for the check to mean much.
        assert!(checked * 4 > total * 3, "{arch:?}: only {checked} of {total} coordinates checked");
    }

    /// Both of `decoder_backward`'s paths (products when dense, entries when sparse) against the
    /// definition, at a density on each side of 1/16.
    #[test]
    fn decoder_backward_matches_its_definition_sparse_and_dense() {
        let (batch, m, d) = (7, 41, 6);
        let mut rng = Rng::new(5);
        let w_dec = rng.normals(m * d, 1.0);
        let g_out = rng.normals(batch * d, 1.0);
        for keep_one_in in [50, 3] {
            let acts: Vec<f32> = (0..batch * m).map(|i| if i % keep_one_in == 0 { rng.uniform() + 0.1 } else { 0.0 }).collect();
            let start = rng.normals(m * d, 1.0);
            let mut g_w_dec = start.clone();
            let g_acts = decoder_backward(&acts, &g_out, &w_dec, d, &mut g_w_dec, |i| acts[i] > 0.0);
            for j in 0..m {
                for i in 0..d {
                    let want = start[j * d + i] + (0..batch).map(|b| acts[b * m + j] * g_out[b * d + i]).sum::<f32>();
                    assert!((g_w_dec[j * d + i] - want).abs() < 1e-5, "1 in {keep_one_in}: g_w_dec[{j}, {i}]");
                }
            }
            for b in 0..batch {
                for j in (0..m).filter(|&j| acts[b * m + j] > 0.0) {
                    let want: f32 = (0..d).map(|i| g_out[b * d + i] * w_dec[j * d + i]).sum();
                    assert!((g_acts[b * m + j] - want).abs() < 1e-5, "1 in {keep_one_in}: g_acts[{b}, {j}]");
                }
            }
        }
    }

    #[test]
    fn standard_gradients_match_finite_differences() {
        check_gradients(TrainArch::Standard { l1: 0.3 }, &[false; 9], 1);
    }

    #[test]
    fn topk_gradients_match_finite_differences_with_and_without_auxk() {
        check_gradients(TrainArch::TopK { k: 3 }, &[false; 9], 2);
        let dead = [true, false, false, true, false, true, false, false, true];
        check_gradients(TrainArch::TopK { k: 3 }, &dead, 3);
    }

    #[test]
    fn batchtopk_gated_and_jumprelu_gradients_match_finite_differences() {
        check_gradients(TrainArch::BatchTopK { k: 3 }, &[false; 9], 4);
        check_gradients(TrainArch::BatchTopK { k: 3 }, &[true, false, false, false, true, false, false, false, true], 5);
        check_gradients(TrainArch::Gated { l1: 0.4 }, &[false; 9], 6);
        check_gradients(TrainArch::JumpRelu { l0: 0.5, bandwidth: 0.05 }, &[false; 9], 7);
    }

    #[test]
    fn jumprelu_threshold_follows_saelens_straight_through_estimators() {
        // One latent, one input dimension: pre = x, θ = 0.5, bandwidth 0.1.
        let arch = TrainArch::JumpRelu { l0: 0.2, bandwidth: 0.1 };
        let mut p = init_weights(arch, 1, 1, 0);
        (p.w_enc[0], p.w_dec[0], p.tensor_mut("threshold").unwrap()[0]) = (1.0, 1.0, 0.5);
        // x = 0.52: active, exact reconstruction (no jump gradient), inside the window: only the
        // L0 term's −(1/ε)·λ₀ = −2.
        let (stats, g) = loss_and_grads(&p, arch, &[0.52], &[false], 1.0);
        assert_eq!(stats.l0, 1.0);
        assert!((threshold(&g)[0] + 2.0).abs() < 1e-5, "{}", threshold(&g)[0]);
        // W_dec = 0.5: recon = 0.26, g_recon = 2·(0.26 − 0.52) = −0.52, g_act = −0.26, so the
        // jump adds −(θ/ε)·g_act = −(0.5/0.1)·(−0.26) = 1.3: θ gradient 1.3 − 2 = −0.7.
        p.w_dec[0] = 0.5;
        let (_, g) = loss_and_grads(&p, arch, &[0.52], &[false], 1.0);
        assert!((threshold(&g)[0] + 0.7).abs() < 1e-5, "{}", threshold(&g)[0]);
        // Outside the window (pre = 0.7): no threshold gradient at all.
        let (_, g) = loss_and_grads(&p, arch, &[0.7], &[false], 1.0);
        assert_eq!(threshold(&g)[0], 0.0);
    }

    #[test]
    fn batch_topk_keeps_the_batch_largest() {
        let values = [0.5, -1.0, 3.0, 0.0, 2.0, 0.1, 2.0];
        assert_eq!(batch_topk_threshold(&values, 1), 3.0);
        assert_eq!(batch_topk_threshold(&values, 2), 2.0);
        assert_eq!(batch_topk_threshold(&values, 3), 2.0); // ties at the threshold are all kept
        assert_eq!(batch_topk_threshold(&values, 4), 0.5);
        assert_eq!(batch_topk_threshold(&values, 100), 0.1); // fewer positive: all of them
        assert_eq!(batch_topk_threshold(&[-1.0, 0.0], 3), 0.0);
        // In a batch, rows keep different numbers of latents, k·B in all.
        let arch = TrainArch::BatchTopK { k: 2 };
        let (p, x) = problem(arch, 8);
        let (stats, _) = loss_and_grads(&p, arch, &x, &[false; 9], 1.0);
        assert_eq!(stats.l0, 2.0);
        assert!(stats.batch_min_act.unwrap() > 0.0);
    }

    #[test]
    fn adam_first_step_moves_each_parameter_by_lr() {
        let arch = TrainArch::Standard { l1: 0.1 };
        let (mut p, x) = problem(arch, 4);
        let before = p.clone();
        let (_, g) = loss_and_grads(&p, arch, &x, &[false; 9], 1.0);
        Adam::new(&p).step(&mut p, &g, 0.01);
        // With bias correction, Adam's first step is lr · sign(g) (up to eps).
        for (a, (b, gv)) in p.w_enc.iter().zip(before.w_enc.iter().zip(&g.w_enc)) {
            if gv.abs() > 1e-4 {
                assert!((b - a - 0.01 * gv.signum()).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn decoder_constraint_keeps_rows_on_the_sphere() {
        let arch = TrainArch::TopK { k: 2 };
        let (mut p, x) = problem(arch, 5);
        normalize_decoder(&mut p);
        let (_, mut g) = loss_and_grads(&p, arch, &x, &[false; 9], 1.0);
        remove_parallel_decoder_grad(&p, &mut g);
        for (w, gw) in p.w_dec.chunks_exact(5).zip(g.w_dec.chunks_exact(5)) {
            assert!(w.iter().zip(gw).map(|(a, b)| a * b).sum::<f32>().abs() < 1e-5);
        }
        assert!(p.decoder_norms().iter().all(|n| (n - 1.0).abs() < 1e-5));
    }
}
