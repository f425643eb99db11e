//! Feature dashboards against a brute-force recount: the sparse per-feature record of an SAE run
//! over a sample equals the dense activations of `lm::run_text` on each context (CPU and GPU),
//! and each dashboard's density, maximum, histogram, top examples and quantile examples follow from
//! it; nearest features by decoder cosine equal a direct computation.

mod common;

use std::path::Path;

use saelab::backend::Backend;
use saelab::dashboard::{self, nearest_features};
use saelab::lm;
use saelab::model::files::load_model_dir;
use saelab::sae::random::random_sae_with;

const HOOK: &str = "blocks.1.hook_resid_pre";

fn setup() -> (saelab::model::Model, saelab::sae::Sae, Vec<u32>) {
    let model = load_model_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2/tied_f32")).unwrap();
    let mut cfg = serde_json::Map::new();
    cfg.insert("hook_name".into(), HOOK.into());
    let sae = random_sae_with("topk", 60, 77, 5, 9, cfg);
    let sample: Vec<u32> = (0..95u32).map(|i| (i * 31 + i / 3) % 210 + 1).collect();
    (model, sae, sample)
}

#[test]
fn dashboards_follow_from_the_dense_activations() {
    let (model, sae, sample) = setup();
    let mut calls = Vec::new();
    // Context 20 with BOS: 19 sample tokens each, the last context shorter (95 = 5·19).
    let run = pollster::block_on(dashboard::run_sample(
        &common::model_on(&model, &Backend::Cpu),
        &common::sae_on(&sae, &Backend::Cpu),
        &sample,
        Some(0),
        20,
        |done, total| calls.push((done, total)),
    ))
    .unwrap();
    assert_eq!(calls.last(), Some(&(5, 5)));
    assert_eq!(run.n_tokens, 95);
    // Brute force: dense activations of each context, BOS row dropped.
    let mut dense_rows: Vec<(usize, usize, Vec<f32>)> = Vec::new();
    for (c, chunk) in sample.chunks(19).enumerate() {
        let tokens: Vec<u32> = std::iter::once(0).chain(chunk.iter().copied()).collect();
        let r = pollster::block_on(lm::run_text(&common::model_on(&model, &Backend::Cpu), &common::sae_on(&sae, &Backend::Cpu), &tokens))
            .unwrap();
        for (p, row) in r.sae_acts.chunks_exact(77).skip(1).enumerate() {
            dense_rows.push((c, p, row.to_vec()));
        }
    }
    for f in 0..77 {
        let want: Vec<(usize, usize, f32)> = dense_rows.iter().filter(|r| r.2[f] > 0.0).map(|r| (r.0, r.1, r.2[f])).collect();
        let got: Vec<(usize, usize, f32)> = run.fired[f].iter().map(|e| (e.context, e.position, e.activation)).collect();
        assert_eq!(got, want, "feature {f}");
    }
    let summaries = run.summaries();
    let busiest = summaries.iter().max_by(|a, b| a.density.total_cmp(&b.density)).unwrap().feature;
    let d = run.dashboard(busiest, 4, 10, 3, 2);
    assert_eq!(d.density, run.fired[busiest].len() as f32 / 95.0);
    assert_eq!(d.max_activation, run.fired[busiest].iter().map(|e| e.activation).fold(0.0, f32::max));
    assert_eq!(d.histogram.iter().sum::<u32>() as usize, run.fired[busiest].len());
    assert!(d.histogram[9] >= 1, "the maximum falls in the last bin");
    assert!(d.top.len() == 4 && d.top[0].activation == d.max_activation && d.top.windows(2).all(|w| w[0].activation >= w[1].activation));
    for (lo, hi, examples) in &d.intervals {
        assert!(examples.iter().all(|e| e.activation > *lo && e.activation <= *hi + 1e-6), "{lo}..{hi}: {examples:?}");
    }
    assert_eq!(d.intervals.last().unwrap().1, d.max_activation);
    // A feature that never fires has an empty dashboard, not a division by zero.
    if let Some(silent) = summaries.iter().find(|s| s.density == 0.0) {
        let d = run.dashboard(silent.feature, 4, 10, 3, 2);
        assert!(d.top.is_empty() && d.histogram.iter().all(|&c| c == 0) && d.max_activation == 0.0);
    }

    // The same record on the GPU.
    let gpu = common::gpu_backend();
    let on_gpu = pollster::block_on(dashboard::run_sample(
        &common::model_on(&model, &gpu),
        &common::sae_on(&sae, &gpu),
        &sample,
        Some(0),
        20,
        |_, _| {},
    ))
    .unwrap();
    let (a, b) = (run.summaries(), on_gpu.summaries());
    let differ = a.iter().zip(&b).filter(|(x, y)| (x.max_activation - y.max_activation).abs() > 1e-3 * (1.0 + x.max_activation)).count();
    assert_eq!(differ, 0, "GPU maxima differ from the CPU's");

    let err = pollster::block_on(dashboard::run_sample(
        &common::model_on(&model, &Backend::Cpu),
        &common::sae_on(&sae, &Backend::Cpu),
        &[],
        Some(0),
        20,
        |_, _| {},
    ))
    .err()
    .unwrap();
    assert!(err.to_string().contains("no tokens"));
}

#[test]
fn nearest_features_are_the_highest_decoder_cosines() {
    let (_, sae, _) = setup();
    let other = random_sae_with("topk", 60, 40, 5, 3, serde_json::Map::new());
    let d = 60;
    let cos = |a: &[f32], b: &[f32]| {
        a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>()
            / (a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt())
    };
    let row = &sae.w_dec()[7 * d..8 * d];
    let mut want: Vec<(usize, f32)> = other.w_dec().chunks_exact(d).map(|w| cos(row, w)).enumerate().collect();
    want.sort_by(|a, b| b.1.total_cmp(&a.1));
    let got = nearest_features(&sae, 7, &other, 5).unwrap();
    for ((gi, gc), (wi, wc)) in got.iter().zip(&want) {
        assert_eq!(gi, wi);
        assert!((gc - wc).abs() < 1e-5);
    }
    // In the same SAE the feature itself is left out.
    let own = nearest_features(&sae, 7, &sae, 3).unwrap();
    assert!(own.iter().all(|&(j, c)| j != 7 && c < 0.9999));
    assert!(nearest_features(&sae, 77, &other, 3).unwrap_err().contains("does not exist"));
    let narrow = random_sae_with("topk", 30, 40, 5, 3, serde_json::Map::new());
    assert!(nearest_features(&sae, 1, &narrow, 3).unwrap_err().contains("widths differ"));
}

#[test]
fn saved_dashboards_come_back_only_for_the_same_model_sae_and_sample() {
    let (model, sae, sample) = setup();
    let run = pollster::block_on(dashboard::run_sample(
        &common::model_on(&model, &Backend::Cpu),
        &common::sae_on(&sae, &Backend::Cpu),
        &sample,
        Some(0),
        20,
        |_, _| {},
    ))
    .unwrap();
    let key = dashboard::sample_key(&model, &sae, &sample, Some(0), 20);
    let bytes = run.to_bytes(key);
    let back =
        dashboard::SampleActivations::from_bytes(&bytes, &model, &sae, &sample, Some(0), 20).unwrap().expect("same model, SAE and sample");
    assert_eq!(
        (back.fired.clone(), back.n_tokens, back.done, back.contexts.clone()),
        (run.fired.clone(), run.n_tokens, run.done, run.contexts.clone())
    );
    assert_eq!(back.dashboard(3, 4, 10, 3, 2), run.dashboard(3, 4, 10, 3, 2));

    // Anything else it depends on changed: not reused.
    let other_sae = {
        let mut cfg = serde_json::Map::new();
        cfg.insert("hook_name".into(), HOOK.into());
        random_sae_with("topk", 60, 77, 5, 10, cfg)
    };
    let mut other_model = model.clone();
    other_model.weights.pos_embed.as_mut().unwrap()[31] += 1e-3;
    let from = |m: &saelab::model::Model, s: &saelab::sae::Sae, t: &[u32], bos: Option<u32>, ctx: usize| {
        dashboard::SampleActivations::from_bytes(&bytes, m, s, t, bos, ctx).unwrap().is_none()
    };
    assert!(from(&model, &other_sae, &sample, Some(0), 20));
    assert!(from(&other_model, &sae, &sample, Some(0), 20));
    assert!(from(&model, &sae, &sample[1..], Some(0), 20));
    assert!(from(&model, &sae, &sample, None, 20));
    assert!(from(&model, &sae, &sample, Some(0), 21));

    // Truncated, grown or damaged bytes: an error, never a panic.
    for cut in (0..bytes.len()).step_by(bytes.len() / 23 + 1) {
        assert!(dashboard::SampleActivations::from_bytes(&bytes[..cut], &model, &sae, &sample, Some(0), 20).is_err(), "cut at {cut}");
    }
    let load = |b: &[u8]| dashboard::SampleActivations::from_bytes(b, &model, &sae, &sample, Some(0), 20);
    assert!(load(&[&bytes[..], b"{}"].concat()).is_err());
    let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    value["fired"][0] = serde_json::json!([[99, 0, 1.0]]);
    assert!(load(&serde_json::to_vec(&value).unwrap()).unwrap_err().contains("does not fit the sample"));
    value["fired"].as_array_mut().unwrap().pop();
    assert!(load(&serde_json::to_vec(&value).unwrap()).unwrap_err().contains("76 features"));
}
