//! Training an SAE on a language model's activations: `ActivationStore` harvests and mixes them,
//! `SaeTrainer` takes the steps, and every so often the SAE is evaluated on held-out text — L0 and
//! FVU on held-out activations, the dead fraction, and CE loss recovered by splicing it into the
//! model (`lm::splice`). Shared by `saelab train` and the page.

use std::rc::Rc;

use crate::backend::Backend;
use crate::engine::{self, LoadedSae};
use crate::fingerprint;
use crate::gpu::RunRequest;
use crate::lm::{self, LmError, LoadedModel, ModelInfo};

use super::activations::{ActivationStore, StoreConfig};
use super::checkpoint::{Checkpoint, CheckpointHeader, FORMAT, VERSION};
use super::trainer::{SaeTrainer, TrainConfig};

/// What an evaluation measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LmEval {
    pub step: usize,
    pub tokens: u64,
    pub l0: f64,
    pub fvu: f64,
    pub dead_fraction: f32,
    /// Over the held-out contexts spliced (None when there are none).
    pub ce_clean: Option<f32>,
    pub ce_spliced: Option<f32>,
    pub ce_recovered: Option<f32>,
}

pub struct LmTrainer {
    pub store: ActivationStore,
    pub training: SaeTrainer,
    pub model_name: String,
    /// Held-out rows used for L0 and FVU, and held-out contexts spliced, per evaluation (the page
    /// uses fewer, so evaluating does not stall training on a slow adapter).
    pub eval_rows: usize,
    pub eval_contexts: usize,
    /// `fingerprint::model` of the model the activations come from, taken once for checkpoints.
    model_fingerprint: u64,
}

impl LmTrainer {
    /// A fresh SAE on `model`'s activations at `store_cfg.hook` over `corpus` (token ids),
    /// trained on `backend` (the model harvests where it was placed); b_dec starts from the
    /// first buffer's statistics.
    pub async fn new(
        model: &LoadedModel,
        model_name: &str,
        corpus: &[u32],
        bos: Option<u32>,
        store_cfg: StoreConfig,
        train: TrainConfig,
        backend: &Backend,
    ) -> Result<LmTrainer, String> {
        train.validate()?;
        let mut store = ActivationStore::new(model, corpus, bos, store_cfg)?;
        let first = store.next_batch(model, train.batch.max(256)).await.map_err(|e| e.to_string())?;
        let training = SaeTrainer::new(train, store.d_in(), &first, backend)?;
        Ok(LmTrainer {
            store,
            training,
            model_name: model_name.to_string(),
            eval_rows: 2048,
            eval_contexts: 4,
            model_fingerprint: model.fingerprint(),
        })
    }

    /// The run as it stands, to go on from with `resume` (see `checkpoint`); `extra` is saved
    /// with it as given.
    pub async fn checkpoint(&self, extra: serde_json::Value) -> Result<Checkpoint, String> {
        let trainer = self.training.snapshot().await?;
        let header = CheckpointHeader {
            format: FORMAT.into(),
            version: VERSION,
            model_name: self.model_name.clone(),
            model_fingerprint: self.model_fingerprint,
            corpus_tokens: self.store.corpus_tokens(),
            corpus_fingerprint: self.store.corpus_fingerprint(),
            store: self.store.cfg.clone(),
            train: trainer.cfg.clone(),
            step: trainer.step,
            eval_rows: self.eval_rows,
            eval_contexts: self.eval_contexts,
            extra,
        };
        Ok(Checkpoint { header, trainer, store: self.store.position() })
    }

    /// About how many bytes `checkpoint(..).serialize()` takes: parameters and Adam's two
    /// moments, and the store's buffer.
    pub fn checkpoint_size(&self) -> usize {
        let params = self.training.params().parameter_count();
        4 * (3 * params + self.store.buffered_values())
    }

    /// Goes on from `checkpoint`, training on `backend`, given the same model and corpus the run
    /// used — anything else is refused with what differs.
    pub fn resume(
        model: &impl ModelInfo,
        corpus: &[u32],
        bos: Option<u32>,
        checkpoint: Checkpoint,
        backend: &Backend,
    ) -> Result<LmTrainer, String> {
        let Checkpoint { header: h, trainer, store: position } = checkpoint;
        let model_fingerprint = model.fingerprint();
        if model_fingerprint != h.model_fingerprint {
            return Err(format!("this run trained on another model ({}); load that model to resume it", h.model_name));
        }
        if corpus.len() != h.corpus_tokens || fingerprint::tokens(corpus) != h.corpus_fingerprint {
            return Err(format!("this run trained on another corpus ({} tokens); give the same text to resume it", h.corpus_tokens));
        }
        let width = model.cfg().hook_width(h.store.hook);
        if trainer.params.d_in != width {
            return Err(format!(
                "the saved SAE reads {} values per token but the model's {} is {width} wide",
                trainer.params.d_in, h.store.hook
            ));
        }
        let mut store = ActivationStore::new(model, corpus, bos, h.store.clone())?;
        store.resume_at(position)?;
        let training = SaeTrainer::from_snapshot(trainer, backend)?;
        Ok(LmTrainer {
            store,
            training,
            model_name: h.model_name,
            eval_rows: h.eval_rows,
            eval_contexts: h.eval_contexts,
            model_fingerprint,
        })
    }

    /// Tokens trained on so far (each step one batch of rows).
    pub fn tokens_trained(&self) -> u64 {
        (self.training.step * self.training.cfg.batch) as u64
    }

    /// One step: the next batch from the store (harvested by `model`), where the trainer runs.
    pub async fn step(&mut self, model: &LoadedModel) -> Result<(), String> {
        let x = self.store.next_batch(model, self.training.cfg.batch).await.map_err(|e| e.to_string())?;
        let store = &self.store;
        self.training.step(&x, || store.sample_of_buffer(4096)).await
    }

    /// The SAE as trained so far, in SAELens format, with how its activations were taken
    /// (`context_size`, `prepend_bos`) in its metadata as SAELens records them.
    pub fn to_sae(&self) -> crate::sae::Sae {
        let mut sae = self.training.to_sae(&self.store.cfg.hook.to_string(), &self.model_name);
        if let Some(serde_json::Value::Object(meta)) = sae.cfg.raw.get_mut("metadata") {
            meta.insert("context_size".into(), self.store.cfg.context.into());
            meta.insert("prepend_bos".into(), self.store.prepends_bos().into());
        }
        sae
    }

    /// Evaluates the SAE as it is now (call `training.sync` first when it trains on the GPU),
    /// with the SAE on the model's backend.
    pub async fn evaluate(&self, model: &LoadedModel) -> Result<LmEval, LmError> {
        let sae = LoadedSae::new(Rc::new(self.to_sae()), &model.backend())?;
        let rows = self.store.held_out_rows(model, self.eval_rows).await?;
        let (l0, fvu) = if rows.is_empty() {
            (f64::NAN, f64::NAN)
        } else {
            let m = engine::analyze(&sae, &rows, RunRequest::default()).await?.metrics;
            (m.l0, m.fvu)
        };
        let (mut clean, mut spliced, mut zero, mut n) = (0.0f64, 0.0f64, 0.0f64, 0usize);
        for context in self.store.held_out_contexts().iter().take(self.eval_contexts) {
            let r = lm::splice(model, &sae, context, 0).await?;
            clean += r.ce_clean as f64;
            spliced += r.ce_spliced as f64;
            zero += r.ce_zero_ablation as f64;
            n += 1;
        }
        let (ce_clean, ce_spliced, ce_recovered) = if n == 0 {
            (None, None, None)
        } else {
            let (c, s, z) = (clean / n as f64, spliced / n as f64, zero / n as f64);
            (Some(c as f32), Some(s as f32), Some(((z - s) / (z - c)) as f32))
        };
        Ok(LmEval {
            step: self.training.step,
            tokens: self.tokens_trained(),
            l0,
            fvu,
            dead_fraction: self.training.dead_fraction(),
            ce_clean,
            ce_spliced,
            ce_recovered,
        })
    }
}
