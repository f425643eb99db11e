//! Qwen 2 and 2.5 (`modeling_qwen2.py`): the Llama block with biases on q, k and v (not on the
//! output projection or the MLP), and sliding-window attention on layers from
//! `max_window_layers` on when `use_sliding_window`.

use super::super::decoder::DecoderConfig;
use super::{llama, Fields};

pub fn describe(f: &Fields) -> Result<DecoderConfig, String> {
    let mut cfg = llama::block(f, "qwen2", None)?;
    (cfg.qkv_bias, cfg.o_bias, cfg.mlp_bias) = (true, false, false);
    cfg.layers = qwen_layers(f, cfg.n_layers)?;
    Ok(cfg)
}

/// Qwen's layers: `layer_types`, else sliding from `max_window_layers` on when
/// `use_sliding_window` (`Qwen2Config.__init__`).
pub(super) fn qwen_layers(f: &Fields, n_layers: usize) -> Result<Vec<super::super::decoder::LayerAttention>, String> {
    let window = if f.bool("use_sliding_window")?.unwrap_or(false) { f.usize("sliding_window")? } else { None };
    let from = f.usize("max_window_layers")?.unwrap_or(28);
    f.layer_types(n_layers, window, |layer| window.is_some() && layer >= from)
}
