//! The toy training loop: an SAE trained on synthetic data with known features, step by step (so
//! the page can interleave steps with drawing), on the CPU reference. It measures recovery of the
//! true features and exports the SAE in SAELens format.

use crate::formats::sae_files::sae_from_f32_tensors;
use crate::sae::metrics::BatchMetrics;
use crate::sae::{cpu, Sae};

use crate::gpu::train_runner::GpuTrainer;
use crate::gpu::Gpu;

use super::recovery::{recovery, Recovery};
use super::sae_train::{
    apply_constraints, loss_and_grads, remove_parallel_decoder_grad, resample_latent, Adam, Params, StepStats, TrainArch, BATCHTOPK_THRESHOLD_LR,
};
use crate::sae::random::Rng;
use super::synthetic::{ToyData, ToyDataConfig};

#[derive(Debug, Clone, PartialEq)]
pub struct ToyTrainConfig {
    pub data: ToyDataConfig,
    pub arch: TrainArch,
    pub dict: usize,
    pub batch: usize,
    pub steps: usize,
    pub lr: f32,
    /// Linear learning-rate warm-up from 0 over this many steps.
    pub lr_warmup_steps: usize,
    /// Linear decay to 0 over the last this-many steps.
    pub lr_decay_steps: usize,
    /// Linear warm-up of the sparsity coefficient (L1 for standard and gated, L0 for jumprelu)
    /// over this many steps (SAELens `l1_warm_up_steps`, `l0_warm_up_steps`).
    pub sparsity_warmup_steps: usize,
    /// A latent that has not fired for this many steps counts as dead (for AuxK and the count).
    pub dead_after_steps: usize,
    pub b_dec_init: BDecInit,
    /// Every this many steps, latents dead at that moment are re-initialised towards inputs the
    /// SAE reconstructs badly (0: never).
    pub resample_every: usize,
}

/// Where b_dec starts (SAELens `b_dec_init_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BDecInit {
    Zeros,
    Mean,
    /// The geometric median of a sample, robust to outliers (SAELens `compute_geometric_median`).
    GeometricMedian,
}

/// Weiszfeld's algorithm for the point minimising the sum of Euclidean distances to `rows`
/// (`[n, d]`), as SAELens's `compute_geometric_median`: re-weight each point by 1/distance
/// (floored at `eps`) until the estimate moves by less than `tol`.
pub fn geometric_median(rows: &[f32], d: usize, max_iter: usize, tol: f64) -> Vec<f32> {
    let n = rows.len() / d;
    let mut m: Vec<f64> = (0..d).map(|i| rows.iter().skip(i).step_by(d).map(|&v| v as f64).sum::<f64>() / n.max(1) as f64).collect();
    for _ in 0..max_iter {
        let mut num = vec![0.0f64; d];
        let mut den = 0.0f64;
        for row in rows.chunks_exact(d) {
            let dist = row.iter().zip(&m).map(|(&v, c)| (v as f64 - c).powi(2)).sum::<f64>().sqrt().max(1e-8);
            let w = 1.0 / dist;
            den += w;
            num.iter_mut().zip(row).for_each(|(a, &v)| *a += w * v as f64);
        }
        let next: Vec<f64> = num.iter().map(|a| a / den).collect();
        let moved = next.iter().zip(&m).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
        m = next;
        if moved < tol {
            break;
        }
    }
    m.into_iter().map(|v| v as f32).collect()
}

impl ToyTrainConfig {
    pub fn new(data: ToyDataConfig, arch: TrainArch, dict: usize, batch: usize, steps: usize) -> ToyTrainConfig {
        ToyTrainConfig {
            data,
            arch,
            dict,
            batch,
            steps,
            lr: 1e-3,
            lr_warmup_steps: 0,
            lr_decay_steps: steps / 5,
            sparsity_warmup_steps: steps / 20,
            dead_after_steps: 50,
            b_dec_init: BDecInit::Mean,
            resample_every: 0,
        }
    }

    /// Checks the settings; each message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        self.data.validate()?;
        if self.dict == 0 {
            return Err("dict must be at least 1".into());
        }
        if self.batch == 0 {
            return Err("batch must be at least 1".into());
        }
        if self.steps == 0 {
            return Err("steps must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(format!("lr must be a positive number, not {}", self.lr));
        }
        match self.arch {
            TrainArch::TopK { k } | TrainArch::BatchTopK { k } if k == 0 || k > self.dict => {
                Err(format!("k must be between 1 and dict ({}), not {k}", self.dict))
            }
            TrainArch::Standard { l1 } | TrainArch::Gated { l1 } if !(l1 >= 0.0 && l1.is_finite()) => Err(format!("l1 must be ≥ 0, not {l1}")),
            TrainArch::JumpRelu { l0, .. } if !(l0 >= 0.0 && l0.is_finite()) => Err(format!("l0 must be ≥ 0, not {l0}")),
            TrainArch::JumpRelu { bandwidth, .. } if !(bandwidth > 0.0 && bandwidth.is_finite()) => {
                Err(format!("bandwidth must be a positive number, not {bandwidth}"))
            }
            _ => Ok(()),
        }
    }

    fn lr_at(&self, step: usize) -> f32 {
        let warm = if self.lr_warmup_steps > 0 { ((step + 1) as f32 / self.lr_warmup_steps as f32).min(1.0) } else { 1.0 };
        let decay_start = self.steps - self.lr_decay_steps.min(self.steps);
        let decay = if step >= decay_start && self.lr_decay_steps > 0 {
            (self.steps - step) as f32 / self.lr_decay_steps as f32
        } else {
            1.0
        };
        self.lr * warm * decay
    }

    fn sparsity_scale_at(&self, step: usize) -> f32 {
        if self.sparsity_warmup_steps == 0 {
            1.0
        } else {
            ((step + 1) as f32 / self.sparsity_warmup_steps as f32).min(1.0)
        }
    }
}

/// Where the optimisation runs. On the GPU, `ToyTrainer::params` is a copy refreshed by `sync`.
enum Optimizer {
    Cpu(Adam),
    Gpu(GpuTrainer),
}

pub struct ToyTrainer {
    pub cfg: ToyTrainConfig,
    pub data: ToyData,
    pub params: Params,
    optimizer: Optimizer,
    steps_since_fired: Vec<usize>,
    pub step: usize,
    /// BatchTopK's running threshold (SAELens `topk_threshold`, a float64 buffer starting at 0),
    /// saved as the JumpReLU threshold of every latent.
    pub batch_topk_threshold: f64,
}

impl ToyTrainer {
    pub fn new(cfg: ToyTrainConfig) -> Result<ToyTrainer, String> {
        cfg.validate()?;
        let mut data = ToyData::new(cfg.data.clone())?;
        let d = cfg.data.dims;
        let mut params = Params::init(cfg.arch, d, cfg.dict, cfg.data.seed.wrapping_add(17));
        // b_dec starts at a statistic of a first sample (SAELens b_dec_init_method).
        let (x, _) = data.sample(cfg.batch.max(256));
        let rows = x.len() / d;
        match cfg.b_dec_init {
            BDecInit::Zeros => {}
            BDecInit::Mean => {
                for (i, b) in params.b_dec.iter_mut().enumerate() {
                    *b = x.iter().skip(i).step_by(d).sum::<f32>() / rows as f32;
                }
            }
            BDecInit::GeometricMedian => params.b_dec = geometric_median(&x, d, 100, 1e-5),
        }
        Ok(ToyTrainer {
            optimizer: Optimizer::Cpu(Adam::new(&params)),
            steps_since_fired: vec![0; cfg.dict],
            step: 0,
            batch_topk_threshold: 0.0,
            params,
            data,
            cfg,
        })
    }

    /// Moves the optimisation to `gpu` (before the first step).
    pub fn use_gpu(&mut self, gpu: &Gpu) -> Result<(), String> {
        let trainer = GpuTrainer::new(gpu, &self.params, self.cfg.arch, self.cfg.batch).map_err(|e| e.to_string())?;
        self.optimizer = Optimizer::Gpu(trainer);
        Ok(())
    }

    pub fn on_gpu(&self) -> bool {
        matches!(self.optimizer, Optimizer::Gpu(_))
    }

    /// Refreshes `params` from the GPU and checks them; a non-finite parameter means training
    /// diverged.
    pub async fn sync(&mut self, gpu: &Gpu) -> Result<(), String> {
        if let Optimizer::Gpu(trainer) = &self.optimizer {
            let params = trainer.params(gpu).await.map_err(|e| e.to_string())?;
            if !all_finite(&params) {
                return Err(format!("training diverged by step {} (parameters are not finite); lower the learning rate", self.step));
            }
            self.params = params;
        }
        Ok(())
    }

    /// One step on the GPU; returns nothing but the updated dead-latent bookkeeping.
    pub async fn step_gpu(&mut self, gpu: &Gpu) -> Result<(), String> {
        if self.resample_due() {
            if let Optimizer::Gpu(trainer) = &self.optimizer {
                let (mut p, mut m, mut v) = trainer.state(gpu).await.map_err(|e| e.to_string())?;
                if !all_finite(&p) {
                    return Err(format!("training diverged by step {} (parameters are not finite); lower the learning rate", self.step));
                }
                resample_dead(&mut p, &mut m, &mut v, &mut self.steps_since_fired, &self.cfg, self.step);
                trainer.set_state(gpu, &p, &m, &v);
                self.params = p;
            }
        }
        let (x, _) = self.data.sample(self.cfg.batch);
        let dead = self.dead_mask();
        let (sparsity_scale, lr) = (self.cfg.sparsity_scale_at(self.step), self.cfg.lr_at(self.step));
        let Optimizer::Gpu(trainer) = &mut self.optimizer else {
            return Err("step_gpu called before use_gpu".into());
        };
        let result = trainer.step(gpu, &x, &dead, sparsity_scale, lr).await.map_err(|e| e.to_string())?;
        for (s, &c) in self.steps_since_fired.iter_mut().zip(&result.fire_counts) {
            *s = if c > 0 { 0 } else { *s + 1 };
        }
        self.update_batch_topk_threshold(result.batch_min_act);
        self.step += 1;
        Ok(())
    }

    fn resample_due(&self) -> bool {
        self.cfg.resample_every > 0 && self.step > 0 && self.step % self.cfg.resample_every == 0
    }

    pub fn dead_mask(&self) -> Vec<bool> {
        self.steps_since_fired.iter().map(|&s| s >= self.cfg.dead_after_steps).collect()
    }

    /// One optimisation step on the CPU reference. A non-finite loss stops training with a
    /// message; the parameters are left as they were before the step.
    pub fn step(&mut self) -> Result<StepStats, String> {
        if self.on_gpu() {
            return Err("this trainer runs on the GPU: use step_gpu".into());
        }
        if self.resample_due() {
            if let Optimizer::Cpu(adam) = &mut self.optimizer {
                let (mut m, mut v) = (adam.m.clone(), adam.v.clone());
                resample_dead(&mut self.params, &mut m, &mut v, &mut self.steps_since_fired, &self.cfg, self.step);
                adam.m = m;
                adam.v = v;
            }
        }
        let (x, _) = self.data.sample(self.cfg.batch);
        let dead = self.dead_mask();
        let (stats, mut grads) = loss_and_grads(&self.params, self.cfg.arch, &x, &dead, self.cfg.sparsity_scale_at(self.step));
        if !stats.loss.is_finite() {
            return Err(format!("training diverged at step {} (loss is {}); lower the learning rate", self.step, stats.loss));
        }
        if self.cfg.arch.unit_decoder() {
            remove_parallel_decoder_grad(&self.params, &mut grads);
        }
        let lr = self.cfg.lr_at(self.step);
        let before = self.params.clone();
        if let Optimizer::Cpu(adam) = &mut self.optimizer {
            adam.step(&mut self.params, &grads, lr);
        }
        apply_constraints(self.cfg.arch, &mut self.params);
        // Parameters stay finite (saving and evaluating rely on it): an update that overflows
        // is undone and stops training.
        if !all_finite(&self.params) {
            self.params = before;
            return Err(format!("training diverged at step {} (parameters overflowed); lower the learning rate", self.step));
        }
        for (s, &f) in self.steps_since_fired.iter_mut().zip(&stats.fired) {
            *s = if f { 0 } else { *s + 1 };
        }
        self.update_batch_topk_threshold(stats.batch_min_act);
        self.step += 1;
        Ok(stats)
    }

    /// SAELens `BatchTopKTrainingSAE.update_topk_threshold`: an exponential moving average of
    /// each batch's smallest kept activation, in f64.
    fn update_batch_topk_threshold(&mut self, batch_min_act: Option<f32>) {
        if let (TrainArch::BatchTopK { .. }, Some(min)) = (self.cfg.arch, batch_min_act) {
            self.batch_topk_threshold = (1.0 - BATCHTOPK_THRESHOLD_LR) * self.batch_topk_threshold + BATCHTOPK_THRESHOLD_LR * min as f64;
        }
    }

    /// The trained SAE in SAELens format.
    pub fn to_sae(&self) -> Sae {
        to_sae(&self.params, self.cfg.arch, self.batch_topk_threshold as f32, "toy")
    }

    /// Recovery of the true features and inference metrics on `n` fresh samples (drawn from a
    /// separate stream, so evaluating does not change training data).
    pub fn evaluate(&self, n: usize) -> (Recovery, BatchMetrics) {
        let rec = recovery(&self.data.features, &self.params.w_dec, self.cfg.data.dims);
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

fn all_finite(p: &Params) -> bool {
    p.tensors().iter().all(|t| t.iter().all(|v| v.is_finite()))
}

/// Resamples every latent that is dead now (Bricken et al. 2023): draws inputs from a fresh sample
/// with probability proportional to their squared reconstruction error, points each dead latent
/// at one of them (minus b_dec), with an encoder norm of 0.2 × the mean alive encoder norm, and
/// zeroes those entries' Adam moments. The sample and the draws come from their own seeded stream
/// (data seed and step), so the CPU and GPU paths resample identically.
fn resample_dead(p: &mut Params, m: &mut Params, v: &mut Params, steps_since_fired: &mut [usize], cfg: &ToyTrainConfig, step: usize) {
    let dead: Vec<usize> = (0..p.d_sae).filter(|&j| steps_since_fired[j] >= cfg.dead_after_steps).collect();
    if dead.is_empty() {
        return;
    }
    let d = p.d_in;
    let mut sample_cfg = cfg.data.clone();
    sample_cfg.seed = cfg.data.seed.wrapping_add(0xA11CE).wrapping_add(step as u64);
    let mut sampler = ToyData::new(sample_cfg).expect("validated");
    let (x, _) = sampler.sample(cfg.batch.max(256));
    // The running BatchTopK threshold is not at hand here; per-row TopK with the same k picks
    // the inputs to resample from just as well.
    let arch = match cfg.arch {
        TrainArch::BatchTopK { k } => TrainArch::TopK { k },
        other => other,
    };
    let sae = to_sae(p, arch, 0.0, "toy");
    let (_, recon) = cpu::forward(&sae, &x);
    let losses: Vec<f64> = x
        .chunks_exact(d)
        .zip(recon.chunks_exact(d))
        .map(|(a, b)| a.iter().zip(b).map(|(u, w)| ((u - w) as f64).powi(2)).sum::<f64>().powi(2))
        .collect();
    let total: f64 = losses.iter().sum();
    let alive: Vec<usize> = (0..p.d_sae).filter(|j| !dead.contains(j)).collect();
    let column_norm = |j: usize| (0..d).map(|i| p.w_enc[i * p.d_sae + j].powi(2)).sum::<f32>().sqrt();
    let alive_norm = if alive.is_empty() { 1.0 } else { alive.iter().map(|&j| column_norm(j)).sum::<f32>() / alive.len() as f32 };
    let mut rng = Rng::new(resample_draw_seed(cfg.data.seed, step));
    for &j in &dead {
        let target = rng.uniform_f64() * total;
        let mut acc = 0.0;
        let chosen = losses.iter().position(|&l| {
            acc += l;
            acc > target
        });
        let row = chosen.unwrap_or(losses.len() - 1);
        let direction: Vec<f32> = x[row * d..(row + 1) * d].iter().zip(&p.b_dec).map(|(a, b)| a - b).collect();
        resample_latent(p, [&mut *m, &mut *v], j, &direction, 0.2 * alive_norm);
        steps_since_fired[j] = 0;
    }
}

fn resample_draw_seed(seed: u64, step: usize) -> u64 {
    seed.wrapping_mul(31).wrapping_add(step as u64).wrapping_add(0xBEEF)
}

/// Builds an SAELens-format SAE from trained parameters (through the same parser as files).
/// BatchTopK is saved as JumpReLU with `batch_topk_threshold` for every latent, as SAELens's
/// `process_state_dict_for_saving_inference` does; gated saves the gate bias as `b_gate`.
pub fn to_sae(p: &Params, arch: TrainArch, batch_topk_threshold: f32, hook_name: &str) -> Sae {
    let shared_threshold = vec![batch_topk_threshold; p.d_sae];
    let (d, m) = (p.d_in, p.d_sae);
    let mut tensors: Vec<(&str, Vec<usize>, &[f32])> = vec![("W_enc", vec![d, m], &p.w_enc), ("W_dec", vec![m, d], &p.w_dec), ("b_dec", vec![d], &p.b_dec)];
    match arch {
        TrainArch::Gated { .. } => tensors.extend([("b_gate", vec![m], &p.b_enc[..]), ("r_mag", vec![m], &p.r_mag[..]), ("b_mag", vec![m], &p.b_mag[..])]),
        TrainArch::JumpRelu { .. } => tensors.extend([("b_enc", vec![m], &p.b_enc[..]), ("threshold", vec![m], &p.threshold[..])]),
        TrainArch::BatchTopK { .. } => tensors.extend([("b_enc", vec![m], &p.b_enc[..]), ("threshold", vec![m], &shared_threshold[..])]),
        TrainArch::Standard { .. } | TrainArch::TopK { .. } => tensors.push(("b_enc", vec![m], &p.b_enc[..])),
    }
    let mut cfg = serde_json::json!({
        "d_in": p.d_in, "d_sae": p.d_sae, "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": true, "normalize_activations": "none", "reshape_activations": "none",
        "metadata": { "hook_name": hook_name, "model_name": "saelab toy data", "sae_lens_training_version": null },
    });
    match arch {
        TrainArch::TopK { k } => {
            cfg["architecture"] = "topk".into();
            cfg["k"] = k.into();
            cfg["rescale_acts_by_decoder_norm"] = false.into();
        }
        TrainArch::BatchTopK { .. } | TrainArch::JumpRelu { .. } => cfg["architecture"] = "jumprelu".into(),
        TrainArch::Standard { .. } | TrainArch::Gated { .. } => cfg["architecture"] = arch.name().into(),
    }
    sae_from_f32_tensors(&cfg, &tensors).expect("trained parameters form a valid SAE")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_topk_run_recovers_most_features() {
        let data = ToyDataConfig::new(32, 16, 0.05, 1);
        let mut cfg = ToyTrainConfig::new(data, TrainArch::TopK { k: 4 }, 64, 256, 600);
        cfg.lr = 3e-3;
        let mut t = ToyTrainer::new(cfg).unwrap();
        let (before, _) = t.evaluate(512);
        for _ in 0..600 {
            t.step().unwrap();
        }
        let (after, m) = t.evaluate(1024);
        assert!(after.mmcs > 0.94 && after.mmcs > before.mmcs + 0.2, "mmcs {} -> {}", before.mmcs, after.mmcs);
        assert!(m.fvu < 0.2, "fvu {}", m.fvu);
    }

    #[test]
    fn each_architecture_preset_recovers_its_features() {
        for id in ["batchtopk", "jumprelu", "gated"] {
            let cfg = crate::train::lab::LabSettings::preset(id).unwrap().to_config().unwrap();
            let mut t = ToyTrainer::new(cfg.clone()).unwrap();
            for _ in 0..cfg.steps {
                t.step().unwrap();
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
        cfg.dead_after_steps = 20;
        cfg.resample_every = 40;
        let mut t = ToyTrainer::new(cfg).unwrap();
        for _ in 0..40 {
            t.step().unwrap();
        }
        let dead_before: Vec<usize> = (0..64).filter(|&j| t.dead_mask()[j]).collect();
        assert!(dead_before.len() > 10, "k = 1 over 64 latents should leave many dead, got {}", dead_before.len());
        let rows_before = t.params.w_dec.clone();
        t.step().unwrap(); // resamples first, then steps
        assert!(t.dead_mask().iter().all(|&d| !d), "resampled latents count as alive again");
        let moved = dead_before
            .iter()
            .filter(|&&j| {
                let (a, b) = (&rows_before[j * 8..(j + 1) * 8], &t.params.w_dec[j * 8..(j + 1) * 8]);
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
        cfg.lr = 1e30;
        let mut t = ToyTrainer::new(cfg).unwrap();
        let before = t.params.clone();
        let mut outcome = Ok(());
        for _ in 0..10 {
            if let Err(e) = t.step() {
                outcome = Err(e);
                break;
            }
        }
        let msg = outcome.expect_err("lr 1e30 must diverge");
        assert!(msg.contains("diverged"), "{msg}");
        assert_ne!(t.params, before);
        // What is kept is finite, so it can still be evaluated and saved.
        let _ = t.evaluate(64);
        let _ = t.to_sae();
        let mut overflow = ToyTrainConfig::new(data.clone(), TrainArch::Standard { l1: 0.1 }, 8, 16, 10);
        overflow.lr = f32::MAX;
        let mut t = ToyTrainer::new(overflow).unwrap();
        let err = (0..10).find_map(|_| t.step().err()).expect("lr = f32::MAX must overflow");
        assert!(err.contains("diverged"), "{err}");
        let _ = t.to_sae();
        let bad = |f: fn(&mut ToyTrainConfig)| {
            let mut c = ToyTrainConfig::new(data.clone(), TrainArch::TopK { k: 2 }, 8, 16, 10);
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(bad(|c| c.arch = TrainArch::TopK { k: 9 }).contains("k must be between 1 and dict (8)"));
        assert!(bad(|c| c.lr = f32::NAN).contains("lr"));
        assert!(bad(|c| c.data.dims = 0).contains("dims"));
    }

    #[test]
    fn exported_sae_round_trips_through_the_loader() {
        let data = ToyDataConfig::new(8, 4, 0.2, 3);
        let t = ToyTrainer::new(ToyTrainConfig::new(data, TrainArch::TopK { k: 2 }, 8, 16, 10)).unwrap();
        let sae = t.to_sae();
        let (cfg, weights, _) = crate::formats::sae_files::serialize_sae(&sae);
        let back = crate::formats::sae_files::parse_sae(crate::formats::sae_files::SaeFileBytes { cfg: &cfg, weights: &weights, sparsity: None }).unwrap();
        assert_eq!(back.w_dec, t.params.w_dec);
        assert_eq!(back.cfg.architecture, crate::sae::Architecture::TopK { k: 2 });
    }
}
