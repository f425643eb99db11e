//! How well a learned dictionary recovers known features (Sharkey et al. 2022, "Taking features
//! out of superposition with sparse autoencoders"): the cosine of every true feature with every
//! decoder row, its row-wise maximum, the mean of those maxima (MMCS), and how many exceed 0.9.

/// Threshold above which a true feature counts as recovered.
pub const RECOVERED_COSINE: f32 = 0.9;

#[derive(Debug, Clone, PartialEq)]
pub struct Recovery {
    /// `[n_true, n_learned]` cosines.
    pub cosines: Vec<f32>,
    pub n_true: usize,
    pub n_learned: usize,
    /// Per true feature: the best cosine with any decoder row.
    pub best: Vec<f32>,
    pub mmcs: f32,
    pub recovered: usize,
}

fn unit_rows(m: &[f32], d: usize) -> Vec<f32> {
    m.chunks_exact(d)
        .flat_map(|r| {
            let n = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            r.iter().map(move |v| v / n)
        })
        .collect()
}

/// `true_features` `[n_true, d]` against `decoder` `[n_learned, d]`.
pub fn recovery(true_features: &[f32], decoder: &[f32], d: usize) -> Recovery {
    let (t, l) = (unit_rows(true_features, d), unit_rows(decoder, d));
    let (n_true, n_learned) = (t.len() / d, l.len() / d);
    let mut cosines = vec![0.0; n_true * n_learned];
    for i in 0..n_true {
        for j in 0..n_learned {
            cosines[i * n_learned + j] = t[i * d..(i + 1) * d].iter().zip(&l[j * d..(j + 1) * d]).map(|(a, b)| a * b).sum();
        }
    }
    let best: Vec<f32> = cosines.chunks_exact(n_learned.max(1)).map(|r| r.iter().copied().fold(f32::NEG_INFINITY, f32::max)).collect();
    let mmcs = best.iter().sum::<f32>() / n_true.max(1) as f32;
    let recovered = best.iter().filter(|&&c| c > RECOVERED_COSINE).count();
    Recovery { cosines, n_true, n_learned, best, mmcs, recovered }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_dictionaries_recover_everything() {
        let f = [1.0, 0.0, 0.0, 1.0, 0.6, 0.8];
        let r = recovery(&f, &[0.0, 2.0, 3.0, 0.0, 1.2, 1.6, -1.0, 0.0], 2);
        assert!((r.mmcs - 1.0).abs() < 1e-6);
        assert_eq!(r.recovered, 3);
        assert_eq!(r.cosines.len(), 12);
        // A dictionary with only the negated first feature recovers none of it.
        let r = recovery(&f[..2], &[-1.0, 0.0], 2);
        assert_eq!(r.best, vec![-1.0]);
        assert_eq!(r.recovered, 0);
    }
}
