//! Batch metrics of an SAE on a set of activations, as reported by SAELens's evals
//! (`sae_lens/evals.py`: L0, MSE, explained variance / FVU, cosine similarity) and its
//! training-time feature sparsity (firing density, dead features).
//!
//! The per-row part (`row_stats`) and per-feature part (`fire_counts`) are computed by GPU kernels
//! on the GPU path; these functions are their CPU twins. `BatchMetrics::finish` reduces both the
//! same way for either path, in f64.

/// `F.cosine_similarity`'s epsilon: the norm product is clamped below by it.
pub const COSINE_EPS: f32 = 1e-8;

/// What the row-metrics kernel computes for each row.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RowStats {
    /// Σ_d (x - recon)²
    pub sse: f32,
    /// cos(x, recon)
    pub cosine: f32,
    /// number of features with activation > 0
    pub l0: f32,
}

/// CPU twin of `shaders/metrics.wgsl` `row_metrics`. `acts_row` is the dense activation row.
pub fn row_stats(x: &[f32], recon: &[f32], acts_row: &[f32]) -> RowStats {
    let (mut sse, mut dot, mut xx, mut rr) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
    for (a, b) in x.iter().zip(recon) {
        sse += (a - b) * (a - b);
        dot += a * b;
        xx += a * a;
        rr += b * b;
    }
    let cosine = dot / (xx.sqrt() * rr.sqrt()).max(COSINE_EPS);
    let l0 = acts_row.iter().filter(|&&a| a > 0.0).count() as f32;
    RowStats { sse, cosine, l0 }
}

/// CPU twin of `shaders/metrics.wgsl` `fire_counts`: how many rows each feature fires on.
pub fn fire_counts(acts: &[f32], d_sae: usize) -> Vec<u32> {
    let mut counts = vec![0u32; d_sae];
    for row in acts.chunks_exact(d_sae) {
        for (c, &a) in counts.iter_mut().zip(row) {
            *c += u32::from(a > 0.0);
        }
    }
    counts
}

/// Metrics over a batch of `n` rows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BatchMetrics {
    pub n: usize,
    /// Mean number of active features per row.
    pub l0: f64,
    /// Mean over all elements of (x - recon)².
    pub mse: f64,
    /// Fraction of variance unexplained: Σ‖x - recon‖² / Σ‖x - mean(x)‖², the mean over the batch.
    pub fvu: f64,
    /// Mean over rows of cos(x, recon).
    pub cosine: f64,
    /// Fraction of features that fire on no row of the batch.
    pub dead_fraction: f64,
    #[serde(skip)]
    pub fire_counts: Vec<u32>,
    #[serde(skip)]
    pub rows: Vec<RowStats>,
}

impl BatchMetrics {
    /// Reduces per-row and per-feature results. `x` is the input batch `[n, d_in]`.
    pub fn finish(x: &[f32], d_in: usize, rows: Vec<RowStats>, fire_counts: Vec<u32>) -> BatchMetrics {
        let n = rows.len();
        assert_eq!(x.len(), n * d_in, "one RowStats per input row");
        let nf = n.max(1) as f64;
        let mut mean = vec![0.0f64; d_in];
        for row in x.chunks_exact(d_in) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= nf);
        let total_variance: f64 =
            x.chunks_exact(d_in).map(|row| row.iter().zip(&mean).map(|(&v, m)| (v as f64 - m).powi(2)).sum::<f64>()).sum();
        let sse: f64 = rows.iter().map(|r| r.sse as f64).sum();
        let dead = fire_counts.iter().filter(|&&c| c == 0).count();
        BatchMetrics {
            n,
            l0: rows.iter().map(|r| r.l0 as f64).sum::<f64>() / nf,
            mse: sse / (nf * d_in as f64),
            fvu: if total_variance > 0.0 { sse / total_variance } else { f64::NAN },
            cosine: rows.iter().map(|r| r.cosine as f64).sum::<f64>() / nf,
            dead_fraction: dead as f64 / fire_counts.len().max(1) as f64,
            fire_counts,
            rows,
        }
    }

    /// Per-feature firing density: the fraction of rows on which each feature is active.
    pub fn density(&self) -> Vec<f64> {
        self.fire_counts.iter().map(|&c| c as f64 / self.n.max(1) as f64).collect()
    }

    /// Histogram of log10(density) over the features that fired, plus the count that never did.
    pub fn log10_density_histogram(&self, bins: usize) -> DensityHistogram {
        log10_histogram(&self.density(), bins)
    }
}

/// A histogram of log10 firing densities.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DensityHistogram {
    /// `bins + 1` bin edges in log10 units.
    pub edges: Vec<f64>,
    pub counts: Vec<usize>,
    /// Features with density 0 (log10 = -∞), shown apart.
    pub dead: usize,
}

/// Bins log10(density) of the non-zero densities between the smallest possible (one firing) and 0.
pub fn log10_histogram(density: &[f64], bins: usize) -> DensityHistogram {
    let logs: Vec<f64> = density.iter().filter(|&&d| d > 0.0).map(|d| d.log10()).collect();
    let dead = density.len() - logs.len();
    let lo = logs.iter().cloned().fold(f64::INFINITY, f64::min).min(-1.0).floor();
    let hi = 0.0;
    let bins = bins.max(1);
    let width = (hi - lo) / bins as f64;
    let edges = (0..=bins).map(|i| lo + width * i as f64).collect();
    let mut counts = vec![0; bins];
    for l in logs {
        let b = (((l - lo) / width) as usize).min(bins - 1);
        counts[b] += 1;
    }
    DensityHistogram { edges, counts, dead }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_of_a_hand_made_batch() {
        // Two rows in 2-D; reconstruction exact on the first, off by (1, 0) on the second.
        let x = [1.0, 0.0, 3.0, 2.0];
        let recon = [1.0, 0.0, 2.0, 2.0];
        let acts = [0.5, 0.0, 0.0, 1.0, 2.0, 0.0];
        let rows: Vec<RowStats> =
            (0..2).map(|r| row_stats(&x[r * 2..r * 2 + 2], &recon[r * 2..r * 2 + 2], &acts[r * 3..r * 3 + 3])).collect();
        assert_eq!(rows[0].l0, 1.0);
        assert_eq!(rows[1].l0, 2.0);
        let m = BatchMetrics::finish(&x, 2, rows, fire_counts(&acts, 3));
        assert_eq!(m.fire_counts, vec![2, 1, 0]);
        assert_eq!(m.l0, 1.5);
        assert!((m.mse - 0.25).abs() < 1e-12);
        // mean = (2, 1); total variance = (1+1) + (1+1) = 4; SSE = 1.
        assert!((m.fvu - 0.25).abs() < 1e-12);
        let cos2 = (6.0 + 4.0) / ((13.0f64).sqrt() * (8.0f64).sqrt());
        assert!((m.cosine - (1.0 + cos2) / 2.0).abs() < 1e-6);
        assert!((m.dead_fraction - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn histogram_counts_dead_features_apart() {
        let h = log10_histogram(&[0.0, 0.01, 0.1, 1.0, 0.0], 4);
        assert_eq!(h.dead, 2);
        assert_eq!(h.counts.iter().sum::<usize>(), 3);
        assert_eq!(h.edges.len(), 5);
        assert_eq!(*h.edges.last().unwrap(), 0.0);
    }
}
