//! An SAELens SAE folder: `cfg.json` + `sae_weights.safetensors` (+ optional `sparsity.safetensors`).
//! Bytes in, a validated [`Sae`] out; and back. Reading a folder from disk is the CLI's business
//! (`load_dir`/`save_dir`, native only); the page hands us the same bytes from file inputs or fetch.

use crate::sae::{EncoderKind, EncoderTensors, Sae, SaeConfig, SaeWeights};

use crate::formats::safetensors::{FloatDtype, RawTensor, TensorFile};
use crate::formats::FormatError;

pub const CFG_FILE: &str = "cfg.json";
pub const WEIGHTS_FILE: &str = "sae_weights.safetensors";
pub const SPARSITY_FILE: &str = "sparsity.safetensors";

fn weights_err(msg: impl Into<String>) -> FormatError {
    FormatError::Safetensors { file: WEIGHTS_FILE.into(), msg: msg.into() }
}

/// The bytes of the three files of an SAE folder.
pub struct SaeFileBytes<'a> {
    pub cfg: &'a [u8],
    pub weights: &'a [u8],
    pub sparsity: Option<&'a [u8]>,
}

/// Parses and validates an SAE: every tensor the architecture needs is present with the shape
/// cfg.json implies, and every value is finite.
pub fn parse_sae(files: SaeFileBytes<'_>) -> Result<Sae, FormatError> {
    let cfg = SaeConfig::parse(files.cfg)?;
    let stored = TensorFile::parse(WEIGHTS_FILE, files.weights)?;
    let log_sparsity = match files.sparsity {
        Some(bytes) => read_sparsity(bytes, cfg.d_sae)?,
        None => None,
    };
    sae_from_tensor_file(cfg, &stored, log_sparsity)
}

/// `sparsity.safetensors`'s `sparsity` tensor, `[d_sae]`, if the file has one.
fn read_sparsity(bytes: &[u8], d_sae: usize) -> Result<Option<Vec<f32>>, FormatError> {
    let file = TensorFile::parse(SPARSITY_FILE, bytes)?;
    match file.tensors.get("sparsity") {
        Some(t) if t.shape == [d_sae] => Ok(Some(t.to_f32())),
        Some(t) => Err(FormatError::Safetensors {
            file: SPARSITY_FILE.into(),
            msg: format!("'sparsity' has shape {:?} but cfg.json says d_sae={d_sae}", t.shape),
        }),
        None => Ok(None),
    }
}

/// The weights of `cfg`'s architecture from a weights file, converted as SAELens's loaders do
/// (older JumpReLU files store `log_threshold`; a BatchTopK training checkpoint one scalar
/// `topk_threshold`).
pub(crate) fn sae_from_tensor_file(cfg: SaeConfig, stored: &TensorFile, log_sparsity: Option<Vec<f32>>) -> Result<Sae, FormatError> {
    let (d_in, d_sae) = (cfg.d_in, cfg.d_sae);
    let tensor = |name: &str, shape: &[usize]| -> Result<Vec<f32>, FormatError> {
        let t = stored
            .tensors
            .get(name)
            .ok_or_else(|| weights_err(format!("missing tensor '{name}' (needed by a {} SAE)", cfg.architecture.name())))?;
        check_shape(name, t, shape, &cfg)?;
        t.finite_f32(name).map_err(weights_err)
    };

    let w_enc = tensor("W_enc", &[d_in, d_sae])?;
    let w_dec = tensor("W_dec", &[d_sae, d_in])?;
    let b_dec = tensor("b_dec", &[d_in])?;
    let encoder = match EncoderKind::of(cfg.architecture) {
        EncoderKind::Bias => EncoderTensors::Bias { b_enc: tensor("b_enc", &[d_sae])? },
        EncoderKind::Threshold => {
            let threshold = if stored.tensors.contains_key("threshold") {
                tensor("threshold", &[d_sae])?
            } else if stored.tensors.contains_key("log_threshold") {
                tensor("log_threshold", &[d_sae])?.into_iter().map(f32::exp).collect()
            } else if let Some(t) = stored.tensors.get("topk_threshold") {
                // SAELens's process_state_dict_for_saving_inference broadcasts the one global
                // threshold to every feature.
                if cfg.rescale_acts_by_decoder_norm {
                    return Err(weights_err(
                        "a batchtopk checkpoint with rescale_acts_by_decoder_norm needs SAELens's inference export (save_inference_model) first",
                    ));
                }
                match t.to_f32().as_slice() {
                    [v] if v.is_finite() => vec![*v; d_sae],
                    _ => return Err(weights_err(format!("'topk_threshold' must be one finite value, has shape {:?}", t.shape))),
                }
            } else {
                return Err(weights_err(format!("missing tensor 'threshold' (needed by a {} SAE)", cfg.architecture.name())));
            };
            EncoderTensors::Threshold { b_enc: tensor("b_enc", &[d_sae])?, threshold }
        }
        EncoderKind::Gated => EncoderTensors::Gated {
            b_gate: tensor("b_gate", &[d_sae])?,
            r_mag: tensor("r_mag", &[d_sae])?,
            b_mag: tensor("b_mag", &[d_sae])?,
        },
    };
    let stored_dtype = stored.tensors.get("W_enc").map(|t| t.dtype).unwrap_or(FloatDtype::F32);
    let w_skip = match &cfg.transcoder {
        Some(t) if t.skip => Some(tensor("W_skip", &[d_in, d_in])?),
        _ => None,
    };
    let weights = SaeWeights { d_in, d_sae, w_enc, w_dec, b_dec, encoder, w_skip };
    Sae::new(cfg, weights, stored_dtype, log_sparsity).map_err(weights_err)
}

fn check_shape(name: &str, t: &RawTensor, expected: &[usize], cfg: &SaeConfig) -> Result<(), FormatError> {
    if t.shape == expected {
        return Ok(());
    }
    Err(weights_err(format!(
        "'{name}' has shape {:?} but cfg.json (d_in={}, d_sae={}) implies {:?}",
        t.shape, cfg.d_in, cfg.d_sae, expected
    )))
}

/// Builds an SAE from a cfg.json object and f32 tensors, with the same checks as files (random
/// SAEs for tests and benchmarks).
pub fn sae_from_f32_tensors(cfg: &serde_json::Value, tensors: &[(&str, Vec<usize>, &[f32])]) -> Result<Sae, FormatError> {
    let file = TensorFile {
        tensors: tensors.iter().map(|(name, shape, data)| (name.to_string(), RawTensor::from_f32(shape.clone(), data))).collect(),
        metadata: None,
    };
    let cfg = SaeConfig::parse(cfg.to_string().as_bytes())?;
    sae_from_tensor_file(cfg, &file, None)
}

/// The three files of an SAE folder as bytes: cfg.json, the weights (by SAELens's names, in the
/// dtype they were stored in), and the sparsity file if the SAE has a sparsity. The one writer of
/// SAE folders: the CLI's save, the page's downloads and training's exports all come here.
pub fn serialize_sae(sae: &Sae) -> (Vec<u8>, Vec<u8>, Option<Vec<u8>>) {
    let w = sae.weights();
    let weights = TensorFile {
        tensors: w
            .tensors()
            .into_iter()
            .map(|(name, values)| (name.to_string(), RawTensor::from_f32_as(sae.stored_dtype, w.shape_of(name), values)))
            .collect(),
        metadata: None,
    };
    let sparsity = sae.log_sparsity.as_ref().map(|s| {
        let tensors = [("sparsity".to_string(), RawTensor::from_f32(vec![s.len()], s))].into_iter().collect();
        TensorFile { tensors, metadata: None }.serialize()
    });
    (sae.cfg.to_json().into_bytes(), weights.serialize(), sparsity)
}

#[cfg(not(target_arch = "wasm32"))]
mod dir {
    use std::path::Path;

    use super::*;

    fn read(path: &Path) -> Result<Vec<u8>, FormatError> {
        std::fs::read(path).map_err(|e| FormatError::Io { file: path.display().to_string(), msg: e.to_string() })
    }

    /// Loads an SAE folder from disk. Error messages name the file with its full path.
    pub fn load_dir(dir: &Path) -> Result<Sae, FormatError> {
        if !dir.is_dir() {
            return Err(FormatError::Io { file: dir.display().to_string(), msg: "not a folder".into() });
        }
        let cfg = read(&dir.join(CFG_FILE))?;
        let weights = read(&dir.join(WEIGHTS_FILE))?;
        let sparsity_path = dir.join(SPARSITY_FILE);
        let sparsity = if sparsity_path.exists() { Some(read(&sparsity_path)?) } else { None };
        parse_sae(SaeFileBytes { cfg: &cfg, weights: &weights, sparsity: sparsity.as_deref() }).map_err(|e| {
            let prefix = |file: String| dir.join(file).display().to_string();
            match e {
                FormatError::Config { file, msg } => FormatError::Config { file: prefix(file), msg },
                FormatError::Safetensors { file, msg } => FormatError::Safetensors { file: prefix(file), msg },
                other => other,
            }
        })
    }

    /// Writes an SAE folder (creating it if needed).
    pub fn save_dir(sae: &Sae, dir: &Path) -> Result<(), FormatError> {
        let io = |p: &Path, e: std::io::Error| FormatError::Io { file: p.display().to_string(), msg: e.to_string() };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let (cfg, weights, sparsity) = serialize_sae(sae);
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.join(name);
            std::fs::write(&p, bytes).map_err(|e| io(&p, e))
        };
        write(CFG_FILE, &cfg)?;
        write(WEIGHTS_FILE, &weights)?;
        if let Some(s) = sparsity {
            write(SPARSITY_FILE, &s)?;
        }
        Ok(())
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use dir::{load_dir, save_dir};

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(arch: &str) -> serde_json::Value {
        serde_json::json!({ "architecture": arch, "d_in": 2, "d_sae": 3, "dtype": "float32", "apply_b_dec_to_input": true,
            "metadata": { "hook_name": "blocks.0.hook_resid_pre", "sae_lens_version": "6.0.0" } })
    }

    fn shared<'a>(w: &'a [f32], bias: &'a [f32]) -> Vec<(&'static str, Vec<usize>, &'a [f32])> {
        vec![("W_enc", vec![2, 3], w), ("W_dec", vec![3, 2], w), ("b_dec", vec![2], &bias[..2]), ("b_enc", vec![3], bias)]
    }

    #[test]
    fn older_thresholds_load_as_saelens_converts_them_and_save_as_threshold() {
        let (w, bias) = ([0.5f32, -1.0, 2.0, 0.25, 1.5, -0.5], [0.1f32, 0.2, 0.3]);
        let log_threshold = [0.0f32, 1.0, -2.0];
        let mut tensors = shared(&w, &bias);
        tensors.push(("log_threshold", vec![3], &log_threshold));
        let sae = sae_from_f32_tensors(&cfg("jumprelu"), &tensors).unwrap();
        let want: Vec<f32> = log_threshold.iter().map(|v| v.exp()).collect();
        assert_eq!(sae.weights().tensor("threshold").unwrap(), &want);
        let (_, weights, _) = serialize_sae(&sae);
        let saved = TensorFile::parse(WEIGHTS_FILE, &weights).unwrap();
        assert_eq!(saved.tensors.keys().collect::<Vec<_>>(), ["W_dec", "W_enc", "b_dec", "b_enc", "threshold"]);
        assert_eq!(saved.tensors["threshold"].to_f32(), want);

        // A BatchTopK training checkpoint's one threshold, for every feature.
        let mut tensors = shared(&w, &bias);
        tensors.push(("topk_threshold", vec![], &[0.75]));
        let mut batchtopk = cfg("batchtopk");
        batchtopk["k"] = 2.into();
        let sae = sae_from_f32_tensors(&batchtopk, &tensors).unwrap();
        assert_eq!(sae.weights().tensor("threshold").unwrap(), &[0.75; 3]);
    }

    #[test]
    fn weights_that_are_not_the_architectures_are_refused() {
        let (w, bias) = ([0.5f32; 6], [0.1f32; 3]);
        let sae = sae_from_f32_tensors(&cfg("standard"), &shared(&w, &bias)).unwrap();
        let gated_cfg = SaeConfig::parse(cfg("gated").to_string().as_bytes()).unwrap();
        let e = Sae::new(gated_cfg, sae.weights().clone(), FloatDtype::F32, None).unwrap_err();
        assert!(e.contains("a gated SAE has the tensors [\"b_gate\", \"r_mag\", \"b_mag\"]"), "{e}");
        let e = Sae::new(sae.cfg.clone(), sae.weights().clone(), FloatDtype::F32, Some(vec![0.0; 2])).unwrap_err();
        assert!(e.contains("d_sae=3"), "{e}");
        let e = sae.clone().with_weights(|w| w.b_dec.push(1.0)).unwrap_err();
        assert!(e.contains("not shaped for d_in=2, d_sae=3"), "{e}");
        assert!(sae.with_weights(|w| w.b_dec[0] = 7.0).is_ok());
    }
}
