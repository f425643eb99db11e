//! An SAE's weights, one type for inference and training: the tensors every architecture has, and
//! the encoder's own tensors in the variant that owns them. Training uses the same type for the
//! gradients and Adam's moments (same shapes); saving, loading and the GPU read it by SAELens's
//! tensor names.

use super::Architecture;

/// The encoder's architecture-specific tensors, each `[d_sae]`, named as SAELens saves them.
#[derive(Debug, Clone, PartialEq)]
pub enum EncoderTensors {
    /// `relu(x W_enc + b_enc)` and its top-k variants: standard, topk, and batchtopk while it trains
    /// (its running threshold is one number, kept by the trainer).
    Bias { b_enc: Vec<f32> },
    /// `relu(pre) * (pre > threshold)`: jumprelu, and batchtopk as SAELens saves it.
    Threshold { b_enc: Vec<f32>, threshold: Vec<f32> },
    /// Gated (Rajamanoharan et al. 2024; SAELens `GatedSAE`): the gate `x W_enc + b_gate > 0`, the
    /// magnitude `relu(x W_enc exp(r_mag) + b_mag)`.
    Gated { b_gate: Vec<f32>, r_mag: Vec<f32>, b_mag: Vec<f32> },
}

/// Which [`EncoderTensors`] variant an architecture's weights have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderKind {
    Bias,
    Threshold,
    Gated,
}

impl EncoderKind {
    /// The tensors an inference SAE of `architecture` runs on (SAELens's classes).
    pub fn of(architecture: Architecture) -> EncoderKind {
        match architecture {
            Architecture::Standard | Architecture::TopK { .. } => EncoderKind::Bias,
            Architecture::JumpRelu | Architecture::BatchTopK { .. } => EncoderKind::Threshold,
            Architecture::Gated => EncoderKind::Gated,
        }
    }

    /// The per-feature tensor names, in [`SaeWeights::tensors`] order.
    pub fn tensor_names(self) -> &'static [&'static str] {
        match self {
            EncoderKind::Bias => &["b_enc"],
            EncoderKind::Threshold => &["b_enc", "threshold"],
            EncoderKind::Gated => &["b_gate", "r_mag", "b_mag"],
        }
    }
}

impl EncoderTensors {
    pub fn kind(&self) -> EncoderKind {
        match self {
            EncoderTensors::Bias { .. } => EncoderKind::Bias,
            EncoderTensors::Threshold { .. } => EncoderKind::Threshold,
            EncoderTensors::Gated { .. } => EncoderKind::Gated,
        }
    }

    /// Zeros of `kind`, `d_sae` each.
    pub fn zeros(kind: EncoderKind, d_sae: usize) -> EncoderTensors {
        let z = || vec![0.0; d_sae];
        match kind {
            EncoderKind::Bias => EncoderTensors::Bias { b_enc: z() },
            EncoderKind::Threshold => EncoderTensors::Threshold { b_enc: z(), threshold: z() },
            EncoderKind::Gated => EncoderTensors::Gated { b_gate: z(), r_mag: z(), b_mag: z() },
        }
    }

    /// The bias added to `x W_enc` before the non-linearity: `b_enc`, or the gate's `b_gate`.
    pub fn pre_bias(&self) -> &[f32] {
        match self {
            EncoderTensors::Bias { b_enc } | EncoderTensors::Threshold { b_enc, .. } => b_enc,
            EncoderTensors::Gated { b_gate, .. } => b_gate,
        }
    }

    pub fn pre_bias_mut(&mut self) -> &mut Vec<f32> {
        match self {
            EncoderTensors::Bias { b_enc } | EncoderTensors::Threshold { b_enc, .. } => b_enc,
            EncoderTensors::Gated { b_gate, .. } => b_gate,
        }
    }

    /// The tensors in [`EncoderKind::tensor_names`] order.
    fn tensors(&self) -> Vec<&Vec<f32>> {
        match self {
            EncoderTensors::Bias { b_enc } => vec![b_enc],
            EncoderTensors::Threshold { b_enc, threshold } => vec![b_enc, threshold],
            EncoderTensors::Gated { b_gate, r_mag, b_mag } => vec![b_gate, r_mag, b_mag],
        }
    }

    fn tensors_mut(&mut self) -> Vec<&mut Vec<f32>> {
        match self {
            EncoderTensors::Bias { b_enc } => vec![b_enc],
            EncoderTensors::Threshold { b_enc, threshold } => vec![b_enc, threshold],
            EncoderTensors::Gated { b_gate, r_mag, b_mag } => vec![b_gate, r_mag, b_mag],
        }
    }
}

/// An SAE's weights in f32, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct SaeWeights {
    pub d_in: usize,
    pub d_sae: usize,
    /// `[d_in, d_sae]`
    pub w_enc: Vec<f32>,
    /// `[d_sae, d_in]`
    pub w_dec: Vec<f32>,
    /// `[d_in]`
    pub b_dec: Vec<f32>,
    pub encoder: EncoderTensors,
    /// A skip transcoder's `W_skip`, `[d_out, d_in]` (`d_out = d_in`), added as `x W_skipᵀ` to its
    /// output (SAELens `SkipTranscoder.forward`). Never trained here.
    pub w_skip: Option<Vec<f32>>,
}

impl SaeWeights {
    /// All zeros, with the tensors of `kind`.
    pub fn zeros(kind: EncoderKind, d_in: usize, d_sae: usize) -> SaeWeights {
        SaeWeights {
            d_in,
            d_sae,
            w_enc: vec![0.0; d_in * d_sae],
            w_dec: vec![0.0; d_sae * d_in],
            b_dec: vec![0.0; d_in],
            encoder: EncoderTensors::zeros(kind, d_sae),
            w_skip: None,
        }
    }

    /// Zeros with the same tensors and shapes as `self` (gradients, Adam's moments).
    pub fn zeros_like(&self) -> SaeWeights {
        SaeWeights::zeros(self.encoder.kind(), self.d_in, self.d_sae)
    }

    /// The tensor names in [`SaeWeights::tensors`] order.
    pub fn tensor_names(kind: EncoderKind) -> Vec<&'static str> {
        ["W_enc", "W_dec", "b_dec"].into_iter().chain(kind.tensor_names().iter().copied()).collect()
    }

    /// The shape of tensor `name` (`[d_sae]` for the encoder's own).
    pub fn shape_of(&self, name: &str) -> Vec<usize> {
        match name {
            "W_enc" => vec![self.d_in, self.d_sae],
            "W_dec" => vec![self.d_sae, self.d_in],
            "b_dec" => vec![self.d_in],
            "W_skip" => vec![self.d_in, self.d_in],
            _ => vec![self.d_sae],
        }
    }

    /// Every tensor with its SAELens name: `W_enc`, `W_dec`, `b_dec`, then the encoder's own, then
    /// a skip transcoder's `W_skip`.
    pub fn tensors(&self) -> Vec<(&'static str, &Vec<f32>)> {
        let names = Self::tensor_names(self.encoder.kind());
        let values = [&self.w_enc, &self.w_dec, &self.b_dec].into_iter().chain(self.encoder.tensors());
        names.into_iter().zip(values).chain(self.w_skip.as_ref().map(|w| ("W_skip", w))).collect()
    }

    pub fn tensors_mut(&mut self) -> Vec<(&'static str, &mut Vec<f32>)> {
        let names = Self::tensor_names(self.encoder.kind());
        let values = [&mut self.w_enc, &mut self.w_dec, &mut self.b_dec].into_iter().chain(self.encoder.tensors_mut());
        names.into_iter().zip(values).chain(self.w_skip.as_mut().map(|w| ("W_skip", w))).collect()
    }

    /// Tensor `name`, if the weights have it.
    pub fn tensor(&self, name: &str) -> Option<&Vec<f32>> {
        self.tensors().into_iter().find(|(n, _)| *n == name).map(|(_, t)| t)
    }

    pub fn tensor_mut(&mut self, name: &str) -> Option<&mut Vec<f32>> {
        self.tensors_mut().into_iter().find(|(n, _)| *n == name).map(|(_, t)| t)
    }

    /// Number of parameters.
    pub fn parameter_count(&self) -> usize {
        self.tensors().iter().map(|(_, t)| t.len()).sum()
    }

    /// ‖W_dec[j]‖ for every feature.
    pub fn decoder_norms(&self) -> Vec<f32> {
        self.w_dec.chunks_exact(self.d_in).map(|row| row.iter().map(|v| v * v).sum::<f32>().sqrt()).collect()
    }

    /// Whether every tensor has the length its shape says.
    pub fn shapes_agree(&self) -> bool {
        self.tensors().iter().all(|(name, t)| t.len() == self.shape_of(name).iter().product::<usize>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_are_named_as_saelens_saves_them() {
        let w = SaeWeights::zeros(EncoderKind::Gated, 3, 5);
        let names: Vec<_> = w.tensors().iter().map(|(n, t)| (*n, t.len())).collect();
        assert_eq!(names, [("W_enc", 15), ("W_dec", 15), ("b_dec", 3), ("b_gate", 5), ("r_mag", 5), ("b_mag", 5)]);
        assert_eq!(w.parameter_count(), 48);
        assert!(w.shapes_agree());
        let mut short = SaeWeights::zeros(EncoderKind::Threshold, 3, 5);
        if let EncoderTensors::Threshold { threshold, .. } = &mut short.encoder {
            threshold.pop();
        }
        assert!(!short.shapes_agree());
    }
}
