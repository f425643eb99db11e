//! Language models of every described family. `decoder` says what a decoder-only transformer is
//! (one description whatever the family), `families` reads each family's `config.json` and tensors
//! into it and `decoder_weights`, `files` reads a Hugging Face model folder, `hook` names the
//! TransformerLens hook points, `processing` is TransformerLens's weight processing, and `cpu` is
//! the reference forward pass with hooks and interventions (the GPU's is `gpu::model_runner`).

pub mod cpu;
pub mod decoder;
pub mod decoder_weights;
pub mod families;
pub mod files;
pub mod hook;
pub mod processing;

pub use hook::{BlockSite, HookPoint};

use decoder::DecoderConfig;
use decoder_weights::DecoderWeights;

/// A decoder-only language model of any described family: what it is, and its f32 weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub cfg: DecoderConfig,
    pub weights: DecoderWeights,
}

impl Model {
    /// The unembedding `W_U` as rows `[vocab, d_model]` (its own, or the embedding when tied).
    pub fn unembed(&self) -> &[f32] {
        self.weights.unembed.as_deref().unwrap_or(&self.weights.embed)
    }

    /// Checks tokens before a forward pass.
    pub fn check_tokens(&self, tokens: &[u32]) -> Result<(), ModelError> {
        self.cfg.check_tokens(tokens)
    }
}

impl DecoderConfig {
    /// Checks tokens before a forward pass: some, none outside the vocabulary, no more than the
    /// context holds.
    pub fn check_tokens(&self, tokens: &[u32]) -> Result<(), ModelError> {
        check_token_range(tokens, self.vocab_size, self.max_positions)
    }
}

/// A change to the activation at one hook point during a forward pass (TransformerLens: a hook
/// that returns a new value). What follows the hook computes with the changed activation.
#[derive(Debug, Clone, Copy)]
pub enum Intervention<'a> {
    /// Use `values` (`[n_tokens, width]`) instead: an SAE's reconstruction for splicing, zeros
    /// for zero-ablation.
    Replace { hook: HookPoint, values: &'a [f32] },
    /// Add `vector` (`[width]`) at every position: steering along a feature's decoder direction.
    AddToEveryToken { hook: HookPoint, vector: &'a [f32] },
}

impl Intervention<'_> {
    pub fn hook(&self) -> HookPoint {
        match *self {
            Intervention::Replace { hook, .. } | Intervention::AddToEveryToken { hook, .. } => hook,
        }
    }

    /// Applies the change to `acts` (`[n, width]`) on the host.
    pub fn apply(&self, acts: &mut [f32], width: usize) {
        match self {
            Intervention::Replace { values, .. } => acts.copy_from_slice(values),
            Intervention::AddToEveryToken { vector, .. } => {
                for row in acts.chunks_exact_mut(width) {
                    row.iter_mut().zip(vector.iter()).for_each(|(a, v)| *a += v);
                }
            }
        }
    }

    /// Checks the hook exists and the values fit `n` tokens of this model.
    pub fn check(&self, cfg: &DecoderConfig, n: usize) -> Result<(), String> {
        if !cfg.has_hook(self.hook()) {
            return Err(format!("{} is not a hook point of this model", self.hook()));
        }
        let d = cfg.hook_width(self.hook());
        match self {
            Intervention::Replace { values, hook } if values.len() != n * d => {
                Err(format!("replacing {hook} needs {n} × {d} values, got {}", values.len()))
            }
            Intervention::AddToEveryToken { vector, hook } if vector.len() != d => {
                Err(format!("adding to {hook} needs a vector of {d}, got {}", vector.len()))
            }
            _ => Ok(()),
        }
    }
}

/// A request the forward pass cannot run, said so that a person can act on it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("no tokens to run")]
    NoTokens,
    #[error("token {token} at position {position} is outside the vocabulary (size {vocab})")]
    TokenOutOfRange { token: u32, position: usize, vocab: usize },
    #[error("{len} tokens are more than the model's context of {n_positions} positions; shorten the text")]
    TooLong { len: usize, n_positions: usize },
    #[error("{0}")]
    Intervention(String),
    #[error("{0}")]
    Hook(String),
}

/// Some tokens, none outside the vocabulary, no more than the context holds.
fn check_token_range(tokens: &[u32], vocab: usize, context: usize) -> Result<(), ModelError> {
    if tokens.is_empty() {
        return Err(ModelError::NoTokens);
    }
    if tokens.len() > context {
        return Err(ModelError::TooLong { len: tokens.len(), n_positions: context });
    }
    if let Some((position, &token)) = tokens.iter().enumerate().find(|(_, &t)| t as usize >= vocab) {
        return Err(ModelError::TokenOutOfRange { token, position, vocab });
    }
    Ok(())
}
