//! A Hugging Face model folder: `config.json` and the weights, either one `model.safetensors` or a
//! sharded checkpoint (`model.safetensors.index.json` + the shards it names). Bytes in, a validated
//! [`Model`] out: `families::describe` reads the config (refusing what saelab does not run, naming
//! the field), `families::load` finds every tensor the family needs with the shape the config
//! implies and every value finite (f32, f16 or bf16, widened to f32).

use std::collections::BTreeMap;

use super::decoder::DecoderConfig;
use super::decoder_weights::{DecoderWeights, TensorPlace};
use super::families;
use super::Model;
use crate::formats::safetensors::{RawTensor, TensorEntry, TensorFile, TensorTable};
use crate::formats::shards::ShardIndex;
use crate::formats::FormatError;

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Optional: BOS/EOS ids that override config.json's.
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";
pub use crate::formats::shards::INDEX_FILE;
pub use crate::formats::tokenizer::TOKENIZER_FILE;

/// A model from its `config.json` and its weight files (one, or a sharded checkpoint's merged).
pub fn parse_model(config: &[u8], weights: Vec<TensorFile>) -> Result<Model, FormatError> {
    let cfg = families::describe(config)?;
    let weights = families::load(&cfg, weights)?;
    Ok(Model { cfg, weights })
}

/// A checkpoint's weight files as read: one `model.safetensors`, or a sharded checkpoint's index
/// and the shards it names.
pub enum WeightFiles {
    Single(Vec<u8>),
    Sharded { index: Vec<u8>, shards: Vec<(String, Vec<u8>)> },
}

/// The tensors of a checkpoint's weight files (a sharded one merged after the index's checks).
pub fn parse_weights(files: &WeightFiles) -> Result<TensorFile, FormatError> {
    match files {
        WeightFiles::Single(bytes) => TensorFile::parse(WEIGHTS_FILE, bytes),
        WeightFiles::Sharded { index, shards } => {
            let index = ShardIndex::parse(index)?;
            let parsed = shards
                .iter()
                .map(|(name, bytes)| Ok((name.clone(), TensorFile::parse(name, bytes)?)))
                .collect::<Result<Vec<_>, FormatError>>()?;
            index.merge(parsed)
        }
    }
}

/// A checkpoint known from its files' headers alone: every stored tensor's entry and the file
/// holding it.
#[derive(Debug, Clone, Default)]
pub struct CheckpointHeaders {
    pub entries: BTreeMap<String, TensorEntry>,
    pub file_of: BTreeMap<String, String>,
}

impl CheckpointHeaders {
    /// The headers of `model.safetensors` (no index) or of every shard a sharded checkpoint's
    /// `index` names, as `(file name, header)`; a sharded one is checked as `parse_weights` checks.
    pub fn join(index: Option<&[u8]>, tables: Vec<(String, TensorTable)>) -> Result<CheckpointHeaders, FormatError> {
        let file_of = tables.iter().flat_map(|(file, t)| t.tensors.keys().map(move |name| (name.clone(), file.clone()))).collect();
        let entries = match index {
            None => tables.into_iter().flat_map(|(_, t)| t.tensors).collect(),
            Some(index) => ShardIndex::parse(index)?.merge_tensors(tables.into_iter().map(|(file, t)| (file, t.tensors)).collect())?,
        };
        Ok(CheckpointHeaders { entries, file_of })
    }

    /// Bytes of tensor data in all the files.
    pub fn data_bytes(&self) -> u64 {
        self.entries.values().map(|e| e.bytes.end - e.bytes.start).sum()
    }
}

/// The model a `config.json` describes and where each of its tensors is in the checkpoint
/// `headers` describe — the checks of `parse_model` that need no value.
pub fn model_places(config: &[u8], headers: &CheckpointHeaders) -> Result<(DecoderConfig, DecoderWeights<TensorPlace>), FormatError> {
    let cfg = families::describe(config)?;
    let places = families::places(&cfg, headers.entries.clone())?;
    Ok((cfg, places))
}

/// A config's special token ids with those of a `generation_config.json` where it names them.
pub fn with_generation_config_ids(mut cfg: DecoderConfig, bytes: &[u8]) -> Result<DecoderConfig, FormatError> {
    let err = |msg: String| FormatError::Config { file: GENERATION_CONFIG_FILE.into(), msg };
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| err(format!("not valid JSON ({e})")))?;
    let fields = value.as_object().ok_or_else(|| err("expected a JSON object".into()))?;
    let given = crate::model::decoder::SpecialTokens::read(fields).map_err(err)?;
    cfg.special_tokens = std::mem::take(&mut cfg.special_tokens).overridden_by(given);
    Ok(cfg)
}

/// `model` with the special token ids of a `generation_config.json` where it names them.
pub fn with_generation_config(model: Model, bytes: &[u8]) -> Result<Model, FormatError> {
    Ok(Model { cfg: with_generation_config_ids(model.cfg, bytes)?, weights: model.weights })
}

#[cfg(not(target_arch = "wasm32"))]
mod dir {
    use std::path::Path;

    use super::*;

    /// Loads a model folder from disk; messages name the file with its full path.
    pub fn load_model_dir(dir: &Path) -> Result<Model, FormatError> {
        if !dir.is_dir() {
            return Err(FormatError::Io { file: dir.display().to_string(), msg: "not a folder".into() });
        }
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read(&p).map_err(|e| FormatError::Io { file: p.display().to_string(), msg: e.to_string() })
        };
        let within = |e: FormatError| {
            let prefix = |file: String| dir.join(file).display().to_string();
            match e {
                FormatError::Config { file, msg } => FormatError::Config { file: prefix(file), msg },
                FormatError::Safetensors { file, msg } => FormatError::Safetensors { file: prefix(file), msg },
                other => other,
            }
        };
        let config = read(CONFIG_FILE)?;
        let files = if dir.join(WEIGHTS_FILE).exists() || !dir.join(INDEX_FILE).exists() {
            WeightFiles::Single(read(WEIGHTS_FILE)?)
        } else {
            let index = read(INDEX_FILE)?;
            let names: Vec<String> = ShardIndex::parse(&index).map_err(within)?.files().into_iter().map(str::to_string).collect();
            let shards = names.into_iter().map(|name| Ok((name.clone(), read(&name)?))).collect::<Result<Vec<_>, FormatError>>()?;
            WeightFiles::Sharded { index, shards }
        };
        let weights = parse_weights(&files).map_err(within)?;
        let model = parse_model(&config, vec![weights]).map_err(within)?;
        match dir.join(GENERATION_CONFIG_FILE).exists() {
            true => with_generation_config(model, &read(GENERATION_CONFIG_FILE)?).map_err(within),
            false => Ok(model),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use dir::load_model_dir;

/// A GPT-2 of this shape with random weights (tests, benchmarks, `saelab random-model`).
pub fn random_gpt2(vocab_size: usize, context: usize, d_model: usize, n_layers: usize, n_heads: usize, tied: bool, seed: u64) -> Model {
    let cfg = families::gpt2::config(vocab_size, context, d_model, n_layers, n_heads, tied);
    Model { weights: DecoderWeights::random(&cfg, seed), cfg }
}

/// GPT-2 small's shape (Radford et al. 2019): 12 layers, 12 heads, width 768, vocab 50,257,
/// context 1024, with random weights.
pub fn random_gpt2_small(n_layers: usize, seed: u64) -> Model {
    random_gpt2(50257, 1024, 768, n_layers, 12, true, seed)
}

/// A model's `model.safetensors` as its family's `save_pretrained` names the tensors, stored in
/// `dtype` (GPT-2, Llama, Qwen and Gemma layouts; GPT-NeoX's fused projections are not written).
pub fn serialize_weights(model: &Model, dtype: crate::formats::safetensors::FloatDtype) -> Result<Vec<u8>, String> {
    let tensors = match model.cfg.model_type.as_str() {
        "gpt2" => families::gpt2::tensors(model),
        "llama" | "qwen2" | "qwen3" | "gemma2" | "gemma3_text" => families::llama::tensors(model),
        // Gemma3ForConditionalGeneration's layout: the text model under `language_model.`, beside
        // a stand-in for the vision tower and projector (random, never read: text never reaches
        // them).
        "gemma3" => {
            let mut rng = crate::random::Rng::new(7);
            let mut tensors: Vec<_> = families::llama::tensors(model)
                .into_iter()
                .map(|(name, shape, data)| (format!("language_model.{name}"), shape, data))
                .collect();
            tensors.push(("vision_tower.vision_model.embeddings.patch_embedding.weight".into(), vec![8, 3, 2, 2], rng.normals(96, 0.02)));
            let d = model.cfg.d_model;
            tensors.push(("multi_modal_projector.mm_input_projection_weight".into(), vec![8, d], rng.normals(8 * d, 0.02)));
            tensors
        }
        other => return Err(format!("{other} models are not written")),
    };
    let tensors = tensors.into_iter().map(|(name, shape, data)| (name, RawTensor::from_f32_as(dtype, shape, &data))).collect();
    let file = TensorFile { tensors, metadata: Some([("format".to_string(), "pt".to_string())].into()) };
    Ok(file.serialize())
}

/// Writes a GPT-2 model as a Hugging Face folder's `config.json` and `model.safetensors` (f32,
/// as `GPT2LMHeadModel.save_pretrained`).
pub fn serialize_gpt2(model: &Model) -> Result<(Vec<u8>, Vec<u8>), String> {
    let c = &model.cfg;
    if c.model_type != "gpt2" {
        return Err(format!("only GPT-2 models are written, not {}", c.model_type));
    }
    let mut config =
        families::gpt2::config_json(c.vocab_size, c.max_positions, c.d_model, c.n_layers, c.n_heads, model.weights.unembed.is_none());
    config["n_inner"] = c.d_mlp.into();
    config["layer_norm_epsilon"] = (c.norm.eps as f64).into();
    config["scale_attn_weights"] = (c.attn_scale != 1.0).into();
    Ok((serde_json::to_vec_pretty(&config).expect("JSON"), serialize_weights(model, crate::formats::safetensors::FloatDtype::F32)?))
}
