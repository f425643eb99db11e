//! The toy training loop: an SAE trained on synthetic data with known features, step by step (so
//! the page can interleave steps with drawing). It feeds `trainer::SaeTrainer` batches from
//! `ToyData`, measures recovery of the true features and exports the SAE in SAELens format.

use crate::backend::Backend;
use crate::sae::metrics::BatchMetrics;
use crate::sae::Sae;

use super::recovery::{recovery, Recovery};
use super::sae_train::TrainArch;
use super::synthetic::{ToyData, ToyDataConfig};
use super::trainer::{SaeTrainer, TrainConfig};

#[derive(Debug, Clone, PartialEq)]
pub struct ToyTrainConfig {
    pub data: ToyDataConfig,
    /// The training settings; `train.seed` starts as the data's seed.
    pub train: TrainConfig,
}

impl ToyTrainConfig {
    pub fn new(data: ToyDataConfig, arch: TrainArch, dict: usize, batch: usize, steps: usize) -> ToyTrainConfig {
        let train = TrainConfig::new(arch, dict, batch, steps, data.seed);
        ToyTrainConfig { data, train }
    }

    /// Checks the settings; each message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        self.data.validate()?;
        self.train.validate()
    }
}

pub struct ToyTrainer {
    pub cfg: ToyTrainConfig,
    pub data: ToyData,
    pub training: SaeTrainer,
}

impl ToyTrainer {
    /// A fresh run of `cfg`, trained on `backend`.
    pub fn new(cfg: ToyTrainConfig, backend: &Backend) -> Result<ToyTrainer, String> {
        cfg.validate()?;
        let mut data = ToyData::new(cfg.data.clone())?;
        let (first, _) = data.sample(cfg.train.batch.max(256));
        let training = SaeTrainer::new(cfg.train.clone(), cfg.data.dims, &first, backend)?;
        Ok(ToyTrainer { cfg, data, training })
    }

    /// Refreshes the parameters from the GPU (see `SaeTrainer::sync`).
    pub async fn sync(&mut self) -> Result<(), String> {
        self.training.sync().await
    }

    /// Resampling draws its inputs from a stream of its own (data seed and step), so the CPU and
    /// GPU paths resample identically and training data is not consumed.
    fn resample_sample(cfg: &ToyTrainConfig, step: usize) -> Vec<f32> {
        let mut sample_cfg = cfg.data.clone();
        sample_cfg.seed = cfg.data.seed.wrapping_add(0xA11CE).wrapping_add(step as u64);
        let mut sampler = ToyData::new(sample_cfg).expect("validated");
        sampler.sample(cfg.train.batch.max(256)).0
    }

    /// One optimisation step on a fresh batch, where the trainer runs.
    pub async fn step(&mut self) -> Result<(), String> {
        let (x, _) = self.data.sample(self.cfg.train.batch);
        let (cfg, step) = (&self.cfg, self.training.step);
        self.training.step(&x, || Self::resample_sample(cfg, step)).await
    }

    pub fn dead_mask(&self) -> Vec<bool> {
        self.training.dead_mask()
    }

    /// The trained SAE in SAELens format.
    pub fn to_sae(&self) -> Sae {
        self.training.to_sae("toy", "saelab toy data")
    }

    /// Recovery of the true features and inference metrics on `n` fresh samples (drawn from a
    /// separate stream, so evaluating does not change training data).
    pub fn evaluate(&self, n: usize) -> (Recovery, BatchMetrics) {
        let rec = recovery(&self.data.features, &self.training.params().w_dec, self.cfg.data.dims);
        let mut eval_cfg = self.cfg.data.clone();
        eval_cfg.seed = eval_cfg.seed.wrapping_add(0x5EED);
        let mut eval_data = ToyData::new(eval_cfg).expect("validated");
        // Same true features, fresh samples.
        eval_data.features = self.data.features.clone();
        let (x, _) = eval_data.sample(n);
        let analysis = crate::engine::analyze_cpu(&self.to_sae(), &x, crate::gpu::RunRequest::default());
        (rec, analysis.metrics)
    }
}

/// One backend's speed on a configuration, as [`fastest_backend`] measured it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSpeed {
    /// `Backend::name`.
    pub device: String,
    pub steps_per_s: f64,
}

/// Which of `backends` trains `cfg` fastest, by timing it: on each, a throwaway trainer takes one
/// step (compiling pipelines, uploading) and then at least three more and at least `budget_ms`
/// of them, ending with a read-back so a GPU's queued work is counted. Returns the index of the
/// fastest and every speed, in order. The data and the first steps are the real run's, so the
/// time is the run's own; the run itself starts afresh on the chosen backend.
pub async fn fastest_backend(cfg: &ToyTrainConfig, backends: &[Backend], budget_ms: f64) -> Result<(usize, Vec<DeviceSpeed>), String> {
    let mut speeds = Vec::with_capacity(backends.len());
    for backend in backends {
        let mut trainer = ToyTrainer::new(cfg.clone(), backend)?;
        trainer.step().await?;
        trainer.sync().await?;
        let start = crate::clock::now_ms();
        let mut steps = 0;
        // A short run may end before the budget does; its last step is still timed.
        while steps < 3 || (crate::clock::now_ms() - start < budget_ms && trainer.training.step < cfg.train.steps) {
            trainer.step().await?;
            steps += 1;
        }
        trainer.sync().await?;
        let seconds = ((crate::clock::now_ms() - start) / 1e3).max(1e-9);
        speeds.push(DeviceSpeed { device: backend.name(), steps_per_s: steps as f64 / seconds });
    }
    let fastest = (0..speeds.len()).max_by(|&a, &b| speeds[a].steps_per_s.total_cmp(&speeds[b].steps_per_s)).ok_or("no device to time")?;
    Ok((fastest, speeds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::trainer::geometric_median;

    #[test]
    fn a_small_topk_run_recovers_most_features() {
        let data = ToyDataConfig::new(32, 16, 0.05, 1);
        let mut cfg = ToyTrainConfig::new(data, TrainArch::TopK { k: 4 }, 64, 256, 600);
        cfg.train.lr = 3e-3;
        let mut t = ToyTrainer::new(cfg, &Backend::Cpu).unwrap();
        let (before, _) = t.evaluate(512);
        for _ in 0..600 {
            pollster::block_on(t.step()).unwrap();
        }
        let (after, m) = t.evaluate(1024);
        assert!(after.mmcs > 0.94 && after.mmcs > before.mmcs + 0.2, "mmcs {} -> {}", before.mmcs, after.mmcs);
        assert!(m.fvu < 0.2, "fvu {}", m.fvu);
    }

    #[test]
    fn each_architecture_preset_recovers_its_features() {
        for id in ["batchtopk", "jumprelu", "gated"] {
            let cfg = crate::train::lab::LabSettings::preset(id).unwrap().to_config().unwrap();
            let mut t = ToyTrainer::new(cfg.clone(), &Backend::Cpu).unwrap();
            for _ in 0..cfg.train.steps {
                pollster::block_on(t.step()).unwrap();
            }
            let (rec, m) = t.evaluate(2048);
            assert!(rec.mmcs > 0.95, "{id}: mmcs {}", rec.mmcs);
            assert!(m.fvu < 0.2 && m.l0 > 0.5 && m.l0 < 3.0, "{id}: fvu {} l0 {}", m.fvu, m.l0);
        }
    }

    #[test]
    fn resampling_revives_dead_latents() {
        // 64 latents, k = 1, 16 features: most latents never win and die; resampling every 40
        // steps points them at badly reconstructed inputs.
        let data = ToyDataConfig::new(16, 8, 0.1, 7);
        let mut cfg = ToyTrainConfig::new(data, TrainArch::TopK { k: 1 }, 64, 64, 81);
        cfg.train.dead_after_steps = 20;
        cfg.train.resample_every = 40;
        let mut t = ToyTrainer::new(cfg, &Backend::Cpu).unwrap();
        for _ in 0..40 {
            pollster::block_on(t.step()).unwrap();
        }
        let dead_before: Vec<usize> = (0..64).filter(|&j| t.dead_mask()[j]).collect();
        assert!(dead_before.len() > 10, "k = 1 over 64 latents should leave many dead, got {}", dead_before.len());
        let rows_before = t.training.params().w_dec.clone();
        pollster::block_on(t.step()).unwrap(); // resamples first, then steps
        assert!(t.dead_mask().iter().all(|&d| !d), "resampled latents count as alive again");
        let moved = dead_before
            .iter()
            .filter(|&&j| {
                let (a, b) = (&rows_before[j * 8..(j + 1) * 8], &t.training.params().w_dec[j * 8..(j + 1) * 8]);
                a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() < 0.9
            })
            .count();
        assert!(moved * 10 >= dead_before.len() * 9, "only {moved} of {} dead latents were re-pointed", dead_before.len());
    }

    #[test]
    fn geometric_median_resists_outliers() {
        // Nine points around (1, 1) and one far away: the mean moves, the median stays.
        let mut rows = Vec::new();
        for i in 0..9 {
            rows.extend([1.0 + 0.01 * (i as f32 - 4.0), 1.0 - 0.01 * ((i % 3) as f32 - 1.0)]);
        }
        rows.extend([100.0, -50.0]);
        let m = geometric_median(&rows, 2, 200, 1e-9);
        assert!((m[0] - 1.0).abs() < 0.05 && (m[1] - 1.0).abs() < 0.05, "{m:?}");
        // For symmetric points it is the centre.
        let m = geometric_median(&[0.0, 0.0, 2.0, 0.0, 1.0, 1.0, 1.0, -1.0], 2, 200, 1e-9);
        assert!((m[0] - 1.0).abs() < 1e-4 && m[1].abs() < 1e-4, "{m:?}");
    }

    #[test]
    fn divergence_stops_with_a_message_and_bad_settings_are_refused() {
        let data = ToyDataConfig::new(8, 4, 0.2, 2);
        let mut cfg = ToyTrainConfig::new(data.clone(), TrainArch::Standard { l1: 0.1 }, 8, 16, 10);
        cfg.train.lr = 1e30;
        let mut t = ToyTrainer::new(cfg, &Backend::Cpu).unwrap();
        let before = t.training.params().clone();
        let mut outcome = Ok(());
        for _ in 0..10 {
            if let Err(e) = pollster::block_on(t.step()) {
                outcome = Err(e);
                break;
            }
        }
        let msg = outcome.expect_err("lr 1e30 must diverge");
        assert!(msg.contains("diverged"), "{msg}");
        assert_ne!(t.training.params(), &before);
        // What is kept is finite, so it can still be evaluated and saved.
        let _ = t.evaluate(64);
        let _ = t.to_sae();
        let mut overflow = ToyTrainConfig::new(data.clone(), TrainArch::Standard { l1: 0.1 }, 8, 16, 10);
        overflow.train.lr = f32::MAX;
        let mut t = ToyTrainer::new(overflow, &Backend::Cpu).unwrap();
        let err = (0..10).find_map(|_| pollster::block_on(t.step()).err()).expect("lr = f32::MAX must overflow");
        assert!(err.contains("diverged"), "{err}");
        let _ = t.to_sae();
        let bad = |f: fn(&mut ToyTrainConfig)| {
            let mut c = ToyTrainConfig::new(data.clone(), TrainArch::TopK { k: 2 }, 8, 16, 10);
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(bad(|c| c.train.arch = TrainArch::TopK { k: 9 }).contains("k must be between 1 and dict (8)"));
        assert!(bad(|c| c.train.lr = f32::NAN).contains("lr"));
        assert!(bad(|c| c.data.dims = 0).contains("dims"));
    }

    #[test]
    fn exported_sae_round_trips_through_the_loader() {
        let data = ToyDataConfig::new(8, 4, 0.2, 3);
        let t = ToyTrainer::new(ToyTrainConfig::new(data, TrainArch::TopK { k: 2 }, 8, 16, 10), &Backend::Cpu).unwrap();
        let sae = t.to_sae();
        let (cfg, weights, _) = crate::sae::files::serialize_sae(&sae);
        let back = crate::sae::files::parse_sae(crate::sae::files::SaeFileBytes { cfg: &cfg, weights: &weights, sparsity: None }).unwrap();
        assert_eq!(back.w_dec(), t.training.params().w_dec);
        assert_eq!(back.cfg.architecture, crate::sae::Architecture::TopK { k: 2 });
    }
}
