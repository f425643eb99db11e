//! The original toy model of superposition (Elhage et al. 2022, "Toy Models of Superposition"):
//! n sparse features with importances I_i are squeezed through m < n hidden dimensions and read
//! back with a ReLU, `x' = ReLU(WᵀW x + b)`, trained to minimise `Σ_i I_i (x_i − x'_i)²`.
//! As features get sparser the model packs more of them than it has dimensions — in 2-D the
//! famous pentagons — which is what the lab shows before any SAE is trained.
//!
//! Parameters reuse `sae::SaeWeights` so that one Adam serves both: `w_dec` `[n, m]` holds the
//! features' hidden directions (the columns of W) and `b_enc` `[n]` the output bias; the encoder
//! tensors and `b_dec` are unused and stay zero.

use crate::random::Rng;

use super::sae_train::Adam;
use crate::sae::{EncoderKind, SaeWeights};

#[derive(Debug, Clone, PartialEq)]
pub struct SuperpositionConfig {
    pub features: usize,
    pub dims: usize,
    /// Probability that a feature is zero in a sample (Elhage et al.'s S).
    pub sparsity: f32,
    /// I_i = importance_decay^i.
    pub importance_decay: f32,
    pub batch: usize,
    pub steps: usize,
    pub lr: f32,
    pub seed: u64,
}

impl SuperpositionConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.features == 0 || self.dims == 0 {
            return Err("features and dims must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.sparsity) {
            return Err(format!("sparsity must be in [0, 1), not {}", self.sparsity));
        }
        if !(self.importance_decay > 0.0 && self.importance_decay <= 1.0) {
            return Err(format!("importance decay must be in (0, 1], not {}", self.importance_decay));
        }
        if self.batch == 0 || self.steps == 0 {
            return Err("batch and steps must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(format!("lr must be a positive number, not {}", self.lr));
        }
        Ok(())
    }

    pub fn importance(&self) -> Vec<f32> {
        let mut w = 1.0f32;
        (0..self.features)
            .map(|_| {
                let v = w;
                w *= self.importance_decay;
                v
            })
            .collect()
    }
}

/// A batch `[batch, n]`: each feature is 0 with probability `sparsity`, else uniform in [0, 1].
pub fn sample(rng: &mut Rng, cfg: &SuperpositionConfig) -> Vec<f32> {
    (0..cfg.batch * cfg.features).map(|_| if rng.uniform() < cfg.sparsity { 0.0 } else { rng.uniform() }).collect()
}

/// Loss and gradients for one batch (CPU reference).
pub fn loss_and_grads(p: &SaeWeights, importance: &[f32], x: &[f32]) -> (f32, SaeWeights) {
    let (m, n) = (p.d_in, p.d_sae);
    let batch = x.len() / n;
    let mut g = p.zeros_like();
    let mut loss = 0.0f32;
    let scale = 1.0 / batch as f32;
    for row in x.chunks_exact(n) {
        // h = Wx = Σ_i x_i V[i]
        let mut h = vec![0.0f32; m];
        for (i, &xi) in row.iter().enumerate() {
            for (hk, vk) in h.iter_mut().zip(&p.w_dec[i * m..(i + 1) * m]) {
                *hk += xi * vk;
            }
        }
        let mut dz = vec![0.0f32; n];
        for i in 0..n {
            let z: f32 = p.w_dec[i * m..(i + 1) * m].iter().zip(&h).map(|(v, hk)| v * hk).sum::<f32>() + p.encoder.pre_bias()[i];
            let out = z.max(0.0);
            let err = out - row[i];
            loss += importance[i] * err * err * scale;
            if z > 0.0 {
                dz[i] = 2.0 * importance[i] * err * scale;
            }
        }
        // dh = Σ_i dz_i V[i]
        let mut dh = vec![0.0f32; m];
        for (i, &d) in dz.iter().enumerate() {
            for (a, v) in dh.iter_mut().zip(&p.w_dec[i * m..(i + 1) * m]) {
                *a += d * v;
            }
        }
        let g_bias = g.encoder.pre_bias_mut();
        for i in 0..n {
            g_bias[i] += dz[i];
        }
        for i in 0..n {
            for k in 0..m {
                g.w_dec[i * m + k] += dz[i] * h[k] + row[i] * dh[k];
            }
        }
    }
    (loss, g)
}

/// What a trained toy model looks like.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SuperpositionResult {
    pub loss: f32,
    /// ‖W_i‖ per feature: near 1 when the feature is represented, near 0 when dropped.
    pub norms: Vec<f32>,
    /// Features with ‖W_i‖ > 0.5.
    pub represented: usize,
    /// Per feature Σ_{j≠i} (Ŵ_i · W_j)²: how much other features interfere (0 = own dimension).
    pub interference: Vec<f32>,
    /// dims / represented features (Elhage et al.'s "dimensions per feature").
    pub dims_per_feature: f32,
    /// The hidden directions `[features, dims]`.
    pub directions: Vec<f32>,
}

pub fn train(cfg: &SuperpositionConfig) -> Result<SuperpositionResult, String> {
    cfg.validate()?;
    let (n, m) = (cfg.features, cfg.dims);
    let mut rng = Rng::new(cfg.seed);
    // Stored in the SAE's parameter struct (no encoder, threshold or gate terms) to share Adam.
    let mut p = SaeWeights::zeros(EncoderKind::Bias, m, n);
    // Xavier-normal initialisation, as the paper's reference code.
    let std = (2.0 / (n + m) as f32).sqrt();
    p.w_dec = rng.normals(n * m, std);
    let importance = cfg.importance();
    let mut adam = Adam::new(&p);
    let mut loss = 0.0;
    for step in 0..cfg.steps {
        let x = sample(&mut rng, cfg);
        let (l, g) = loss_and_grads(&p, &importance, &x);
        if !l.is_finite() {
            return Err(format!("training diverged at step {step}; lower the learning rate"));
        }
        loss = l;
        adam.step(&mut p, &g, cfg.lr);
    }
    let norms: Vec<f32> = p.w_dec.chunks_exact(m).map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt()).collect();
    let interference = (0..n)
        .map(|i| {
            let wi = &p.w_dec[i * m..(i + 1) * m];
            let ni = norms[i].max(1e-9);
            (0..n)
                .filter(|&j| j != i)
                .map(|j| wi.iter().zip(&p.w_dec[j * m..(j + 1) * m]).map(|(a, b)| a * b / ni).sum::<f32>().powi(2))
                .sum()
        })
        .collect();
    let represented = norms.iter().filter(|&&v| v > 0.5).count();
    Ok(SuperpositionResult {
        loss,
        represented,
        dims_per_feature: m as f32 / represented.max(1) as f32,
        interference,
        norms,
        directions: p.w_dec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::needless_range_loop)] // i indexes a tensor of p and its gradient alike
    fn gradients_match_finite_differences() {
        let cfg = SuperpositionConfig { features: 6, dims: 3, sparsity: 0.3, importance_decay: 0.8, batch: 7, steps: 1, lr: 1e-3, seed: 2 };
        let mut rng = Rng::new(5);
        let mut p = SaeWeights::zeros(EncoderKind::Bias, 3, 6);
        p.w_dec = rng.normals(18, 0.6);
        *p.encoder.pre_bias_mut() = rng.normals(6, 0.1);
        let x = sample(&mut rng, &cfg);
        let imp = cfg.importance();
        let (_, g) = loss_and_grads(&p, &imp, &x);
        let h = 1e-3f32;
        for (t, grad) in [("b_enc", g.encoder.pre_bias()), ("W_dec", &g.w_dec)] {
            for i in 0..grad.len() {
                let mut plus = p.clone();
                plus.tensor_mut(t).unwrap()[i] += h;
                let mut minus = p.clone();
                minus.tensor_mut(t).unwrap()[i] -= h;
                let numeric = (loss_and_grads(&plus, &imp, &x).0 - loss_and_grads(&minus, &imp, &x).0) / (2.0 * h);
                assert!((numeric - grad[i]).abs() < 2e-2 * grad[i].abs().max(0.05), "tensor {t}[{i}]: {} vs {numeric}", grad[i]);
            }
        }
    }

    #[test]
    fn sparsity_brings_superposition() {
        // Elhage et al. Fig. 2-3: 5 features in 2-D. Dense: only the 2 most important are kept.
        // Sparse: all 5, in superposition (a pentagon).
        let base =
            SuperpositionConfig { features: 5, dims: 2, sparsity: 0.0, importance_decay: 0.9, batch: 256, steps: 3000, lr: 1e-2, seed: 1 };
        let dense = train(&base).unwrap();
        assert_eq!(dense.represented, 2, "dense: norms {:?}", dense.norms);
        let sparse = train(&SuperpositionConfig { sparsity: 0.95, ..base }).unwrap();
        assert_eq!(sparse.represented, 5, "sparse: norms {:?}", sparse.norms);
        assert!(sparse.dims_per_feature < 0.5);
    }
}
