//! Feature dashboards in the spirit of SAE-Vis (McDougall 2024) and Neuronpedia: an SAE run over a
//! text sample, kept sparse (each token's active features), from which any feature's firing
//! density, activation histogram, top activating examples, examples from activation quantiles,
//! and nearest features by decoder cosine (in the same SAE or another one) are read off.
//!
//! The sample is cut into contexts as the activation store cuts a corpus (BOS prepended when the
//! tokenizer has one, its position not counted), so a feature sees text as it did in training.

use crate::engine::{self, LoadedSae};
use crate::gpu::RunRequest;
use crate::lm::{self, LmError, LoadedModel, ModelInfo};
use crate::sae::Sae;

/// One token where a feature fired.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Example {
    pub context: usize,
    /// Position within the context, the BOS excluded (0 = the context's first text token).
    pub position: usize,
    pub activation: f32,
}

/// The SAE's activations over a sample, per feature: every token it fired on.
#[derive(Debug)]
pub struct SampleActivations {
    /// The sample's contexts, without BOS.
    pub contexts: Vec<Vec<u32>>,
    /// Where the SAE reads the model, checked once.
    at: lm::Attachment,
    bos: Option<u32>,
    /// Contexts run so far (the first `done`).
    pub done: usize,
    pub n_tokens: usize,
    /// Per feature, where it fired, in sample order.
    pub fired: Vec<Vec<Example>>,
}

/// Runs `sae` (at its hook on `model`) over `sample` in contexts of `context` tokens (BOS
/// included), calling `progress(done, total)` after each context.
pub async fn run_sample(
    model: &LoadedModel,
    sae: &LoadedSae,
    sample: &[u32],
    bos: Option<u32>,
    context: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<SampleActivations, LmError> {
    let mut run = SampleActivations::new(model, &sae.sae, sample, bos, context)?;
    while run.done < run.contexts.len() {
        run.run_next(model, sae).await?;
        progress(run.done, run.contexts.len());
    }
    Ok(run)
}

impl SampleActivations {
    /// The sample cut into contexts, nothing run yet (`run_next` runs one context at a time, so
    /// the page can paint between them).
    pub fn new(model: &impl ModelInfo, sae: &Sae, sample: &[u32], bos: Option<u32>, context: usize) -> Result<SampleActivations, LmError> {
        let at = lm::attachment(model, sae)?;
        if context < 2 || context > model.cfg().max_positions {
            return Err(LmError::Mismatch(format!("context must be between 2 and {} tokens, not {context}", model.cfg().max_positions)));
        }
        if sample.is_empty() {
            return Err(LmError::Mismatch("the sample holds no tokens".into()));
        }
        let body = context - usize::from(bos.is_some());
        let contexts: Vec<Vec<u32>> = sample.chunks(body).map(<[u32]>::to_vec).collect();
        Ok(SampleActivations { contexts, at, bos, done: 0, n_tokens: 0, fired: vec![Vec::new(); sae.d_sae()] })
    }

    /// Runs the next context through the model and the SAE (the ones given to `new`) and records
    /// where features fired.
    pub async fn run_next(&mut self, model: &LoadedModel, sae: &LoadedSae) -> Result<(), LmError> {
        let (c, d_sae) = (self.done, sae.sae.d_sae());
        let tokens = &self.contexts[c];
        let with_bos: Vec<u32> = self.bos.into_iter().chain(tokens.iter().copied()).collect();
        let acts = model.activations_at(&with_bos, self.at.reads).await?;
        let acts = lm::sae_input(model, &sae.sae, &self.at, acts)?;
        let skip = usize::from(self.bos.is_some()) * sae.sae.d_in();
        let dense = engine::analyze(sae, &acts[skip..], RunRequest { dense_acts: true, ..Default::default() })
            .await?
            .acts
            .ok_or_else(|| LmError::Mismatch("the SAE returned no activations".into()))?;
        for (position, row) in dense.chunks_exact(d_sae).enumerate() {
            for (f, &a) in row.iter().enumerate() {
                if a > 0.0 {
                    self.fired[f].push(Example { context: c, position, activation: a });
                }
            }
        }
        self.n_tokens += tokens.len();
        self.done += 1;
        Ok(())
    }
}
/// What a sample's activations depend on — the model, the SAE, the sample's tokens and how they
/// are cut — as one number: dashboards saved under it can be reused for the same four.
pub fn sample_key(model: &impl ModelInfo, sae: &Sae, sample: &[u32], bos: Option<u32>, context: usize) -> u64 {
    let parts = [model.fingerprint(), crate::fingerprint::sae(sae), crate::fingerprint::tokens(sample)];
    crate::fingerprint::fnv1a(
        parts.iter().flat_map(|p| [*p as u32, (*p >> 32) as u32]).chain([bos.map_or(u32::MAX, |b| b), context as u32]),
    )
}

/// A finished sample as saved: its key, and per feature `(context, position, activation)`.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedSample {
    format: String,
    key: u64,
    n_tokens: usize,
    fired: Vec<Vec<(usize, usize, f32)>>,
}

const SAVED_FORMAT: &str = "saelab dashboard sample 1";

impl SampleActivations {
    /// The finished sample as bytes, under `key` (`sample_key`), to keep across page loads.
    pub fn to_bytes(&self, key: u64) -> Vec<u8> {
        let fired = self.fired.iter().map(|ex| ex.iter().map(|e| (e.context, e.position, e.activation)).collect()).collect();
        serde_json::to_vec(&SavedSample { format: SAVED_FORMAT.into(), key, n_tokens: self.n_tokens, fired }).expect("plain data")
    }

    /// The sample saved by `to_bytes` for this model, SAE and sample (`new`'s arguments), or
    /// None when it was saved for others. Bytes that do not fit are an error, never a panic.
    pub fn from_bytes(
        bytes: &[u8],
        model: &impl ModelInfo,
        sae: &Sae,
        sample: &[u32],
        bos: Option<u32>,
        context: usize,
    ) -> Result<Option<SampleActivations>, String> {
        let saved: SavedSample = serde_json::from_slice(bytes).map_err(|e| format!("saved dashboards are malformed: {e}"))?;
        if saved.format != SAVED_FORMAT || saved.key != sample_key(model, sae, sample, bos, context) {
            return Ok(None);
        }
        let mut run = SampleActivations::new(model, sae, sample, bos, context).map_err(|e| e.to_string())?;
        let n_tokens: usize = run.contexts.iter().map(Vec::len).sum();
        if saved.fired.len() != sae.d_sae() || saved.n_tokens != n_tokens {
            return Err(format!(
                "saved dashboards hold {} features over {} tokens, not {} over {n_tokens}",
                saved.fired.len(),
                saved.n_tokens,
                sae.d_sae()
            ));
        }
        for (f, examples) in saved.fired.into_iter().enumerate() {
            for (context, position, activation) in examples {
                if context >= run.contexts.len() || position >= run.contexts[context].len() || !(activation > 0.0 && activation.is_finite())
                {
                    return Err(format!("saved dashboards: feature {f} has an example that does not fit the sample"));
                }
                run.fired[f].push(Example { context, position, activation });
            }
        }
        run.done = run.contexts.len();
        run.n_tokens = n_tokens;
        Ok(Some(run))
    }
}

/// Per-feature summary for the feature list.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct FeatureSummary {
    pub feature: usize,
    /// The fraction of tokens it fires on.
    pub density: f32,
    pub max_activation: f32,
}

/// One feature's dashboard.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Dashboard {
    pub feature: usize,
    pub density: f32,
    pub max_activation: f32,
    /// Activation histogram over the tokens it fires on: `bins` equal-width bins over
    /// (0, max_activation], counts per bin.
    pub histogram: Vec<u32>,
    /// The strongest activations, strongest first.
    pub top: Vec<Example>,
    /// Examples from activation quantiles: for each of `intervals` equal-width intervals of
    /// (0, max] (weakest first), up to `per_interval` examples spread evenly through the sample.
    pub intervals: Vec<(f32, f32, Vec<Example>)>,
}

impl SampleActivations {
    pub fn summaries(&self) -> Vec<FeatureSummary> {
        self.fired
            .iter()
            .enumerate()
            .map(|(feature, ex)| FeatureSummary {
                feature,
                density: ex.len() as f32 / self.n_tokens.max(1) as f32,
                max_activation: ex.iter().map(|e| e.activation).fold(0.0, f32::max),
            })
            .collect()
    }

    pub fn dashboard(&self, feature: usize, top: usize, bins: usize, intervals: usize, per_interval: usize) -> Dashboard {
        let fired = &self.fired[feature];
        let max = fired.iter().map(|e| e.activation).fold(0.0, f32::max);
        let bin_of = |a: f32, n: usize| (((a / max) * n as f32).ceil() as usize).clamp(1, n) - 1;
        let mut histogram = vec![0u32; bins];
        if max > 0.0 {
            for e in fired {
                histogram[bin_of(e.activation, bins)] += 1;
            }
        }
        let mut strongest = fired.clone();
        strongest.sort_by(|a, b| b.activation.total_cmp(&a.activation).then((a.context, a.position).cmp(&(b.context, b.position))));
        strongest.truncate(top);
        let intervals = (0..intervals)
            .map(|i| {
                let (lo, hi) = (max * i as f32 / intervals as f32, max * (i + 1) as f32 / intervals as f32);
                let inside: Vec<Example> =
                    if max > 0.0 { fired.iter().copied().filter(|e| bin_of(e.activation, intervals) == i).collect() } else { Vec::new() };
                // Evenly spaced through the sample: deterministic, and not all from one passage.
                let picked =
                    (0..per_interval.min(inside.len())).map(|j| inside[j * inside.len() / per_interval.min(inside.len())]).collect();
                (lo, hi, picked)
            })
            .collect();
        Dashboard {
            feature,
            density: fired.len() as f32 / self.n_tokens.max(1) as f32,
            max_activation: max,
            histogram,
            top: strongest,
            intervals,
        }
    }
}

/// The `n` features of `other` whose decoder directions are closest in cosine to feature
/// `feature` of `sae` (pass the same SAE for its own nearest features; the feature itself is then
/// left out), most similar first. Decoder rows `W_dec[f]` are compared, as SAE-Vis does.
pub fn nearest_features(sae: &Sae, feature: usize, other: &Sae, n: usize) -> Result<Vec<(usize, f32)>, String> {
    if sae.d_in() != other.d_in() {
        return Err(format!("the SAEs' widths differ ({} and {})", sae.d_in(), other.d_in()));
    }
    if feature >= sae.d_sae() {
        return Err(format!("feature {feature} does not exist (the SAE has {} features)", sae.d_sae()));
    }
    let d = sae.d_in();
    let row = &sae.w_dec()[feature * d..(feature + 1) * d];
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    let row_norm = norm(row);
    let same = std::ptr::eq(sae, other);
    let mut cos: Vec<(usize, f32)> = other
        .w_dec()
        .chunks_exact(d)
        .enumerate()
        .filter(|&(j, _)| !(same && j == feature))
        .map(|(j, w)| (j, row.iter().zip(w).map(|(a, b)| a * b).sum::<f32>() / (row_norm * norm(w))))
        .collect();
    cos.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    cos.truncate(n);
    Ok(cos)
}
