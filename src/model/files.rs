//! A Hugging Face GPT-2 model folder: `config.json` + `model.safetensors`. Bytes in, a validated
//! [`Gpt2`] out. Tensor names are accepted with or without the `transformer.` prefix
//! (`GPT2LMHeadModel.save_pretrained` writes it; the `gpt2` repository's file has none); weights may
//! be f32, f16 or bf16 and are widened to f32; `lm_head.weight` is used only when
//! `tie_word_embeddings` is false (Hugging Face ties it to `wte` otherwise).

use crate::model::{Block, Gpt2, Gpt2Config, LayerNorm};

use crate::formats::safetensors::{RawTensor, TensorFile};
use crate::formats::FormatError;

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub use crate::formats::tokenizer::TOKENIZER_FILE;

fn config_err(msg: impl Into<String>) -> FormatError {
    FormatError::Config { file: CONFIG_FILE.into(), msg: msg.into() }
}

fn weights_err(msg: impl Into<String>) -> FormatError {
    FormatError::Safetensors { file: WEIGHTS_FILE.into(), msg: msg.into() }
}

/// Parses a GPT-2 `config.json`, refusing what the forward pass does not implement.
pub fn parse_config(bytes: &[u8]) -> Result<(Gpt2Config, bool), FormatError> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| config_err(format!("not valid JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| config_err("expected a JSON object"))?;
    if let Some(t) = obj.get("model_type") {
        if t != "gpt2" {
            return Err(config_err(format!("model_type is {t}; saelab runs GPT-2 models (model_type \"gpt2\") only")));
        }
    }
    let size = |key: &str| -> Result<usize, FormatError> {
        match obj.get(key) {
            Some(x) => x
                .as_u64()
                .filter(|&n| n > 0)
                .map(|n| n as usize)
                .ok_or_else(|| config_err(format!("{key} must be a positive integer, not {x}"))),
            None => Err(config_err(format!("missing {key}"))),
        }
    };
    let d_model = size("n_embd")?;
    let n_heads = size("n_head")?;
    if d_model % n_heads != 0 {
        return Err(config_err(format!("n_head ({n_heads}) does not divide n_embd ({d_model})")));
    }
    let d_mlp = match obj.get("n_inner") {
        None | Some(serde_json::Value::Null) => 4 * d_model,
        Some(_) => size("n_inner")?,
    };
    let activation = obj.get("activation_function").and_then(|a| a.as_str()).unwrap_or("gelu_new");
    if activation != "gelu_new" && activation != "gelu_pytorch_tanh" {
        return Err(config_err(format!("activation_function '{activation}' is not supported (GPT-2 uses gelu_new)")));
    }
    let flag = |key: &str, default: bool| obj.get(key).and_then(|b| b.as_bool()).unwrap_or(default);
    if flag("scale_attn_by_inverse_layer_idx", false) {
        return Err(config_err("scale_attn_by_inverse_layer_idx is not supported"));
    }
    if flag("add_cross_attention", false) {
        return Err(config_err("add_cross_attention (an encoder-decoder GPT-2) is not supported"));
    }
    let eps = match obj.get("layer_norm_epsilon") {
        None => 1e-5,
        Some(x) => x
            .as_f64()
            .filter(|e| *e > 0.0 && e.is_finite())
            .ok_or_else(|| config_err(format!("layer_norm_epsilon must be a positive number, not {x}")))? as f32,
    };
    let n_positions = if obj.contains_key("n_positions") { size("n_positions")? } else { size("n_ctx")? };
    let cfg = Gpt2Config {
        vocab_size: size("vocab_size")?,
        n_positions,
        d_model,
        n_layers: size("n_layer")?,
        n_heads,
        d_mlp,
        layer_norm_eps: eps,
        scale_attn_weights: flag("scale_attn_weights", true),
    };
    Ok((cfg, flag("tie_word_embeddings", true)))
}

/// Parses and validates a model: every tensor present with the shape the config implies, every
/// value finite.
pub fn parse_gpt2(config: &[u8], weights: &[u8]) -> Result<Gpt2, FormatError> {
    let (cfg, tied) = parse_config(config)?;
    let file = TensorFile::parse(WEIGHTS_FILE, weights)?;
    let find = |name: &str| -> Option<&RawTensor> { file.tensors.get(name).or_else(|| file.tensors.get(&format!("transformer.{name}"))) };
    let tensor = |name: &str, shape: &[usize]| -> Result<Vec<f32>, FormatError> {
        let t = find(name).ok_or_else(|| weights_err(format!("missing tensor '{name}' (or 'transformer.{name}')")))?;
        if t.shape != shape {
            return Err(weights_err(format!("tensor '{name}' has shape {:?} but config.json implies {shape:?}", t.shape)));
        }
        t.finite_f32(name).map_err(weights_err)
    };
    let (d, m) = (cfg.d_model, cfg.d_mlp);
    let ln = |prefix: &str| -> Result<LayerNorm, FormatError> {
        Ok(LayerNorm { weight: tensor(&format!("{prefix}.weight"), &[d])?, bias: tensor(&format!("{prefix}.bias"), &[d])? })
    };
    let mut blocks = Vec::with_capacity(cfg.n_layers);
    for layer in 0..cfg.n_layers {
        let p = |s: &str| format!("h.{layer}.{s}");
        blocks.push(Block {
            ln_1: ln(&p("ln_1"))?,
            qkv_weight: tensor(&p("attn.c_attn.weight"), &[d, 3 * d])?,
            qkv_bias: tensor(&p("attn.c_attn.bias"), &[3 * d])?,
            attn_out_weight: tensor(&p("attn.c_proj.weight"), &[d, d])?,
            attn_out_bias: tensor(&p("attn.c_proj.bias"), &[d])?,
            ln_2: ln(&p("ln_2"))?,
            mlp_in_weight: tensor(&p("mlp.c_fc.weight"), &[d, m])?,
            mlp_in_bias: tensor(&p("mlp.c_fc.bias"), &[m])?,
            mlp_out_weight: tensor(&p("mlp.c_proj.weight"), &[m, d])?,
            mlp_out_bias: tensor(&p("mlp.c_proj.bias"), &[d])?,
        });
    }
    if find(&format!("h.{}.ln_1.weight", cfg.n_layers)).is_some() {
        return Err(weights_err(format!("the file has more layers than config.json's n_layer ({})", cfg.n_layers)));
    }
    let lm_head = if tied {
        None
    } else {
        let t = file
            .tensors
            .get("lm_head.weight")
            .ok_or_else(|| weights_err("missing tensor 'lm_head.weight' (tie_word_embeddings is false)"))?;
        if t.shape != [cfg.vocab_size, d] {
            return Err(weights_err(format!(
                "tensor 'lm_head.weight' has shape {:?} but config.json implies {:?}",
                t.shape,
                [cfg.vocab_size, d]
            )));
        }
        Some(t.to_f32())
    };
    Ok(Gpt2 {
        wte: tensor("wte.weight", &[cfg.vocab_size, d])?,
        wpe: tensor("wpe.weight", &[cfg.n_positions, d])?,
        blocks,
        ln_f: ln("ln_f")?,
        lm_head,
        cfg,
    })
}

#[cfg(not(target_arch = "wasm32"))]
mod dir {
    use std::path::Path;

    use super::*;

    /// Loads a model folder from disk; messages name the file with its full path.
    pub fn load_model_dir(dir: &Path) -> Result<Gpt2, FormatError> {
        if !dir.is_dir() {
            return Err(FormatError::Io { file: dir.display().to_string(), msg: "not a folder".into() });
        }
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read(&p).map_err(|e| FormatError::Io { file: p.display().to_string(), msg: e.to_string() })
        };
        let (config, weights) = (read(CONFIG_FILE)?, read(WEIGHTS_FILE)?);
        parse_gpt2(&config, &weights).map_err(|e| {
            let prefix = |file: String| dir.join(file).display().to_string();
            match e {
                FormatError::Config { file, msg } => FormatError::Config { file: prefix(file), msg },
                FormatError::Safetensors { file, msg } => FormatError::Safetensors { file: prefix(file), msg },
                other => other,
            }
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use dir::load_model_dir;

/// Writes a model as a Hugging Face folder's `config.json` and `model.safetensors` (f32,
/// `transformer.` prefixes, as `GPT2LMHeadModel.save_pretrained`).
pub fn serialize_gpt2(model: &Gpt2) -> (Vec<u8>, Vec<u8>) {
    let c = &model.cfg;
    let config = serde_json::json!({
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function": "gelu_new",
        "vocab_size": c.vocab_size, "n_positions": c.n_positions, "n_embd": c.d_model, "n_layer": c.n_layers,
        "n_head": c.n_heads, "n_inner": c.d_mlp, "layer_norm_epsilon": c.layer_norm_eps,
        "scale_attn_weights": c.scale_attn_weights, "tie_word_embeddings": model.lm_head.is_none(),
        "bos_token_id": c.vocab_size - 1, "eos_token_id": c.vocab_size - 1,
    });
    let (d, m) = (c.d_model, c.d_mlp);
    let mut tensors = std::collections::BTreeMap::new();
    let mut put = |name: String, shape: Vec<usize>, data: &[f32]| {
        tensors.insert(name, RawTensor::from_f32(shape, data));
    };
    put("transformer.wte.weight".into(), vec![c.vocab_size, d], &model.wte);
    put("transformer.wpe.weight".into(), vec![c.n_positions, d], &model.wpe);
    for (layer, b) in model.blocks.iter().enumerate() {
        let p = |s: &str| format!("transformer.h.{layer}.{s}");
        put(p("ln_1.weight"), vec![d], &b.ln_1.weight);
        put(p("ln_1.bias"), vec![d], &b.ln_1.bias);
        put(p("attn.c_attn.weight"), vec![d, 3 * d], &b.qkv_weight);
        put(p("attn.c_attn.bias"), vec![3 * d], &b.qkv_bias);
        put(p("attn.c_proj.weight"), vec![d, d], &b.attn_out_weight);
        put(p("attn.c_proj.bias"), vec![d], &b.attn_out_bias);
        put(p("ln_2.weight"), vec![d], &b.ln_2.weight);
        put(p("ln_2.bias"), vec![d], &b.ln_2.bias);
        put(p("mlp.c_fc.weight"), vec![d, m], &b.mlp_in_weight);
        put(p("mlp.c_fc.bias"), vec![m], &b.mlp_in_bias);
        put(p("mlp.c_proj.weight"), vec![m, d], &b.mlp_out_weight);
        put(p("mlp.c_proj.bias"), vec![d], &b.mlp_out_bias);
    }
    put("transformer.ln_f.weight".into(), vec![d], &model.ln_f.weight);
    put("transformer.ln_f.bias".into(), vec![d], &model.ln_f.bias);
    if let Some(head) = &model.lm_head {
        put("lm_head.weight".into(), vec![c.vocab_size, d], head);
    }
    let file = TensorFile { tensors, metadata: Some([("format".to_string(), "pt".to_string())].into()) };
    (serde_json::to_vec_pretty(&config).expect("JSON"), file.serialize())
}
