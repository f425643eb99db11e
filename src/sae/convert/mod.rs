//! The SAE formats SAELens converts, each read from the files its loader downloads for one SAE
//! and converted exactly as that loader does (`sae_lens/loading/pretrained_sae_loaders.py`,
//! SAELens 6.54.12): one file per conversion function, each turning the files into the loader's
//! `cfg_dict` and state dict; this module then does what `SAE.from_pretrained` does after the
//! loader (the registry's `config_overrides` and Neuronpedia id merged in, `handle_config_defaulting`,
//! the activation-norm scaling factor folded in) and checks the result as any SAE folder is checked.
//!
//! The page fetches [`Conversion::wanted`] from the Hub and the CLI reads them from a Hugging Face
//! cache or a folder; both hand the bytes to [`convert`]. Sizes come from the tensors, never from
//! names (a folder's name can say less than the loader knew from its repository's).

mod connor_rob_hook_z;
mod deepseek_r1;
mod dictionary_learning;
mod gemma_2;
mod gemma_2_transcoder;
mod gemma_3;
mod goodfire;
mod llama_scope;
mod mwhanna_transcoder;
mod qwen_scope;
mod sparsify;

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::files::{sae_from_tensor_file, CFG_FILE, SPARSITY_FILE, WEIGHTS_FILE};
use super::registry::{Entry, Release};
use super::Sae;
use crate::formats::pytorch::TorchTensor;
use crate::formats::safetensors::{RawTensor, TensorFile};
use crate::formats::FormatError;

/// SAELens's conversion functions that saelab implements (`conversion_func` in the registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// SAELens's own folder: `cfg.json` + `sae_weights.safetensors` (+ `sparsity.safetensors`).
    SaeLens,
    /// Gemma Scope: `params.npz` (`gemma_2_sae_huggingface_loader`).
    Gemma2,
    /// Gemma Scope 2: `config.json` + `params.safetensors` (`gemma_3_sae_huggingface_loader`).
    Gemma3,
    /// Llama Scope: `hyperparams.json` + `checkpoints/final.safetensors`.
    LlamaScope,
    /// Llama Scope R1 Distill: `config.json` + `sae_weights.safetensors`.
    LlamaScopeR1Distill,
    /// EleutherAI sparsify: `cfg.json` + `sae.safetensors`.
    Sparsify,
    /// dictionary_learning (SAEBench): `config.json` + `ae.pt`.
    DictionaryLearning1,
    /// Qwen Scope: one `layerN.sae.pt` per layer.
    QwenScope,
    /// GPT-2 small attention SAEs: `NAME.pt` + `NAME_cfg.json`.
    ConnorRobHookZ,
    /// Gemma Scope's transcoders: `params.npz` (`gemma_2_transcoder_huggingface_loader`).
    Gemma2Transcoder,
    /// mwhanna's Qwen 3 transcoders: `layer_L.safetensors` + the root's `wandb-config.yaml`.
    MwhannaTranscoder,
    /// Goodfire's Llama SAEs: one `torch.save`d `nn.Linear` pair (`get_goodfire_huggingface_loader`).
    Goodfire,
    /// qresearch's DeepSeek-R1-Distill-Llama-8B SAE: one `torch.save`d `nn.Linear` pair.
    DeepseekR1,
}

/// A file a conversion reads, by its path in the repository.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub path: String,
    /// The loader fails without it (otherwise it is read when present).
    pub required: bool,
}

/// One SAE's files and what is known of where they came from.
pub struct SaeSource<'a> {
    /// The Hub repository (`google/gemma-scope-2b-pt-res`), when known: several loaders read the
    /// model and hook from it.
    pub repo: Option<&'a str>,
    /// The SAE's folder (or file, for single-file formats) in the repository.
    pub folder: &'a str,
    /// Its registry release and entry, when opened by name: overrides, Neuronpedia id, scaling.
    pub registry: Option<(&'a Release, &'a Entry)>,
    /// The bytes of the [`Conversion::wanted`] files that exist, by path in the repository.
    pub files: &'a BTreeMap<String, Vec<u8>>,
}

impl<'a> SaeSource<'a> {
    fn optional(&self, path: &str) -> Option<&'a [u8]> {
        self.files.get(path).map(Vec::as_slice)
    }

    fn required(&self, path: &str) -> Result<&'a [u8], FormatError> {
        self.optional(path).ok_or_else(|| FormatError::Io { file: path.to_string(), msg: "missing (the SAE's loader reads it)".into() })
    }

    /// `folder/name`, or `name` at the repository's root.
    fn path(&self, name: &str) -> String {
        join(self.folder, name)
    }

    fn json(&self, path: &str) -> Result<Map<String, Value>, FormatError> {
        match serde_json::from_slice(self.required(path)?) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(config_err(path, "expected a JSON object")),
            Err(e) => Err(config_err(path, format!("not valid JSON ({e})"))),
        }
    }

    fn safetensors(&self, path: &str) -> Result<TensorFile, FormatError> {
        TensorFile::parse(path, self.required(path)?)
    }

    fn repo_or(&self, what: &str) -> Result<&'a str, FormatError> {
        self.repo.ok_or_else(|| {
            config_err(
                self.folder,
                format!(
                    "{what} come from the SAE's Hub repository name, which a bare folder does not carry: open it by RELEASE/SAE_ID or from a Hugging Face cache (models--ORG--NAME/snapshots/...)"
                ),
            )
        })
    }
}

pub(crate) fn join(folder: &str, name: &str) -> String {
    let folder = folder.trim_matches('/');
    if folder.is_empty() {
        name.to_string()
    } else {
        format!("{folder}/{name}")
    }
}

fn config_err(file: &str, msg: impl Into<String>) -> FormatError {
    FormatError::Config { file: file.to_string(), msg: msg.into() }
}

/// A loader's result: its `cfg_dict` (flat, as the loader returns it) and state dict (f32, in
/// SAELens's names and layout), and the log sparsity when the format has one.
#[derive(Default)]
pub(crate) struct Converted {
    pub cfg: Map<String, Value>,
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    pub log_sparsity: Option<Vec<f32>>,
}

/// A `json!({...})` literal's map.
fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("a json! object literal"),
    }
}

impl Converted {
    fn insert(&mut self, name: &str, shape: Vec<usize>, values: Vec<f32>) {
        self.tensors.insert(name.to_string(), (shape, values));
    }
}

impl Conversion {
    pub fn from_name(name: &str) -> Option<Conversion> {
        Some(match name {
            "sae_lens" => Conversion::SaeLens,
            "gemma_2" => Conversion::Gemma2,
            "gemma_3" => Conversion::Gemma3,
            "llama_scope" => Conversion::LlamaScope,
            "llama_scope_r1_distill" => Conversion::LlamaScopeR1Distill,
            "sparsify" => Conversion::Sparsify,
            "dictionary_learning_1" => Conversion::DictionaryLearning1,
            "qwen_scope" => Conversion::QwenScope,
            "connor_rob_hook_z" => Conversion::ConnorRobHookZ,
            "gemma_2_transcoder" => Conversion::Gemma2Transcoder,
            "mwhanna_transcoder" => Conversion::MwhannaTranscoder,
            "goodfire" => Conversion::Goodfire,
            "deepseek_r1" => Conversion::DeepseekR1,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Conversion::SaeLens => "sae_lens",
            Conversion::Gemma2 => "gemma_2",
            Conversion::Gemma3 => "gemma_3",
            Conversion::LlamaScope => "llama_scope",
            Conversion::LlamaScopeR1Distill => "llama_scope_r1_distill",
            Conversion::Sparsify => "sparsify",
            Conversion::DictionaryLearning1 => "dictionary_learning_1",
            Conversion::QwenScope => "qwen_scope",
            Conversion::ConnorRobHookZ => "connor_rob_hook_z",
            Conversion::Gemma2Transcoder => "gemma_2_transcoder",
            Conversion::MwhannaTranscoder => "mwhanna_transcoder",
            Conversion::Goodfire => "goodfire",
            Conversion::DeepseekR1 => "deepseek_r1",
        }
    }

    /// Why this conversion cannot open the SAE at `path` although it reads its release's format
    /// (Gemma Scope 2's transcoders and cross-layer transcoders), or `None` when it can.
    pub fn unsupported_path(self, path: &str) -> Option<&'static str> {
        match self {
            Conversion::Gemma3 if path.contains("clt") => {
                Some("Gemma Scope 2's cross-layer transcoders are not supported yet (its SAEs and per-layer transcoders are)")
            }
            _ => None,
        }
    }

    /// Whether an SAE of this format is one file (its registry path names the file), not a folder.
    pub fn single_file(self) -> bool {
        matches!(
            self,
            Conversion::QwenScope
                | Conversion::ConnorRobHookZ
                | Conversion::MwhannaTranscoder
                | Conversion::Goodfire
                | Conversion::DeepseekR1
        )
    }

    /// The files its loader reads for the SAE at `folder` (the file, for [`Self::single_file`]
    /// formats), by path in the repository.
    pub fn wanted(self, folder: &str) -> Vec<Wanted> {
        let need = |name: &str| Wanted { path: join(folder, name), required: true };
        let may = |name: &str| Wanted { path: join(folder, name), required: false };
        match self {
            Conversion::SaeLens => vec![need(CFG_FILE), need(WEIGHTS_FILE), may(SPARSITY_FILE)],
            Conversion::Gemma2 | Conversion::Gemma2Transcoder => vec![need("params.npz")],
            Conversion::Gemma3 => vec![may("config.json"), need("params.safetensors")],
            Conversion::LlamaScope => vec![need("hyperparams.json"), need("checkpoints/final.safetensors")],
            Conversion::LlamaScopeR1Distill => vec![need("config.json"), need(WEIGHTS_FILE)],
            Conversion::Sparsify => {
                // The training run's config.json sits beside the SAE folders (sparsify's layout).
                let parent = folder.trim_matches('/').rsplit_once('/').map_or("", |(p, _)| p);
                vec![need(CFG_FILE), need(sparsify::WEIGHTS), Wanted { path: join(parent, "config.json"), required: false }]
            }
            Conversion::DictionaryLearning1 => vec![need("config.json"), need(dictionary_learning::WEIGHTS)],
            Conversion::QwenScope | Conversion::Goodfire | Conversion::DeepseekR1 => {
                vec![Wanted { path: folder.trim_matches('/').to_string(), required: true }]
            }
            Conversion::ConnorRobHookZ => {
                let file = folder.trim_matches('/');
                vec![
                    Wanted { path: file.to_string(), required: true },
                    Wanted { path: connor_rob_hook_z::config_file(file), required: true },
                ]
            }
            Conversion::MwhannaTranscoder => mwhanna_transcoder::wanted(folder),
        }
    }

    /// The format of a folder holding the files `names`, or a message naming what each format
    /// expects.
    pub fn detect(names: &[&str]) -> Result<Conversion, String> {
        let has = |n: &str| names.contains(&n);
        if has(CFG_FILE) && has(WEIGHTS_FILE) {
            return Ok(Conversion::SaeLens);
        }
        if has(CFG_FILE) && has(sparsify::WEIGHTS) {
            return Ok(Conversion::Sparsify);
        }
        if has("params.npz") {
            return Ok(Conversion::Gemma2);
        }
        if has("params.safetensors") {
            return Ok(Conversion::Gemma3);
        }
        if has("hyperparams.json") && has("checkpoints") {
            return Ok(Conversion::LlamaScope);
        }
        if has("config.json") && has(dictionary_learning::WEIGHTS) {
            return Ok(Conversion::DictionaryLearning1);
        }
        if has("config.json") && has(WEIGHTS_FILE) {
            return Ok(Conversion::LlamaScopeR1Distill);
        }
        Err(format!(
            "no SAE format fits its files ({}); expected one of: {CFG_FILE} + {WEIGHTS_FILE} (SAELens), params.npz (Gemma Scope), params.safetensors (Gemma Scope 2), hyperparams.json + checkpoints/final.safetensors (Llama Scope), config.json + {WEIGHTS_FILE} (Llama Scope R1 Distill), {CFG_FILE} + {} (sparsify), config.json + {} (dictionary_learning); or a file: layerN.sae.pt (Qwen Scope), NAME.pt beside NAME_cfg.json (GPT-2 attention SAEs)",
            if names.is_empty() { "it is empty".to_string() } else { names.join(", ") },
            sparsify::WEIGHTS,
            dictionary_learning::WEIGHTS
        ))
    }

    /// The format of the single-file SAE `name`, whose folder holds `siblings`, or a message naming
    /// what each single-file format expects.
    pub fn detect_file(name: &str, siblings: &[&str]) -> Result<Conversion, String> {
        if siblings.contains(&connor_rob_hook_z::config_file(name).as_str()) && name.ends_with(".pt") {
            return Ok(Conversion::ConnorRobHookZ);
        }
        if name.ends_with(".sae.pt") {
            return Ok(Conversion::QwenScope);
        }
        if mwhanna_transcoder::is_layer_file(name) && mwhanna_transcoder::WANDB_CONFIGS.iter().any(|c| siblings.contains(c)) {
            return Ok(Conversion::MwhannaTranscoder);
        }
        if goodfire::is_known_file(name) {
            return Ok(Conversion::Goodfire);
        }
        if deepseek_r1::is_file(name) {
            return Ok(Conversion::DeepseekR1);
        }
        Err(format!(
            "no single-file SAE format fits '{name}': expected layerN.sae.pt (Qwen Scope), NAME.pt beside {} (GPT-2 attention SAEs), layer_L.safetensors beside wandb-config.yaml (mwhanna's transcoders), Llama-3.1-8B-Instruct-SAE-l19.pth or Llama-3.3-70B-Instruct-SAE-l50.pt (Goodfire) or DeepSeek-R1-Distill-Llama-8B-SAE-lL.pt (qresearch); other formats are folders",
            connor_rob_hook_z::config_file(name)
        ))
    }
}

/// The version whose cfg.json layout saelab writes converted SAEs in (its loaders are followed).
pub const SAELENS_VERSION: &str = "6.54.12";

/// The keys SAELens keeps under `metadata` (`LLM_METADATA_KEYS` in pretrained_sae_loaders.py).
const METADATA_KEYS: &[&str] = &[
    "model_name",
    "hook_name",
    "model_class_name",
    "hook_head_index",
    "model_from_pretrained_kwargs",
    "prepend_bos",
    "exclude_special_tokens",
    "neuronpedia_id",
    "context_size",
    "seqpos_slice",
    "dataset_path",
    "sae_lens_version",
    "sae_lens_training_version",
    "hook_name_out",
    "hook_head_index_out",
    "hf_hook_name",
    "hf_hook_name_out",
];

/// An SAE from its files, converted as SAELens's `SAE.from_pretrained` converts it.
pub fn convert(conversion: Conversion, source: &SaeSource<'_>) -> Result<Sae, FormatError> {
    if let Some(why) = conversion.unsupported_path(source.folder) {
        return Err(config_err(source.folder, why));
    }
    if conversion == Conversion::SaeLens {
        return sae_lens_folder(source);
    }
    let mut converted = match conversion {
        Conversion::SaeLens => unreachable!("handled above"),
        Conversion::Gemma2 => gemma_2::convert(source)?,
        Conversion::Gemma3 => gemma_3::convert(source)?,
        Conversion::LlamaScope => llama_scope::convert(source)?,
        Conversion::LlamaScopeR1Distill => llama_scope::convert_r1_distill(source)?,
        Conversion::Sparsify => sparsify::convert(source)?,
        Conversion::DictionaryLearning1 => dictionary_learning::convert(source)?,
        Conversion::QwenScope => qwen_scope::convert(source)?,
        Conversion::ConnorRobHookZ => connor_rob_hook_z::convert(source)?,
        Conversion::Gemma2Transcoder => gemma_2_transcoder::convert(source)?,
        Conversion::MwhannaTranscoder => mwhanna_transcoder::convert(source)?,
        Conversion::Goodfire => goodfire::convert(source)?,
        Conversion::DeepseekR1 => deepseek_r1::convert(source)?,
    };
    merge_registry(&mut converted.cfg, source.registry);
    let mut cfg = saelens_6_layout(converted.cfg);
    fold_norm_scaling_factor(&mut cfg, &mut converted.tensors, source);
    let file = TensorFile {
        tensors: converted
            .tensors
            .iter()
            .map(|(name, (shape, values))| (name.clone(), RawTensor::from_f32(shape.clone(), values)))
            .collect(),
        metadata: None,
    };
    let cfg = super::SaeConfig::from_map(cfg).map_err(|e| match e {
        FormatError::Config { msg, .. } => config_err(source.folder, format!("the converted cfg: {msg}")),
        other => other,
    })?;
    sae_from_tensor_file(cfg, &file, converted.log_sparsity).map_err(|e| match e {
        FormatError::Safetensors { msg, .. } => config_err(source.folder, format!("the converted weights: {msg}")),
        other => other,
    })
}

/// SAELens's own folder, with the registry's overrides merged into its cfg.json the way
/// `get_sae_lens_config_from_disk` merges them (at the top level; saelab reads SAELens's keys at
/// the top level or under `metadata`).
fn sae_lens_folder(source: &SaeSource<'_>) -> Result<Sae, FormatError> {
    let cfg_path = source.path(CFG_FILE);
    let mut cfg = source.json(&cfg_path)?;
    merge_registry(&mut cfg, source.registry);
    let cfg = serde_json::to_vec(&cfg).expect("a JSON map serialises");
    let weights_path = source.path(WEIGHTS_FILE);
    let sparsity_path = source.path(SPARSITY_FILE);
    let files =
        super::files::SaeFileBytes { cfg: &cfg, weights: source.required(&weights_path)?, sparsity: source.optional(&sparsity_path) };
    super::files::parse_sae(files).map_err(|e| match e {
        FormatError::Config { msg, .. } => config_err(&cfg_path, msg),
        FormatError::Safetensors { file, msg } => FormatError::Safetensors { file: join(source.folder, &file), msg },
        other => other,
    })
}

/// `get_config_overrides`: the release's `config_overrides` and the SAE's Neuronpedia id, merged
/// over the loader's cfg.
fn merge_registry(cfg: &mut Map<String, Value>, registry: Option<(&Release, &Entry)>) {
    let Some((release, entry)) = registry else { return };
    for (key, value) in &release.overrides {
        cfg.insert(key.clone(), value.clone());
    }
    if let Some(id) = &entry.neuronpedia {
        cfg.insert("neuronpedia_id".into(), Value::String(id.clone()));
    }
}

/// `handle_pre_6_0_config`: a loader's flat, pre-6 cfg in SAELens 6's layout — keys renamed,
/// defaults filled, `activation_fn: topk` as the `topk` architecture, `normalize_activations`
/// `null` as `none` — with the metadata keys nested under `metadata`.
fn saelens_6_layout(flat: Map<String, Value>) -> Map<String, Value> {
    let rename = |k: &str| match k {
        "hook_point" => "hook_name".to_string(),
        "hook_point_head_index" => "hook_head_index".to_string(),
        "activation_fn_str" => "activation_fn".to_string(),
        other => other.to_string(),
    };
    let mut cfg: Map<String, Value> = flat.into_iter().map(|(k, v)| (rename(&k), v)).collect();
    let mut default = |k: &str, v: Value| {
        cfg.entry(k.to_string()).or_insert(v);
    };
    default("prepend_bos", json!(true));
    default("apply_b_dec_to_input", json!(true));
    default("architecture", json!("standard"));
    default("activation_fn", json!("relu"));
    let hook_z = cfg.get("hook_name").and_then(Value::as_str).is_some_and(|h| h.contains("hook_z"));
    cfg.entry("reshape_activations").or_insert(json!(if hook_z { "hook_z" } else { "none" }));
    if cfg.get("activation_fn").and_then(Value::as_str) == Some("topk") {
        if let Some(k) = cfg.get("activation_fn_kwargs").and_then(|kw| kw.get("k")).cloned() {
            cfg.insert("architecture".into(), json!("topk"));
            cfg.insert("k".into(), k);
        }
    }
    // A boolean from before SAELens named the normalisations.
    if let Some(on) = cfg.get("normalize_activations").and_then(Value::as_bool) {
        cfg.insert("normalize_activations".into(), json!(if on { "expected_average_only_in" } else { "none" }));
    }
    if cfg.get("normalize_activations").is_none_or(Value::is_null) {
        cfg.insert("normalize_activations".into(), json!("none"));
    }
    cfg.insert("sae_lens_version".into(), json!(SAELENS_VERSION));
    let mut top = Map::new();
    let mut metadata = Map::new();
    for (k, v) in cfg {
        if METADATA_KEYS.contains(&k.as_str()) {
            metadata.insert(k, v);
        } else {
            top.insert(k, v);
        }
    }
    top.insert("metadata".into(), Value::Object(metadata));
    top
}

/// `SAE.from_pretrained`: an SAE trained on inputs scaled by a dataset-wide factor
/// (`normalize_activations: expected_average_only_in`) gets the registry's `norm_scaling_factor`
/// folded into its weights (`fold_activation_norm_scaling_factor`: W_enc × s, W_dec / s, b_dec / s)
/// and runs on raw activations (`normalize_activations: none`). Without a factor SAELens warns and
/// leaves the weights; a Llama Scope folder opened without the registry uses the factor its own
/// hyperparams.json gives (the one the loader already scaled its threshold by).
fn fold_norm_scaling_factor(cfg: &mut Map<String, Value>, tensors: &mut BTreeMap<String, (Vec<usize>, Vec<f32>)>, source: &SaeSource<'_>) {
    let own = cfg.remove("saelab_norm_scaling_factor").and_then(|v| v.as_f64());
    if cfg.get("normalize_activations").and_then(Value::as_str) != Some("expected_average_only_in") {
        return;
    }
    let factor = match source.registry {
        Some((_, entry)) => entry.norm_scaling_factor,
        None => own,
    };
    let Some(s) = factor else { return };
    let s = s as f32;
    if let Some((_, w_enc)) = tensors.get_mut("W_enc") {
        w_enc.iter_mut().for_each(|v| *v *= s);
    }
    for name in ["W_dec", "b_dec"] {
        if let Some((_, values)) = tensors.get_mut(name) {
            values.iter_mut().for_each(|v| *v /= s);
        }
    }
    cfg.insert("normalize_activations".into(), json!("none"));
}

/// `m` (`[rows, cols]`, row-major) transposed to `[cols, rows]`.
pub(crate) fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = m[r * cols + c];
        }
    }
    out
}

/// A tensor of a safetensors file as f32 with its shape, or an error naming the file and tensor.
pub(crate) fn tensor(file: &TensorFile, path: &str, name: &str) -> Result<(Vec<usize>, Vec<f32>), FormatError> {
    let t = file
        .tensors
        .get(name)
        .ok_or_else(|| FormatError::Safetensors { file: path.to_string(), msg: format!("missing tensor '{name}'") })?;
    Ok((t.shape.clone(), t.to_f32()))
}

/// A tensor of a `torch.save`d state dict as f32 with its shape, or an error naming the file and tensor.
pub(crate) fn torch_tensor(sd: &BTreeMap<String, TorchTensor<'_>>, path: &str, name: &str) -> Result<(Vec<usize>, Vec<f32>), FormatError> {
    let t = sd.get(name).ok_or_else(|| FormatError::Safetensors { file: path.to_string(), msg: format!("missing tensor '{name}'") })?;
    Ok((t.shape.clone(), t.to_f32()))
}

/// A matrix of a `torch.save`d state dict: `(rows, cols, values)`.
pub(crate) fn torch_matrix(
    sd: &BTreeMap<String, TorchTensor<'_>>,
    path: &str,
    name: &str,
) -> Result<(usize, usize, Vec<f32>), FormatError> {
    let (shape, values) = torch_tensor(sd, path, name)?;
    let (rows, cols) = matrix_shape(&shape, path, name)?;
    Ok((rows, cols, values))
}

/// A `torch.save`d encoder and decoder pair of `nn.Linear` states (`{encoder}.weight [d_sae, d_in]`,
/// `{encoder}.bias`, `{decoder}.weight [d_in, d_sae]`, `{decoder}.bias`) in SAELens's names and
/// layout (both weights transposed, as the Goodfire and DeepSeek-R1 loaders do), with `(d_in, d_sae)`.
pub(crate) fn linear_pair(
    source: &SaeSource<'_>,
    path: &str,
    encoder: &str,
    decoder: &str,
) -> Result<(Converted, usize, usize), FormatError> {
    let sd = crate::formats::pytorch::read_state_dict(path, source.required(path)?)?;
    let mut out = Converted::default();
    let (d_sae, d_in, w_enc) = torch_matrix(&sd, path, &format!("{encoder}.weight"))?;
    out.insert("W_enc", vec![d_in, d_sae], transpose(&w_enc, d_sae, d_in));
    let (rows, cols, w_dec) = torch_matrix(&sd, path, &format!("{decoder}.weight"))?;
    out.insert("W_dec", vec![cols, rows], transpose(&w_dec, rows, cols));
    for (ours, theirs) in [("b_enc", format!("{encoder}.bias")), ("b_dec", format!("{decoder}.bias"))] {
        let (shape, values) = torch_tensor(&sd, path, &theirs)?;
        out.insert(ours, shape, values);
    }
    Ok((out, d_in, d_sae))
}

/// A 2-D tensor's `(rows, cols)`, or an error naming it.
pub(crate) fn matrix_shape(shape: &[usize], path: &str, name: &str) -> Result<(usize, usize), FormatError> {
    match shape {
        [r, c] => Ok((*r, *c)),
        other => Err(FormatError::Safetensors { file: path.to_string(), msg: format!("'{name}' has shape {other:?}, expected a matrix") }),
    }
}

/// The number after `prefix` in `name` (`layer_(\d+)`), as the loaders' regular expressions find it.
pub(crate) fn number_after(name: &str, prefix: &str) -> Option<usize> {
    name.match_indices(prefix).find_map(|(i, _)| {
        let digits: String = name[i + prefix.len()..].chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposes_and_finds_layers() {
        assert_eq!(transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3), [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert_eq!(number_after("layer_12/width_16k/average_l0_82", "layer_"), Some(12));
        assert_eq!(number_after("resid_post/layer_x_layer_7", "layer_"), Some(7));
        assert_eq!(number_after("embedding/width_4k", "layer_"), None);
    }

    #[test]
    fn pre_6_configs_take_saelens_6_layout() {
        let flat = json!({"architecture": "standard", "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 7},
            "d_in": 4, "d_sae": 8, "hook_point": "blocks.2.attn.hook_z", "model_name": "m", "normalize_activations": null});
        let Value::Object(flat) = flat else { unreachable!() };
        let cfg = saelens_6_layout(flat);
        assert_eq!(cfg["architecture"], "topk");
        assert_eq!(cfg["k"], 7);
        assert_eq!(cfg["reshape_activations"], "hook_z");
        assert_eq!(cfg["normalize_activations"], "none");
        assert_eq!(cfg["metadata"]["hook_name"], "blocks.2.attn.hook_z");
        assert_eq!(cfg["metadata"]["prepend_bos"], true);
        assert!(cfg.get("hook_name").is_none());
    }

    #[test]
    fn detects_formats_and_names_what_fits_none() {
        assert_eq!(Conversion::detect(&["cfg.json", "sae_weights.safetensors"]), Ok(Conversion::SaeLens));
        assert_eq!(Conversion::detect(&["cfg.json", "sae.safetensors"]), Ok(Conversion::Sparsify));
        assert_eq!(Conversion::detect(&["params.npz"]), Ok(Conversion::Gemma2));
        assert_eq!(Conversion::detect(&["config.json", "params.safetensors"]), Ok(Conversion::Gemma3));
        assert_eq!(Conversion::detect(&["hyperparams.json", "checkpoints"]), Ok(Conversion::LlamaScope));
        let e = Conversion::detect(&["weights.bin"]).unwrap_err();
        assert!(e.contains("(weights.bin)") && e.contains("params.npz (Gemma Scope)"), "{e}");
        assert!(Conversion::detect(&[]).unwrap_err().contains("it is empty"));
        assert_eq!(
            Conversion::Sparsify.wanted("run/layers.3").iter().map(|w| w.path.as_str()).collect::<Vec<_>>(),
            ["run/layers.3/cfg.json", "run/layers.3/sae.safetensors", "run/config.json"]
        );
    }
}
