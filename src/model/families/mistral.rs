//! Mistral (`modeling_mistral.py`): the Llama block, with sliding-window attention on every layer
//! when `sliding_window` is set (Mistral 7B v0.1: 4,096 tokens; later versions: `null`).

use super::super::decoder::DecoderConfig;
use super::{llama, Fields};

pub fn describe(f: &Fields) -> Result<DecoderConfig, String> {
    let mut cfg = llama::block(f, "mistral", None)?;
    let window = f.usize("sliding_window")?;
    cfg.layers = f.layer_types(cfg.n_layers, window, |_| window.is_some())?;
    Ok(cfg)
}
