//! The GPU forward pass of GPT-2 against the CPU reference (and so against Hugging Face, through
//! tests/gpt2_parity.rs): logits and every hook point, on the transformers fixtures and on a random
//! model whose embedding is split over several bindings. Fails without a GPU adapter.

mod common;

use std::path::Path;

use common::gpu;
use saelab::gpu::model_runner::GpuGpt2;
use saelab::model::files::load_model_dir;
use saelab::model::{cpu, Gpt2, Gpt2Config, HookPoint};

/// f32 sums in another order (tiled matmuls, tree reductions) through a few layers:
/// |gpu − cpu| ≤ 1e-4 · (1 + |cpu|).
const TOL: f32 = 1e-4;

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs() / (1.0 + b.abs())).fold(0.0f32, f32::max);
    assert!(worst <= TOL, "{what}: worst relative difference {worst}");
}

fn compare(gpu: &saelab::gpu::Gpu, model: &Gpt2, gpu_model: &GpuGpt2, tokens: &[u32], what: &str) {
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
        let gpu_model = GpuGpt2::upload(&gpu, &model).unwrap();
        compare(&gpu, &model, &gpu_model, &tokens, case);
        // One token, and the whole context.
        compare(&gpu, &model, &gpu_model, &tokens[..1], &format!("{case}, 1 token"));
        let full: Vec<u32> = (0..model.cfg.n_positions as u32).map(|i| (i * 7 + 3) % model.cfg.vocab_size as u32).collect();
        compare(&gpu, &model, &gpu_model, &full, &format!("{case}, full context"));
    }
}

#[test]
fn embeddings_larger_than_a_binding_are_split() {
    let gpu = gpu();
    // 1000 × 24 floats = 96,000 bytes per table; a 10,000-byte limit makes 10 chunks of 104 rows.
    let cfg = Gpt2Config {
        vocab_size: 1000,
        n_positions: 70,
        d_model: 24,
        n_layers: 2,
        n_heads: 4,
        d_mlp: 52,
        layer_norm_eps: 1e-5,
        scale_attn_weights: true,
    };
    for tied in [true, false] {
        let model = Gpt2::random(cfg.clone(), tied, 11);
        let gpu_model = GpuGpt2::upload_with_limit(&gpu, &model, 10_000).unwrap();
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
    let cfg = Gpt2Config {
        vocab_size: 50,
        n_positions: 8,
        d_model: 8,
        n_layers: 1,
        n_heads: 2,
        d_mlp: 16,
        layer_norm_eps: 1e-5,
        scale_attn_weights: true,
    };
    let model = Gpt2::random(cfg, true, 1);
    let g = GpuGpt2::upload(&gpu, &model).unwrap();
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
    let cfg = Gpt2Config {
        vocab_size: 97,
        n_positions: 20,
        d_model: 18,
        n_layers: 3,
        n_heads: 3,
        d_mlp: 30,
        layer_norm_eps: 1e-5,
        scale_attn_weights: true,
    };
    let model = Gpt2::random(cfg, false, 4);
    let g = GpuGpt2::upload(&gpu, &model).unwrap();
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

/// GPT-2 small's own config.json (the `gpt2` repository's, tests/fixtures/gpt2_small_config.json)
/// parses to its shape, and a model of that shape (one layer, random weights: the embedding is
/// what needs care) runs on the GPU as on the CPU, its 147 MiB token embedding split over bindings
/// where the adapter's limit is smaller (lavapipe: 128 MiB).
#[test]
fn gpt2_small_shape_runs_with_its_embedding_split() {
    let config = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2_small_config.json")).unwrap();
    let (cfg, tied) = saelab::model::files::parse_config(&config).unwrap();
    assert_eq!((cfg.clone(), tied), (Gpt2Config::gpt2_small(), true));
    let gpu = gpu();
    let mut one_layer = cfg;
    one_layer.n_layers = 1;
    let model = Gpt2::random(one_layer, true, 2);
    let gpu_model = GpuGpt2::upload(&gpu, &model).unwrap();
    let table_bytes = (50257 * 768 * 4) as u64;
    assert_eq!(gpu_model.embedding_chunks() as u64, table_bytes.div_ceil(gpu.max_binding_bytes() / (768 * 4) * (768 * 4)));
    // The first and the last token of the vocabulary, and one in between.
    compare(&gpu, &model, &gpu_model, &[0, 50256, 31337], "gpt2-small shape, 1 layer");
}
