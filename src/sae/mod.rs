//! Sparse autoencoders with SAELens's semantics: the config, the weights, a plain-Rust CPU
//! reference of encode/decode for every architecture (`cpu`), and the batch metrics (`metrics`).

pub mod config;
pub mod cpu;
pub mod files;
pub mod metrics;
pub mod random;

pub use config::{Architecture, Normalization, SaeConfig};

use crate::formats::safetensors::TensorFile;

/// Gated SAE parameters (Rajamanoharan et al. 2024, "Improving Dictionary Learning with Gated SAEs";
/// SAELens `GatedSAE`): the magnitude path shares `W_enc`, rescaled per feature by `exp(r_mag)`.
#[derive(Debug, Clone, PartialEq)]
pub struct GatedParams {
    pub b_gate: Vec<f32>,
    pub b_mag: Vec<f32>,
    pub r_mag: Vec<f32>,
}

/// An SAE ready to run: its config and its weights widened to f32, row-major.
#[derive(Debug, Clone)]
pub struct Sae {
    pub cfg: SaeConfig,
    /// `[d_in, d_sae]`
    pub w_enc: Vec<f32>,
    /// `[d_sae, d_in]`
    pub w_dec: Vec<f32>,
    /// `[d_sae]`; empty for gated SAEs, which have `b_gate` and `b_mag` instead.
    pub b_enc: Vec<f32>,
    /// `[d_in]`
    pub b_dec: Vec<f32>,
    /// JumpReLU (and BatchTopK saved as JumpReLU) thresholds, `[d_sae]`.
    pub threshold: Option<Vec<f32>>,
    pub gated: Option<GatedParams>,
    /// `log10` feature firing density from `sparsity.safetensors`, if the folder had one.
    pub log_sparsity: Option<Vec<f32>>,
    /// The weights file as read, so that saving is byte-for-byte stable.
    pub stored: TensorFile,
    pub sparsity_file: Option<TensorFile>,
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
    pub fn d_in(&self) -> usize {
        self.cfg.d_in
    }
    pub fn d_sae(&self) -> usize {
        self.cfg.d_sae
    }

    /// Number of trainable parameters (all tensors of the weights file).
    pub fn parameter_count(&self) -> usize {
        self.stored.tensors.values().map(|t| t.len()).sum()
    }

    /// The dtype the weights were stored in (the first tensor's; SAELens saves all alike).
    pub fn stored_dtype(&self) -> &'static str {
        self.stored.tensors.get("W_enc").map(|t| t.dtype.name()).unwrap_or("float32")
    }

    /// ‖W_dec[j]‖ for every feature.
    pub fn decoder_norms(&self) -> Vec<f32> {
        self.w_dec.chunks_exact(self.d_in()).map(|row| row.iter().map(|v| v * v).sum::<f32>().sqrt()).collect()
    }

    pub fn encoder_columns(&self) -> EncoderColumns {
        let d_sae = self.d_sae();
        let zeros = vec![0.0; d_sae];
        match (&self.cfg.architecture, &self.threshold, &self.gated) {
            (Architecture::Gated, _, Some(g)) => EncoderColumns {
                bias: g.b_gate.clone(),
                scale_or_threshold: g.r_mag.iter().map(|r| r.exp()).collect(),
                aux: g.b_mag.clone(),
            },
            (Architecture::JumpRelu | Architecture::BatchTopK { .. }, Some(t), _) => {
                EncoderColumns { bias: self.b_enc.clone(), scale_or_threshold: t.clone(), aux: zeros }
            }
            (Architecture::TopK { .. }, _, _) if self.cfg.rescale_acts_by_decoder_norm => {
                EncoderColumns { bias: self.b_enc.clone(), scale_or_threshold: self.decoder_norms(), aux: zeros }
            }
            _ => EncoderColumns { bias: self.b_enc.clone(), scale_or_threshold: vec![1.0; d_sae], aux: zeros },
        }
    }
}
