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
        let tensors = self.merge_tensors(shards.into_iter().map(|(name, file)| (name, file.tensors)).collect())?;
        Ok(TensorFile { tensors, metadata: None })
    }

    /// As `merge`, for any per-tensor entries (values, or a header's entries).
    pub fn merge_tensors<E>(&self, shards: Vec<(String, BTreeMap<String, E>)>) -> Result<BTreeMap<String, E>, FormatError> {
        let err = |file: &str, msg: String| FormatError::Safetensors { file: file.to_string(), msg };
        if let Some(missing) = self.files().into_iter().find(|f| !shards.iter().any(|(name, _)| name == f)) {
            return Err(err(missing, format!("{INDEX_FILE} names this shard; it was not given")));
        }
        let mut merged = BTreeMap::new();
        for (name, tensors) in shards {
            for (tensor, entry) in tensors {
                match self.weight_map.get(&tensor) {
                    Some(f) if *f == name => {}
                    Some(f) => return Err(err(&name, format!("holds '{tensor}', which {INDEX_FILE} puts in {f}"))),
                    None => return Err(err(&name, format!("holds '{tensor}', which {INDEX_FILE} does not list"))),
                }
                merged.insert(tensor, entry);
            }
        }
        if let Some((tensor, file)) = self.weight_map.iter().find(|(t, _)| !merged.contains_key(*t)) {
            return Err(err(file, format!("does not hold '{tensor}', which {INDEX_FILE} puts there")));
        }
        Ok(merged)
    }
}

/// Splits `file`'s tensors (in name order) into shards of at most `max_bytes` of tensor data each
/// (a larger tensor gets a shard of its own), named as `save_pretrained` names them: the index's
/// JSON and `(model-0000N-of-0000M.safetensors, bytes)` per shard.
pub fn shard(file: &TensorFile, max_bytes: usize) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let mut groups: Vec<TensorFile> = vec![TensorFile { tensors: BTreeMap::new(), metadata: file.metadata.clone() }];
    let mut size = 0;
    for (name, tensor) in &file.tensors {
        if size > 0 && size + tensor.bytes.len() > max_bytes {
            groups.push(TensorFile { tensors: BTreeMap::new(), metadata: file.metadata.clone() });
            size = 0;
        }
        size += tensor.bytes.len();
        groups.last_mut().expect("one group at least").tensors.insert(name.clone(), tensor.clone());
    }
    let count = groups.len();
    let named: Vec<(String, TensorFile)> =
        groups.into_iter().enumerate().map(|(i, g)| (format!("model-{:05}-of-{count:05}.safetensors", i + 1), g)).collect();
    let weight_map: serde_json::Map<String, serde_json::Value> =
        named.iter().flat_map(|(shard, g)| g.tensors.keys().map(move |t| (t.clone(), serde_json::Value::from(shard.clone())))).collect();
    let total: usize = file.tensors.values().map(|t| t.bytes.len()).sum();
    let index = serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map});
    (serde_json::to_vec_pretty(&index).expect("JSON"), named.into_iter().map(|(n, g)| (n, g.serialize())).collect())
}
