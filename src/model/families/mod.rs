//! Model families: one file each, turning a Hugging Face `config.json` into a
//! [`DecoderConfig`](super::decoder::DecoderConfig) as `transformers` 5.24 reads it — both the
//! layout `transformers` 5 saves (`rope_parameters`, `layer_types`) and the older one most Hub
//! checkpoints carry (`rope_theta`, `rope_scaling`, `sliding_window_pattern`, …). Adding a family
//! is adding a file and a line to [`FAMILIES`]. Anything a family file does not know how to run
//! (another `model_type`, experts, a vision tower other than Gemma 3's, an unknown activation or
//! RoPE type) is refused with a message naming the field. Each file also says where the family's
//! tensors are (`weights`, read by [`load`]).

mod gemma;
mod gemma2;
mod gemma3;
pub mod gpt2;
mod gpt_neox;
pub mod llama;
mod mistral;
mod qwen2;
mod qwen3;

use serde_json::{Map, Value};

use super::decoder::{Activation, BlockLayout, DecoderConfig, LayerAttention, Rope, RopeScaling, SpecialTokens};
use std::collections::BTreeMap;

use super::decoder_weights::{DecoderWeights, Layer, LayerWeights, StoredTensor, TensorPlace, Tensors};
use crate::formats::safetensors::{RawTensor, TensorEntry, TensorFile};
use crate::formats::FormatError;

/// A family: its `model_type`, how it reads its `config.json`, where its tensors are (one generic
/// function, `weights`, taken once with the values and once with the header's places).
pub struct Family {
    pub model_type: &'static str,
    pub describe: fn(&Fields) -> Result<DecoderConfig, String>,
    pub weights: fn(&DecoderConfig, &mut Tensors<RawTensor>) -> Result<DecoderWeights, String>,
    pub places: fn(&DecoderConfig, &mut Tensors<TensorEntry>) -> Result<DecoderWeights<TensorPlace>, String>,
}

macro_rules! family {
    ($model_type:literal, $describe:path, $weights:path) => {
        Family { model_type: $model_type, describe: $describe, weights: $weights, places: $weights }
    };
}

/// The families saelab describes.
pub const FAMILIES: &[Family] = &[
    family!("gpt2", gpt2::describe, gpt2::weights),
    family!("gpt_neox", gpt_neox::describe, gpt_neox::weights),
    family!("llama", llama::describe, llama::weights),
    family!("mistral", mistral::describe, llama::weights),
    family!("qwen2", qwen2::describe, llama::weights),
    family!("qwen3", qwen3::describe, llama::weights),
    family!("gemma", gemma::describe, llama::weights),
    family!("gemma2", gemma2::describe, llama::weights),
    family!("gemma3_text", gemma3::describe, llama::weights),
    family!("gemma3", gemma3::describe_multimodal, gemma3::multimodal_weights),
];

/// Tensors a checkpoint may carry that change nothing: GPT-2's saved attention masks, rotary
/// tables saved as buffers.
fn ignorable(name: &str) -> bool {
    name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias") || name.ends_with("rotary_emb.inv_freq")
}

/// The weights of a model `cfg` describes, from its safetensors files (one, or a sharded
/// checkpoint's). A tensor the family does not use is refused: it might change the computation.
pub fn load(cfg: &DecoderConfig, files: Vec<TensorFile>) -> Result<DecoderWeights, FormatError> {
    take_all(cfg, Tensors::new(files), |family| family.weights)
}

/// Where every tensor of a model `cfg` describes is in its checkpoint, from the files' headers
/// (one, or a sharded checkpoint's merged): the same tensors, shapes and refusals as `load`, with
/// no value read yet.
pub fn places(cfg: &DecoderConfig, header: BTreeMap<String, TensorEntry>) -> Result<DecoderWeights<TensorPlace>, FormatError> {
    take_all(cfg, Tensors::from_entries(header), |family| family.places)
}

type Loader<E> = fn(&DecoderConfig, &mut Tensors<E>) -> Result<DecoderWeights<<E as StoredTensor>::Values>, String>;

fn take_all<E: StoredTensor>(
    cfg: &DecoderConfig,
    mut tensors: Tensors<E>,
    loader: fn(&Family) -> Loader<E>,
) -> Result<DecoderWeights<E::Values>, FormatError> {
    let err = |msg: String| FormatError::Safetensors { file: "model.safetensors".into(), msg };
    let family = FAMILIES.iter().find(|f| f.model_type == cfg.model_type).ok_or_else(|| err(format!("no family '{}'", cfg.model_type)))?;
    let dtype = tensors.common_dtype();
    let mut weights = loader(family)(cfg, &mut tensors).map_err(err)?;
    weights.dtype = dtype;
    // A tied checkpoint may store the unembedding too.
    let unused = |n: &&str| ignorable(n) || (cfg.tied_embeddings && *n == "lm_head.weight");
    let left: Vec<&str> = tensors.remaining().into_iter().filter(|n| !unused(n)).collect();
    if let Some(name) = left.first() {
        return Err(err(format!("tensor '{name}' is not part of a {} model ({} such tensors)", cfg.model_type, left.len())));
    }
    Ok(weights)
}

/// `prefix` when the checkpoint's tensors carry it (a `…ForCausalLM` checkpoint), else "" (the
/// base model saved alone).
pub(super) fn prefix_of<E: StoredTensor>(t: &Tensors<E>, prefix: &'static str, probe: &str) -> &'static str {
    if t.has(&format!("{prefix}{probe}")) {
        prefix
    } else {
        ""
    }
}

/// The unembedding: none when tied, else `names`' first present, `[vocab, d_model]`.
pub(super) fn unembed<E: StoredTensor>(cfg: &DecoderConfig, t: &mut Tensors<E>, names: &[&str]) -> Result<Option<E::Values>, String> {
    if cfg.tied_embeddings {
        return Ok(None);
    }
    let name = names.iter().find(|n| t.has(n)).unwrap_or(&names[0]);
    t.take(name, &[cfg.vocab_size, cfg.d_model]).map(Some)
}

/// A block in the layout Llama, Qwen and Gemma share (`model.layers.L.self_attn.q_proj`, …).
pub(super) fn hf_block<E: StoredTensor>(cfg: &DecoderConfig, t: &mut Tensors<E>, base: &str) -> Result<Layer<E::Values>, String> {
    let (d, dh) = (cfg.d_model, cfg.d_head);
    let (q_out, kv_out) = (cfg.n_heads * dh, cfg.n_kv_heads * dh);
    let attn = |t: &mut Tensors<E>, name: &str, out: usize| t.linear(&format!("{base}self_attn.{name}"), d, out, cfg.qkv_bias);
    let (q, k, v) = (attn(t, "q_proj", q_out)?, attn(t, "k_proj", kv_out)?, attn(t, "v_proj", kv_out)?);
    let o = t.linear(&format!("{base}self_attn.o_proj"), q_out, d, cfg.o_bias)?;
    let (q_norm, k_norm) = if cfg.qk_norm {
        (Some(t.norm(&format!("{base}self_attn.q_norm"), dh, false)?), Some(t.norm(&format!("{base}self_attn.k_norm"), dh, false)?))
    } else {
        (None, None)
    };
    let norm = |t: &mut Tensors<E>, name: &str| t.norm(&format!("{base}{name}"), d, false);
    let attn_norm = norm(t, "input_layernorm")?;
    let (post_attn_norm, mlp_norm, post_mlp_norm) = if cfg.layout == BlockLayout::Sandwich {
        (Some(norm(t, "post_attention_layernorm")?), norm(t, "pre_feedforward_layernorm")?, Some(norm(t, "post_feedforward_layernorm")?))
    } else {
        (None, norm(t, "post_attention_layernorm")?, None)
    };
    let mlp = |t: &mut Tensors<E>, name: &str, d_in: usize, d_out: usize| t.linear(&format!("{base}mlp.{name}"), d_in, d_out, cfg.mlp_bias);
    Ok(LayerWeights {
        attn_norm,
        q,
        k,
        v,
        o,
        q_norm,
        k_norm,
        post_attn_norm,
        mlp_norm,
        gate: Some(mlp(t, "gate_proj", d, cfg.d_mlp)?),
        up: mlp(t, "up_proj", d, cfg.d_mlp)?,
        down: mlp(t, "down_proj", cfg.d_mlp, d)?,
        post_mlp_norm,
    })
}

/// A multimodal config other than Gemma 3's (whose text model runs: `gemma3::text_of_multimodal`).
const VISION: &str = "vision_config: a vision tower is not supported (of multimodal models, saelab runs Gemma 3's text model)";

/// Fields whose presence means a model saelab does not run, whatever its `model_type` says.
const UNSUPPORTED: &[(&str, &str)] =
    &[("num_local_experts", "a mixture of experts"), ("num_experts", "a mixture of experts"), ("linear_attention", "linear attention")];

/// Describes the model a `config.json` holds; errors name the file and the field.
pub fn describe(config_json: &[u8]) -> Result<DecoderConfig, FormatError> {
    let err = |msg: String| FormatError::Config { file: "config.json".into(), msg };
    let value: Value = serde_json::from_slice(config_json).map_err(|e| err(format!("not valid JSON ({e})")))?;
    let Value::Object(map) = value else {
        return Err(err("expected a JSON object".into()));
    };
    let fields = Fields(map);
    let refused = |key: &str| fields.0.get(key).is_some_and(|v| !v.is_null());
    let model_type = fields.string("model_type").map_err(err)?.ok_or_else(|| err("missing 'model_type'".into()))?;
    // A vision tower: Gemma 3's text model runs without it; any other is refused before its
    // model_type is looked up.
    if refused("vision_config") && model_type != "gemma3" {
        return Err(err(VISION.into()));
    }
    let family = FAMILIES.iter().find(|f| f.model_type == model_type).ok_or_else(|| {
        err(format!(
            "model_type '{model_type}' is not supported ({})",
            FAMILIES.iter().map(|f| f.model_type).collect::<Vec<_>>().join(", ")
        ))
    })?;
    if let Some((key, what)) = UNSUPPORTED.iter().find(|(key, _)| refused(key)) {
        return Err(err(format!("{key}: {what} is not supported")));
    }
    let mut cfg = (family.describe)(&fields).and_then(DecoderConfig::check).map_err(err)?;
    // Kept as written even outside the vocabulary (small test models carry GPT-2's 50256): a BOS
    // that cannot run is refused where it is put first, by the token check.
    let token_fields = if model_type == "gemma3" { gemma3::text_of_multimodal(&fields).map_err(err)?.0 } else { fields.0 };
    cfg.special_tokens = SpecialTokens::read(&token_fields).map_err(err)?;
    Ok(cfg)
}

/// A `config.json` object with typed getters whose errors name the field. Absent and `null` are
/// the same (Hub files write `null` for unset fields).
pub struct Fields(pub Map<String, Value>);

impl Fields {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    pub fn usize(&self, key: &str) -> Result<Option<usize>, String> {
        self.get(key)
            .map(|v| v.as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(|| format!("'{key}' must be a whole number, found {v}")))
            .transpose()
    }

    /// A whole number the model cannot do without.
    pub fn required(&self, key: &str) -> Result<usize, String> {
        self.usize(key)?.ok_or_else(|| format!("missing '{key}'"))
    }

    pub fn f64(&self, key: &str) -> Result<Option<f64>, String> {
        self.get(key).map(|v| v.as_f64().ok_or_else(|| format!("'{key}' must be a number, found {v}"))).transpose()
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, String> {
        self.get(key).map(|v| v.as_bool().ok_or_else(|| format!("'{key}' must be true or false, found {v}"))).transpose()
    }

    pub fn string(&self, key: &str) -> Result<Option<String>, String> {
        self.get(key).map(|v| v.as_str().map(str::to_string).ok_or_else(|| format!("'{key}' must be a string, found {v}"))).transpose()
    }

    pub fn object(&self, key: &str) -> Result<Option<Fields>, String> {
        self.get(key)
            .map(|v| v.as_object().map(|m| Fields(m.clone())).ok_or_else(|| format!("'{key}' must be an object, found {v}")))
            .transpose()
    }

    /// The activation named by `key` (`default` when absent); errors name the field.
    pub fn activation(&self, key: &str, default: &str) -> Result<Activation, String> {
        Activation::from_name(key, &self.string(key)?.unwrap_or_else(|| default.into()))
    }

    /// The head size: `head_dim` if given, else `default`.
    pub fn head_dim(&self, default: usize) -> Result<usize, String> {
        Ok(self.usize("head_dim")?.unwrap_or(default))
    }

    /// `hidden_size / num_attention_heads`, refused when it does not divide.
    pub fn derived_head_dim(&self, d_model: usize, n_heads: usize) -> Result<usize, String> {
        if n_heads == 0 || !d_model.is_multiple_of(n_heads) {
            return Err(format!("hidden_size ({d_model}) is not a multiple of num_attention_heads ({n_heads})"));
        }
        Ok(d_model / n_heads)
    }

    /// Per layer, from `layer_types` when the file has it, else from `fallback(layer)` (true:
    /// sliding). Sliding layers see the last `sliding_window` positions.
    pub fn layer_types(
        &self,
        n_layers: usize,
        window: Option<usize>,
        fallback: impl Fn(usize) -> bool,
    ) -> Result<Vec<LayerAttention>, String> {
        let sliding = |w: Option<usize>| w.map(|window| LayerAttention::Sliding { window }).ok_or("a sliding layer needs 'sliding_window'");
        match self.get("layer_types") {
            Some(Value::Array(types)) => {
                if types.len() != n_layers {
                    return Err(format!("'layer_types' lists {} layers, num_hidden_layers is {n_layers}", types.len()));
                }
                types
                    .iter()
                    .map(|t| match t.as_str() {
                        Some("full_attention") => Ok(LayerAttention::Global),
                        Some("sliding_attention") => sliding(window).map_err(str::to_string),
                        _ => Err(format!("layer_types: '{t}' is not supported (full_attention, sliding_attention)")),
                    })
                    .collect()
            }
            Some(other) => Err(format!("'layer_types' must be a list, found {other}")),
            None => (0..n_layers)
                .map(|l| if fallback(l) { sliding(window).map_err(str::to_string) } else { Ok(LayerAttention::Global) })
                .collect(),
        }
    }

    /// RoPE for `layer_type` ("full_attention" or "sliding_attention"): from `rope_parameters`
    /// (transformers 5; flat, or one entry per layer type) or from `theta_key` and `rope_scaling`
    /// (older files; `rope_scaling` applies to global layers only, as Gemma 3 uses it).
    pub fn rope(&self, layer_type: &str, theta_key: &str, default_theta: f64, rotary_dim: usize) -> Result<Rope, String> {
        if let Some(params) = self.object("rope_parameters")? {
            let params = match params.object(layer_type)? {
                Some(per_type) => per_type,
                None => params,
            };
            let theta = params.f64("rope_theta")?.unwrap_or(default_theta);
            return Ok(Rope { theta, rotary_dim, scaling: rope_scaling(&params)? });
        }
        let theta = self.f64(theta_key)?.unwrap_or(default_theta);
        let scaling = match (layer_type, self.object("rope_scaling")?) {
            ("full_attention", Some(s)) => rope_scaling(&s)?,
            _ => RopeScaling::None,
        };
        Ok(Rope { theta, rotary_dim, scaling })
    }
}

/// A RoPE scaling object (`rope_type`, or the older `type`).
fn rope_scaling(s: &Fields) -> Result<RopeScaling, String> {
    let kind = match s.string("rope_type")? {
        Some(t) => Some(t),
        None => s.string("type")?,
    };
    let factor = || s.f64("factor")?.ok_or_else(|| "rope scaling needs 'factor'".to_string());
    Ok(match kind.as_deref() {
        None | Some("default") => RopeScaling::None,
        Some("linear") => RopeScaling::Linear { factor: factor()? },
        Some("llama3") => RopeScaling::Llama3 {
            factor: factor()?,
            low_freq_factor: s.f64("low_freq_factor")?.ok_or("llama3 rope scaling needs 'low_freq_factor'")?,
            high_freq_factor: s.f64("high_freq_factor")?.ok_or("llama3 rope scaling needs 'high_freq_factor'")?,
            original_max_position_embeddings: s
                .f64("original_max_position_embeddings")?
                .ok_or("llama3 rope scaling needs 'original_max_position_embeddings'")?,
        },
        Some(other) => return Err(format!("rope_type '{other}' is not supported (default, linear, llama3)")),
    })
}
