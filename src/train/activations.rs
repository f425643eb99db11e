//! A language model's activations at one hook as SAE training data, as SAELens's
//! `ActivationsStore` serves them: the corpus is cut into contexts of `context` tokens, each
//! starting with the beginning-of-sequence token when the tokenizer has one (`prepend_bos`); the
//! model runs over them and the hook's activations go into a mixing buffer that is shuffled, then
//! half served and half kept before the next refill, so a batch mixes many texts and positions.
//! The BOS position is left out (its activation is an outlier of the residual stream, not text).
//!
//! A share of the corpus's contexts is held out for evaluation (FVU, L0 and the splice).

use crate::lm::{LmError, LoadedModel, ModelInfo};
use crate::model::HookPoint;
use crate::random::Rng;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoreConfig {
    pub hook: HookPoint,
    /// Tokens per context, the BOS included (at most the model's context).
    pub context: usize,
    /// Rows the mixing buffer holds when full.
    pub buffer_rows: usize,
    /// Every this-many-th context is held out (0: none).
    pub hold_out_every: usize,
    pub seed: u64,
}

pub struct ActivationStore {
    pub cfg: StoreConfig,
    d: usize,
    bos: Option<u32>,
    train_contexts: Vec<Vec<u32>>,
    held_out_contexts: Vec<Vec<u32>>,
    /// The order contexts are visited in this epoch, and where in it the store is.
    order: Vec<usize>,
    next: usize,
    pub epochs: usize,
    buffer: Vec<f32>,
    rng: Rng,
    /// Rows harvested so far (each one model position).
    pub rows_harvested: u64,
    corpus_fingerprint: u64,
    corpus_tokens: usize,
}

/// Where a store is in its corpus, to save with a checkpoint and go on from: the epoch, this
/// epoch's context order and the next context in it, the shuffling stream, and the rows in the
/// mixing buffer (so a resumed run sees exactly the batches an uninterrupted one would).
#[derive(Debug, Clone, PartialEq)]
pub struct StorePosition {
    pub epochs: usize,
    pub order: Vec<usize>,
    pub next: usize,
    pub rng_state: u64,
    pub rows_harvested: u64,
    /// `[rows, d]`
    pub buffer: Vec<f32>,
}

impl ActivationStore {
    /// `corpus` is the tokenized text (no BOS); `bos` the beginning-of-sequence token, if any.
    pub fn new(model: &impl ModelInfo, corpus: &[u32], bos: Option<u32>, cfg: StoreConfig) -> Result<ActivationStore, String> {
        model.cfg().hook_point(&cfg.hook.to_string()).map_err(|e| format!("hook: {e}"))?;
        if cfg.context < 2 || cfg.context > model.cfg().max_positions {
            return Err(format!(
                "context must be between 2 and the model's context ({} positions), not {}",
                model.cfg().max_positions,
                cfg.context
            ));
        }
        if let Some(&bad) = corpus.iter().find(|&&t| t as usize >= model.cfg().vocab_size) {
            return Err(format!("the corpus holds token {bad}, beyond the model's vocabulary of {}", model.cfg().vocab_size));
        }
        if corpus.is_empty() {
            return Err("the corpus is empty (no text to harvest activations from)".into());
        }
        let body = cfg.context - usize::from(bos.is_some());
        let contexts: Vec<Vec<u32>> = corpus
            .chunks(body)
            .filter(|c| c.len() == body || corpus.len() < body)
            .map(|c| bos.into_iter().chain(c.iter().copied()).collect())
            .collect();
        let (mut train_contexts, mut held_out_contexts) = (Vec::new(), Vec::new());
        for (i, c) in contexts.into_iter().enumerate() {
            if cfg.hold_out_every > 0 && i % cfg.hold_out_every == cfg.hold_out_every - 1 {
                held_out_contexts.push(c);
            } else {
                train_contexts.push(c);
            }
        }
        if train_contexts.is_empty() {
            // A corpus of one context trains on it; there is nothing to hold out.
            train_contexts = std::mem::take(&mut held_out_contexts);
        }
        let mut store = ActivationStore {
            d: model.cfg().hook_width(cfg.hook),
            bos,
            order: Vec::new(),
            next: 0,
            epochs: 0,
            buffer: Vec::new(),
            rng: Rng::new(cfg.seed ^ 0x5701E),
            rows_harvested: 0,
            corpus_fingerprint: crate::fingerprint::tokens(corpus),
            corpus_tokens: corpus.len(),
            train_contexts,
            held_out_contexts,
            cfg,
        };
        store.new_epoch();
        Ok(store)
    }

    pub fn d_in(&self) -> usize {
        self.d
    }

    /// `fingerprint::tokens` of the corpus this store was made from.
    pub fn corpus_fingerprint(&self) -> u64 {
        self.corpus_fingerprint
    }

    pub fn corpus_tokens(&self) -> usize {
        self.corpus_tokens
    }

    /// Values (rows × d) in the mixing buffer now.
    pub fn buffered_values(&self) -> usize {
        self.buffer.len()
    }

    pub fn position(&self) -> StorePosition {
        StorePosition {
            epochs: self.epochs,
            order: self.order.clone(),
            next: self.next,
            rng_state: self.rng.state(),
            rows_harvested: self.rows_harvested,
            buffer: self.buffer.clone(),
        }
    }

    /// Goes on from `position`, saved from a store made with the same model, corpus and settings.
    pub fn resume_at(&mut self, position: StorePosition) -> Result<(), String> {
        let n = self.train_contexts.len();
        let mut seen = vec![false; n];
        let permutation = position.order.len() == n && position.order.iter().all(|&i| i < n && !std::mem::replace(&mut seen[i], true));
        if !permutation || position.next > n {
            return Err(format!("the saved position does not fit this corpus ({n} training contexts)"));
        }
        if !position.buffer.len().is_multiple_of(self.d) || position.buffer.iter().any(|v| !v.is_finite()) {
            return Err(format!("the saved buffer is not whole finite rows of {} values", self.d));
        }
        self.epochs = position.epochs;
        self.order = position.order;
        self.next = position.next;
        self.rng = Rng::from_state(position.rng_state);
        self.rows_harvested = position.rows_harvested;
        self.buffer = position.buffer;
        Ok(())
    }

    pub fn prepends_bos(&self) -> bool {
        self.bos.is_some()
    }

    pub fn held_out_contexts(&self) -> &[Vec<u32>] {
        &self.held_out_contexts
    }

    /// Training rows one pass over the corpus gives.
    pub fn rows_per_epoch(&self) -> usize {
        self.train_contexts.iter().map(|c| self.kept_positions(c)).sum()
    }

    fn kept_positions(&self, context: &[u32]) -> usize {
        context.len() - usize::from(self.bos.is_some())
    }

    fn new_epoch(&mut self) {
        self.order = (0..self.train_contexts.len()).collect();
        // Fisher–Yates with the store's stream: the contexts' order differs from epoch to epoch.
        for i in (1..self.order.len()).rev() {
            let j = (self.rng.next_u64() % (i as u64 + 1)) as usize;
            self.order.swap(i, j);
        }
        self.next = 0;
    }

    /// The activations at the hook for `context`, without the BOS position.
    async fn harvest(&self, model: &LoadedModel, context: &[u32]) -> Result<Vec<f32>, LmError> {
        let acts = model.activations_at(context, self.cfg.hook).await?;
        let skip = usize::from(self.bos.is_some()) * self.d;
        Ok(acts[skip..].to_vec())
    }

    /// Runs the model over the next contexts until the buffer holds `at_least` rows, then
    /// shuffles it.
    async fn refill(&mut self, model: &LoadedModel, at_least: usize) -> Result<(), LmError> {
        while self.buffer.len() < at_least * self.d {
            if self.next == self.order.len() {
                self.epochs += 1;
                self.new_epoch();
            }
            let context = self.train_contexts[self.order[self.next]].clone();
            self.next += 1;
            let acts = self.harvest(model, &context).await?;
            if let Some(bad) = acts.iter().position(|v| !v.is_finite()) {
                return Err(LmError::Mismatch(format!("the model's activation at {} is not finite (row {})", self.cfg.hook, bad / self.d)));
            }
            self.rows_harvested += (acts.len() / self.d) as u64;
            self.buffer.extend(acts);
        }
        let rows = self.buffer.len() / self.d;
        for i in (1..rows).rev() {
            let j = (self.rng.next_u64() % (i as u64 + 1)) as usize;
            if i != j {
                for c in 0..self.d {
                    self.buffer.swap(i * self.d + c, j * self.d + c);
                }
            }
        }
        Ok(())
    }

    /// The next `rows` training rows (`[rows, d]`): from the shuffled buffer, refilled when less
    /// than half of it is left (SAELens's mixing buffer keeps half between refills).
    pub async fn next_batch(&mut self, model: &LoadedModel, rows: usize) -> Result<Vec<f32>, LmError> {
        let half = (self.cfg.buffer_rows / 2).max(rows);
        if self.buffer.len() < half * self.d || self.buffer.len() < rows * self.d {
            // A batch larger than the buffer is still served whole.
            self.refill(model, self.cfg.buffer_rows.max(rows)).await?;
        }
        let start = self.buffer.len() - rows * self.d;
        Ok(self.buffer.split_off(start))
    }

    /// Up to `rows` rows still in the buffer, to resample dead latents towards (not consumed).
    pub fn sample_of_buffer(&self, rows: usize) -> Vec<f32> {
        let n = (self.buffer.len() / self.d).min(rows);
        self.buffer[..n * self.d].to_vec()
    }

    /// The held-out activations (without BOS positions), `[n, d]`, at most `max_rows`.
    pub async fn held_out_rows(&self, model: &LoadedModel, max_rows: usize) -> Result<Vec<f32>, LmError> {
        let mut out = Vec::new();
        for context in &self.held_out_contexts {
            if out.len() >= max_rows * self.d {
                break;
            }
            out.extend(self.harvest(model, context).await?);
        }
        out.truncate(max_rows * self.d);
        Ok(out)
    }
}
