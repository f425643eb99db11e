//! Sharded safetensors checkpoints as the Hub serves large models: `model.safetensors.index.json`
//! (`{"metadata": {...}, "weight_map": {tensor: shard file}}`) beside `model-0000N-of-0000M.safetensors`.
//! The index says which files to fetch; once they are read, [`merge`] checks that every tensor is
//! in the shard the index names and nowhere else, and joins them.

use std::collections::BTreeMap;

use super::safetensors::TensorFile;
use super::FormatError;

pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// A shard index: for every tensor, the file that holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardIndex {
    pub weight_map: BTreeMap<String, String>,
}

impl ShardIndex {
    pub fn parse(bytes: &[u8]) -> Result<ShardIndex, FormatError> {
        let err = |msg: String| FormatError::Config { file: INDEX_FILE.into(), msg };
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| err(format!("not valid JSON ({e})")))?;
        let map = value.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| err("no 'weight_map' object".into()))?;
        let mut weight_map = BTreeMap::new();
        for (tensor, file) in map {
            let file = file.as_str().ok_or_else(|| err(format!("weight_map['{tensor}'] is not a file name")))?;
            // A shard is a file beside the index: no folders, no way out of it.
            if file.is_empty() || file.contains(['/', '\\']) || file.starts_with('.') || !file.ends_with(".safetensors") {
                return Err(err(format!("weight_map['{tensor}'] names '{file}', not a .safetensors file beside the index")));
            }
            weight_map.insert(tensor.clone(), file.to_string());
        }
        if weight_map.is_empty() {
            return Err(err("the weight_map is empty".into()));
        }
        Ok(ShardIndex { weight_map })
    }

    /// The shard files, each once, in order.
    pub fn files(&self) -> Vec<&str> {
        let mut files: Vec<&str> = self.weight_map.values().map(String::as_str).collect();
        files.sort_unstable();
        files.dedup();
        files
    }

    /// Joins the shards (`(file name, parsed file)`, one per [`ShardIndex::files`]) into one
    /// set of tensors, after checking each tensor is where the index says and only there.
    pub fn merge(&self, shards: Vec<(String, TensorFile)>) -> Result<TensorFile, FormatError> {
        let err = |file: &str, msg: String| FormatError::Safetensors { file: file.to_string(), msg };
        if let Some(missing) = self.files().into_iter().find(|f| !shards.iter().any(|(name, _)| name == f)) {
            return Err(err(missing, format!("{INDEX_FILE} names this shard; it was not given")));
        }
        let mut merged = TensorFile::default();
        for (name, file) in shards {
            for (tensor, raw) in file.tensors {
                match self.weight_map.get(&tensor) {
                    Some(f) if *f == name => {}
                    Some(f) => return Err(err(&name, format!("holds '{tensor}', which {INDEX_FILE} puts in {f}"))),
                    None => return Err(err(&name, format!("holds '{tensor}', which {INDEX_FILE} does not list"))),
                }
                merged.tensors.insert(tensor, raw);
            }
        }
        if let Some((tensor, file)) = self.weight_map.iter().find(|(t, _)| !merged.tensors.contains_key(*t)) {
            return Err(err(file, format!("does not hold '{tensor}', which {INDEX_FILE} puts there")));
        }
        Ok(merged)
    }
}
