//! A language-model training run saved between two steps, to go on from later: in the page after
//! a reload (stored in IndexedDB), in the CLI with `saelab train --resume`.
//!
//! One safetensors file: the SAE's parameters and Adam's moments (`params.W_enc`,
//! `adam_m.W_enc`, …) and the activation store's mixing buffer (`store.buffer`) as f32 tensors;
//! everything else — settings, step, dead-latent counters, BatchTopK's threshold, the store's
//! place in the corpus, what model and corpus the run used — as JSON in the header's
//! `__metadata__` under `saelab_checkpoint`. A run resumed from it takes exactly the steps the
//! uninterrupted run would have taken.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::formats::safetensors::{RawTensor, TensorFile};
use crate::formats::FormatError;

use super::activations::{StoreConfig, StorePosition};
use super::trainer::{TrainConfig, TrainerSnapshot};
use crate::sae::SaeWeights;

/// `format` of a checkpoint's header; `VERSION` changes when its layout does.
pub const FORMAT: &str = "saelab lm-train checkpoint";
pub const VERSION: u32 = 1;
const HEADER_KEY: &str = "saelab_checkpoint";
const STATE_KEY: &str = "saelab_checkpoint_state";

/// A checkpoint's header: what a page shows about a saved run without reading the rest.
/// `train` and `step` are written from the trainer's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointHeader {
    pub format: String,
    pub version: u32,
    pub model_name: String,
    /// `fingerprint::model` of the model the activations came from.
    pub model_fingerprint: u64,
    pub corpus_tokens: usize,
    /// `fingerprint::tokens` of the corpus.
    pub corpus_fingerprint: u64,
    pub store: StoreConfig,
    pub train: TrainConfig,
    pub step: usize,
    pub eval_rows: usize,
    pub eval_contexts: usize,
    /// Whatever the program that saved the run keeps with it (the page: its settings as typed,
    /// the corpus's name, the evaluations so far).
    pub extra: serde_json::Value,
}

/// The rest of the state that is not a tensor (kept apart from the header, which stays small).
#[derive(Serialize, Deserialize)]
struct SavedState {
    steps_since_fired: Vec<usize>,
    batch_topk_threshold: f64,
    adam_beta_t: (f32, f32),
    store_epochs: usize,
    store_order: Vec<usize>,
    store_next: usize,
    store_rng_state: u64,
    rows_harvested: u64,
}

/// A run's whole state: the header, the trainer's tensors and the store's buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub header: CheckpointHeader,
    pub trainer: TrainerSnapshot,
    pub store: StorePosition,
}

impl Checkpoint {
    pub fn serialize(&self) -> Vec<u8> {
        let mut tensors = BTreeMap::new();
        let t = &self.trainer;
        for (prefix, p) in [("params", &t.params), ("adam_m", &t.adam_m), ("adam_v", &t.adam_v)] {
            for (name, values) in p.tensors() {
                tensors.insert(format!("{prefix}.{name}"), RawTensor::from_f32(p.shape_of(name), values));
            }
        }
        let d = t.params.d_in;
        if !self.store.buffer.is_empty() {
            tensors.insert("store.buffer".into(), RawTensor::from_f32(vec![self.store.buffer.len() / d, d], &self.store.buffer));
        }
        let header = CheckpointHeader { train: t.cfg.clone(), step: t.step, ..self.header.clone() };
        let s = &self.store;
        let state = SavedState {
            steps_since_fired: t.steps_since_fired.clone(),
            batch_topk_threshold: t.batch_topk_threshold,
            adam_beta_t: t.adam_beta_t,
            store_epochs: s.epochs,
            store_order: s.order.clone(),
            store_next: s.next,
            store_rng_state: s.rng_state,
            rows_harvested: s.rows_harvested,
        };
        let plain = "a checkpoint's header and state are plain data";
        let metadata = HashMap::from([
            (HEADER_KEY.to_string(), serde_json::to_string(&header).expect(plain)),
            (STATE_KEY.to_string(), serde_json::to_string(&state).expect(plain)),
        ]);
        TensorFile { tensors, metadata: Some(metadata) }.serialize()
    }

    /// Reads a checkpoint; `name` names it in errors. Anything missing, misshapen or from another
    /// format or version is refused with what is wrong.
    pub fn parse(name: &str, bytes: &[u8]) -> Result<Checkpoint, FormatError> {
        let err = |msg: String| FormatError::Config { file: name.to_string(), msg };
        let file = TensorFile::parse(name, bytes)?;
        let header = header_of(name, &file.metadata)?;
        let w_enc = file.tensors.get("params.W_enc").ok_or_else(|| err("no params.W_enc tensor".into()))?;
        let (d_in, d_sae) = (w_enc.shape.first().copied().unwrap_or(0), header.train.dict);
        // Checked before anything is allocated from the header's sizes.
        if w_enc.shape != [d_in, d_sae] {
            return Err(err(format!("params.W_enc has shape {:?}, expected {:?}", w_enc.shape, [d_in, d_sae])));
        }
        let params_from = |prefix: &str| -> Result<SaeWeights, FormatError> {
            let mut p = SaeWeights::zeros(header.train.arch.encoder_kind(), d_in, d_sae);
            let shapes: Vec<Vec<usize>> = p.tensors().iter().map(|(name, _)| p.shape_of(name)).collect();
            for ((tensor_name, values), shape) in p.tensors_mut().into_iter().zip(shapes) {
                let key = format!("{prefix}.{tensor_name}");
                // Checkpoints of saelab before the one weights type named the gate's bias b_enc.
                let legacy = (tensor_name == "b_gate").then(|| format!("{prefix}.b_enc"));
                let t = file
                    .tensors
                    .get(&key)
                    .or_else(|| legacy.and_then(|k| file.tensors.get(&k)))
                    .ok_or_else(|| err(format!("no {key} tensor")))?;
                if t.shape != shape {
                    return Err(err(format!("{key} has shape {:?}, expected {shape:?}", t.shape)));
                }
                *values = t.to_f32();
            }
            Ok(p)
        };
        let (params, adam_m, adam_v) = (params_from("params")?, params_from("adam_m")?, params_from("adam_v")?);
        let buffer = match file.tensors.get("store.buffer") {
            Some(t) if t.shape.len() == 2 && t.shape[1] == d_in => t.to_f32(),
            Some(t) => return Err(err(format!("store.buffer has shape {:?}, expected [rows, {d_in}]", t.shape))),
            None => Vec::new(),
        };
        let state_text =
            file.metadata.as_ref().and_then(|m| m.get(STATE_KEY)).ok_or_else(|| err(format!("no {STATE_KEY} in its metadata")))?;
        let s: SavedState = serde_json::from_str(state_text).map_err(|e| err(format!("the checkpoint's state is malformed: {e}")))?;
        let trainer = TrainerSnapshot {
            cfg: header.train.clone(),
            step: header.step,
            steps_since_fired: s.steps_since_fired,
            batch_topk_threshold: s.batch_topk_threshold,
            params,
            adam_m,
            adam_v,
            adam_beta_t: s.adam_beta_t,
        };
        let store = StorePosition {
            epochs: s.store_epochs,
            order: s.store_order,
            next: s.store_next,
            rng_state: s.store_rng_state,
            rows_harvested: s.rows_harvested,
            buffer,
        };
        Ok(Checkpoint { header, trainer, store })
    }
}

/// The header alone, read without copying the tensors (to describe a saved run).
pub fn read_header(name: &str, bytes: &[u8]) -> Result<CheckpointHeader, FormatError> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| FormatError::Safetensors { file: name.to_string(), msg: format!("not a checkpoint ({e})") })?;
    header_of(name, meta.metadata())
}

fn header_of(name: &str, metadata: &Option<HashMap<String, String>>) -> Result<CheckpointHeader, FormatError> {
    let err = |msg: String| FormatError::Config { file: name.to_string(), msg };
    let text = metadata
        .as_ref()
        .and_then(|m| m.get(HEADER_KEY))
        .ok_or_else(|| err(format!("not a saelab checkpoint (no {HEADER_KEY} in its metadata)")))?;
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| err(format!("the checkpoint header is not JSON: {e}")))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err(err(format!("not a saelab checkpoint (format is not '{FORMAT}')")));
    }
    if value.get("version").and_then(|v| v.as_u64()) != Some(VERSION as u64) {
        return Err(err(format!(
            "a checkpoint of version {}; this saelab reads version {VERSION}",
            value.get("version").unwrap_or(&serde_json::Value::Null)
        )));
    }
    serde_json::from_value(value).map_err(|e| err(format!("the checkpoint header is malformed: {e}")))
}
