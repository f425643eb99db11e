//! Models put on the GPU from their files' bytes as the page puts them (`gpu::model_stream`): the
//! headers first, then each tensor's bytes straight into its GPU buffer, only norms, biases,
//! learned positions and transposed matrices through host memory. The result must be the model
//! the host path uploads — bit for bit, since the same values reach the same kernels — on every
//! family's fixture, in f32, bf16 and f16, sharded, and with mixed dtypes; bad files are errors.
//! Fails without a GPU adapter.

mod common;

use std::path::{Path, PathBuf};

use common::gpu;
use saelab::formats::safetensors::{FloatDtype, TensorFile};
use saelab::gpu::model_runner::GpuModel;
use saelab::gpu::model_stream::upload_model_dir;
use saelab::gpu::Gpu;
use saelab::model::files::{load_model_dir, serialize_weights};
use saelab::model::{cpu, Model};

fn families_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/families")
}

fn tokens(model: &Model) -> Vec<u32> {
    (0..13u32).map(|i| (i * 41 + 7) % model.cfg.vocab_size as u32).collect()
}

/// Streamed and host-uploaded models give the same logits and hook values, bit for bit.
fn assert_same(gpu: &Gpu, streamed: &GpuModel, uploaded: &GpuModel, model: &Model, what: &str) {
    let names = model.cfg.hook_points();
    let t = tokens(model);
    let a = pollster::block_on(streamed.forward(gpu, &t, &names)).unwrap();
    let b = pollster::block_on(uploaded.forward(gpu, &t, &names)).unwrap();
    assert_eq!(a.logits, b.logits, "{what}: logits");
    for ((name, x), y) in names.iter().zip(&a.hooks).zip(&b.hooks) {
        assert_eq!(x, y, "{what}: {name}");
    }
    assert_eq!(streamed.weight_bytes(), uploaded.weight_bytes(), "{what}: GPU bytes");
}

/// A scratch folder with `config.json` from `from` and `files`.
fn folder(name: &str, from: &Path, files: &[(String, Vec<u8>)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("saelab-gpu-stream-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(from.join("config.json"), dir.join("config.json")).unwrap();
    for (file, bytes) in files {
        std::fs::write(dir.join(file), bytes).unwrap();
    }
    dir
}

/// The bytes of every 1-D tensor (norms, biases) in a model file: what must pass through the host
/// when every matrix goes straight.
fn vector_bytes(file: &TensorFile) -> u64 {
    file.tensors.values().filter(|t| t.shape.len() == 1).map(|t| t.bytes.len() as u64).sum()
}

#[test]
fn every_family_streams_to_the_gpu_as_the_host_path_uploads_it() {
    let gpu = gpu();
    let mut dirs: Vec<_> =
        std::fs::read_dir(families_dir()).unwrap().map(|e| e.unwrap().path()).filter(|d| d.join("model.safetensors").exists()).collect();
    dirs.sort();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let model = load_model_dir(dir).unwrap();
        // A 4 KiB binding limit splits the embeddings; 1,028-byte pieces cut tensors anywhere.
        let (streamed, stats) = upload_model_dir(&gpu, dir, 4096, 1028).unwrap();
        let uploaded = GpuModel::upload_with_limit(&gpu, &model, 4096).unwrap();
        assert_same(&gpu, &streamed, &uploaded, &model, &name);
        assert_eq!(streamed.cfg, model.cfg, "{name}: config");
        let mut file = TensorFile::parse("model.safetensors", &std::fs::read(dir.join("model.safetensors")).unwrap()).unwrap();
        if model.cfg.model_type == "gemma3" {
            // A multimodal Gemma 3's vision tower and projector are read by neither path.
            let before = file.tensors.len();
            file.tensors.retain(|name, _| name.starts_with("language_model."));
            assert!(file.tensors.len() < before, "{name}: the fixture has a vision tower");
        }
        let data: u64 = file.tensors.values().map(|t| t.bytes.len() as u64).sum();
        if model.cfg.model_type == "gpt2" {
            // Conv1D matrices are read transposed and learned positions kept in f32: through the host.
            assert!(stats.host_bytes > data / 2, "{name}: {stats:?} of {data}");
        } else {
            // Every matrix straight to the GPU; only norms and biases through the host.
            assert_eq!(stats.host_bytes, vector_bytes(&file), "{name}: {stats:?}");
            assert_eq!(stats.host_bytes + stats.straight_bytes, data, "{name}: {stats:?}");
        }
        // And the GPU model computes what the CPU reference does.
        let t = tokens(&model);
        let (logits, _) = cpu::run_with_hooks(&model, &t, &[]).unwrap();
        let got = pollster::block_on(streamed.forward(&gpu, &t, &[])).unwrap();
        let worst = got.logits.iter().zip(&logits).map(|(a, b)| (a - b).abs() / (1.0 + b.abs())).fold(0.0f32, f32::max);
        assert!(worst <= 1e-4, "{name}: worst logit difference {worst}");
    }
    assert!(dirs.len() >= 14, "{} fixture models", dirs.len());
}

/// bf16 and f16 checkpoints stay in their dtype on the GPU, one sharded, one with its tensors in
/// two dtypes (each projection keeps its own), and GPT-2 in bf16 (transposed through the host).
#[test]
fn half_precision_sharded_and_mixed_checkpoints_stream() {
    let gpu = gpu();
    for (family, dtype, shard) in
        [("gemma3_hub", FloatDtype::BF16, Some(20_000)), ("llama3_scaled", FloatDtype::F16, None), ("gpt2", FloatDtype::BF16, Some(30_000))]
    {
        let src = families_dir().join(family);
        let mut model = load_model_dir(&src).unwrap();
        model.weights = model.weights.in_precision(dtype);
        let weights = serialize_weights(&model, dtype).unwrap();
        let files = match shard {
            None => vec![("model.safetensors".to_string(), weights)],
            Some(max) => {
                let (index, shards) = saelab::formats::shards::shard(&TensorFile::parse("model.safetensors", &weights).unwrap(), max);
                assert!(shards.len() > 2, "{family}: {} shards", shards.len());
                std::iter::once(("model.safetensors.index.json".to_string(), index)).chain(shards).collect()
            }
        };
        let dir = folder(family, &src, &files);
        let (streamed, stats) = upload_model_dir(&gpu, &dir, 1 << 20, 4 << 10).unwrap();
        let uploaded = GpuModel::upload(&gpu, &load_model_dir(&dir).unwrap()).unwrap();
        assert_same(&gpu, &streamed, &uploaded, &model, &format!("{family} in {dtype:?}"));
        if family != "gpt2" {
            assert!(stats.host_bytes * 20 < stats.straight_bytes, "{family}: {stats:?}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
    // Mixed: the MLP in f16, everything else bf16. The host path widens all to f32 on the GPU;
    // the stream keeps each projection's own dtype, so the two agree to rounding, not bits.
    let src = families_dir().join("qwen3");
    let model = load_model_dir(&src).unwrap();
    let mut file = TensorFile::parse("model.safetensors", &serialize_weights(&model, FloatDtype::BF16).unwrap()).unwrap();
    for (name, t) in file.tensors.iter_mut().filter(|(n, _)| n.contains(".mlp.")) {
        *t = saelab::formats::safetensors::RawTensor::from_f32_as(FloatDtype::F16, t.shape.clone(), &t.finite_f32(name).unwrap());
    }
    let dir = folder("mixed", &src, &[("model.safetensors".into(), file.serialize())]);
    let host = load_model_dir(&dir).unwrap();
    assert_eq!(host.weights.dtype, FloatDtype::F32, "a mixed checkpoint is f32 on the host path");
    let (streamed, _) = upload_model_dir(&gpu, &dir, 1 << 20, 4 << 10).unwrap();
    let t = tokens(&host);
    let (logits, _) = cpu::run_with_hooks(&host, &t, &[]).unwrap();
    let got = pollster::block_on(streamed.forward(&gpu, &t, &[])).unwrap();
    let worst = got.logits.iter().zip(&logits).map(|(a, b)| (a - b).abs() / (1.0 + b.abs())).fold(0.0f32, f32::max);
    assert!(worst <= 1e-4, "mixed dtypes: worst logit difference {worst}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Damaged files are errors that say what is wrong, before or while streaming; nothing panics.
#[test]
fn damaged_checkpoints_are_refused_with_a_reason() {
    let gpu = gpu();
    let src = families_dir().join("llama_gqa");
    let good = std::fs::read(src.join("model.safetensors")).unwrap();
    let header = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize + 8;
    let mut oversized_header = good.clone();
    oversized_header[..8].copy_from_slice(&(good.len() as u64 * 2).to_le_bytes());
    let mut nan = TensorFile::parse("model.safetensors", &good).unwrap();
    let norm = nan.tensors.keys().find(|n| n.ends_with("input_layernorm.weight")).unwrap().clone();
    let t = nan.tensors.get_mut(&norm).unwrap();
    t.bytes[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("truncated data", good[..good.len() - 10].to_vec(), "shorter than the header says"),
        ("truncated header", good[..header - 3].to_vec(), "runs past the end"),
        ("too short", good[..5].to_vec(), "too short"),
        ("header larger than the file", oversized_header, "header"),
        ("a NaN norm", nan.serialize(), "non-finite"),
    ];
    for (what, bytes, expect) in cases {
        let dir = folder(&what.replace(' ', "-"), &src, &[("model.safetensors".into(), bytes)]);
        let e = upload_model_dir(&gpu, &dir, 1 << 20, 4096).err().unwrap_or_else(|| panic!("{what}: loaded"));
        assert!(e.contains(expect), "{what}: {e}");
        let _ = std::fs::remove_dir_all(dir);
    }
    // A tensor missing from the checkpoint: the family's own message, as on the host path.
    let mut missing = TensorFile::parse("model.safetensors", &good).unwrap();
    missing.tensors.remove(&norm);
    let dir = folder("missing", &src, &[("model.safetensors".into(), missing.serialize())]);
    let e = upload_model_dir(&gpu, &dir, 1 << 20, 4096).err().unwrap();
    assert!(e.contains(&format!("missing tensor '{norm}'")), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

/// An SAE at `hook` of `model` with random weights.
fn random_sae(model: &Model, hook: &str, d_sae: usize, seed: u64) -> saelab::sae::Sae {
    let d = model.cfg.hook_width(model.cfg.hook_point(hook).unwrap());
    let cfg = serde_json::json!({
        "architecture": "standard", "d_in": d, "d_sae": d_sae, "dtype": "float32", "apply_b_dec_to_input": false,
        "normalize_activations": "none", "metadata": { "hook_name": hook, "model_name": "test" },
    });
    let (w_enc, w_dec) = (common::random_input(d, d_sae, seed), common::random_input(d_sae, d, seed + 1));
    let tensors: [(&str, Vec<usize>, &[f32]); 4] = [
        ("W_enc", vec![d, d_sae], &w_enc),
        ("b_enc", vec![d_sae], &vec![0.0; d_sae]),
        ("W_dec", vec![d_sae, d], &w_dec),
        ("b_dec", vec![d], &vec![0.0; d]),
    ];
    saelab::sae::files::sae_from_f32_tensors(&cfg, &tensors).unwrap()
}

/// A model only on the GPU identifies itself as its host copy does (the fingerprint saved runs
/// and dashboards are matched by) and computes a feature's logit lens from the GPU's weights as
/// the host computes it from its own, at the residual stream and through W_O at `attn.hook_z`.
#[test]
fn a_model_only_on_the_gpu_has_the_host_models_fingerprint_and_logit_lens() {
    use saelab::lm::{LoadedModel, ModelInfo};
    use std::rc::Rc;
    let gpu = Rc::new(gpu());
    for family in ["gpt2", "gemma3_hub", "gpt_neox_parallel", "qwen2"] {
        let dir = families_dir().join(family);
        let host = load_model_dir(&dir).unwrap();
        let (streamed, _) = upload_model_dir(&gpu, &dir, 4096, 1 << 16).unwrap();
        let loaded = pollster::block_on(LoadedModel::on_gpu_only(gpu.clone(), streamed)).unwrap();
        assert!(loaded.host().is_none());
        assert_eq!(loaded.fingerprint(), saelab::fingerprint::model(&host), "{family}: fingerprint");
        for hook in ["blocks.1.hook_resid_post", "blocks.0.attn.hook_z"] {
            let sae = random_sae(&host, hook, 24, 3);
            for feature in [0, 23] {
                let (top, bottom) = saelab::lm::logit_lens(&host, &sae, feature, 6).unwrap();
                let (gtop, gbottom) = pollster::block_on(loaded.logit_lens(&sae, feature, 6)).unwrap();
                for ((t, e), (gt, ge)) in top.iter().chain(&bottom).zip(gtop.iter().chain(&gbottom)) {
                    assert!((e - ge).abs() <= 1e-4 * (1.0 + e.abs()), "{family} {hook} feature {feature}: {e} vs {ge}");
                    // The same tokens in the same order (random weights leave no near-ties here).
                    assert_eq!(t, gt, "{family} {hook} feature {feature}: token");
                }
            }
        }
    }
    // Another model is another fingerprint.
    let a = load_model_dir(&families_dir().join("qwen2")).unwrap();
    let b = load_model_dir(&families_dir().join("qwen3")).unwrap();
    assert_ne!(saelab::fingerprint::model(&a), saelab::fingerprint::model(&b));
}
