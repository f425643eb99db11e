//! Model families: one file each, turning a Hugging Face `config.json` into a
//! [`DecoderConfig`](super::decoder::DecoderConfig) as `transformers` 5.24 reads it — both the
//! layout `transformers` 5 saves (`rope_parameters`, `layer_types`) and the older one most Hub
//! checkpoints carry (`rope_theta`, `rope_scaling`, `sliding_window_pattern`, …). Adding a family
//! is adding a file and a line to [`FAMILIES`]. Anything a family file does not know how to run
//! (another `model_type`, experts, a vision tower, an unknown activation or RoPE type) is refused
//! with a message naming the field.

mod gemma2;
mod gemma3;
mod gpt2;
mod gpt_neox;
mod llama;
mod qwen2;
mod qwen3;

use serde_json::{Map, Value};

use super::decoder::{DecoderConfig, LayerAttention, Rope, RopeScaling};
use crate::formats::FormatError;

/// A family's reading of its `config.json`.
pub type Describe = fn(&Fields) -> Result<DecoderConfig, String>;

/// The families saelab describes, by `model_type`.
pub const FAMILIES: &[(&str, Describe)] = &[
    ("gpt2", gpt2::describe),
    ("gpt_neox", gpt_neox::describe),
    ("llama", llama::describe),
    ("qwen2", qwen2::describe),
    ("qwen3", qwen3::describe),
    ("gemma2", gemma2::describe),
    ("gemma3_text", gemma3::describe),
];

/// Fields whose presence means a model saelab does not run, whatever its `model_type` says.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("vision_config", "a vision tower (load the text model's own config: model_type gemma3_text)"),
    ("num_local_experts", "a mixture of experts"),
    ("num_experts", "a mixture of experts"),
    ("linear_attention", "linear attention"),
];

/// Describes the model a `config.json` holds; errors name the file and the field.
pub fn describe(config_json: &[u8]) -> Result<DecoderConfig, FormatError> {
    let err = |msg: String| FormatError::Config { file: "config.json".into(), msg };
    let value: Value = serde_json::from_slice(config_json).map_err(|e| err(format!("not valid JSON ({e})")))?;
    let Value::Object(map) = value else {
        return Err(err("expected a JSON object".into()));
    };
    let fields = Fields(map);
    let refused = |key: &str| fields.0.get(key).is_some_and(|v| !v.is_null());
    // A vision tower first: its config names a model_type of its own (gemma3).
    if refused("vision_config") {
        return Err(err(format!("vision_config: {} is not supported", UNSUPPORTED[0].1)));
    }
    let model_type = fields.string("model_type").map_err(err)?.ok_or_else(|| err("missing 'model_type'".into()))?;
    let (_, family) = FAMILIES.iter().find(|(name, _)| *name == model_type).ok_or_else(|| {
        err(format!(
            "model_type '{model_type}' is not supported ({})",
            FAMILIES.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
        ))
    })?;
    if let Some((key, what)) = UNSUPPORTED.iter().find(|(key, _)| refused(key)) {
        return Err(err(format!("{key}: {what} is not supported")));
    }
    family(&fields).and_then(DecoderConfig::check).map_err(err)
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
