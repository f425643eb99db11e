//! TransformerLens's weight processing, for SAEs whose activations were made with it. SAELens
//! loads models with `HookedTransformer.from_pretrained_no_processing(**model_from_pretrained_kwargs)`
//! (`sae_lens/load_model.py`), so processing happens only when an SAE's registry entry or config asks
//! (gpt2-small-res-jb asks for `center_writing_weights`). What each option changes:
//! - `center_writing_weights` (`ProcessWeights.center_writing_weights`): every weight that writes to
//!   the residual stream — W_E, W_pos, each W_O and b_O, each W_out and b_out — has its mean over
//!   d_model removed, so the residual stream has zero mean at each position. **Changes the hook
//!   values** (every residual hook, hook_embed/pos_embed, hook_attn_out, hook_mlp_out), not the
//!   logits (LayerNorm removes the mean anyway). Only on LayerNorm models: TransformerLens skips it
//!   where the norms are RMSNorms (`process_weights`), whose output the mean would change.
//! - `center_unembed`: W_U's mean over the vocabulary removed. Shifts each position's logits by a
//!   constant: **changes the logits only**, not the probabilities, the loss or any hook.
//! - `fold_ln`: folds each norm's weight (and bias) into the layer that reads it. Changes **nothing
//!   saelab shows**: TransformerLens's `hook_normalized` is taken before the weight in both forms, and
//!   every other hook and the logits are the same computation regrouped (tested against
//!   TransformerLens with fold_ln). Accepted, and not applied.

use super::decoder::NormKind;
use super::Model;

/// Which of TransformerLens's weight processing options an SAE's activations were made with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WeightProcessing {
    pub center_writing_weights: bool,
    pub center_unembed: bool,
    pub fold_ln: bool,
}

impl WeightProcessing {
    /// What a SAELens `model_from_pretrained_kwargs` object asks for; other keys (`n_devices`,
    /// `dtype`, …) do not change the weights. A value that is not a boolean is an error naming it.
    pub fn from_kwargs(kwargs: &serde_json::Map<String, serde_json::Value>) -> Result<WeightProcessing, String> {
        let flag = |key: &str| match kwargs.get(key) {
            None | Some(serde_json::Value::Null) => Ok(false),
            Some(serde_json::Value::Bool(b)) => Ok(*b),
            Some(other) => Err(format!("model_from_pretrained_kwargs.{key} must be true or false, not {other}")),
        };
        Ok(WeightProcessing {
            center_writing_weights: flag("center_writing_weights")?,
            center_unembed: flag("center_unembed")?,
            fold_ln: flag("fold_ln")?,
        })
    }

    /// Whether the model's weights change (fold_ln alone changes nothing, see the module comment).
    pub fn changes_weights(self) -> bool {
        self.center_writing_weights || self.center_unembed
    }
}

/// Each row of `m` (`[rows, d]`) minus its mean.
fn center_rows(m: &mut [f32], d: usize) {
    for row in m.chunks_exact_mut(d) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        row.iter_mut().for_each(|v| *v = (*v as f64 - mean) as f32);
    }
}

/// Each column of `m` (`[rows, cols]`) minus its mean over the rows.
fn center_columns(m: &mut [f32], cols: usize) {
    let rows = m.len() / cols;
    let mut means = vec![0.0f64; cols];
    for row in m.chunks_exact(cols) {
        means.iter_mut().zip(row).for_each(|(s, &v)| *s += v as f64);
    }
    for row in m.chunks_exact_mut(cols) {
        row.iter_mut().zip(&means).for_each(|(v, s)| *v = (*v as f64 - s / rows as f64) as f32);
    }
}

impl Model {
    /// The model with `processing` applied, as TransformerLens's `process_weights` does it. A tied
    /// unembedding is untied first (TransformerLens keeps W_U as its own copy).
    pub fn processed(mut self, processing: WeightProcessing) -> Model {
        let d = self.cfg.d_model;
        let w = &mut self.weights;
        if processing.changes_weights() && w.unembed.is_none() {
            w.unembed = Some(w.embed.clone());
        }
        if processing.center_writing_weights && self.cfg.norm.kind == NormKind::LayerNorm {
            center_rows(&mut w.embed, d);
            if let Some(pos) = &mut w.pos_embed {
                center_rows(pos, d);
            }
            // Projections are [d_out = d_model, d_in]: the mean over d_model is over each column.
            for layer in &mut w.layers {
                for linear in [&mut layer.o, &mut layer.down] {
                    center_columns(&mut linear.weight, linear.d_in);
                    if let Some(bias) = &mut linear.bias {
                        center_rows(bias, d);
                    }
                }
            }
        }
        if processing.center_unembed {
            if let Some(unembed) = &mut w.unembed {
                center_columns(unembed, d);
            }
        }
        self
    }
}
