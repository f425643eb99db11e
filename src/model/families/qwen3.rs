//! Qwen 3 (`modeling_qwen3.py`): the Llama block with an RMSNorm over each head's queries and
//! keys before RoPE, an explicit `head_dim` (128 when absent), `attention_bias` on q, k, v and the
//! output projection, and Qwen's sliding-window layers.

use super::super::decoder::DecoderConfig;
use super::{llama, qwen2, Fields};

pub fn describe(f: &Fields) -> Result<DecoderConfig, String> {
    let mut cfg = llama::block(f, "qwen3", Some(128))?;
    cfg.qk_norm = true;
    cfg.mlp_bias = false;
    cfg.layers = qwen2::qwen_layers(f, cfg.n_layers)?;
    Ok(cfg)
}
