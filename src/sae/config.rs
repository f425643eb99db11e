//! SAELens `cfg.json`, typed. We read both generations of the file (DESIGN.md §3): SAELens 6.x
//! nests `model_name`, `hook_name`, … under `metadata`; older files keep them at the top level and
//! describe TopK as `activation_fn_str: "topk"` with `activation_fn_kwargs.k`. The raw JSON object is
//! kept so that saving writes back every key we read.

use serde_json::{Map, Value};

use crate::formats::FormatError;

/// The encoder's non-linearity, as in `sae_lens/saes/*_sae.py`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Architecture {
    /// `relu(x W_enc + b_enc)` (StandardSAE).
    Standard,
    /// Top-k of the pre-activations, then relu, scattered back (TopKSAE).
    TopK { k: usize },
    /// Trained with a batch-wide top-k. SAELens has no inference class for it: its
    /// `BatchTopKTrainingSAE` saves itself as `jumprelu` with the learned threshold. We load a
    /// `batchtopk` folder that carries a `threshold` (or scalar `topk_threshold`) and run it as that
    /// JumpReLU.
    BatchTopK { k: f64 },
    /// `relu(pre) * (pre > threshold)` (JumpReLUSAE).
    JumpRelu,
    /// Gate `x W_enc + b_gate > 0` times magnitude `relu(x (W_enc ⊙ exp(r_mag)) + b_mag)` (GatedSAE).
    Gated,
}

impl Architecture {
    pub fn name(&self) -> &'static str {
        match self {
            Architecture::Standard => "standard",
            Architecture::TopK { .. } => "topk",
            Architecture::BatchTopK { .. } => "batchtopk",
            Architecture::JumpRelu => "jumprelu",
            Architecture::Gated => "gated",
        }
    }

    /// Whether the encoder output is a per-row top-k list (decoded sparsely on the GPU).
    pub fn topk(&self) -> Option<usize> {
        match self {
            Architecture::TopK { k } => Some(*k),
            _ => None,
        }
    }
}

/// `normalize_activations` (SAELens `SAE.run_time_activation_norm_fn_in/out`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Normalization {
    None,
    /// Per row: subtract the mean, divide by (unbiased std + 1e-5); undone on the output with the
    /// same mean and std (without the epsilon), exactly as SAELens does.
    LayerNorm,
    /// A dataset-wide input scale used in training (`sqrt(d_in) / E‖x‖`). SAELens folds the factor
    /// into the weights when it saves, and at inference `run_time_activation_norm_fn_in/out` are the
    /// identity for this setting; so is ours.
    ExpectedAverageOnlyIn,
    /// Per row: `x * sqrt(d_in) / ‖x‖`, undone on the output.
    ConstantNormRescale,
}

impl Normalization {
    pub fn name(&self) -> &'static str {
        match self {
            Normalization::None => "none",
            Normalization::LayerNorm => "layer_norm",
            Normalization::ExpectedAverageOnlyIn => "expected_average_only_in",
            Normalization::ConstantNormRescale => "constant_norm_rescale",
        }
    }
}

/// A transcoder (SAELens `sae_lens/saes/transcoder.py`): it encodes the activations at
/// `hook_name` and decodes to those at `hook_name_out` (an MLP's input to its output), so its
/// reconstruction is compared with, and spliced in at, the output hook. `b_dec` is the output's
/// bias and never subtracted from the input. A skip transcoder adds `x W_skipᵀ` to its output.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcoder {
    pub hook_name_out: Option<String>,
    /// `W_skip` (`[d_out, d_in]`): `skip_transcoder`, `jumprelu_skip_transcoder`.
    pub skip: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SaeConfig {
    pub architecture: Architecture,
    pub d_in: usize,
    pub d_sae: usize,
    pub apply_b_dec_to_input: bool,
    pub normalization: Normalization,
    /// TopK only: SAELens multiplies pre-activations by ‖W_dec[i]‖ before selection and divides the
    /// activations by it before decoding.
    pub rescale_acts_by_decoder_norm: bool,
    pub dtype: String,
    pub hook_name: Option<String>,
    pub model_name: Option<String>,
    /// Whether the activations it was trained on had the model's BOS first (`prepend_bos`, at the
    /// top level or under `metadata`; SAELens's default is true).
    pub prepend_bos: bool,
    /// Set for transcoders (`architecture` one of SAELens's `*transcoder`).
    pub transcoder: Option<Transcoder>,
    /// Every key of the file, in file order, so a round trip loses nothing.
    pub raw: Map<String, Value>,
}

const FILE: &str = "cfg.json";

fn cfg_err(msg: impl Into<String>) -> FormatError {
    FormatError::Config { file: FILE.into(), msg: msg.into() }
}

fn get<'a>(raw: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    raw.get(key).filter(|v| !v.is_null()).or_else(|| raw.get("metadata").and_then(|m| m.get(key)).filter(|v| !v.is_null()))
}

fn get_usize(raw: &Map<String, Value>, key: &str) -> Result<usize, FormatError> {
    let v = get(raw, key).ok_or_else(|| cfg_err(format!("missing '{key}'")))?;
    let n = v.as_u64().ok_or_else(|| cfg_err(format!("'{key}' must be a positive integer, found {v}")))?;
    if n == 0 {
        return Err(cfg_err(format!("'{key}' is 0")));
    }
    usize::try_from(n).map_err(|_| cfg_err(format!("'{key}' is too large")))
}

fn get_str(raw: &Map<String, Value>, key: &str) -> Option<String> {
    get(raw, key).and_then(|v| v.as_str()).map(str::to_string)
}

impl SaeConfig {
    pub fn parse(bytes: &[u8]) -> Result<SaeConfig, FormatError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| cfg_err(format!("not valid JSON ({e})")))?;
        let Value::Object(raw) = value else {
            return Err(cfg_err("expected a JSON object"));
        };
        Self::from_map(raw)
    }

    pub fn from_map(raw: Map<String, Value>) -> Result<SaeConfig, FormatError> {
        let d_in = get_usize(&raw, "d_in")?;
        let d_sae = get_usize(&raw, "d_sae")?;
        let full_arch_name = get_str(&raw, "architecture").unwrap_or_else(|| "standard".to_string());
        // SAELens's transcoder classes: an encoder of one of the SAE architectures, a decoder to
        // another hook.
        let (arch_name, transcoder) = match full_arch_name.as_str() {
            "transcoder" => ("standard".to_string(), Some(false)),
            "skip_transcoder" => ("standard".to_string(), Some(true)),
            "jumprelu_transcoder" => ("jumprelu".to_string(), Some(false)),
            "jumprelu_skip_transcoder" => ("jumprelu".to_string(), Some(true)),
            _ => (full_arch_name.clone(), None),
        };
        let activation_fn = get_str(&raw, "activation_fn_str").or_else(|| get_str(&raw, "activation_fn"));
        let legacy_k = get(&raw, "activation_fn_kwargs").and_then(|kw| kw.get("k")).and_then(Value::as_u64);
        let architecture = match arch_name.as_str() {
            "standard" if activation_fn.as_deref() == Some("topk") => {
                let k = legacy_k.ok_or_else(|| cfg_err("activation_fn 'topk' needs activation_fn_kwargs.k"))?;
                Architecture::TopK { k: k as usize }
            }
            "standard" => Architecture::Standard,
            "topk" => Architecture::TopK { k: get_usize(&raw, "k").or_else(|e| legacy_k.map(|k| k as usize).ok_or(e))? },
            "batchtopk" => {
                let k = get(&raw, "k").and_then(Value::as_f64).ok_or_else(|| cfg_err("batchtopk needs 'k'"))?;
                Architecture::BatchTopK { k }
            }
            "jumprelu" => Architecture::JumpRelu,
            "gated" => Architecture::Gated,
            other => {
                return Err(cfg_err(format!(
                    "unknown architecture '{other}' (supported: standard, topk, batchtopk, jumprelu, gated, and the transcoders transcoder, skip_transcoder, jumprelu_transcoder, jumprelu_skip_transcoder)"
                )))
            }
        };
        if let Architecture::TopK { k } = architecture {
            if k > d_sae {
                return Err(cfg_err(format!("k is {k} but d_sae is only {d_sae}")));
            }
        }
        let normalization = match get_str(&raw, "normalize_activations").as_deref() {
            None | Some("none") => Normalization::None,
            Some("layer_norm") => Normalization::LayerNorm,
            Some("expected_average_only_in") => Normalization::ExpectedAverageOnlyIn,
            Some("constant_norm_rescale") => Normalization::ConstantNormRescale,
            Some(other) => {
                return Err(cfg_err(format!(
                    "unknown normalize_activations '{other}' (supported: none, layer_norm, expected_average_only_in, constant_norm_rescale)"
                )))
            }
        };
        let bool_key = |key: &str, default: bool| -> Result<bool, FormatError> {
            match get(&raw, key) {
                None => Ok(default),
                Some(Value::Bool(b)) => Ok(*b),
                Some(v) => Err(cfg_err(format!("'{key}' must be true or false, found {v}"))),
            }
        };
        let apply_b_dec_to_input = bool_key("apply_b_dec_to_input", transcoder.is_none())?;
        let transcoder = match transcoder {
            None => None,
            Some(skip) => {
                // TranscoderConfig.__post_init__ refuses it: b_dec is the output's bias.
                if apply_b_dec_to_input {
                    return Err(cfg_err("a transcoder cannot apply b_dec to its input (apply_b_dec_to_input must be false)"));
                }
                // saelab's decoder writes rows as wide as the input (every transcoder SAELens
                // lists maps an MLP's input to its output, both d_model wide).
                let d_out = match get(&raw, "d_out") {
                    None => d_in,
                    Some(_) => get_usize(&raw, "d_out")?,
                };
                if d_out != d_in {
                    return Err(cfg_err(format!(
                        "a transcoder from width {d_in} to width {d_out}: saelab runs transcoders whose output is as wide as their input"
                    )));
                }
                if normalization != Normalization::None {
                    return Err(cfg_err(format!(
                        "a transcoder with normalize_activations '{}' (saelab runs transcoders on raw activations)",
                        normalization.name()
                    )));
                }
                Some(Transcoder { hook_name_out: get_str(&raw, "hook_name_out"), skip })
            }
        };
        Ok(SaeConfig {
            architecture,
            d_in,
            d_sae,
            apply_b_dec_to_input,
            normalization,
            rescale_acts_by_decoder_norm: bool_key("rescale_acts_by_decoder_norm", false)?,
            dtype: get_str(&raw, "dtype").unwrap_or_else(|| "float32".to_string()),
            // SAELens before 6 called it `hook_point` (`handle_pre_6_0_config` renames it).
            hook_name: get_str(&raw, "hook_name").or_else(|| get_str(&raw, "hook_point")),
            model_name: get_str(&raw, "model_name"),
            prepend_bos: bool_key("prepend_bos", true)?,
            transcoder,
            raw,
        })
    }

    /// `model_from_pretrained_kwargs` (top level, as the registry's overrides put it, or under
    /// `metadata`): how the model was loaded when the SAE's activations were made.
    pub fn model_from_pretrained_kwargs(&self) -> Map<String, Value> {
        get(&self.raw, "model_from_pretrained_kwargs").and_then(Value::as_object).cloned().unwrap_or_default()
    }

    /// `hf_hook_name` (`hf_hook_name_out` with `out`): the Hugging Face module the SAE's
    /// activations were read from when its loader records one (Gemma Scope 2, Qwen Scope).
    pub fn hf_hook_name(&self, out: bool) -> Option<String> {
        get_str(&self.raw, if out { "hf_hook_name_out" } else { "hf_hook_name" })
    }

    /// SAELens's name for the architecture: the encoder's (`jumprelu`), or for a transcoder its
    /// class's (`jumprelu_skip_transcoder`).
    pub fn architecture_name(&self) -> String {
        let encoder = self.architecture.name();
        match &self.transcoder {
            None => encoder.to_string(),
            Some(t) => {
                let prefix = if encoder == "standard" { String::new() } else { format!("{encoder}_") };
                format!("{prefix}{}transcoder", if t.skip { "skip_" } else { "" })
            }
        }
    }

    /// The JSON to save. Keys we read are written back unchanged.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&Value::Object(self.raw.clone())).expect("a JSON map serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_current_and_legacy_layouts() {
        let current = br#"{"architecture":"topk","d_in":8,"d_sae":32,"k":4,"apply_b_dec_to_input":false,
            "normalize_activations":"layer_norm","dtype":"float32","metadata":{"hook_name":"blocks.4.hook_resid_pre","model_name":"gpt2"}}"#;
        let c = SaeConfig::parse(current).unwrap();
        assert_eq!(c.architecture, Architecture::TopK { k: 4 });
        assert!(!c.apply_b_dec_to_input);
        assert_eq!(c.normalization, Normalization::LayerNorm);
        assert_eq!(c.hook_name.as_deref(), Some("blocks.4.hook_resid_pre"));
        let legacy = br#"{"architecture":"standard","activation_fn_str":"topk","activation_fn_kwargs":{"k":3},
            "d_in":8,"d_sae":32,"hook_name":"blocks.0.hook_resid_post"}"#;
        let c = SaeConfig::parse(legacy).unwrap();
        assert_eq!(c.architecture, Architecture::TopK { k: 3 });
        assert!(c.apply_b_dec_to_input);
        assert_eq!(c.hook_name.as_deref(), Some("blocks.0.hook_resid_post"));
        let oldest = br#"{"d_in":8,"d_sae":32,"hook_point":"blocks.8.hook_resid_pre","hook_point_layer":8}"#;
        assert_eq!(SaeConfig::parse(oldest).unwrap().hook_name.as_deref(), Some("blocks.8.hook_resid_pre"));
    }

    #[test]
    fn reads_transcoders() {
        let t = br#"{"architecture":"jumprelu_skip_transcoder","d_in":8,"d_sae":32,"d_out":8,"apply_b_dec_to_input":false,
            "metadata":{"hook_name":"blocks.3.hook_mlp_in","hook_name_out":"blocks.3.hook_mlp_out"}}"#;
        let c = SaeConfig::parse(t).unwrap();
        assert_eq!(c.architecture, Architecture::JumpRelu);
        assert_eq!(c.transcoder, Some(Transcoder { hook_name_out: Some("blocks.3.hook_mlp_out".into()), skip: true }));
        let plain = SaeConfig::parse(br#"{"architecture":"transcoder","d_in":8,"d_sae":32}"#).unwrap();
        assert_eq!((plain.architecture, plain.apply_b_dec_to_input), (Architecture::Standard, false));
        assert_eq!(c.architecture_name(), "jumprelu_skip_transcoder");
        assert_eq!(plain.architecture_name(), "transcoder");
        assert_eq!(plain.transcoder.map(|t| t.skip), Some(false));
        assert_eq!(SaeConfig::parse(br#"{"d_in":8,"d_sae":32}"#).unwrap().transcoder, None);
        let msg = |t: &[u8]| SaeConfig::parse(t).unwrap_err().to_string();
        assert!(msg(br#"{"architecture":"transcoder","d_in":8,"d_sae":32,"apply_b_dec_to_input":true}"#)
            .contains("apply_b_dec_to_input must be false"));
        assert!(msg(br#"{"architecture":"transcoder","d_in":8,"d_sae":32,"d_out":6}"#).contains("from width 8 to width 6"));
    }

    #[test]
    fn keeps_every_key_in_order() {
        let text = br#"{"zeta":1,"architecture":"jumprelu","d_in":4,"d_sae":5,"alpha":[1,2],"metadata":{"x":null}}"#;
        let c = SaeConfig::parse(text).unwrap();
        let back: Value = serde_json::from_str(&c.to_json()).unwrap();
        assert_eq!(back, serde_json::from_slice::<Value>(text).unwrap());
        assert_eq!(c.raw.keys().next().map(String::as_str), Some("zeta"));
    }

    #[test]
    fn refuses_bad_configs_clearly() {
        let msg = |t: &[u8]| SaeConfig::parse(t).unwrap_err().to_string();
        assert!(msg(br#"{"architecture":"mystery","d_in":4,"d_sae":5}"#).contains("unknown architecture 'mystery'"));
        assert!(msg(br#"{"d_in":4}"#).contains("missing 'd_sae'"));
        assert!(msg(br#"{"d_in":0,"d_sae":3}"#).contains("'d_in' is 0"));
        assert!(msg(br#"{"d_in":-2,"d_sae":3}"#).contains("positive integer"));
        assert!(msg(br#"{"architecture":"topk","d_in":4,"d_sae":5,"k":9}"#).contains("k is 9"));
        assert!(msg(br#"{"d_in":4,"d_sae":5,"normalize_activations":"zscore"}"#).contains("unknown normalize_activations"));
        assert!(msg(br#"{"d_in":4,"d_sae":5,"apply_b_dec_to_input":"yes"}"#).contains("true or false"));
        assert!(msg(b"[1,2]").contains("JSON object"));
        assert!(msg(b"{\"d_in\": 4, ").contains("not valid JSON"));
        assert!(msg(b"").contains("not valid JSON"));
    }
}
