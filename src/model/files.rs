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

/// What a model folder's own name says it holds, read from the path of its `config.json` as the
/// user picked or dropped it: a Hugging Face cache folder (`models--ORG--NAME/snapshots/REV/…`)
/// names its repository; any other folder only a model's name (`gemma-2-2b`). The page uses it to
/// take a loaded model for the one an SAE was trained on, but only together with that model's
/// `config.json` from the Hub ([`FolderName::same_model`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderName {
    /// `ORG/NAME` of a cache folder.
    CacheRepo(String),
    /// The name of the folder holding `config.json`.
    Name(String),
}

impl FolderName {
    /// From `config.json`'s path relative to the chosen or dropped folder (`gemma-2-2b/config.json`,
    /// `/models--google--gemma-2-2b/snapshots/abc/config.json`); `None` for a file chosen alone or
    /// a cache snapshot chosen by itself (whose folder is named by a commit).
    pub fn of_config_path(path: &str) -> Option<FolderName> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        if let Some(at) = parts.iter().rposition(|p| p.starts_with("models--")) {
            let repo = parts[at].strip_prefix("models--")?.replacen("--", "/", 1);
            return (parts.get(at + 1) == Some(&"snapshots") && !repo.is_empty()).then_some(FolderName::CacheRepo(repo));
        }
        let folder = *parts.len().checked_sub(2).and_then(|i| parts.get(i))?;
        let commit = folder.len() == 40 && folder.chars().all(|c| c.is_ascii_hexdigit());
        (!commit).then(|| FolderName::Name(folder.to_string()))
    }

    /// Whether the name says `repo` (`ORG/NAME`): the cache's repository exactly, or a folder named
    /// as the repository's NAME.
    pub fn names(&self, repo: &str) -> bool {
        match self {
            FolderName::CacheRepo(r) => r == repo,
            FolderName::Name(n) => repo.rsplit('/').next() == Some(n.as_str()),
        }
    }

    /// Whether a model loaded from this folder, described by `loaded`, is `repo` as the Hub serves
    /// it (`hub_config`: its config.json): the name says so and the two configs describe the same
    /// model (the special token ids aside, which generation_config.json may change). A name alone
    /// is not enough: a folder may be renamed, or hold another size of the family.
    pub fn same_model(&self, repo: &str, loaded: &DecoderConfig, hub_config: &[u8]) -> Result<bool, FormatError> {
        if !self.names(repo) {
            return Ok(false);
        }
        let mut hub = families::describe(hub_config)?;
        hub.special_tokens = loaded.special_tokens.clone();
        Ok(hub == *loaded)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folders_name_says_which_model_it_holds_and_its_config_must_agree() {
        let cache = FolderName::of_config_path("/models--google--gemma-2-2b/snapshots/abc/config.json");
        assert_eq!(cache, Some(FolderName::CacheRepo("google/gemma-2-2b".into())));
        let named = FolderName::of_config_path("gemma-2-2b/config.json").unwrap();
        assert_eq!(named, FolderName::Name("gemma-2-2b".into()));
        assert!(named.names("google/gemma-2-2b") && !named.names("google/gemma-2-2b-it") && !named.names("google/gemma-2-9b"));
        assert!(cache.unwrap().names("google/gemma-2-2b") && !FolderName::CacheRepo("other/gemma-2-2b".into()).names("google/gemma-2-2b"));
        // A file chosen alone, a snapshot chosen by itself, a cache folder's blobs: no name.
        assert_eq!(FolderName::of_config_path("config.json"), None);
        assert_eq!(FolderName::of_config_path("0123456789abcdef0123456789abcdef01234567/config.json"), None);
        assert_eq!(FolderName::of_config_path("models--google--gemma-2-2b/blobs/config.json"), None);

        let (config, _) = serialize_gpt2(&random_gpt2(50, 16, 8, 2, 2, true, 1)).unwrap();
        let loaded = families::describe(&config).unwrap();
        let gpt2 = FolderName::Name("gpt2".into());
        assert!(gpt2.same_model("gpt2", &loaded, &config).unwrap());
        // Another size under the same name, another name, a config that is not one.
        let (bigger, _) = serialize_gpt2(&random_gpt2(50, 16, 8, 3, 2, true, 1)).unwrap();
        assert!(!gpt2.same_model("gpt2", &loaded, &bigger).unwrap());
        assert!(!gpt2.same_model("openai-community/gpt2-medium", &loaded, &config).unwrap());
        assert!(gpt2.same_model("gpt2", &loaded, b"{").is_err());
    }
}
