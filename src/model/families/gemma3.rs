//! Gemma 3's text model (`modeling_gemma3.py`, `model_type` `gemma3_text`): the Gemma 2 block with
//! (1 + w) RMSNorms over each head's queries and keys, no soft-capping unless configured, the
//! local/global pattern from `layer_types` or `sliding_window_pattern` (every sixth layer
//! global), and its own RoPE base for local layers (`rope_local_base_freq`, 10 000; the global
//! layers' `rope_scaling` does not apply to them).

use super::super::decoder::{DecoderConfig, Positions};
use super::{gemma2, Fields};

pub fn describe(f: &Fields) -> Result<DecoderConfig, String> {
    let pattern = f.usize("sliding_window_pattern")?.or(f.usize("_sliding_window_pattern")?).unwrap_or(6);
    if pattern == 0 {
        return Err("sliding_window_pattern is 0".into());
    }
    let mut cfg = gemma2::block(f, "gemma3_text", |layer| !(layer + 1).is_multiple_of(pattern), (None, None))?;
    cfg.qk_norm = true;
    let global = f.rope("full_attention", "rope_theta", 1_000_000.0, cfg.d_head)?;
    let local = f.rope("sliding_attention", "rope_local_base_freq", 10_000.0, cfg.d_head)?;
    cfg.positions = Positions::Rotary { global, local };
    Ok(cfg)
}
