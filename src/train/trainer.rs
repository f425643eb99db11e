//! The SAE training loop, whatever the data: Adam steps on the CPU reference or the GPU, the
//! learning-rate and sparsity schedules, dead-latent bookkeeping and resampling, BatchTopK's
//! running threshold, and export in SAELens format. The caller feeds the batches — synthetic data
//! with known features (`toy`) or a language model's activations (`activations`) — so this module
//! never waits on data and runs the same in the CLI and between frames in the page.

use std::rc::Rc;

use super::gpu_trainer::GpuTrainer;
use crate::backend::Backend;
use crate::formats::safetensors::FloatDtype;
use crate::gpu::Gpu;
use crate::random::Rng;
use crate::sae::{cpu, EncoderTensors, Sae, SaeConfig, SaeWeights};

use super::sae_train::{
    apply_constraints, init_weights, loss_and_grads, remove_parallel_decoder_grad, resample_latent, Adam, TrainArch, BATCHTOPK_THRESHOLD_LR,
};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
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
    /// Seeds the initial parameters and the resampling draws.
    pub seed: u64,
}

impl TrainConfig {
    pub fn new(arch: TrainArch, dict: usize, batch: usize, steps: usize, seed: u64) -> TrainConfig {
        TrainConfig {
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
            seed,
        }
    }

    /// Checks the settings; each message names the setting.
    pub fn validate(&self) -> Result<(), String> {
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
            TrainArch::Standard { l1 } | TrainArch::Gated { l1 } if !(l1 >= 0.0 && l1.is_finite()) => {
                Err(format!("l1 must be ≥ 0, not {l1}"))
            }
            TrainArch::JumpRelu { l0, .. } if !(l0 >= 0.0 && l0.is_finite()) => Err(format!("l0 must be ≥ 0, not {l0}")),
            TrainArch::JumpRelu { bandwidth, .. } if !(bandwidth > 0.0 && bandwidth.is_finite()) => {
                Err(format!("bandwidth must be a positive number, not {bandwidth}"))
            }
            _ => Ok(()),
        }
    }

    pub fn lr_at(&self, step: usize) -> f32 {
        let warm = if self.lr_warmup_steps > 0 { ((step + 1) as f32 / self.lr_warmup_steps as f32).min(1.0) } else { 1.0 };
        let decay_start = self.steps - self.lr_decay_steps.min(self.steps);
        let decay =
            if step >= decay_start && self.lr_decay_steps > 0 { (self.steps - step) as f32 / self.lr_decay_steps as f32 } else { 1.0 };
        self.lr * warm * decay
    }

    pub fn sparsity_scale_at(&self, step: usize) -> f32 {
        if self.sparsity_warmup_steps == 0 {
            1.0
        } else {
            ((step + 1) as f32 / self.sparsity_warmup_steps as f32).min(1.0)
        }
    }
}

/// Where b_dec starts (SAELens `b_dec_init_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// Where the optimisation runs (the trainer's `Backend`, with the state kept there). On the GPU,
/// `SaeTrainer::params` is a copy refreshed by `sync`. (One per trainer, built once and never
/// moved in a loop: the variants' sizes do not matter.)
#[allow(clippy::large_enum_variant)]
enum Optimizer {
    Cpu(Adam),
    Gpu { gpu: Rc<Gpu>, trainer: GpuTrainer },
}

impl Optimizer {
    /// Adam's state on `backend`, starting from `params` and the moments `adam` holds.
    fn on(backend: &Backend, params: &SaeWeights, adam: Adam, cfg: &TrainConfig) -> Result<Optimizer, String> {
        match backend {
            Backend::Cpu => Ok(Optimizer::Cpu(adam)),
            Backend::Gpu(gpu) => {
                let mut trainer = GpuTrainer::new(gpu, params, cfg.arch, cfg.batch).map_err(|e| e.to_string())?;
                trainer.set_state(gpu, params, &adam.m, &adam.v);
                trainer.set_adam_beta_t(adam.beta_t());
                Ok(Optimizer::Gpu { gpu: gpu.clone(), trainer })
            }
        }
    }
}

/// A trainer's whole state between two steps: settings, parameters, Adam's moments and
/// bias-correction products, dead-latent counters, BatchTopK's threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerSnapshot {
    pub cfg: TrainConfig,
    pub step: usize,
    pub steps_since_fired: Vec<usize>,
    pub batch_topk_threshold: f64,
    pub params: SaeWeights,
    pub adam_m: SaeWeights,
    pub adam_v: SaeWeights,
    pub adam_beta_t: (f32, f32),
}

/// An SAE being trained on batches the caller supplies.
pub struct SaeTrainer {
    pub cfg: TrainConfig,
    /// The weights as trained so far (on the GPU, as of the last `sync`). Private: they always
    /// have the tensors of `cfg.arch` (checked when the trainer is made).
    params: SaeWeights,
    optimizer: Optimizer,
    steps_since_fired: Vec<usize>,
    /// Steps taken so far.
    pub step: usize,
    /// BatchTopK's running threshold (SAELens `topk_threshold`, a float64 buffer starting at 0),
    /// saved as the JumpReLU threshold of every latent.
    pub batch_topk_threshold: f64,
}

impl SaeTrainer {
    /// A fresh SAE for `d_in`-wide inputs, trained on `backend`; b_dec starts at a statistic of
    /// `first_sample` (`[n, d_in]`, SAELens `b_dec_init_method`).
    pub fn new(cfg: TrainConfig, d_in: usize, first_sample: &[f32], backend: &Backend) -> Result<SaeTrainer, String> {
        cfg.validate()?;
        if d_in == 0 || first_sample.is_empty() || !first_sample.len().is_multiple_of(d_in) {
            return Err(format!("the first sample must be whole rows of {d_in} values"));
        }
        let mut params = init_weights(cfg.arch, d_in, cfg.dict, cfg.seed.wrapping_add(17));
        let rows = first_sample.len() / d_in;
        match cfg.b_dec_init {
            BDecInit::Zeros => {}
            BDecInit::Mean => {
                for (i, b) in params.b_dec.iter_mut().enumerate() {
                    *b = first_sample.iter().skip(i).step_by(d_in).sum::<f32>() / rows as f32;
                }
            }
            BDecInit::GeometricMedian => params.b_dec = geometric_median(first_sample, d_in, 100, 1e-5),
        }
        Ok(SaeTrainer {
            optimizer: Optimizer::on(backend, &params, Adam::new(&params), &cfg)?,
            steps_since_fired: vec![0; cfg.dict],
            step: 0,
            batch_topk_threshold: 0.0,
            params,
            cfg,
        })
    }

    pub fn d_in(&self) -> usize {
        self.params.d_in
    }

    /// The weights as trained so far (on the GPU, as of the last `sync`).
    pub fn params(&self) -> &SaeWeights {
        &self.params
    }

    /// Everything needed to go on training exactly from here (read back from the GPU when the
    /// trainer is there).
    pub async fn snapshot(&self) -> Result<TrainerSnapshot, String> {
        let (params, m, v, beta_t) = match &self.optimizer {
            Optimizer::Cpu(adam) => (self.params.clone(), adam.m.clone(), adam.v.clone(), adam.beta_t()),
            Optimizer::Gpu { gpu, trainer } => {
                let (p, m, v) = trainer.state(gpu).await.map_err(|e| e.to_string())?;
                (p, m, v, trainer.adam_beta_t())
            }
        };
        if !all_finite(&params) {
            return Err(format!("training diverged by step {} (parameters are not finite); nothing to save", self.step));
        }
        Ok(TrainerSnapshot {
            cfg: self.cfg.clone(),
            step: self.step,
            steps_since_fired: self.steps_since_fired.clone(),
            batch_topk_threshold: self.batch_topk_threshold,
            params,
            adam_m: m,
            adam_v: v,
            adam_beta_t: beta_t,
        })
    }

    /// A trainer on `backend` that goes on from `snapshot` (saved on either backend).
    pub fn from_snapshot(snapshot: TrainerSnapshot, backend: &Backend) -> Result<SaeTrainer, String> {
        let TrainerSnapshot { cfg, step, steps_since_fired, batch_topk_threshold, params, adam_m, adam_v, adam_beta_t } = snapshot;
        cfg.validate()?;
        let same_shape = |p: &SaeWeights| {
            p.d_sae == cfg.dict && p.d_in == params.d_in && p.encoder.kind() == cfg.arch.encoder_kind() && p.shapes_agree()
        };
        if !(same_shape(&params) && same_shape(&adam_m) && same_shape(&adam_v)) {
            return Err(format!("the saved parameters do not have the shapes of a {} SAE with {} latents", cfg.arch.name(), cfg.dict));
        }
        if steps_since_fired.len() != cfg.dict || step > cfg.steps {
            return Err(format!(
                "the saved state is inconsistent (step {step} of {}, {} latents tracked of {})",
                cfg.steps,
                steps_since_fired.len(),
                cfg.dict
            ));
        }
        if !(all_finite(&params) && all_finite(&adam_m) && all_finite(&adam_v) && batch_topk_threshold.is_finite()) {
            return Err("the saved parameters are not all finite numbers".into());
        }
        let optimizer = Optimizer::on(backend, &params, Adam::resumed(adam_m, adam_v, adam_beta_t), &cfg)?;
        Ok(SaeTrainer { cfg, params, optimizer, steps_since_fired, step, batch_topk_threshold })
    }

    /// Where the optimisation runs.
    pub fn backend(&self) -> Backend {
        match &self.optimizer {
            Optimizer::Cpu(_) => Backend::Cpu,
            Optimizer::Gpu { gpu, .. } => Backend::Gpu(gpu.clone()),
        }
    }

    /// Refreshes `params` from the GPU and checks them; a non-finite parameter means training
    /// diverged. (On the CPU, `params` are always current.)
    pub async fn sync(&mut self) -> Result<(), String> {
        if let Optimizer::Gpu { gpu, trainer } = &self.optimizer {
            let params = trainer.params(gpu).await.map_err(|e| e.to_string())?;
            if !all_finite(&params) {
                return Err(format!("training diverged by step {} (parameters are not finite); lower the learning rate", self.step));
            }
            self.params = params;
        }
        Ok(())
    }

    /// Whether the next step starts by resampling dead latents (and so needs a sample).
    pub fn resample_due(&self) -> bool {
        self.cfg.resample_every > 0 && self.step > 0 && self.step.is_multiple_of(self.cfg.resample_every)
    }

    pub fn dead_mask(&self) -> Vec<bool> {
        self.steps_since_fired.iter().map(|&s| s >= self.cfg.dead_after_steps).collect()
    }

    /// The fraction of latents that count as dead now.
    pub fn dead_fraction(&self) -> f32 {
        self.dead_mask().iter().filter(|&&d| d).count() as f32 / self.cfg.dict.max(1) as f32
    }

    /// One optimisation step on batch `x` (`[batch, d_in]`), where the trainer runs. When
    /// resampling is due, `resample_from` gives the inputs to resample towards (not the training
    /// batch). A non-finite loss or an overflowing update stops training with a message; on the
    /// CPU the parameters are left as they were before the step.
    pub async fn step(&mut self, x: &[f32], resample_from: impl FnOnce() -> Vec<f32>) -> Result<(), String> {
        self.check_batch(x)?;
        if self.resample_due() {
            self.resample(&resample_from()).await?;
        }
        let dead = self.dead_mask();
        let (sparsity_scale, lr) = (self.cfg.sparsity_scale_at(self.step), self.cfg.lr_at(self.step));
        let (fired, batch_min_act) = match &mut self.optimizer {
            Optimizer::Cpu(adam) => {
                let (stats, mut grads) = loss_and_grads(&self.params, self.cfg.arch, x, &dead, sparsity_scale);
                if !stats.loss.is_finite() {
                    return Err(format!("training diverged at step {} (loss is {}); lower the learning rate", self.step, stats.loss));
                }
                if self.cfg.arch.unit_decoder() {
                    remove_parallel_decoder_grad(&self.params, &mut grads);
                }
                let before = self.params.clone();
                adam.step(&mut self.params, &grads, lr);
                apply_constraints(self.cfg.arch, &mut self.params);
                // Parameters stay finite (saving and evaluating rely on it): an update that
                // overflows is undone and stops training.
                if !all_finite(&self.params) {
                    self.params = before;
                    return Err(format!("training diverged at step {} (parameters overflowed); lower the learning rate", self.step));
                }
                (stats.fired, stats.batch_min_act)
            }
            Optimizer::Gpu { gpu, trainer } => {
                let result = trainer.step(gpu, x, &dead, sparsity_scale, lr).await.map_err(|e| e.to_string())?;
                (result.fire_counts.iter().map(|&c| c > 0).collect(), result.batch_min_act)
            }
        };
        for (s, f) in self.steps_since_fired.iter_mut().zip(fired) {
            *s = if f { 0 } else { *s + 1 };
        }
        self.update_batch_topk_threshold(batch_min_act);
        self.step += 1;
        Ok(())
    }

    /// Resamples the dead latents towards `sample` (parameters and Adam's moments, where they are).
    async fn resample(&mut self, sample: &[f32]) -> Result<(), String> {
        match &mut self.optimizer {
            Optimizer::Cpu(adam) => {
                resample_dead(&mut self.params, &mut adam.m, &mut adam.v, &mut self.steps_since_fired, &self.cfg, self.step, sample);
            }
            Optimizer::Gpu { gpu, trainer } => {
                let (mut p, mut m, mut v) = trainer.state(gpu).await.map_err(|e| e.to_string())?;
                if !all_finite(&p) {
                    return Err(format!("training diverged by step {} (parameters are not finite); lower the learning rate", self.step));
                }
                resample_dead(&mut p, &mut m, &mut v, &mut self.steps_since_fired, &self.cfg, self.step, sample);
                trainer.set_state(gpu, &p, &m, &v);
                self.params = p;
            }
        }
        Ok(())
    }

    fn check_batch(&self, x: &[f32]) -> Result<(), String> {
        if x.len() != self.cfg.batch * self.params.d_in {
            return Err(format!("a batch must be {} rows of {} values, got {} values", self.cfg.batch, self.params.d_in, x.len()));
        }
        Ok(())
    }

    /// SAELens `BatchTopKTrainingSAE.update_topk_threshold`: an exponential moving average of
    /// each batch's smallest kept activation, in f64.
    fn update_batch_topk_threshold(&mut self, batch_min_act: Option<f32>) {
        if let (TrainArch::BatchTopK { .. }, Some(min)) = (self.cfg.arch, batch_min_act) {
            self.batch_topk_threshold = (1.0 - BATCHTOPK_THRESHOLD_LR) * self.batch_topk_threshold + BATCHTOPK_THRESHOLD_LR * min as f64;
        }
    }

    /// The SAE as trained so far, in SAELens format, naming where its inputs come from.
    pub fn to_sae(&self, hook_name: &str, model_name: &str) -> Sae {
        to_sae(&self.params, self.cfg.arch, self.batch_topk_threshold as f32, hook_name, model_name)
    }
}

fn all_finite(p: &SaeWeights) -> bool {
    p.tensors().iter().all(|(_, t)| t.iter().all(|v| v.is_finite()))
}

/// Resamples every latent that is dead now (Bricken et al. 2023): draws rows of `sample` with
/// probability proportional to their squared reconstruction error, points each dead latent at one
/// of them (minus b_dec), with an encoder norm of 0.2 × the mean alive encoder norm, and zeroes
/// those entries' Adam moments. The draws come from their own seeded stream (seed and step), so the
/// CPU and GPU paths resample identically.
fn resample_dead(
    p: &mut SaeWeights,
    m: &mut SaeWeights,
    v: &mut SaeWeights,
    steps_since_fired: &mut [usize],
    cfg: &TrainConfig,
    step: usize,
    sample: &[f32],
) {
    let dead: Vec<usize> = (0..p.d_sae).filter(|&j| steps_since_fired[j] >= cfg.dead_after_steps).collect();
    let d = p.d_in;
    if dead.is_empty() || sample.len() < d {
        return;
    }
    let x = &sample[..sample.len() / d * d];
    // The running BatchTopK threshold is not at hand here; per-row TopK with the same k picks
    // the inputs to resample from just as well.
    let arch = match cfg.arch {
        TrainArch::BatchTopK { k } => TrainArch::TopK { k },
        other => other,
    };
    let sae = to_sae(p, arch, 0.0, "", "");
    let (_, recon) = cpu::forward(&sae, x);
    let losses: Vec<f64> = x
        .chunks_exact(d)
        .zip(recon.chunks_exact(d))
        .map(|(a, b)| a.iter().zip(b).map(|(u, w)| ((u - w) as f64).powi(2)).sum::<f64>().powi(2))
        .collect();
    let total: f64 = losses.iter().sum();
    let alive: Vec<usize> = (0..p.d_sae).filter(|j| !dead.contains(j)).collect();
    let column_norm = |j: usize| (0..d).map(|i| p.w_enc[i * p.d_sae + j].powi(2)).sum::<f32>().sqrt();
    let alive_norm = if alive.is_empty() { 1.0 } else { alive.iter().map(|&j| column_norm(j)).sum::<f32>() / alive.len() as f32 };
    let mut rng = Rng::new(resample_draw_seed(cfg.seed, step));
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

/// The SAELens-format SAE of trained weights. BatchTopK is saved as JumpReLU with
/// `batch_topk_threshold` for every latent, as SAELens's `process_state_dict_for_saving_inference`
/// does.
fn to_sae(p: &SaeWeights, arch: TrainArch, batch_topk_threshold: f32, hook_name: &str, model_name: &str) -> Sae {
    let mut weights = p.clone();
    if let (TrainArch::BatchTopK { .. }, EncoderTensors::Bias { b_enc }) = (arch, &p.encoder) {
        weights.encoder = EncoderTensors::Threshold { b_enc: b_enc.clone(), threshold: vec![batch_topk_threshold; p.d_sae] };
    }
    let mut cfg = serde_json::json!({
        "d_in": p.d_in, "d_sae": p.d_sae, "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": true, "normalize_activations": "none", "reshape_activations": "none",
        // `sae_lens_version` names the config layout (SAELens ≥ 6 reads `metadata` only when it
        // is at least 6.0.0; older layouts are rebuilt from top-level keys). saelab trained it.
        "metadata": { "hook_name": hook_name, "model_name": model_name, "sae_lens_version": "6.0.0", "sae_lens_training_version": null, "trained_by": "saelab" },
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
    let cfg = SaeConfig::parse(cfg.to_string().as_bytes()).expect("saelab writes a valid cfg.json");
    // The trainers check that their weights have their architecture's tensors.
    Sae::new(cfg, weights, FloatDtype::F32, None).expect("trained weights have their architecture's tensors")
}
