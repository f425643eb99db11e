//! Sparse autoencoders with SAELens's semantics: the config, the weights, a plain-Rust CPU
//! reference of encode/decode for every architecture (`cpu`), and the batch metrics (`metrics`).

pub mod config;
pub mod convert;
pub mod cpu;
pub mod files;
#[cfg(not(target_arch = "wasm32"))]
pub mod local;
pub mod metrics;
pub mod random;
pub mod registry;
pub mod weights;

pub use config::{Architecture, Normalization, SaeConfig, Transcoder};
pub use weights::{EncoderKind, EncoderTensors, SaeWeights};

use crate::formats::safetensors::FloatDtype;

/// An SAE ready to run: its config and its weights widened to f32. Built only by [`Sae::new`],
/// which checks that the weights are those the config's architecture runs on.
#[derive(Debug, Clone)]
pub struct Sae {
    pub cfg: SaeConfig,
    weights: SaeWeights,
    /// The dtype the weights file stored them in; saving writes them back in it.
    pub stored_dtype: FloatDtype,
    /// `log10` feature firing density from `sparsity.safetensors`, if the folder had one.
    pub log_sparsity: Option<Vec<f32>>,
}

/// Per-feature parameters of the encoder's epilogue, laid out the same way for every
/// architecture so that one GPU kernel serves them all: `pre = x·W_enc[:, j] * col_scale[j] + bias[j]`,
/// then the activation uses `aux[j]`.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderColumns {
    /// b_enc (b_gate for gated, whose magnitude bias is `aux`).
    pub bias: Vec<f32>,
    /// Standard/TopK: 1, or ‖W_dec[j]‖ with `rescale_acts_by_decoder_norm`; JumpReLU: threshold;
    /// Gated: exp(r_mag).
    pub scale_or_threshold: Vec<f32>,
    /// Gated: b_mag. Others: unused (0).
    pub aux: Vec<f32>,
}

impl Sae {
    /// An SAE from its config and weights: the sizes must be the config's, the encoder tensors
    /// those of its architecture (SAELens's classes: `b_enc` for standard and topk, `b_enc` and
    /// `threshold` for jumprelu and batchtopk, `b_gate`, `r_mag`, `b_mag` for gated), and the
    /// sparsity, if given, one value per feature.
    pub fn new(cfg: SaeConfig, weights: SaeWeights, stored_dtype: FloatDtype, log_sparsity: Option<Vec<f32>>) -> Result<Sae, String> {
        let (kind, expected) = (weights.encoder.kind(), EncoderKind::of(cfg.architecture));
        if kind != expected {
            return Err(format!(
                "a {} SAE has the tensors {:?}, not {:?}",
                cfg.architecture.name(),
                expected.tensor_names(),
                kind.tensor_names()
            ));
        }
        if (weights.d_in, weights.d_sae) != (cfg.d_in, cfg.d_sae) || !weights.shapes_agree() {
            return Err(format!("the weights are not shaped for d_in={}, d_sae={}", cfg.d_in, cfg.d_sae));
        }
        let skip = cfg.transcoder.as_ref().is_some_and(|t| t.skip);
        if skip != weights.w_skip.is_some() {
            return Err(if skip {
                "a skip transcoder needs its tensor W_skip".into()
            } else {
                "W_skip belongs to skip transcoders only".into()
            });
        }
        if log_sparsity.as_ref().is_some_and(|s| s.len() != cfg.d_sae) {
            return Err(format!("the sparsity does not have d_sae={} values", cfg.d_sae));
        }
        Ok(Sae { cfg, weights, stored_dtype, log_sparsity })
    }

    pub fn weights(&self) -> &SaeWeights {
        &self.weights
    }

    /// The same SAE with its weights edited by `edit`, checked again as by [`Sae::new`].
    pub fn with_weights(self, edit: impl FnOnce(&mut SaeWeights)) -> Result<Sae, String> {
        let Sae { cfg, mut weights, stored_dtype, log_sparsity } = self;
        edit(&mut weights);
        Sae::new(cfg, weights, stored_dtype, log_sparsity)
    }

    pub fn d_in(&self) -> usize {
        self.cfg.d_in
    }
    pub fn d_sae(&self) -> usize {
        self.cfg.d_sae
    }
    /// `[d_in, d_sae]`
    pub fn w_enc(&self) -> &[f32] {
        &self.weights.w_enc
    }
    /// `[d_sae, d_in]`
    pub fn w_dec(&self) -> &[f32] {
        &self.weights.w_dec
    }
    /// `[d_in]`
    pub fn b_dec(&self) -> &[f32] {
        &self.weights.b_dec
    }
    /// A skip transcoder's `W_skip`, `[d_out, d_in]`.
    pub fn w_skip(&self) -> Option<&[f32]> {
        self.weights.w_skip.as_deref()
    }

    /// Number of parameters (all tensors of the weights file).
    pub fn parameter_count(&self) -> usize {
        self.weights.parameter_count()
    }

    /// ‖W_dec[j]‖ for every feature.
    pub fn decoder_norms(&self) -> Vec<f32> {
        self.weights.decoder_norms()
    }

    pub fn encoder_columns(&self) -> EncoderColumns {
        let d_sae = self.d_sae();
        let zeros = vec![0.0; d_sae];
        match &self.weights.encoder {
            EncoderTensors::Gated { b_gate, r_mag, b_mag } => {
                EncoderColumns { bias: b_gate.clone(), scale_or_threshold: r_mag.iter().map(|r| r.exp()).collect(), aux: b_mag.clone() }
            }
            EncoderTensors::Threshold { b_enc, threshold } => {
                EncoderColumns { bias: b_enc.clone(), scale_or_threshold: threshold.clone(), aux: zeros }
            }
            EncoderTensors::Bias { b_enc } if self.cfg.rescale_acts_by_decoder_norm && self.cfg.architecture.topk().is_some() => {
                EncoderColumns { bias: b_enc.clone(), scale_or_threshold: self.decoder_norms(), aux: zeros }
            }
            EncoderTensors::Bias { b_enc } => EncoderColumns { bias: b_enc.clone(), scale_or_threshold: vec![1.0; d_sae], aux: zeros },
        }
    }
}
