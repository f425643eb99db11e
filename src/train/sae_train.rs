//! Training an SAE: the CPU reference of one step (forward, loss, backward), Adam, and the decoder
//! constraints. GPU training kernels must reproduce these functions.
//!
//! Losses, per batch of B rows (SAELens `TrainingSAE.training_forward_pass`):
//! - reconstruction: `mse = (1/B) Σ_b ‖x̂_b − x_b‖²` (summed over d_in, averaged over the batch);
//! - standard: `+ λ (1/B) Σ_b Σ_j f_bj ‖W_dec[j]‖` — L1 weighted by decoder norm (SAELens
//!   `StandardTrainingSAE`, after Anthropic's April 2024 update), λ warmed up linearly;
//! - topk: `+ α · scale · (1/B) Σ_b ‖ê_b − e_b‖²` — AuxK (Gao et al. 2024, "Scaling and evaluating
//!   sparse autoencoders", App. B.1): the residual `e = x − x̂` (held constant) is reconstructed
//!   from the top `k_aux = d_in/2` pre-activations among dead latents, `scale = min(dead/k_aux, 1)`
//!   as in SAELens `calculate_topk_aux_loss`, and α = 1/32 as in the paper.
//! TopK decoders are kept at unit row norm: the gradient parallel to each row is removed before
//! the update and rows are renormalised after it (SAELens `remove_gradient_parallel_to_decoder_directions`).

use crate::sae::cpu::top_k_indices;
use crate::sae::random::Rng;

/// AuxK's weight in the loss (Gao et al. 2024).
pub const AUXK_COEFFICIENT: f32 = 1.0 / 32.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TrainArch {
    Standard { l1: f32 },
    TopK { k: usize },
}

/// Trainable parameters (and, with the same shapes, their gradients and Adam moments).
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub d_in: usize,
    pub d_sae: usize,
    /// `[d_in, d_sae]`
    pub w_enc: Vec<f32>,
    pub b_enc: Vec<f32>,
    /// `[d_sae, d_in]`
    pub w_dec: Vec<f32>,
    pub b_dec: Vec<f32>,
}

impl Params {
    pub fn zeros(d_in: usize, d_sae: usize) -> Params {
        Params { d_in, d_sae, w_enc: vec![0.0; d_in * d_sae], b_enc: vec![0.0; d_sae], w_dec: vec![0.0; d_sae * d_in], b_dec: vec![0.0; d_in] }
    }

    /// SAELens's initialisation: random decoder rows (here unit-norm), `W_enc = W_decᵀ`, zero biases.
    pub fn init(d_in: usize, d_sae: usize, seed: u64) -> Params {
        let mut rng = Rng::new(seed);
        let mut p = Params::zeros(d_in, d_sae);
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
        p
    }

    pub fn tensors(&self) -> [&Vec<f32>; 4] {
        [&self.w_enc, &self.b_enc, &self.w_dec, &self.b_dec]
    }

    pub fn tensors_mut(&mut self) -> [&mut Vec<f32>; 4] {
        [&mut self.w_enc, &mut self.b_enc, &mut self.w_dec, &mut self.b_dec]
    }

    pub fn decoder_norms(&self) -> Vec<f32> {
        self.w_dec.chunks_exact(self.d_in).map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt()).collect()
    }
}

/// What one step measured.
#[derive(Debug, Clone, PartialEq)]
pub struct StepStats {
    pub loss: f32,
    pub mse: f32,
    /// The L1 term (standard) or the AuxK term (topk), as added to the loss.
    pub aux: f32,
    /// Mean active latents per row.
    pub l0: f32,
    /// Which latents fired on at least one row.
    pub fired: Vec<bool>,
    /// The residual x − x̂ per row (AuxK's target), `[B, d_in]`.
    pub residual: Vec<f32>,
}

/// The forward pass with everything backward needs.
pub(crate) struct Forward {
    sae_in: Vec<f32>,
    pre: Vec<f32>,
    pub(crate) acts: Vec<f32>,
    recon: Vec<f32>,
    /// AuxK activations (dense, zero outside the chosen dead latents).
    pub(crate) aux_acts: Vec<f32>,
    aux_recon: Vec<f32>,
    aux_scale: f32,
}

pub(crate) fn forward(p: &Params, arch: TrainArch, x: &[f32], dead: &[bool]) -> Forward {
    let (d, m) = (p.d_in, p.d_sae);
    let batch = x.len() / d;
    let mut f = Forward {
        sae_in: Vec::with_capacity(x.len()),
        pre: vec![0.0; batch * m],
        acts: vec![0.0; batch * m],
        recon: vec![0.0; x.len()],
        aux_acts: vec![0.0; batch * m],
        aux_recon: vec![0.0; x.len()],
        aux_scale: 0.0,
    };
    for (b, row) in x.chunks_exact(d).enumerate() {
        let sae_in: Vec<f32> = row.iter().zip(&p.b_dec).map(|(v, bd)| v - bd).collect();
        let pre = &mut f.pre[b * m..(b + 1) * m];
        pre.copy_from_slice(&p.b_enc);
        for (i, &s) in sae_in.iter().enumerate() {
            for (o, w) in pre.iter_mut().zip(&p.w_enc[i * m..(i + 1) * m]) {
                *o += s * w;
            }
        }
        let acts = &mut f.acts[b * m..(b + 1) * m];
        match arch {
            TrainArch::Standard { .. } => acts.iter_mut().zip(pre.iter()).for_each(|(a, &h)| *a = h.max(0.0)),
            TrainArch::TopK { k } => {
                for j in top_k_indices(pre, k) {
                    acts[j] = pre[j].max(0.0);
                }
            }
        }
        let recon = &mut f.recon[b * d..(b + 1) * d];
        recon.copy_from_slice(&p.b_dec);
        for (j, &a) in acts.iter().enumerate().filter(|(_, &a)| a != 0.0) {
            for (o, w) in recon.iter_mut().zip(&p.w_dec[j * d..(j + 1) * d]) {
                *o += a * w;
            }
        }
        f.sae_in.extend(sae_in);
    }
    // AuxK: only TopK, only with dead latents.
    let num_dead = dead.iter().filter(|&&dd| dd).count();
    if let (TrainArch::TopK { .. }, true) = (arch, num_dead > 0) {
        let k_aux_full = (d / 2).max(1);
        f.aux_scale = (num_dead as f32 / k_aux_full as f32).min(1.0);
        let k_aux = k_aux_full.min(num_dead);
        let dead_index: Vec<usize> = (0..m).filter(|&j| dead[j]).collect();
        for b in 0..batch {
            let pre = &f.pre[b * m..(b + 1) * m];
            let dead_pre: Vec<f32> = dead_index.iter().map(|&j| pre[j]).collect();
            for t in top_k_indices(&dead_pre, k_aux) {
                let j = dead_index[t];
                f.aux_acts[b * m + j] = pre[j].max(0.0);
            }
            let aux_recon = &mut f.aux_recon[b * d..(b + 1) * d];
            for j in dead_index.iter().copied().filter(|&j| f.aux_acts[b * m + j] != 0.0) {
                let a = f.aux_acts[b * m + j];
                for (o, w) in aux_recon.iter_mut().zip(&p.w_dec[j * d..(j + 1) * d]) {
                    *o += a * w;
                }
            }
        }
    }
    f
}

/// The loss at `p` (with AuxK's residual held at `residual`), for finite-difference checks.
pub fn loss(p: &Params, arch: TrainArch, x: &[f32], dead: &[bool], l1_scale: f32, residual: &[f32]) -> f32 {
    let f = forward(p, arch, x, dead);
    terms(p, arch, x, &f, l1_scale, residual).0
}

/// (loss, mse, aux) from a forward pass.
fn terms(p: &Params, arch: TrainArch, x: &[f32], f: &Forward, l1_scale: f32, residual: &[f32]) -> (f32, f32, f32) {
    let batch = (x.len() / p.d_in) as f32;
    let mse = f.recon.iter().zip(x).map(|(r, v)| (r - v) * (r - v)).sum::<f32>() / batch;
    let aux = match arch {
        TrainArch::Standard { l1 } => {
            let norms = p.decoder_norms();
            let weighted: f32 = f.acts.chunks_exact(p.d_sae).map(|row| row.iter().zip(&norms).map(|(a, n)| a * n).sum::<f32>()).sum();
            l1 * l1_scale * weighted / batch
        }
        TrainArch::TopK { .. } => {
            let sq: f32 = f.aux_recon.iter().zip(residual).map(|(e, r)| (e - r) * (e - r)).sum();
            AUXK_COEFFICIENT * f.aux_scale * sq / batch
        }
    };
    (mse + aux, mse, aux)
}

/// One step's loss and gradients. `dead` marks latents counted dead (AuxK); `l1_scale` is the
/// L1 warm-up factor in [0, 1].
pub fn loss_and_grads(p: &Params, arch: TrainArch, x: &[f32], dead: &[bool], l1_scale: f32) -> (StepStats, Params) {
    let (d, m) = (p.d_in, p.d_sae);
    let batch = x.len() / d;
    let f = forward(p, arch, x, dead);
    let residual: Vec<f32> = x.iter().zip(&f.recon).map(|(v, r)| v - r).collect();
    let (loss, mse, aux) = terms(p, arch, x, &f, l1_scale, &residual);
    let mut g = Params::zeros(d, m);
    let inv_b = 1.0 / batch as f32;
    let norms = p.decoder_norms();
    let mut g_pre = vec![0.0f32; m];
    for b in 0..batch {
        let acts = &f.acts[b * m..(b + 1) * m];
        let aux_acts = &f.aux_acts[b * m..(b + 1) * m];
        // d mse / d recon = 2 (recon − x) / B
        let g_recon: Vec<f32> = (0..d).map(|i| 2.0 * (f.recon[b * d + i] - x[b * d + i]) * inv_b).collect();
        // d aux / d aux_recon = 2 α scale (ê − e) / B
        let g_aux: Vec<f32> =
            (0..d).map(|i| 2.0 * AUXK_COEFFICIENT * f.aux_scale * (f.aux_recon[b * d + i] - residual[b * d + i]) * inv_b).collect();
        for (gb, gr) in g.b_dec.iter_mut().zip(&g_recon) {
            *gb += gr;
        }
        g_pre.iter_mut().for_each(|v| *v = 0.0);
        for j in 0..m {
            let w = &p.w_dec[j * d..(j + 1) * d];
            if acts[j] > 0.0 {
                let mut g_act: f32 = g_recon.iter().zip(w).map(|(a, b)| a * b).sum();
                for (gw, gr) in g.w_dec[j * d..(j + 1) * d].iter_mut().zip(&g_recon) {
                    *gw += acts[j] * gr;
                }
                if let TrainArch::Standard { l1 } = arch {
                    let c = l1 * l1_scale * inv_b;
                    g_act += c * norms[j];
                    let scale = c * acts[j] / norms[j].max(1e-12);
                    for (gw, wv) in g.w_dec[j * d..(j + 1) * d].iter_mut().zip(w) {
                        *gw += scale * wv;
                    }
                }
                g_pre[j] += g_act;
            }
            if aux_acts[j] > 0.0 {
                g_pre[j] += g_aux.iter().zip(w).map(|(a, b)| a * b).sum::<f32>();
                for (gw, ga) in g.w_dec[j * d..(j + 1) * d].iter_mut().zip(&g_aux) {
                    *gw += aux_acts[j] * ga;
                }
            }
        }
        let sae_in = &f.sae_in[b * d..(b + 1) * d];
        for (j, &gp) in g_pre.iter().enumerate() {
            g.b_enc[j] += gp;
        }
        for i in 0..d {
            let row = &mut g.w_enc[i * m..(i + 1) * m];
            let s = sae_in[i];
            for (gw, &gp) in row.iter_mut().zip(&g_pre) {
                *gw += s * gp;
            }
            // sae_in = x − b_dec: d/d b_dec = −Σ_j g_pre[j] W_enc[i, j]
            let g_in: f32 = p.w_enc[i * m..(i + 1) * m].iter().zip(&g_pre).map(|(w, gp)| w * gp).sum();
            g.b_dec[i] -= g_in;
        }
    }
    let fired = (0..m).map(|j| (0..batch).any(|b| f.acts[b * m + j] > 0.0)).collect();
    let l0 = f.acts.iter().filter(|&&a| a > 0.0).count() as f32 / batch as f32;
    (StepStats { loss, mse, aux, l0, fired, residual }, g)
}

/// Removes from each decoder-row gradient its component along the (unit) row, so that a step
/// moves along the sphere (SAELens `remove_gradient_parallel_to_decoder_directions`).
pub fn remove_parallel_decoder_grad(p: &Params, g: &mut Params) {
    let d = p.d_in;
    for (w, gw) in p.w_dec.chunks_exact(d).zip(g.w_dec.chunks_exact_mut(d)) {
        let dot: f32 = w.iter().zip(gw.iter()).map(|(a, b)| a * b).sum();
        let nn: f32 = w.iter().map(|a| a * a).sum::<f32>().max(1e-12);
        gw.iter_mut().zip(w).for_each(|(gv, wv)| *gv -= dot / nn * wv);
    }
}

/// Scales every decoder row to unit norm.
pub fn normalize_decoder(p: &mut Params) {
    let d = p.d_in;
    for row in p.w_dec.chunks_exact_mut(d) {
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= n);
    }
}

/// Re-initialises latent `j` to point at `direction` (Bricken et al. 2023, "Towards
/// Monosemanticity", resampling): decoder row = the unit direction, encoder column = the direction
/// times `encoder_norm`, encoder bias 0, and the Adam moments of those entries 0 (in `moments`).
pub fn resample_latent(p: &mut Params, moments: [&mut Params; 2], j: usize, direction: &[f32], encoder_norm: f32) {
    let (d, m) = (p.d_in, p.d_sae);
    let norm = direction.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    for i in 0..d {
        p.w_dec[j * d + i] = direction[i] / norm;
        p.w_enc[i * m + j] = direction[i] / norm * encoder_norm;
    }
    p.b_enc[j] = 0.0;
    for state in moments {
        for i in 0..d {
            state.w_dec[j * d + i] = 0.0;
            state.w_enc[i * m + j] = 0.0;
        }
        state.b_enc[j] = 0.0;
    }
}

/// Adam (Kingma & Ba 2015) with bias correction, as `torch.optim.Adam`.
#[derive(Debug, Clone)]
pub struct Adam {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub m: Params,
    pub v: Params,
    /// β₁ᵗ and β₂ᵗ as running products (not `powi`, whose rounding is platform-dependent).
    beta1_t: f32,
    beta2_t: f32,
}

impl Adam {
    pub fn new(d_in: usize, d_sae: usize) -> Adam {
        Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, m: Params::zeros(d_in, d_sae), v: Params::zeros(d_in, d_sae), beta1_t: 1.0, beta2_t: 1.0 }
    }

    pub fn step(&mut self, p: &mut Params, g: &Params, lr: f32) {
        self.beta1_t *= self.beta1;
        self.beta2_t *= self.beta2;
        let (c1, c2) = (1.0 - self.beta1_t, 1.0 - self.beta2_t);
        let (b1, b2, eps) = (self.beta1, self.beta2, self.eps);
        for (((pt, gt), mt), vt) in p.tensors_mut().into_iter().zip(g.tensors()).zip(self.m.tensors_mut()).zip(self.v.tensors_mut()) {
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

    fn problem(seed: u64) -> (Params, Vec<f32>) {
        let (d, m, batch) = (5, 9, 6);
        let mut rng = Rng::new(seed);
        let mut p = Params::init(d, m, seed);
        p.b_enc = rng.normals(m, 0.3);
        p.b_dec = rng.normals(d, 0.3);
        p.w_enc.iter_mut().for_each(|w| *w += 0.2 * rng.normal());
        p.w_dec.iter_mut().for_each(|w| *w *= 0.7 + 0.6 * rng.uniform());
        (p, rng.normals(batch * d, 1.0))
    }

    /// Analytic gradients against central differences in every parameter.
    fn check_gradients(arch: TrainArch, dead: &[bool], seed: u64) {
        let (p, x) = problem(seed);
        let (stats, g) = loss_and_grads(&p, arch, &x, dead, 0.7);
        let h = 1e-2f32;
        let mut checked = 0;
        for t in 0..4 {
            for i in 0..p.tensors()[t].len() {
                let mut plus = p.clone();
                plus.tensors_mut()[t][i] += h;
                let mut minus = p.clone();
                minus.tensors_mut()[t][i] -= h;
                // Skip coordinates where the step changes a TopK selection or a ReLU's side.
                let pattern = |q: &Params| {
                    let f = forward(q, arch, &x, dead);
                    f.acts.iter().chain(&f.aux_acts).map(|&a| a > 0.0).collect::<Vec<_>>()
                };
                let base = pattern(&p);
                if pattern(&plus) != base || pattern(&minus) != base {
                    continue;
                }
                let numeric = (loss(&plus, arch, &x, dead, 0.7, &stats.residual) - loss(&minus, arch, &x, dead, 0.7, &stats.residual)) / (2.0 * h);
                let analytic = g.tensors()[t][i];
                assert!(
                    (numeric - analytic).abs() <= 2e-2 * analytic.abs().max(0.05),
                    "{arch:?} tensor {t} index {i}: analytic {analytic}, numeric {numeric}"
                );
                checked += 1;
            }
        }
        assert!(checked > 100, "only {checked} coordinates checked");
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
    fn adam_first_step_moves_each_parameter_by_lr() {
        let (mut p, x) = problem(4);
        let before = p.clone();
        let (_, g) = loss_and_grads(&p, TrainArch::Standard { l1: 0.1 }, &x, &[false; 9], 1.0);
        Adam::new(5, 9).step(&mut p, &g, 0.01);
        // With bias correction, Adam's first step is lr · sign(g) (up to eps).
        for (a, (b, gv)) in p.w_enc.iter().zip(before.w_enc.iter().zip(&g.w_enc)) {
            if gv.abs() > 1e-4 {
                assert!((b - a - 0.01 * gv.signum()).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn decoder_constraint_keeps_rows_on_the_sphere() {
        let (mut p, x) = problem(5);
        normalize_decoder(&mut p);
        let (_, mut g) = loss_and_grads(&p, TrainArch::TopK { k: 2 }, &x, &[false; 9], 1.0);
        remove_parallel_decoder_grad(&p, &mut g);
        for (w, gw) in p.w_dec.chunks_exact(5).zip(g.w_dec.chunks_exact(5)) {
            assert!(w.iter().zip(gw).map(|(a, b)| a * b).sum::<f32>().abs() < 1e-5);
        }
        assert!(p.decoder_norms().iter().all(|n| (n - 1.0).abs() < 1e-5));
    }
}
