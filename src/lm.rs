//! A language model with an SAE attached at its hook point: the API the CLI and the page share for
//! text. Runs the model (CPU reference or GPU), the SAE on the hook's activations, and the splice
//! evaluation — how much the SAE's reconstruction error costs the model.
//!
//! Splicing follows SAELens's evaluation (`sae_lens.evals`, `get_recons_loss`): the model's
//! cross-entropy with the hook's activation replaced by the SAE's reconstruction, against the clean
//! run and against zero-ablating the hook; `ce_recovered = (ce_zero − ce_spliced) / (ce_zero −
//! ce_clean)`. KL is the mean over positions of KL(clean ‖ spliced) of the next-token
//! distributions. The "pathological errors" baseline (Gurnee 2024, "SAE reconstruction errors are
//! (empirically) pathological") replaces the activation by the reconstruction plus a random
//! vector of the error's norm at each position.
//!
//! BOS as SAELens has it: when the SAE's `prepend_bos` says so (its default), the text's tokens
//! follow the model's BOS (`tokens_for`, as TransformerLens's `to_tokens`), and every position
//! holding a special token (BOS, EOS, pad) is left out as SAELens's evaluations leave it out
//! (`get_special_token_ids`, `get_recons_loss`): the reconstruction is not spliced in there, L0 is
//! not counted there, and neither the loss of predicting the next token from there nor the KL
//! there is averaged in.

use std::rc::Rc;

use crate::backend::Backend;
use crate::engine::{self, EngineError, LoadedSae};
use crate::gpu::model_runner::GpuModel;
use crate::gpu::{Gpu, GpuError, RunRequest};
use crate::model::decoder::{DecoderConfig, NormKind};
use crate::model::processing::WeightProcessing;
use crate::model::{cpu, BlockSite, HookPoint, Intervention, Model, ModelError};
use crate::random::Rng;
use crate::sae::Sae;

#[derive(Debug, thiserror::Error)]
pub enum LmError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Mismatch(String),
}

/// What identifies a model and describes it, whether its weights are on the host or only on the
/// GPU: what attaching an SAE, tokenizing for it and checking saved work against it need.
pub trait ModelInfo {
    fn cfg(&self) -> &DecoderConfig;
    /// `fingerprint::model_from` of its weights.
    fn fingerprint(&self) -> u64;
}

impl ModelInfo for Model {
    fn cfg(&self) -> &DecoderConfig {
        &self.cfg
    }
    fn fingerprint(&self) -> u64 {
        crate::fingerprint::model(self)
    }
}

/// A model placed on a backend: on the CPU its host weights; on a GPU their copy uploaded once,
/// with the host weights kept (the CLI) or not (the page streams the weights to the GPU, so a
/// model larger than wasm memory loads). Cloning it shares the weights.
#[derive(Clone)]
pub struct LoadedModel {
    pub cfg: DecoderConfig,
    host: Option<Rc<Model>>,
    on_gpu: Option<(Rc<Gpu>, Rc<GpuModel>)>,
    fingerprint: u64,
}

impl ModelInfo for LoadedModel {
    fn cfg(&self) -> &DecoderConfig {
        &self.cfg
    }
    fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
}

impl LoadedModel {
    /// Places `model` on `backend` (uploads its weights to a GPU).
    pub fn new(model: Rc<Model>, backend: &Backend) -> Result<LoadedModel, GpuError> {
        let on_gpu = match backend {
            Backend::Cpu => None,
            Backend::Gpu(gpu) => Some((gpu.clone(), Rc::new(GpuModel::upload(gpu, &model)?))),
        };
        Ok(LoadedModel { cfg: model.cfg.clone(), fingerprint: crate::fingerprint::model(&model), host: Some(model), on_gpu })
    }

    /// A model that is only on the GPU (`gpu::model_stream`); its fingerprint is read back.
    pub async fn on_gpu_only(gpu: Rc<Gpu>, model: GpuModel) -> Result<LoadedModel, GpuError> {
        use crate::fingerprint::{model_from, sampled_rows};
        let rows = model.embedding_rows(&gpu, &sampled_rows(model.cfg.vocab_size)).await?;
        let positions = model.position_rows(&gpu, &sampled_rows(model.cfg.max_positions)).await?;
        let fingerprint = model_from(&model.cfg, &rows, &positions, &model.final_norm_values(&gpu).await?);
        Ok(LoadedModel { cfg: model.cfg.clone(), host: None, on_gpu: Some((gpu, Rc::new(model))), fingerprint })
    }

    pub fn backend(&self) -> Backend {
        match &self.on_gpu {
            None => Backend::Cpu,
            Some((gpu, _)) => Backend::Gpu(gpu.clone()),
        }
    }

    /// The host weights, where they were kept.
    pub fn host(&self) -> Option<&Model> {
        self.host.as_deref()
    }

    /// The CPU reference's input: a model without a GPU always has its host weights.
    fn host_model(&self) -> &Model {
        self.host.as_deref().expect("a model placed on the CPU keeps its host weights")
    }

    /// GPU bytes the weights take, when on a GPU.
    pub fn gpu_bytes(&self) -> Option<u64> {
        self.on_gpu.as_ref().map(|(_, m)| m.weight_bytes())
    }

    /// Logits and the activations at `capture`, with `interventions` applied.
    pub async fn run(
        &self,
        tokens: &[u32],
        capture: &[HookPoint],
        interventions: &[Intervention<'_>],
    ) -> Result<(Vec<f32>, Vec<Vec<f32>>), LmError> {
        match &self.on_gpu {
            None => Ok(cpu::run(self.host_model(), tokens, capture, interventions)?),
            Some((gpu, gpu_model)) => {
                let out = gpu_model.run(gpu, tokens, capture, interventions).await?;
                Ok((out.logits, out.hooks))
            }
        }
    }

    /// The activations `[n_tokens, d]` at `hook`, running only the blocks needed to reach it
    /// and no unembedding (harvesting for SAE training).
    pub async fn activations_at(&self, tokens: &[u32], hook: HookPoint) -> Result<Vec<f32>, LmError> {
        match &self.on_gpu {
            None => Ok(cpu::activations_at(self.host_model(), tokens, hook)?),
            Some((gpu, gpu_model)) => Ok(gpu_model.activations_at(gpu, tokens, hook).await?),
        }
    }

    /// `logit_lens` on this model's backend (on a GPU, from the GPU's weights).
    pub async fn logit_lens(&self, sae: &Sae, feature: usize, n: usize) -> Result<(TokenEffects, TokenEffects), LmError> {
        match &self.on_gpu {
            None => logit_lens(self.host_model(), sae, feature, n),
            Some((gpu, gpu_model)) => {
                let (hook, decoded) = lens_input(self, sae, feature)?;
                let through_o = match hook {
                    HookPoint::Block { layer, site: BlockSite::AttnZ } => Some(layer),
                    _ => None,
                };
                Ok(rank_effects(gpu_model.direct_logit_effects(gpu, &decoded, through_o).await?, n))
            }
        }
    }
}

/// Tokens with the effect a feature has on their logits.
pub type TokenEffects = Vec<(u32, f32)>;

/// Makes the activations captured at the SAE's hook the values the SAE was trained on, where its
/// `model_from_pretrained_kwargs` asked TransformerLens to process the model's weights.
///
/// `center_writing_weights` (gpt2-small-res-jb, from the registry) removes each writing weight's
/// mean over d_model (`model::processing`). Everything written to the residual stream is linear in
/// those weights, so on the processed model every residual-stream value — `hook_embed`,
/// `hook_pos_embed`, `hook_resid_pre/mid/post`, `hook_mlp_in`, `hook_attn_out`, `hook_mlp_out` — is
/// the unprocessed one minus its mean over d_model, and every other hook is unchanged (a
/// LayerNorm removes the mean first). What is written back at the hook (a reconstruction, a
/// steering vector) needs no change: the stream is only ever read through a LayerNorm, which
/// cannot see a per-position constant. So the model stays as loaded — on the GPU only, in the page —
/// and the captured values are centred here (tested equal to `Model::processed`'s hooks).
/// TransformerLens centres only LayerNorm models; `center_unembed` shifts each position's logits by
/// a constant (no probability changes) and `fold_ln` changes no hook.
pub fn as_sae_input(model: &impl ModelInfo, sae: &Sae, hook: HookPoint, acts: &mut [f32]) -> Result<(), LmError> {
    let processing = WeightProcessing::from_kwargs(&sae.cfg.model_from_pretrained_kwargs()).map_err(LmError::Mismatch)?;
    let cfg = model.cfg();
    let residual = match hook {
        HookPoint::Embed | HookPoint::PosEmbed => true,
        HookPoint::Block { site, .. } => matches!(
            site,
            BlockSite::ResidPre | BlockSite::AttnOut | BlockSite::ResidMid | BlockSite::MlpIn | BlockSite::MlpOut | BlockSite::ResidPost
        ),
        HookPoint::FinalNormalized => false,
    };
    if processing.center_writing_weights && cfg.norm.kind == NormKind::LayerNorm && residual {
        let d = cfg.hook_width(hook);
        for row in acts.chunks_exact_mut(d) {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            row.iter_mut().for_each(|v| *v = (*v as f64 - mean) as f32);
        }
    }
    Ok(())
}

/// Where an SAE meets the model: the hook it reads and the hook its output stands for. For an SAE
/// they are one point (it reconstructs what it read); a transcoder (SAELens's `hook_name_out`)
/// predicts the values of a point downstream from those of its input — an MLP's output from the
/// MLP's input — so its output is compared with, spliced into and steered at the second point.
///
/// An SAE on one attention head (`hook_head_index`) reads and writes only that head's `d_head`
/// columns of `attn.hook_z`, as SAELens slices `activations[:, :, head_index]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attachment {
    pub reads: HookPoint,
    pub writes: HookPoint,
    /// The head's columns of the hook, `(first, count)`, for a single-head SAE.
    pub head: Option<(usize, usize)>,
}

impl Attachment {
    pub fn is_transcoder(&self) -> bool {
        self.reads != self.writes
    }

    /// The hooks a clean pass captures for it: where it reads, then (a transcoder) where it writes.
    pub fn captures(&self) -> Vec<HookPoint> {
        if self.is_transcoder() {
            vec![self.reads, self.writes]
        } else {
            vec![self.reads]
        }
    }

    /// The SAE's part of `values` (`[n, width]` rows of the hook): all of it, or the head's columns.
    pub fn part_of(&self, values: Vec<f32>, width: usize) -> Vec<f32> {
        match self.head {
            None => values,
            Some((first, count)) => values.chunks_exact(width).flat_map(|row| row[first..first + count].iter().copied()).collect(),
        }
    }

    /// Writes the SAE's part `part` (`[n, d_in]`) into `values` (`[n, width]`), in the head's columns
    /// for a single-head SAE.
    pub fn put_part(&self, values: &mut [f32], width: usize, part: &[f32]) {
        let (first, count) = self.head.unwrap_or((0, width));
        for (row, new) in values.chunks_exact_mut(width).zip(part.chunks_exact(count)) {
            row[first..first + count].copy_from_slice(new);
        }
    }
}

/// The values `captured` at the SAE's read hook as the SAE reads them: processed as its model
/// kwargs ask ([`as_sae_input`]) and, for a single-head SAE, that head's columns.
pub fn sae_input(model: &impl ModelInfo, sae: &Sae, at: &Attachment, mut captured: Vec<f32>) -> Result<Vec<f32>, LmError> {
    as_sae_input(model, sae, at.reads, &mut captured)?;
    Ok(at.part_of(captured, model.cfg().hook_width(at.reads)))
}

/// `hook_head_index` (SAELens's metadata; `hook_point_head_index` in older cfgs), when set.
fn head_index(sae: &Sae) -> Result<Option<usize>, LmError> {
    let raw = &sae.cfg.raw;
    let value = ["hook_head_index", "hook_point_head_index"]
        .iter()
        .find_map(|k| raw.get(*k).or_else(|| raw.get("metadata").and_then(|m| m.get(*k))).filter(|v| !v.is_null()));
    match value {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(|h| Some(h as usize))
            .ok_or_else(|| LmError::Mismatch(format!("the SAE's hook_head_index must be a head number, found {v}"))),
    }
}

/// The SAE's hook point on this model (where it reads), or why it does not attach.
pub fn attach_point(model: &impl ModelInfo, sae: &Sae) -> Result<HookPoint, LmError> {
    Ok(attachment(model, sae)?.reads)
}

/// Where the SAE reads and writes on this model, or why it does not attach.
pub fn attachment(model: &impl ModelInfo, sae: &Sae) -> Result<Attachment, LmError> {
    let cfg = model.cfg();
    let reads = sae_hook(model, sae, false)?;
    if let Some(head) = head_index(sae)? {
        if !matches!(reads, HookPoint::Block { site: BlockSite::AttnZ, .. }) || sae.cfg.transcoder.is_some() {
            return Err(LmError::Mismatch(format!(
                "the SAE names head {head} (hook_head_index), which saelab reads at attn.hook_z only, not {reads}"
            )));
        }
        if head >= cfg.n_heads {
            return Err(LmError::Mismatch(format!("the SAE reads head {head}, but this model has {} heads", cfg.n_heads)));
        }
        if sae.d_in() != cfg.d_head {
            return Err(LmError::Mismatch(format!(
                "the SAE's d_in is {} but one head of {reads} is {} wide (d_head)",
                sae.d_in(),
                cfg.d_head
            )));
        }
        return Ok(Attachment { reads, writes: reads, head: Some((head * cfg.d_head, cfg.d_head)) });
    }
    let width = cfg.hook_width(reads);
    if sae.d_in() != width {
        return Err(LmError::Mismatch(format!("the SAE's d_in is {} but {reads} of this model is {width} wide", sae.d_in())));
    }
    if sae.cfg.transcoder.is_none() {
        return Ok(Attachment { reads, writes: reads, head: None });
    }
    let writes = sae_hook(model, sae, true)?;
    // d_out = d_in (SaeConfig checks it), so one width check says both.
    let width = cfg.hook_width(writes);
    if sae.d_in() != width {
        return Err(LmError::Mismatch(format!("the transcoder's d_out is {} but {writes} of this model is {width} wide", sae.d_in())));
    }
    // HookPoint's order is the forward pass's: a transcoder writes downstream of what it reads.
    if writes <= reads {
        return Err(LmError::Mismatch(format!(
            "the transcoder reads {reads} but writes {writes}, which is not after it in the forward pass"
        )));
    }
    Ok(Attachment { reads, writes, head: None })
}

/// The point the SAE reads (`out` false) or a transcoder writes (`out` true) on this model.
///
/// Where the config records the Hugging Face module its activations were read from in a form
/// saelab knows (`hf_hook_name`/`hf_hook_name_out`: Gemma Scope 2), that module is the point:
/// it is what the SAE was trained on, and for Gemma Scope 2's transcoders it is not what the
/// TransformerLens name would say here — their `hook_name` is `blocks.L.hook_mlp_in`,
/// TransformerBridge's alias for the MLP's input (`mlp.hook_in`, after
/// `pre_feedforward_layernorm`), while TransformerLens's own `hook_mlp_in` is the residual stream
/// before that norm. Other forms (Qwen Scope's `model.layers.L`) leave the point to `hook_name`.
fn sae_hook(model: &impl ModelInfo, sae: &Sae, out: bool) -> Result<HookPoint, LmError> {
    let cfg = model.cfg();
    let suffix = if out { "_out" } else { "" };
    if let Some(hf) = sae.cfg.hf_hook_name(out).filter(|name| HookPoint::parse(name).is_some()) {
        return cfg.hook_point(&hf).map_err(|e| LmError::Mismatch(format!("the SAE's hf_hook_name{suffix}: {e}")));
    }
    let name = if out { sae.cfg.transcoder.as_ref().and_then(|t| t.hook_name_out.clone()) } else { sae.cfg.hook_name.clone() };
    let name = name.ok_or_else(|| {
        LmError::Mismatch(if out {
            "the transcoder's cfg.json names no hook_name_out (where its output belongs), so it cannot attach to a model".into()
        } else {
            "the SAE's cfg.json names no hook_name, so it cannot attach to a model".into()
        })
    })?;
    cfg.hook_point(&name).map_err(|e| LmError::Mismatch(format!("the SAE's hook_name{suffix}: {e}")))
}

/// Per position t < n−1, the loss of predicting `tokens[t+1]`: logsumexp(logits_t) − logit.
pub fn next_token_losses(logits: &[f32], tokens: &[u32], vocab: usize) -> Vec<f32> {
    logits.chunks_exact(vocab).zip(tokens.iter().skip(1)).map(|(row, &next)| log_sum_exp(row) - row[next as usize]).collect()
}

fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    max + row.iter().map(|&v| ((v - max) as f64).exp()).sum::<f64>().ln() as f32
}

/// Per position, KL(p ‖ q) between the softmaxes of two logit rows.
pub fn kl_per_row(p_logits: &[f32], q_logits: &[f32], vocab: usize) -> Vec<f32> {
    p_logits
        .chunks_exact(vocab)
        .zip(q_logits.chunks_exact(vocab))
        .map(|(p, q)| {
            let (lp, lq) = (log_sum_exp(p), log_sum_exp(q));
            p.iter().zip(q).map(|(&a, &b)| ((a - lp) as f64).exp() * ((a - lp) as f64 - (b - lq) as f64)).sum::<f64>() as f32
        })
        .collect()
}

/// The mean of the values whose `keep` is true.
fn masked_mean(v: &[f32], keep: &[bool]) -> f32 {
    let kept: Vec<f64> = v.iter().zip(keep).filter(|(_, &k)| k).map(|(&x, _)| x as f64).collect();
    (kept.iter().sum::<f64>() / kept.len().max(1) as f64) as f32
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SpliceReport {
    /// Where the reconstruction replaced the model's values (a transcoder's output hook).
    pub hook: HookPoint,
    pub n_tokens: usize,
    pub ce_clean: f32,
    pub ce_spliced: f32,
    pub ce_zero_ablation: f32,
    pub ce_recovered: f32,
    pub kl: f32,
    pub l0: f32,
    pub ce_random_error: f32,
    /// Per predicted position: spliced − clean loss.
    pub per_token_delta: Vec<f32>,
    pub device: String,
}

/// One clean pass of the model over a text with the SAE at its hook: what the per-token feature
/// lists, a feature's activation on every token and the splice evaluation all start from.
#[derive(Debug, Clone)]
pub struct TextRun {
    /// Where the SAE reads and writes, and a single-head SAE's columns.
    pub at: Attachment,
    /// Per position: not a special token, so counted in L0, CE and KL.
    pub evaluated: Vec<bool>,
    /// `[n_tokens, vocab]`.
    pub logits: Vec<f32>,
    /// What the SAE read, `[n_tokens, d_in]`: the hook's activations (one head's, for a
    /// single-head SAE).
    pub hook_acts: Vec<f32>,
    /// A single-head SAE's whole hook, `[n_tokens, width]`: what the splice writes its head into.
    pub hook_full: Option<Vec<f32>>,
    /// The SAE's activations, dense `[n_tokens, d_sae]`.
    pub sae_acts: Vec<f32>,
    /// `sae(x)`, `[n_tokens, d_in]`.
    pub recon: Vec<f32>,
    /// A transcoder's target: the activations at `writes`, which `recon` predicts (`None` for an
    /// SAE, whose target is `hook_acts`).
    pub out_acts: Option<Vec<f32>>,
    /// Mean active features over the evaluated positions.
    pub l0: f32,
}

impl TextRun {
    /// What `recon` is compared with: the activations at `writes`.
    pub fn target(&self) -> &[f32] {
        self.out_acts.as_deref().unwrap_or(&self.hook_acts)
    }
}

/// The tokens the SAE reads `text` (its ids) as: the model's BOS first when `prepend_bos` (its BOS,
/// else its EOS, as TransformerLens picks it), then the text.
pub fn tokens_for(model: &impl ModelInfo, text: &[u32], prepend_bos: bool) -> Result<Vec<u32>, LmError> {
    if !prepend_bos {
        return Ok(text.to_vec());
    }
    let bos = model.cfg().special_tokens.bos_or_eos().ok_or_else(|| {
        LmError::Mismatch("the SAE was trained with a BOS token first, but the model's config.json names no bos_token_id or eos_token_id (run without BOS to go on)".into())
    })?;
    Ok(std::iter::once(bos).chain(text.iter().copied()).collect())
}

/// Per position, whether it counts in the evaluations (it holds no special token).
pub fn evaluated_positions(model: &impl ModelInfo, tokens: &[u32]) -> Vec<bool> {
    tokens.iter().map(|&t| !model.cfg().special_tokens.contains(t)).collect()
}

/// Runs the model over `tokens` once, capturing the SAE's hook (and a transcoder's output hook),
/// and the SAE on what it captured.
pub async fn run_text(model: &LoadedModel, sae: &LoadedSae, tokens: &[u32]) -> Result<TextRun, LmError> {
    let at = attachment(model, &sae.sae)?;
    let (hook, writes) = (at.reads, at.writes);
    let (logits, captured) = model.run(tokens, &at.captures(), &[]).await?;
    let mut captured = captured.into_iter();
    let read = captured.next().ok_or_else(|| LmError::Mismatch(format!("{hook} was not captured")))?;
    let hook_full = at.head.map(|_| read.clone());
    let hook_acts = sae_input(model, &sae.sae, &at, read)?;
    let out_acts = match captured.next() {
        Some(mut acts) => {
            as_sae_input(model, &sae.sae, writes, &mut acts)?;
            Some(acts)
        }
        None if writes != hook => return Err(LmError::Mismatch(format!("{writes} was not captured"))),
        None => None,
    };
    let request = RunRequest { dense_acts: true, recon: true };
    let analysis = match &out_acts {
        None => engine::analyze(sae, &hook_acts, request).await?,
        Some(target) => engine::analyze_against(sae, &hook_acts, target, request).await?,
    };
    let sae_acts = analysis.acts.expect("requested");
    let evaluated = evaluated_positions(model, tokens);
    let counted: Vec<usize> = sae_acts
        .chunks_exact(sae.sae.d_sae())
        .zip(&evaluated)
        .filter(|(_, &e)| e)
        .map(|(row, _)| row.iter().filter(|&&a| a != 0.0).count())
        .collect();
    let l0 = counted.iter().sum::<usize>() as f32 / counted.len().max(1) as f32;
    Ok(TextRun { at, evaluated, logits, hook_acts, hook_full, sae_acts, recon: analysis.recon.expect("requested"), out_acts, l0 })
}

/// Runs the splice evaluation of `sae` on `model` for `tokens` (at least 2).
pub async fn splice(model: &LoadedModel, sae: &LoadedSae, tokens: &[u32], seed: u64) -> Result<SpliceReport, LmError> {
    let run = run_text(model, sae, tokens).await?;
    splice_from(model, tokens, &run, seed).await
}

/// The splice evaluation from a clean pass already made: three more forward passes (the
/// reconstruction, zeros and the random-error baseline at the hook the SAE writes — a
/// transcoder's output hook, where its prediction replaces the MLP's output).
pub async fn splice_from(loaded: &LoadedModel, tokens: &[u32], run: &TextRun, seed: u64) -> Result<SpliceReport, LmError> {
    let model = loaded;
    if tokens.len() < 2 {
        return Err(LmError::Mismatch("splicing needs at least 2 tokens (a next token to predict)".into()));
    }
    let (vocab, width) = (model.cfg.vocab_size, model.cfg.hook_width(run.at.writes));
    let target = run.target();
    let d = run.at.head.map_or(width, |(_, count)| count);
    if run.logits.len() != tokens.len() * vocab || target.len() != tokens.len() * d || run.recon.len() != target.len() {
        return Err(LmError::Mismatch("the clean run was made for other tokens".into()));
    }
    if run.evaluated.len() != tokens.len() {
        return Err(LmError::Mismatch("the clean run was made for other tokens".into()));
    }
    // The losses of predicting from evaluated positions (SAELens drops the last position's mask).
    let predicted: Vec<bool> = run.evaluated[..tokens.len() - 1].to_vec();
    if !predicted.contains(&true) {
        return Err(LmError::Mismatch(
            "no position to evaluate: the text needs a token to predict after one that is not special (BOS/EOS)".into(),
        ));
    }
    let hook = run.at.writes;
    // A single-head SAE changes its head's columns only (SAELens's single_head_replacement_hook and
    // single_head_zero_ablate_hook); the others keep the model's values.
    let whole = |part: Vec<f32>| match &run.hook_full {
        None => part,
        Some(full) => {
            let mut values = full.clone();
            run.at.put_part(&mut values, width, &part);
            values
        }
    };
    let zeros = whole(vec![0.0; target.len()]);
    // The reconstruction where evaluated, the model's own activation at special tokens.
    let mut spliced_part = target.to_vec();
    let mut noisy_part = target.to_vec();
    let mut rng = Rng::new(seed);
    for (t, &evaluated) in run.evaluated.iter().enumerate() {
        let (a, r) = (&target[t * d..(t + 1) * d], &run.recon[t * d..(t + 1) * d]);
        let error_norm = a.iter().zip(r).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt();
        let direction = rng.normals(d, 1.0);
        if !evaluated {
            continue;
        }
        spliced_part[t * d..(t + 1) * d].copy_from_slice(r);
        let norm = direction.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        for ((v, &e), &rv) in noisy_part[t * d..(t + 1) * d].iter_mut().zip(&direction).zip(r) {
            *v = rv + e * error_norm / norm;
        }
    }
    let (spliced_values, noisy) = (whole(spliced_part), whole(noisy_part));
    let mut replaced_logits = Vec::with_capacity(3);
    for values in [&spliced_values, &zeros, &noisy] {
        let intervention = [Intervention::Replace { hook, values }];
        replaced_logits.push(loaded.run(tokens, &[], &intervention).await?.0);
    }
    let [spliced_logits, zero_logits, noisy_logits] = <[Vec<f32>; 3]>::try_from(replaced_logits).expect("three runs");
    let clean = next_token_losses(&run.logits, tokens, vocab);
    let spliced = next_token_losses(&spliced_logits, tokens, vocab);
    let (ce_clean, ce_spliced) = (masked_mean(&clean, &predicted), masked_mean(&spliced, &predicted));
    let ce_zero_ablation = masked_mean(&next_token_losses(&zero_logits, tokens, vocab), &predicted);
    let kl_per_position = kl_per_row(&run.logits, &spliced_logits, vocab);
    Ok(SpliceReport {
        n_tokens: tokens.len(),
        ce_clean,
        ce_spliced,
        ce_zero_ablation,
        ce_recovered: (ce_zero_ablation - ce_spliced) / (ce_zero_ablation - ce_clean),
        kl: masked_mean(&kl_per_position, &run.evaluated),
        l0: run.l0,
        ce_random_error: masked_mean(&next_token_losses(&noisy_logits, tokens, vocab), &predicted),
        per_token_delta: spliced.iter().zip(&clean).map(|(s, c)| s - c).collect(),
        device: loaded.backend().name(),
        hook: run.at.writes,
    })
}

/// Per row of dense activations, the active features, strongest first (at most `top`).
pub fn top_features(acts: &[f32], d_sae: usize, top: usize) -> Vec<Vec<(usize, f32)>> {
    acts.chunks_exact(d_sae)
        .map(|row| {
            let mut active: Vec<(usize, f32)> = row.iter().copied().enumerate().filter(|&(_, a)| a > 0.0).collect();
            active.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            active.truncate(top);
            active
        })
        .collect()
}

/// Per token, the SAE's active features, strongest first (at most `top`).
pub async fn token_features(model: &LoadedModel, sae: &LoadedSae, tokens: &[u32], top: usize) -> Result<Vec<Vec<(usize, f32)>>, LmError> {
    Ok(top_features(&run_text(model, sae, tokens).await?.sae_acts, sae.sae.d_sae(), top))
}

/// How to steer generation with one SAE feature (Templeton et al. 2024, "Scaling
/// Monosemanticity": feature steering).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Steer {
    /// Add `alpha · W_dec[feature]` to the hook's activation at every position.
    Add { feature: usize, alpha: f32 },
    /// Set the feature's activation to `value` at every position: add
    /// `(value − f(x)) · W_dec[feature]`, with `f(x)` the SAE's activation there.
    Clamp { feature: usize, value: f32 },
}

/// Greedy (temperature 0) or sampled continuation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    pub new_tokens: usize,
    pub temperature: f32,
    pub seed: u64,
}

/// The next token from the last position's logits: argmax at temperature 0, else a draw from
/// softmax(logits / temperature).
pub fn pick_next(logits: &[f32], temperature: f32, rng: &mut Rng) -> u32 {
    let argmax = (0..logits.len()).fold(0, |best, i| if logits[i] > logits[best] { i } else { best });
    if temperature <= 0.0 {
        return argmax as u32;
    }
    let max = logits[argmax];
    let weights: Vec<f64> = logits.iter().map(|&l| (((l - max) / temperature) as f64).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut target = rng.uniform_f64() * total;
    for (i, w) in weights.iter().enumerate() {
        target -= w;
        if target <= 0.0 {
            return i as u32;
        }
    }
    argmax as u32
}

/// Continues `prompt` by `sampling.new_tokens` tokens (stopping at the context length), steered
/// by `steer` through `sae` when given. Each step runs the whole sequence (no key/value cache).
pub async fn generate(
    loaded: &LoadedModel,
    loaded_sae: Option<&LoadedSae>,
    steer: Option<Steer>,
    prompt: &[u32],
    sampling: Sampling,
) -> Result<Vec<u32>, LmError> {
    let model = loaded;
    let vocab = model.cfg.vocab_size;
    let steering = match (steer, loaded_sae) {
        (None, _) => None,
        (Some(s), Some(loaded_sae)) => {
            let sae = &loaded_sae.sae;
            let at = attachment(model, sae)?;
            let feature = match s {
                Steer::Add { feature, .. } | Steer::Clamp { feature, .. } => feature,
            };
            if feature >= sae.d_sae() {
                return Err(LmError::Mismatch(format!("feature {feature} does not exist (the SAE has {} features)", sae.d_sae())));
            }
            let d = sae.d_in();
            // A feature's decoder row lives where the SAE writes (a transcoder's output hook; a
            // single-head SAE's head, zeros elsewhere).
            let width = model.cfg.hook_width(at.writes);
            let mut direction = vec![0.0; width];
            at.put_part(&mut direction, width, &sae.w_dec()[feature * d..(feature + 1) * d]);
            Some((at, s, feature, direction))
        }
        (Some(_), None) => return Err(LmError::Mismatch("steering needs an SAE".into())),
    };
    let mut rng = Rng::new(sampling.seed);
    let mut tokens = prompt.to_vec();
    for _ in 0..sampling.new_tokens {
        if tokens.len() >= model.cfg.max_positions {
            break;
        }
        let logits = match &steering {
            None => loaded.run(&tokens, &[], &[]).await?.0,
            Some((at, Steer::Add { alpha, .. }, _, direction)) => {
                let vector: Vec<f32> = direction.iter().map(|w| alpha * w).collect();
                loaded.run(&tokens, &[], &[Intervention::AddToEveryToken { hook: at.writes, vector: &vector }]).await?.0
            }
            Some((at, Steer::Clamp { value, .. }, feature, direction)) => {
                let loaded_sae = loaded_sae.ok_or_else(|| LmError::Mismatch("clamping a feature needs its SAE".into()))?;
                let sae = &loaded_sae.sae;
                // f(x) from the clean values where the SAE reads; the change goes where it writes
                // (downstream, so the clean pass's values there are the intervened pass's too).
                let (_, mut captured) = loaded.run(&tokens, &at.captures(), &[]).await?;
                let input = sae_input(model, sae, at, captured[0].clone())?;
                let acts = engine::analyze(loaded_sae, &input, RunRequest { dense_acts: true, ..Default::default() })
                    .await?
                    .acts
                    .ok_or_else(|| LmError::Mismatch("the SAE returned no activations".into()))?;
                let d = direction.len();
                let mut changed = captured.pop().ok_or_else(|| LmError::Mismatch(format!("{} was not captured", at.writes)))?;
                for (t, row) in changed.chunks_exact_mut(d).enumerate() {
                    let delta = value - acts[t * sae.d_sae() + feature];
                    row.iter_mut().zip(direction).for_each(|(x, w)| *x += delta * w);
                }
                loaded.run(&tokens, &[], &[Intervention::Replace { hook: at.writes, values: &changed }]).await?.0
            }
        };
        let last = &logits[(tokens.len() - 1) * vocab..];
        tokens.push(pick_next(last, sampling.temperature, &mut rng));
    }
    Ok(tokens)
}

/// A feature's direct effect on the next-token logits ("logit lens" of its decoder direction, as
/// SAE-Vis and Neuronpedia show it): `W_dec[f] · W_U` with the final norm's scale folded into
/// `W_U` (TransformerLens `fold_ln`; Gemma's is `1 + w`; a LayerNorm's bias adds the same to every
/// feature and is left out), centred over the vocabulary (`center_unembed`, which shifts all tokens
/// equally). An SAE on `attn.hook_z` writes through its layer's output projection `W_O` first
/// (Gemma's post-attention norm, like every norm here, is left out). Returns `(top, bottom)`: the
/// `n` most promoted and most suppressed tokens with their effects.
pub fn logit_lens(model: &Model, sae: &Sae, feature: usize, n: usize) -> Result<(TokenEffects, TokenEffects), LmError> {
    let (hook, decoded) = lens_input(model, sae, feature)?;
    let d = model.cfg.d_model;
    let written: Vec<f32> = match hook {
        HookPoint::Block { layer, site: BlockSite::AttnZ } => {
            let o = &model.weights.layers[layer].o;
            o.weight.chunks_exact(o.d_in).map(|row| row.iter().zip(&decoded).map(|(a, b)| a * b).sum()).collect()
        }
        _ => decoded,
    };
    let unit = matches!(model.cfg.norm.kind, NormKind::RmsNorm { unit_offset: true });
    let gain = |g: f32| if unit { 1.0 + g } else { g };
    let direction: Vec<f32> = written.iter().zip(&model.weights.final_norm.weight).map(|(w, &g)| w * gain(g)).collect();
    let effects: Vec<f32> = model.unembed().chunks_exact(d).map(|u| u.iter().zip(&direction).map(|(a, b)| a * b).sum()).collect();
    Ok(rank_effects(effects, n))
}

/// Where the SAE writes on `model` (a transcoder's output hook) and feature `feature`'s decoder
/// direction there (a single-head SAE's in its head's columns, zeros elsewhere).
fn lens_input(model: &impl ModelInfo, sae: &Sae, feature: usize) -> Result<(HookPoint, Vec<f32>), LmError> {
    let at = attachment(model, sae)?;
    if feature >= sae.d_sae() {
        return Err(LmError::Mismatch(format!("feature {feature} does not exist (the SAE has {} features)", sae.d_sae())));
    }
    let (d, width) = (sae.d_in(), model.cfg().hook_width(at.writes));
    let mut direction = vec![0.0; width];
    at.put_part(&mut direction, width, &sae.w_dec()[feature * d..(feature + 1) * d]);
    Ok((at.writes, direction))
}

/// Effects centred over the vocabulary, as the `n` most promoted and most suppressed tokens.
fn rank_effects(mut effects: Vec<f32>, n: usize) -> (TokenEffects, TokenEffects) {
    let mean = effects.iter().map(|&e| e as f64).sum::<f64>() as f32 / effects.len() as f32;
    effects.iter_mut().for_each(|e| *e -= mean);
    let mut order: Vec<u32> = (0..effects.len() as u32).collect();
    order.sort_by(|&a, &b| effects[b as usize].total_cmp(&effects[a as usize]).then(a.cmp(&b)));
    let top = order.iter().take(n).map(|&t| (t, effects[t as usize])).collect();
    let bottom = order.iter().rev().take(n).map(|&t| (t, effects[t as usize])).collect();
    (top, bottom)
}
