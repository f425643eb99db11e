//! Synthetic activations with known features, for the teaching lab: `x = Σ_i a_i f_i + noise`.
//!
//! `n_features` true directions `f_i` in `dims` dimensions (random unit vectors, or for 2-D the
//! vertices of a regular polygon as in Elhage et al. 2022, "Toy Models of Superposition"); each
//! feature fires independently with probability `p_i = p · (i + 1)^(-p_decay)`; magnitudes `a_i`
//! come from a chosen distribution. Optional structure: correlated pairs (the second fires whenever
//! the first does), anti-correlated pairs (never both), and a hierarchy in which a parent fires
//! whenever any of its children does (Chanin et al. 2024, "A is for Absorption"). Generation
//! uses only `sae::random` (a seeded generator and arithmetic-only ln/exp/sin/cos), so the same
//! seed gives bit-identical data natively and in the browser.

use crate::random::{portable_exp, portable_ln, portable_sin_cos, Rng};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Magnitude {
    /// Always this value.
    Constant(f32),
    /// Uniform in [lo, hi].
    Uniform { lo: f32, hi: f32 },
    /// Exponential with this mean.
    Exponential { mean: f32 },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Geometry {
    /// Independent uniformly random unit directions.
    RandomUnit,
    /// Only for dims = 2: evenly spaced directions around the circle.
    Polygon,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToyDataConfig {
    pub n_features: usize,
    pub dims: usize,
    pub p: f32,
    /// p_i = p · (i + 1)^(-p_decay); 0 keeps every feature at p.
    pub p_decay: f32,
    pub magnitude: Magnitude,
    /// Standard deviation of isotropic Gaussian noise added to x.
    pub noise: f32,
    pub geometry: Geometry,
    /// Pairs (2i, 2i+1) for i < correlated_pairs: feature 2i+1 fires whenever 2i does.
    pub correlated_pairs: usize,
    /// The next anti_correlated_pairs pairs: when both would fire, only the first does.
    pub anti_correlated_pairs: usize,
    /// `(parents, children_per_parent)`: the last parents·(1+children) features form trees; a
    /// parent fires whenever one of its children does.
    pub hierarchy: Option<(usize, usize)>,
    pub seed: u64,
}

impl ToyDataConfig {
    pub fn new(n_features: usize, dims: usize, p: f32, seed: u64) -> ToyDataConfig {
        ToyDataConfig {
            n_features,
            dims,
            p,
            p_decay: 0.0,
            magnitude: Magnitude::Uniform { lo: 0.0, hi: 1.0 },
            noise: 0.0,
            geometry: Geometry::RandomUnit,
            correlated_pairs: 0,
            anti_correlated_pairs: 0,
            hierarchy: None,
            seed,
        }
    }

    /// Checks the settings; each message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.n_features == 0 {
            return Err("features must be at least 1".into());
        }
        if self.dims == 0 {
            return Err("dims must be at least 1".into());
        }
        if !(self.p > 0.0 && self.p <= 1.0) {
            return Err(format!("p must be in (0, 1], not {}", self.p));
        }
        if !(self.p_decay >= 0.0 && self.p_decay.is_finite()) {
            return Err(format!("p_decay must be ≥ 0, not {}", self.p_decay));
        }
        if !(self.noise >= 0.0 && self.noise.is_finite()) {
            return Err(format!("noise must be ≥ 0, not {}", self.noise));
        }
        match self.magnitude {
            Magnitude::Constant(v) if !v.is_finite() => return Err("magnitude must be finite".into()),
            Magnitude::Uniform { lo, hi } if !(lo.is_finite() && hi.is_finite() && lo <= hi) => {
                return Err(format!("magnitude range [{lo}, {hi}] is empty or not finite"))
            }
            Magnitude::Exponential { mean } if !(mean > 0.0 && mean.is_finite()) => {
                return Err(format!("magnitude mean must be > 0, not {mean}"))
            }
            _ => {}
        }
        if self.geometry == Geometry::Polygon && self.dims != 2 {
            return Err("the polygon geometry needs dims = 2".into());
        }
        let paired = 2 * (self.correlated_pairs + self.anti_correlated_pairs);
        let tree = self.hierarchy.map_or(0, |(p, c)| p * (1 + c));
        if paired + tree > self.n_features {
            return Err(format!(
                "the correlated/anti-correlated pairs ({paired} features) and the hierarchy ({tree}) need more than {} features",
                self.n_features
            ));
        }
        Ok(())
    }
}

/// The true features and a sampler of activations.
#[derive(Debug, Clone)]
pub struct ToyData {
    pub cfg: ToyDataConfig,
    /// `[n_features, dims]`, unit rows.
    pub features: Vec<f32>,
    /// Each feature's own firing probability.
    pub firing_p: Vec<f32>,
    rng: Rng,
}

impl ToyData {
    pub fn new(cfg: ToyDataConfig) -> Result<ToyData, String> {
        cfg.validate()?;
        let mut rng = Rng::new(cfg.seed);
        let (n, d) = (cfg.n_features, cfg.dims);
        let features = match cfg.geometry {
            Geometry::Polygon => (0..n)
                .flat_map(|i| {
                    let (sin, cos) = portable_sin_cos(std::f64::consts::TAU * i as f64 / n as f64);
                    [cos as f32, sin as f32]
                })
                .collect(),
            Geometry::RandomUnit => {
                let mut f = Vec::with_capacity(n * d);
                for _ in 0..n {
                    let mut row = rng.normals(d, 1.0);
                    let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                    row.iter_mut().for_each(|v| *v /= norm);
                    f.extend(row);
                }
                f
            }
        };
        let firing_p =
            (0..n).map(|i| (cfg.p as f64 * portable_exp(-(cfg.p_decay as f64) * portable_ln((i + 1) as f64))).min(1.0) as f32).collect();
        // The sampler's stream is separate from the features' so that batches do not depend on
        // how many numbers building the features took.
        let rng = Rng::new(cfg.seed.wrapping_mul(0x2545_F491_4F6C_DD1D).wrapping_add(1));
        Ok(ToyData { cfg, features, firing_p, rng })
    }

    fn magnitude(&mut self) -> f32 {
        match self.cfg.magnitude {
            Magnitude::Constant(v) => v,
            Magnitude::Uniform { lo, hi } => lo + (hi - lo) * self.rng.uniform(),
            Magnitude::Exponential { mean } => (-(mean as f64) * portable_ln(1.0 - self.rng.uniform_f64())) as f32,
        }
    }

    /// Which features fire in one sample, after the correlation and hierarchy rules.
    fn active_set(&mut self) -> Vec<bool> {
        let n = self.cfg.n_features;
        let mut active: Vec<bool> = (0..n).map(|i| self.rng.uniform() < self.firing_p[i]).collect();
        for pair in 0..self.cfg.correlated_pairs {
            if active[2 * pair] {
                active[2 * pair + 1] = true;
            }
        }
        for pair in self.cfg.correlated_pairs..self.cfg.correlated_pairs + self.cfg.anti_correlated_pairs {
            if active[2 * pair] {
                active[2 * pair + 1] = false;
            }
        }
        if let Some((parents, children)) = self.cfg.hierarchy {
            let first = n - parents * (1 + children);
            for tree in 0..parents {
                let parent = first + tree * (1 + children);
                if (1..=children).any(|c| active[parent + c]) {
                    active[parent] = true;
                }
            }
        }
        active
    }

    /// The next `batch` samples: `x` `[batch, dims]` and the true coefficients `[batch, n_features]`.
    pub fn sample(&mut self, batch: usize) -> (Vec<f32>, Vec<f32>) {
        let (n, d) = (self.cfg.n_features, self.cfg.dims);
        let mut x = vec![0.0f32; batch * d];
        let mut coefficients = vec![0.0f32; batch * n];
        for b in 0..batch {
            let active = self.active_set();
            for (i, _) in active.iter().enumerate().filter(|(_, &a)| a) {
                let a = self.magnitude();
                coefficients[b * n + i] = a;
                for (xv, fv) in x[b * d..(b + 1) * d].iter_mut().zip(&self.features[i * d..(i + 1) * d]) {
                    *xv += a * fv;
                }
            }
            if self.cfg.noise > 0.0 {
                for xv in &mut x[b * d..(b + 1) * d] {
                    *xv += self.cfg.noise * self.rng.normal();
                }
            }
        }
        (x, coefficients)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_data_and_features_are_unit() {
        let cfg = ToyDataConfig::new(50, 8, 0.1, 3);
        let (mut a, mut b) = (ToyData::new(cfg.clone()).unwrap(), ToyData::new(cfg).unwrap());
        assert_eq!(a.features, b.features);
        assert_eq!(a.sample(20), b.sample(20));
        for row in a.features.chunks_exact(8) {
            assert!((row.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-5);
        }
        let other = ToyData::new(ToyDataConfig::new(50, 8, 0.1, 4)).unwrap();
        assert_ne!(a.features, other.features);
    }

    #[test]
    fn firing_rates_follow_p_and_structure_rules() {
        let mut cfg = ToyDataConfig::new(40, 6, 0.2, 5);
        cfg.correlated_pairs = 2;
        cfg.anti_correlated_pairs = 2;
        cfg.hierarchy = Some((2, 3));
        let mut data = ToyData::new(cfg).unwrap();
        let (_, coef) = data.sample(20_000);
        let fired = |i: usize| coef.chunks_exact(40).filter(|r| r[i] > 0.0).count() as f64 / 20_000.0;
        // An unstructured feature fires at ≈ p (Uniform(0,1) magnitudes are > 0 almost surely).
        assert!((fired(20) - 0.2).abs() < 0.02, "{}", fired(20));
        for row in coef.chunks_exact(40) {
            assert!(row[0] == 0.0 || row[1] > 0.0, "correlated: 1 fires with 0");
            assert!(!(row[4] > 0.0 && row[5] > 0.0), "anti-correlated: never both");
            // Trees start at 40 - 2·4 = 32: parent 32 with children 33..=35.
            if row[33..=35].iter().any(|&a| a > 0.0) {
                assert!(row[32] > 0.0, "a child fired without its parent");
            }
        }
        // With decay, later features fire less.
        let mut decayed = ToyDataConfig::new(10, 4, 0.5, 6);
        decayed.p_decay = 1.0;
        let d = ToyData::new(decayed).unwrap();
        assert!((d.firing_p[9] - 0.05).abs() < 1e-6);
    }

    #[test]
    fn impossible_settings_are_refused_with_their_name() {
        let bad = |f: fn(&mut ToyDataConfig)| {
            let mut c = ToyDataConfig::new(10, 4, 0.1, 1);
            f(&mut c);
            ToyData::new(c).unwrap_err()
        };
        assert!(bad(|c| c.p = 0.0).contains("p must be in (0, 1]"));
        assert!(bad(|c| c.p = 1.5).contains("p must be in (0, 1]"));
        assert!(bad(|c| c.p = f32::NAN).contains("p must be"));
        assert!(bad(|c| c.dims = 0).contains("dims"));
        assert!(bad(|c| c.n_features = 0).contains("features"));
        assert!(bad(|c| c.geometry = Geometry::Polygon).contains("dims = 2"));
        assert!(bad(|c| c.hierarchy = Some((3, 4))).contains("hierarchy"));
        assert!(bad(|c| c.magnitude = Magnitude::Uniform { lo: 2.0, hi: 1.0 }).contains("empty"));
    }

    #[test]
    fn polygon_geometry_in_two_dimensions() {
        let mut cfg = ToyDataConfig::new(5, 2, 0.1, 1);
        cfg.geometry = Geometry::Polygon;
        let d = ToyData::new(cfg).unwrap();
        assert!((d.features[0] - 1.0).abs() < 1e-6 && d.features[1].abs() < 1e-6);
        let angle = (d.features[3]).atan2(d.features[2]);
        assert!((angle - std::f32::consts::TAU / 5.0).abs() < 1e-5);
    }
}
