//! The GPU forward pass against the CPU reference (and so against Hugging Face and TransformerLens,
//! through tests/gpt2_parity.rs and tests/families.rs): logits and every hook point, on the GPT-2
//! transformers fixtures, on every family's fixture model (GQA, sliding windows shorter than the
//! text, soft caps, q/k norms, partial rotary, parallel blocks, Gemma's four norms) and on random
//! models whose embedding is split over several bindings. Fails without a GPU adapter.

mod common;

use std::path::Path;

use common::gpu;
use saelab::gpu::model_runner::GpuModel;
use saelab::model::files::{load_model_dir, random_gpt2};
use saelab::model::{cpu, HookPoint, Model};

/// f32 sums in another order (tiled matmuls, tree reductions) through a few layers:
/// |gpu − cpu| ≤ 1e-4 · (1 + |cpu|).
const TOL: f32 = 1e-4;

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs() / (1.0 + b.abs())).fold(0.0f32, f32::max);
    assert!(worst <= TOL, "{what}: worst relative difference {worst}");
}

fn compare(gpu: &saelab::gpu::Gpu, model: &Model, gpu_model: &GpuModel, tokens: &[u32], what: &str) {
    let names = model.cfg.hook_points();
    let (logits, hooks) = cpu::run_with_hooks(model, tokens, &names).unwrap();
    let got = pollster::block_on(gpu_model.forward(gpu, tokens, &names)).unwrap();
    assert_close(&format!("{what} logits"), &got.logits, &logits);
    for ((name, g), c) in names.iter().zip(&got.hooks).zip(&hooks) {
        assert_close(&format!("{what} {name}"), g, c);
    }
}

#[test]
fn gpu_forward_matches_the_cpu_reference_on_the_transformers_fixtures() {
    let gpu = gpu();
    for case in ["tied_f32", "bare_f16", "untied_bf16"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2").join(case);
        let model = load_model_dir(&dir).unwrap();
        let bytes = std::fs::read(dir.join("tokens.npy")).unwrap();
        let tokens: Vec<u32> = saelab::formats::npy::read_i64("tokens", &bytes).unwrap().1.into_iter().map(|t| t as u32).collect();
        let gpu_model = GpuModel::upload(&gpu, &model).unwrap();
        compare(&gpu, &model, &gpu_model, &tokens, case);
        // One token, and the whole context.
        compare(&gpu, &model, &gpu_model, &tokens[..1], &format!("{case}, 1 token"));
        let full: Vec<u32> = (0..model.cfg.max_positions as u32).map(|i| (i * 7 + 3) % model.cfg.vocab_size as u32).collect();
        compare(&gpu, &model, &gpu_model, &full, &format!("{case}, full context"));
    }
}

#[test]
fn embeddings_larger_than_a_binding_are_split() {
    let gpu = gpu();
    // 1000 × 24 floats = 96,000 bytes per table; a 10,000-byte limit makes 10 chunks of 104 rows.
    for tied in [true, false] {
        let model = random_gpt2(1000, 70, 24, 2, 4, tied, 11);
        let gpu_model = GpuModel::upload_with_limit(&gpu, &model, 10_000).unwrap();
        assert_eq!(gpu_model.embedding_chunks(), 10);
        // Tokens from every chunk, the last row included; 70 positions, more than one attention
        // pass of 64 keys per thread group.
        let tokens: Vec<u32> = (0..70u32).map(|i| if i == 5 { 999 } else { (i * 149) % 1000 }).collect();
        compare(&gpu, &model, &gpu_model, &tokens, &format!("split embedding (tied: {tied})"));
    }
}

#[test]
fn bad_tokens_and_hooks_are_errors() {
    let gpu = gpu();
    let model = random_gpt2(50, 8, 8, 1, 2, true, 1);
    let g = GpuModel::upload(&gpu, &model).unwrap();
    let err = |tokens: &[u32], hooks: &[&str]| {
        let hooks: Vec<HookPoint> = hooks.iter().map(|h| h.parse().unwrap()).collect();
        pollster::block_on(g.forward(&gpu, tokens, &hooks)).err().expect("an error").to_string()
    };
    assert!(err(&[1, 50], &[]).contains("outside the vocabulary"));
    assert!(err(&[1; 9], &[]).contains("more than the model's context of 8"));
    assert!(err(&[1], &["blocks.1.hook_resid_pre"]).contains("not a hook point"));
}

#[test]
fn interventions_change_the_gpu_run_as_they_change_the_cpu_run() {
    use saelab::model::Intervention;
    use saelab::random::Rng;
    let gpu = gpu();
    let model = random_gpt2(97, 20, 18, 3, 3, false, 4);
    let g = GpuModel::upload(&gpu, &model).unwrap();
    let tokens: Vec<u32> = (0..13).map(|i| (i * 31 + 2) % 97).collect();
    let mut rng = Rng::new(9);
    let replacement = rng.normals(13 * 18, 1.0);
    let vector = rng.normals(18, 2.0);
    let capture: Vec<HookPoint> =
        ["blocks.1.hook_resid_mid", "blocks.0.attn.hook_z", "blocks.2.hook_resid_post"].map(|h| h.parse().unwrap()).to_vec();
    let hook = |name: &str| -> HookPoint { name.parse().unwrap() };
    for interventions in [
        vec![Intervention::Replace { hook: hook("blocks.1.hook_resid_mid"), values: &replacement }],
        vec![Intervention::AddToEveryToken { hook: hook("blocks.0.attn.hook_z"), vector: &vector }],
        vec![
            Intervention::Replace { hook: hook("hook_embed"), values: &replacement },
            Intervention::AddToEveryToken { hook: hook("blocks.2.hook_resid_post"), vector: &vector },
        ],
    ] {
        let (logits, hooks) = cpu::run(&model, &tokens, &capture, &interventions).unwrap();
        let got = pollster::block_on(g.run(&gpu, &tokens, &capture, &interventions)).unwrap();
        assert_close(&format!("{interventions:?} logits"), &got.logits, &logits);
        for ((name, a), b) in capture.iter().zip(&got.hooks).zip(&hooks) {
            assert_close(&format!("{interventions:?} {name}"), a, b);
        }
    }
    // The replaced activation is what the hook shows, and what follows it moved.
    let (_, hooks) = cpu::run(&model, &tokens, &capture, &[Intervention::Replace { hook: capture[0], values: &replacement }]).unwrap();
    assert_eq!(hooks[0], replacement);
    let clean = pollster::block_on(g.forward(&gpu, &tokens, &capture)).unwrap();
    assert!(clean.hooks[2].iter().zip(&hooks[2]).any(|(a, b)| (a - b).abs() > 1e-2));
    let wrong = [Intervention::Replace { hook: capture[0], values: &replacement[..5] }];
    assert!(pollster::block_on(g.run(&gpu, &tokens, &[], &wrong)).err().unwrap().to_string().contains("needs 13 × 18 values"));
}

/// Every family's fixture model (tests/fixtures/families, made with transformers) on the GPU as on
/// the CPU, every hook point included, and interventions at the points only some families have.
#[test]
fn every_family_runs_on_the_gpu_as_on_the_cpu() {
    use saelab::model::{BlockSite, Intervention};
    let gpu = gpu();
    let mut ran = 0;
    let mut dirs: Vec<_> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/families"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|d| d.join("model.safetensors").exists())
        .collect();
    dirs.sort();
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let model = load_model_dir(&dir).unwrap();
        let g = GpuModel::upload_with_limit(&gpu, &model, 4096).unwrap();
        let tokens: Vec<u32> = (0..17u32).map(|i| (i * 37 + 5) % model.cfg.vocab_size as u32).collect();
        compare(&gpu, &model, &g, &tokens, &name);
        compare(&gpu, &model, &g, &tokens[..1], &format!("{name}, 1 token"));
        let z = HookPoint::block(1, BlockSite::AttnZ);
        let steer = vec![0.25; model.cfg.hook_width(z)];
        let mlp_in = HookPoint::block(0, BlockSite::MlpIn);
        let zeros = vec![0.0; tokens.len() * model.cfg.d_model];
        let interventions =
            [Intervention::AddToEveryToken { hook: z, vector: &steer }, Intervention::Replace { hook: mlp_in, values: &zeros }];
        let capture = [mlp_in, HookPoint::block(0, BlockSite::MlpOut), z, HookPoint::FinalNormalized];
        let (logits, hooks) = cpu::run(&model, &tokens, &capture, &interventions).unwrap();
        let got = pollster::block_on(g.run(&gpu, &tokens, &capture, &interventions)).unwrap();
        assert_close(&format!("{name} steered logits"), &got.logits, &logits);
        for ((hook, a), b) in capture.iter().zip(&got.hooks).zip(&hooks) {
            assert_close(&format!("{name} steered {hook}"), a, b);
        }
        for hook in [HookPoint::block(1, BlockSite::Ln2Out), z] {
            let acts = pollster::block_on(g.activations_at(&gpu, &tokens, hook)).unwrap();
            assert_close(&format!("{name} harvest {hook}"), &acts, &cpu::activations_at(&model, &tokens, hook).unwrap());
        }
        ran += 1;
    }
    assert!(ran >= 14, "{ran} families ran");
}

/// GPT-2 small's own config.json (the `gpt2` repository's, tests/fixtures/gpt2_small_config.json)
/// parses to its shape, and a model of that shape (one layer, random weights: the embedding is
/// what needs care) runs on the GPU as on the CPU, its 147 MiB token embedding split over bindings
/// where the adapter's limit is smaller (lavapipe: 128 MiB).
#[test]
fn gpt2_small_shape_runs_with_its_embedding_split() {
    let config = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2_small_config.json")).unwrap();
    let cfg = saelab::model::families::describe(&config).unwrap();
    assert_eq!(cfg, saelab::model::families::gpt2::config(50257, 1024, 768, 12, 12, true));
    let gpu = gpu();
    let model = saelab::model::files::random_gpt2_small(1, 2);
    let gpu_model = GpuModel::upload(&gpu, &model).unwrap();
    let table_bytes = (50257 * 768 * 4) as u64;
    assert_eq!(gpu_model.embedding_chunks() as u64, table_bytes.div_ceil(gpu.max_binding_bytes() / (768 * 4) * (768 * 4)));
    // The first and the last token of the vocabulary, and one in between.
    compare(&gpu, &model, &gpu_model, &[0, 50256, 31337], "gpt2-small shape, 1 layer");
}

/// Half precision stays half precision on the GPU: every family's fixture model with its weights in
/// bf16 and in f16 (two values a word, widened in the shaders, f32 accumulation) runs as the CPU
/// reference runs the same values, at every hook.
#[test]
fn half_precision_weights_run_as_the_cpu_runs_them() {
    use saelab::formats::safetensors::FloatDtype;
    let gpu = gpu();
    for (family, dtype) in [
        ("gemma2", FloatDtype::BF16),
        ("gemma3_hub", FloatDtype::BF16),
        ("llama3_scaled", FloatDtype::F16),
        ("gpt_neox_parallel", FloatDtype::BF16),
        ("qwen3", FloatDtype::F16),
    ] {
        let mut model = load_model_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/families").join(family)).unwrap();
        model.weights = model.weights.in_precision(dtype);
        let g = GpuModel::upload_with_limit(&gpu, &model, 4096).unwrap();
        let tokens: Vec<u32> = (0..15u32).map(|i| (i * 29 + 3) % model.cfg.vocab_size as u32).collect();
        compare(&gpu, &model, &g, &tokens, &format!("{family} in {dtype:?}"));
    }
}

/// A bf16 model's GPU buffers total at most 1.1 × its weight bytes (2 per parameter; norms,
/// biases and the linear layers' per-column epilogue parameters are the rest), against 2 × for f32.
#[test]
fn a_bf16_model_takes_two_bytes_a_parameter_on_the_gpu() {
    use saelab::formats::safetensors::FloatDtype;
    let gpu = gpu();
    let json = r#"{"model_type": "gemma2", "vocab_size": 4096, "hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64, "query_pre_attn_scalar": 64, "sliding_window": 8}"#;
    let cfg = saelab::model::families::describe(json.as_bytes()).unwrap();
    let weights = saelab::model::decoder_weights::DecoderWeights::random(&cfg, 5);
    let params: u64 = {
        let w = &weights;
        let linear = |l: &saelab::model::decoder_weights::Linear| (l.weight.len() + l.bias.as_ref().map_or(0, Vec::len)) as u64;
        let norm = |n: &saelab::model::decoder_weights::NormWeights| (n.weight.len() + n.bias.as_ref().map_or(0, Vec::len)) as u64;
        (w.embed.len() + w.unembed.as_ref().map_or(0, Vec::len)) as u64
            + norm(&w.final_norm)
            + w.layers
                .iter()
                .map(|l| {
                    [&l.q, &l.k, &l.v, &l.o, &l.up, &l.down].into_iter().chain(&l.gate).map(linear).sum::<u64>()
                        + [&l.attn_norm, &l.mlp_norm]
                            .into_iter()
                            .chain([&l.post_attn_norm, &l.post_mlp_norm].into_iter().flatten())
                            .map(norm)
                            .sum::<u64>()
                })
                .sum::<u64>()
    };
    let f32_model = Model { cfg: cfg.clone(), weights: weights.clone() };
    let bf16_model = Model { cfg, weights: weights.in_precision(FloatDtype::BF16) };
    let (f32_bytes, bf16_bytes) =
        (GpuModel::upload(&gpu, &f32_model).unwrap().weight_bytes(), GpuModel::upload(&gpu, &bf16_model).unwrap().weight_bytes());
    let weight_bytes = 2 * params;
    println!(
        "{params} parameters: bf16 {bf16_bytes} GPU bytes ({:.3} × 2 bytes a parameter), f32 {f32_bytes}",
        bf16_bytes as f64 / weight_bytes as f64
    );
    assert!(bf16_bytes as f64 <= 1.1 * weight_bytes as f64, "bf16: {bf16_bytes} GPU bytes for {weight_bytes} bytes of weights");
    assert!(f32_bytes as f64 >= 1.9 * bf16_bytes as f64, "f32 {f32_bytes} vs bf16 {bf16_bytes}");
}
