//! The teaching lab's settings: what a lesson is made of, how it is written in the page's URL
//! (so a teacher shares one link), and the lesson presets. Parsing is forgiving: a bad value
//! keeps the default and is reported with the setting's name.

use super::sae_train::TrainArch;
use super::superposition::SuperpositionConfig;
use super::synthetic::{Geometry, Magnitude, ToyDataConfig};
use super::toy::ToyTrainConfig;
use super::trainer::BDecInit;

#[derive(Debug, Clone, PartialEq)]
pub struct LabSettings {
    pub features: usize,
    pub dims: usize,
    pub p: f32,
    pub geometry: Geometry,
    /// `(parents, children per parent)`, 0 parents for none.
    pub hierarchy: (usize, usize),
    pub noise: f32,
    /// standard, topk, batchtopk, jumprelu or gated.
    pub arch: String,
    /// topk, batchtopk: active latents per row (on average for batchtopk).
    pub k: usize,
    /// standard, gated: the L1 coefficient.
    pub l1: f32,
    /// jumprelu: the L0 coefficient and the straight-through estimator's bandwidth.
    pub l0: f32,
    pub bandwidth: f32,
    pub dict: usize,
    pub batch: usize,
    pub steps: usize,
    pub lr: f32,
    pub seed: u64,
    pub dead_after: usize,
    pub b_dec_init: BDecInit,
    /// Resample dead latents every this many steps (0: never).
    pub resample_every: usize,
    /// p_i = p · (i + 1)^(−p_decay).
    pub p_decay: f32,
    pub magnitude: Magnitude,
    /// Pairs in which the second feature fires whenever the first does.
    pub correlated: usize,
    /// Pairs that never fire together.
    pub anti_correlated: usize,
    /// The toy model of superposition's panel (Elhage et al. 2022): features, hidden dimensions,
    /// the chance a feature is off, and the importance decay per feature.
    pub sp_features: usize,
    pub sp_dims: usize,
    pub sp_sparsity: f32,
    pub sp_importance_decay: f32,
    /// Where SAE training runs: `auto` (time a few steps on the CPU and on WebGPU, take the
    /// faster), `cpu` or `gpu`.
    pub device: String,
}

impl Default for LabSettings {
    fn default() -> Self {
        LabSettings {
            features: 64,
            dims: 16,
            p: 0.03,
            geometry: Geometry::RandomUnit,
            hierarchy: (0, 0),
            noise: 0.0,
            arch: "topk".into(),
            k: 4,
            l1: 1.0,
            l0: 0.1,
            bandwidth: 0.05,
            dict: 128,
            batch: 256,
            steps: 1500,
            lr: 3e-3,
            seed: 1,
            dead_after: 50,
            b_dec_init: BDecInit::Mean,
            resample_every: 0,
            p_decay: 0.0,
            magnitude: Magnitude::Uniform { lo: 0.0, hi: 1.0 },
            correlated: 0,
            anti_correlated: 0,
            sp_features: 5,
            sp_dims: 2,
            sp_sparsity: 0.9,
            sp_importance_decay: 0.9,
            device: "auto".into(),
        }
    }
}

/// Where the lab trains, as `device=` spells it.
pub const DEVICES: [&str; 3] = ["auto", "cpu", "gpu"];

/// The architectures the lab trains, as `arch=` spells them.
pub const ARCHITECTURES: [&str; 5] = ["standard", "topk", "batchtopk", "jumprelu", "gated"];

/// A lesson: a name for the menu, what it shows, and its settings.
pub struct Preset {
    pub id: &'static str,
    pub title: &'static str,
    pub lesson: &'static str,
    pub settings: fn() -> LabSettings,
}

pub const PRESETS: &[Preset] = &[
    Preset {
        id: "superposition-2d",
        title: "Superposition in 2-D",
        lesson: "Five sparse features share two dimensions as a pentagon. An 8-latent TopK SAE (k=1) finds the five directions: watch the blue arrows settle on the grey ones; the spare latents die.",
        settings: || LabSettings { features: 5, dims: 2, p: 0.05, geometry: Geometry::Polygon, k: 1, dict: 8, batch: 128, ..LabSettings::default() },
    },
    Preset {
        id: "sparse-features",
        title: "Many sparse features, few dimensions",
        lesson: "64 features in 16 dimensions, each active 3% of the time: 4× more features than dimensions, yet a TopK SAE with a 128-latent dictionary recovers nearly all of them (MMCS near 1).",
        settings: LabSettings::default,
    },
    Preset {
        id: "dense-features",
        title: "Superposition breaks when features are dense",
        lesson: "The same 64 features in 16 dimensions, now active 25% of the time (16 at once on average, as many as there are dimensions). The SAE cannot tell them apart: MMCS stays low.",
        settings: || LabSettings { p: 0.25, k: 16, ..LabSettings::default() },
    },
    Preset {
        id: "l1-too-weak",
        title: "L1 too weak",
        lesson: "A standard ReLU SAE whose L1 penalty is tiny: it reconstructs well (low FVU) but uses many latents per input (high L0), and its latents are mixtures, not the true features. Compare with the TopK preset.",
        settings: || LabSettings { arch: "standard".into(), l1: 0.01, ..LabSettings::default() },
    },
    Preset {
        id: "l1-balanced",
        title: "L1 strong enough",
        lesson: "The same standard SAE with a stronger L1 penalty: L0 falls towards the true number of active features and MMCS rises.",
        settings: || LabSettings { arch: "standard".into(), l1: 0.3, ..LabSettings::default() },
    },
    Preset {
        id: "dead-latents",
        title: "Dead latents and AuxK",
        lesson: "32 features, 512 latents: most latents never win the TopK. They are counted dead after 50 steps without firing, and AuxK (Gao et al. 2024) trains them to explain the residual. Watch the dead count.",
        settings: || LabSettings { features: 32, dict: 512, k: 2, steps: 1000, ..LabSettings::default() },
    },
    Preset {
        id: "absorption",
        title: "Feature absorption",
        lesson: "A parent feature fires whenever any of its 3 children does (A is for Absorption, Chanin et al. 2024). The SAE tends to fold the parent into the children's latents: look for the parent's row in the heatmap having no clean match.",
        settings: || LabSettings { features: 40, hierarchy: (4, 3), k: 4, ..LabSettings::default() },
    },
    Preset {
        id: "batchtopk",
        title: "BatchTopK: k on average",
        lesson: "32 features in 16 dimensions, a 64-latent BatchTopK SAE (Bussmann et al. 2024): the batch's 2×256 largest activations are kept, so busy inputs get more latents and quiet ones fewer. It learns a threshold as it goes and is saved as a JumpReLU SAE. Switch arch to topk to compare.",
        settings: || LabSettings { arch: "batchtopk".into(), features: 32, dict: 64, p: 0.05, k: 2, steps: 3000, lr: 0.01, ..LabSettings::default() },
    },
    Preset {
        id: "jumprelu",
        title: "JumpReLU: a learned threshold per latent",
        lesson: "The same data with a JumpReLU SAE (Rajamanoharan et al. 2024): each latent learns its own threshold through a straight-through estimator, and an L0 penalty (not L1) sets the sparsity, so activations are not shrunk towards zero.",
        settings: || LabSettings { arch: "jumprelu".into(), features: 32, dict: 64, p: 0.05, l0: 0.05, steps: 3000, ..LabSettings::default() },
    },
    Preset {
        id: "gated",
        title: "Gated SAE: deciding apart from sizing",
        lesson: "A gated SAE (Rajamanoharan et al. 2024) decides which latents fire with one path (penalised by L1) and sizes them with another, so the L1 penalty no longer shrinks the activations it keeps.",
        settings: || LabSettings { arch: "gated".into(), features: 32, dict: 64, p: 0.05, l1: 1.0, ..LabSettings::default() },
    },
];

fn b_dec_init_name(b: BDecInit) -> &'static str {
    match b {
        BDecInit::Zeros => "zeros",
        BDecInit::Mean => "mean",
        BDecInit::GeometricMedian => "geometric_median",
    }
}

fn magnitude_text(m: Magnitude) -> String {
    match m {
        Magnitude::Constant(v) => format!("constant:{v}"),
        Magnitude::Uniform { lo, hi } => format!("uniform:{lo},{hi}"),
        Magnitude::Exponential { mean } => format!("exponential:{mean}"),
    }
}

fn geometry_name(g: Geometry) -> &'static str {
    match g {
        Geometry::RandomUnit => "random",
        Geometry::Polygon => "polygon",
    }
}

impl LabSettings {
    pub fn preset(id: &str) -> Option<LabSettings> {
        PRESETS.iter().find(|p| p.id == id).map(|p| (p.settings)())
    }

    /// `key=value&…` for the URL.
    pub fn to_query(&self) -> String {
        format!(
            "features={}&dims={}&p={}&geometry={}&hierarchy={},{}&noise={}&arch={}&k={}&l1={}&l0={}&bandwidth={}&dict={}&batch={}&steps={}&lr={}&seed={}&dead_after={}&b_dec_init={}&resample_every={}&p_decay={}&magnitude={}&correlated={}&anti_correlated={}&sp_features={}&sp_dims={}&sp_sparsity={}&sp_importance_decay={}&device={}",
            self.features, self.dims, self.p, geometry_name(self.geometry), self.hierarchy.0, self.hierarchy.1, self.noise,
            self.arch, self.k, self.l1, self.l0, self.bandwidth, self.dict, self.batch, self.steps, self.lr, self.seed, self.dead_after,
            b_dec_init_name(self.b_dec_init), self.resample_every, self.p_decay, magnitude_text(self.magnitude),
            self.correlated, self.anti_correlated, self.sp_features, self.sp_dims, self.sp_sparsity, self.sp_importance_decay, self.device
        )
    }

    /// Reads `key=value&…` (a `preset=` key applies first). Unknown keys and bad values are
    /// reported as `(key, message)`; the value stays as it was.
    pub fn from_query(query: &str) -> (LabSettings, Vec<(String, String)>) {
        let mut s = LabSettings::default();
        let mut problems = Vec::new();
        let pairs: Vec<(&str, &str)> =
            query.split('&').filter(|kv| !kv.is_empty()).map(|kv| kv.split_once('=').unwrap_or((kv, ""))).collect();
        if let Some((_, id)) = pairs.iter().find(|(k, _)| *k == "preset") {
            match LabSettings::preset(id) {
                Some(p) => s = p,
                None => problems.push(("preset".to_string(), format!("unknown preset '{id}'"))),
            }
        }
        for (key, value) in pairs {
            if let Err(msg) = s.set(key, value) {
                problems.push((key.to_string(), msg));
            }
        }
        (s, problems)
    }

    /// Sets one setting from text; the message says what is wrong.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        fn num<T: std::str::FromStr>(value: &str) -> Result<T, String> {
            value.trim().parse().map_err(|_| format!("'{value}' is not a valid number"))
        }
        fn finite(value: &str) -> Result<f32, String> {
            let v: f32 = num(value)?;
            if v.is_finite() {
                Ok(v)
            } else {
                Err(format!("'{value}' is not a finite number"))
            }
        }
        match key {
            "preset" => {}
            "features" => self.features = num(value)?,
            "dims" => self.dims = num(value)?,
            "p" => self.p = finite(value)?,
            "geometry" => {
                self.geometry = match value {
                    "random" => Geometry::RandomUnit,
                    "polygon" => Geometry::Polygon,
                    _ => return Err(format!("'{value}' is not random or polygon")),
                }
            }
            "hierarchy" => {
                let (a, b) = value.split_once(',').ok_or_else(|| format!("'{value}' is not PARENTS,CHILDREN"))?;
                self.hierarchy = (num(a)?, num(b)?);
            }
            "noise" => self.noise = finite(value)?,
            "arch" => {
                if !ARCHITECTURES.contains(&value) {
                    return Err(format!("'{value}' is not one of {}", ARCHITECTURES.join(", ")));
                }
                self.arch = value.to_string();
            }
            "device" => {
                if !DEVICES.contains(&value) {
                    return Err(format!("'{value}' is not one of {}", DEVICES.join(", ")));
                }
                self.device = value.to_string();
            }
            "k" => self.k = num(value)?,
            "l1" => self.l1 = finite(value)?,
            "l0" => self.l0 = finite(value)?,
            "bandwidth" => self.bandwidth = finite(value)?,
            "dict" => self.dict = num(value)?,
            "batch" => self.batch = num(value)?,
            "steps" => self.steps = num(value)?,
            "lr" => self.lr = finite(value)?,
            "seed" => self.seed = num(value)?,
            "dead_after" => self.dead_after = num(value)?,
            "resample_every" => self.resample_every = num(value)?,
            "p_decay" => self.p_decay = finite(value)?,
            "correlated" => self.correlated = num(value)?,
            "anti_correlated" => self.anti_correlated = num(value)?,
            "sp_features" => self.sp_features = num(value)?,
            "sp_dims" => self.sp_dims = num(value)?,
            "sp_sparsity" => self.sp_sparsity = finite(value)?,
            "sp_importance_decay" => self.sp_importance_decay = finite(value)?,
            "magnitude" => {
                let bad = || format!("'{value}' is not constant:V, uniform:LO,HI or exponential:MEAN");
                let (kind, args) = value.split_once(':').ok_or_else(bad)?;
                self.magnitude = match kind {
                    "constant" => Magnitude::Constant(finite(args)?),
                    "exponential" => Magnitude::Exponential { mean: finite(args)? },
                    "uniform" => {
                        let (lo, hi) = args.split_once(',').ok_or_else(bad)?;
                        Magnitude::Uniform { lo: finite(lo)?, hi: finite(hi)? }
                    }
                    _ => return Err(bad()),
                }
            }
            "b_dec_init" => {
                self.b_dec_init = match value {
                    "zeros" => BDecInit::Zeros,
                    "mean" => BDecInit::Mean,
                    "geometric_median" => BDecInit::GeometricMedian,
                    _ => return Err(format!("'{value}' is not zeros, mean or geometric_median")),
                }
            }
            _ => return Err("unknown setting".into()),
        }
        Ok(())
    }

    /// The toy model of superposition's configuration (3000 Adam steps of 256 inputs at lr 0.01,
    /// seed 1), or the first impossible setting.
    pub fn to_superposition_config(&self) -> Result<SuperpositionConfig, String> {
        if !(1..=64).contains(&self.sp_features) || !(1..=16).contains(&self.sp_dims) {
            return Err("the page's toy model keeps to 1–64 features in 1–16 dimensions".into());
        }
        let cfg = SuperpositionConfig {
            features: self.sp_features,
            dims: self.sp_dims,
            sparsity: self.sp_sparsity,
            importance_decay: self.sp_importance_decay,
            batch: 256,
            steps: 3000,
            lr: 1e-2,
            seed: 1,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The training configuration, or the first impossible setting.
    pub fn to_config(&self) -> Result<ToyTrainConfig, String> {
        let mut data = ToyDataConfig::new(self.features, self.dims, self.p, self.seed);
        data.geometry = self.geometry;
        data.noise = self.noise;
        data.hierarchy = (self.hierarchy.0 > 0).then_some(self.hierarchy);
        data.p_decay = self.p_decay;
        data.magnitude = self.magnitude;
        data.correlated_pairs = self.correlated;
        data.anti_correlated_pairs = self.anti_correlated;
        let arch = TrainArch::from_name(&self.arch, self.k, self.l1, self.l0, self.bandwidth)?;
        let mut cfg = ToyTrainConfig::new(data, arch, self.dict, self.batch, self.steps);
        cfg.train.lr = self.lr;
        cfg.train.dead_after_steps = self.dead_after;
        cfg.train.b_dec_init = self.b_dec_init;
        cfg.train.resample_every = self.resample_every;
        cfg.validate()?;
        if self.features > 4096 || self.dims > 1024 || self.dict > 16_384 || self.batch > 8192 {
            return Err("the lab keeps to features ≤ 4096, dims ≤ 1024, dict ≤ 16384, batch ≤ 8192".into());
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_round_trips_and_presets_are_valid() {
        for preset in PRESETS {
            let s = (preset.settings)();
            s.to_config().unwrap_or_else(|e| panic!("preset {}: {e}", preset.id));
            let (back, problems) = LabSettings::from_query(&s.to_query());
            assert!(problems.is_empty(), "{problems:?}");
            assert_eq!(back, s);
            let (via_id, problems) = LabSettings::from_query(&format!("preset={}", preset.id));
            assert!(problems.is_empty());
            assert_eq!(via_id, s);
        }
        assert!(PRESETS.len() >= 5);
    }

    #[test]
    fn garbage_in_the_url_is_reported_by_name_and_ignored() {
        let (s, problems) = LabSettings::from_query("k=banana&p=NaN&arch=relu&zzz=1&dims=8&preset=nope&hierarchy=3");
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["preset", "k", "p", "arch", "zzz", "hierarchy"]);
        assert_eq!(s.dims, 8);
        assert_eq!(s.k, LabSettings::default().k);
        let (s, problems) = LabSettings::from_query("magnitude=exponential:0.5&correlated=3&p_decay=0.5");
        assert!(problems.is_empty(), "{problems:?}");
        let cfg = s.to_config().unwrap();
        assert_eq!(cfg.data.magnitude, Magnitude::Exponential { mean: 0.5 });
        assert_eq!((cfg.data.correlated_pairs, cfg.data.p_decay), (3, 0.5));
        let (_, problems) = LabSettings::from_query("magnitude=gaussian:1&correlated=-1");
        assert_eq!(problems.len(), 2, "{problems:?}");
        let (s, _) = LabSettings::from_query("correlated=40&anti_correlated=40");
        assert!(s.to_config().unwrap_err().contains("pairs"));
        let (s, problems) = LabSettings::from_query("device=tpu&device=cpu");
        assert_eq!((s.device.as_str(), problems.len()), ("cpu", 1), "{problems:?}");
        assert!(problems[0].1.contains("auto, cpu, gpu"), "{problems:?}");
        let (s, problems) = LabSettings::from_query("sp_sparsity=0.95&sp_features=6&sp_dims=3");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!((s.to_superposition_config().unwrap().sparsity, s.sp_features, s.sp_dims), (0.95, 6, 3));
        let (s, _) = LabSettings::from_query("sp_sparsity=1.5");
        assert!(s.to_superposition_config().unwrap_err().contains("sparsity must be in [0, 1)"));
        let (s, _) = LabSettings::from_query("sp_features=1000");
        assert!(s.to_superposition_config().unwrap_err().contains("1–64 features"));
        let (s, _) = LabSettings::from_query("k=999&dict=10");
        assert!(s.to_config().unwrap_err().contains("k must be between 1 and dict (10)"));
    }
}
