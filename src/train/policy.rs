//! The one training policy: what a person sets for a run on a model's activations (`TrainSettings`,
//! from `saelab train`'s flags or the page's form), its defaults, and every value derived from it
//! (steps, warm-up, dead-after, the mixing buffer, the evaluation cadence) in `TrainSettings::plan`.
//! The CLI and the page both go through here, so the same settings train the same SAE.
//!
//! Also the parsing of typed numbers the page's form needs: counts are whole numbers (no "2.7",
//! no "-5"), rates are positive finite reals.

use crate::model::decoder::DecoderConfig;

use super::activations::StoreConfig;
use super::sae_train::TrainArch;
use super::trainer::TrainConfig;

/// What a person chooses for a run; `None` means "the policy's default".
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSettings {
    /// A TransformerLens hook name (`blocks.2.hook_resid_pre`).
    pub hook: String,
    /// `standard`, `topk`, `batchtopk`, `jumprelu` or `gated`.
    pub arch: String,
    /// TopK and BatchTopK: active latents per token.
    pub k: usize,
    /// Standard and gated: the L1 coefficient.
    pub l1: f32,
    /// JumpReLU: the L0 coefficient and the threshold's bandwidth.
    pub l0: f32,
    pub bandwidth: f32,
    /// Latents.
    pub dict: usize,
    /// Training tokens (rows); the run takes `tokens / batch` steps.
    pub tokens: usize,
    pub batch: usize,
    pub lr: f32,
    pub seed: u64,
    /// Tokens per context, BOS included (default: the model's context, at most 128).
    pub context: Option<usize>,
    /// Rows the mixing buffer holds (default: see `plan`).
    pub buffer_rows: Option<usize>,
    /// Steps without firing after which a latent counts as dead (default: see `plan`).
    pub dead_after: Option<usize>,
    /// Steps between held-out evaluations (default: about four per run).
    pub eval_every: Option<usize>,
}

impl Default for TrainSettings {
    fn default() -> TrainSettings {
        TrainSettings {
            hook: String::new(),
            arch: "topk".into(),
            k: 32,
            l1: 5.0,
            l0: 1e-3,
            bandwidth: 0.05,
            dict: 4096,
            tokens: 0,
            batch: 1024,
            lr: 1e-3,
            seed: 1,
            context: None,
            buffer_rows: None,
            dead_after: None,
            eval_every: None,
        }
    }
}

/// A run's whole configuration, derived from `TrainSettings` for one model.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainPlan {
    pub store: StoreConfig,
    pub train: TrainConfig,
    /// Steps between held-out evaluations (≥ 1).
    pub eval_every: usize,
}

/// The mixing buffer's default: 16 batches and at least 8192 rows (SAELens keeps
/// `n_batches_in_buffer` = 20 batches of prompts), but never more rows than the run trains on, nor
/// more than 256 MiB of activations.
fn default_buffer_rows(batch: usize, tokens: usize, d_model: usize) -> usize {
    let cap = ((256usize << 20) / (4 * d_model.max(1))).max(2 * batch);
    (batch * 16).max(8192).min(tokens.max(batch)).min(cap)
}

impl TrainSettings {
    /// The run these settings describe on a model of shape `model`, or the first setting that is
    /// wrong, named.
    pub fn plan(&self, model: &DecoderConfig) -> Result<TrainPlan, String> {
        let hook = model.hook_point(self.hook.trim()).map_err(|e| format!("hook: {e}"))?;
        let arch = TrainArch::from_name(self.arch.trim(), self.k, self.l1, self.l0, self.bandwidth).map_err(|e| format!("arch: {e}"))?;
        if self.batch == 0 {
            return Err("batch must be at least 1".into());
        }
        if self.tokens < self.batch {
            return Err(format!("tokens must be at least one batch ({})", self.batch));
        }
        let steps = self.tokens / self.batch;
        let mut train = TrainConfig::new(arch, self.dict, self.batch, steps, self.seed);
        train.lr = self.lr;
        train.lr_warmup_steps = steps / 20;
        // About 10M tokens without firing (SAELens `dead_feature_window` counts tokens), within
        // 50..5000 steps.
        train.dead_after_steps = self.dead_after.unwrap_or((10_000_000 / self.batch).clamp(50, 5000));
        train.validate()?;
        let context = self.context.unwrap_or(model.max_positions.min(128));
        let buffer_rows = self.buffer_rows.unwrap_or_else(|| default_buffer_rows(self.batch, self.tokens, model.hook_width(hook)));
        let store = StoreConfig { hook, context, buffer_rows, hold_out_every: 20, seed: self.seed };
        // About four evaluations per run: each splices held-out contexts (four forward passes).
        let eval_every = self.eval_every.unwrap_or(steps.div_ceil(4)).max(1);
        Ok(TrainPlan { store, train, eval_every })
    }
}

/// A count typed by a person: a whole number, at least 0 (no sign, no fraction, no exponent).
pub fn parse_count(name: &str, text: &str) -> Result<usize, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(format!("{name}: give a whole number"));
    }
    if !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{name}: '{t}' is not a whole number"));
    }
    t.parse::<usize>().map_err(|_| format!("{name}: {t} is too large"))
}

/// A rate typed by a person: a positive finite number ("1e-3", "0.001").
pub fn parse_positive(name: &str, text: &str) -> Result<f32, String> {
    let t = text.trim();
    match t.parse::<f32>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        Ok(_) => Err(format!("{name}: must be a positive number, not {t}")),
        Err(_) => Err(format!("{name}: '{t}' is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> DecoderConfig {
        crate::model::families::gpt2::config(100, 256, 64, 3, 4, true)
    }

    fn settings() -> TrainSettings {
        TrainSettings { hook: "blocks.2.hook_resid_pre".into(), dict: 64, k: 4, tokens: 2048, batch: 256, ..TrainSettings::default() }
    }

    #[test]
    fn the_plan_derives_every_value_from_the_settings() {
        let plan = settings().plan(&model()).unwrap();
        assert_eq!(plan.train.steps, 8);
        assert_eq!(plan.eval_every, 2, "about four evaluations per run");
        assert_eq!(plan.train.lr_warmup_steps, 0);
        assert_eq!(plan.train.dead_after_steps, 5000);
        assert_eq!(plan.store.context, 128);
        assert_eq!(plan.store.buffer_rows, 2048, "never more rows than the run trains on");
        assert_eq!((plan.store.seed, plan.train.seed), (1, 1));
        assert_eq!(plan.store.hook.to_string(), "blocks.2.hook_resid_pre");
        let long = TrainSettings { tokens: 500_000, batch: 1024, ..settings() }.plan(&model()).unwrap();
        assert_eq!((long.store.buffer_rows, long.train.steps, long.eval_every, long.train.lr_warmup_steps), (16_384, 488, 122, 24));
        // 256 MiB of activations at most, and always two batches.
        let wide = crate::model::families::gpt2::config(100, 256, 16_384, 3, 4, true);
        let huge = TrainSettings { tokens: 10_000_000, batch: 8192, ..settings() }.plan(&wide).unwrap();
        assert_eq!(huge.store.buffer_rows, 16_384);
        let given = TrainSettings { buffer_rows: Some(300), eval_every: Some(0), dead_after: Some(7), ..settings() };
        let plan = given.plan(&model()).unwrap();
        assert_eq!((plan.store.buffer_rows, plan.eval_every, plan.train.dead_after_steps), (300, 1, 7));
    }

    #[test]
    fn a_wrong_setting_is_named() {
        let err = |s: TrainSettings| s.plan(&model()).unwrap_err();
        assert!(err(TrainSettings { hook: "blocks.3.hook_resid_pre".into(), ..settings() }).starts_with("hook: "));
        assert!(err(TrainSettings { arch: "relu".into(), ..settings() }).contains("unknown architecture"));
        assert_eq!(err(TrainSettings { tokens: 100, ..settings() }), "tokens must be at least one batch (256)");
        assert_eq!(err(TrainSettings { batch: 0, ..settings() }), "batch must be at least 1");
        assert!(err(TrainSettings { k: 65, ..settings() }).contains("k must be between 1 and dict (64)"));
        assert!(err(TrainSettings { lr: f32::NAN, ..settings() }).contains("lr must be a positive number"));
    }

    #[test]
    fn counts_are_whole_numbers() {
        assert_eq!(parse_count("k", " 32 "), Ok(32));
        assert_eq!(parse_count("k", "0"), Ok(0));
        for bad in ["2.7", "-5", "+5", "1e3", "", "  ", "32k", "0x10", "٣"] {
            assert!(parse_count("k", bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_count("k", "2.7").unwrap_err(), "k: '2.7' is not a whole number");
        assert_eq!(parse_count("k", "-5").unwrap_err(), "k: '-5' is not a whole number");
        assert!(parse_count("k", "99999999999999999999999").unwrap_err().contains("too large"));
    }

    #[test]
    fn rates_are_positive_numbers() {
        assert_eq!(parse_positive("lr", "1e-3"), Ok(1e-3));
        for bad in ["0", "-1", "inf", "NaN", "abc", ""] {
            assert!(parse_positive("lr", bad).is_err(), "{bad:?}");
        }
    }
}
