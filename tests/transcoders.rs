//! Transcoders on a model: a Gemma Scope 2 transcoder reads the MLP's normalised input
//! (`pre_feedforward_layernorm.output`) and predicts the MLP's output
//! (`post_feedforward_layernorm.output`, TransformerLens's `hook_mlp_out`). Its metrics are taken
//! against that output, the splice replaces the MLP's output with the prediction, and steering adds
//! decoder rows there — each checked against plain forward passes with the same interventions made
//! by hand, on the CPU and the GPU, on the tiny Gemma 3 fixture that transformers' outputs pin.

mod common;

use std::path::Path;

use saelab::backend::Backend;
use saelab::engine::{analyze_cpu_against, LoadedSae};
use saelab::gpu::RunRequest;
use saelab::lm::{self, Attachment, Sampling, Steer};
use saelab::model::files::load_model_dir;
use saelab::model::{cpu, BlockSite, HookPoint, Intervention, Model};
use saelab::sae::random::random_sae_with;
use saelab::sae::Sae;
use serde_json::json;

const LAYER: usize = 2;

fn model() -> Model {
    load_model_dir(Path::new("tests/fixtures/families/gemma3")).unwrap()
}

/// A random transcoder for the fixture (d_model 48) with these cfg `metadata` keys.
fn transcoder(arch: &str, metadata: serde_json::Value, seed: u64) -> Sae {
    let mut extra = serde_json::Map::new();
    extra.insert("metadata".into(), metadata);
    random_sae_with(arch, 48, 37, 0, seed, extra)
}

/// As Gemma Scope 2's loader writes them (`get_gemma_3_config_from_hf`).
fn gemma_scope_2(arch: &str, seed: u64) -> Sae {
    transcoder(
        arch,
        json!({
            "model_name": "google/gemma-3-270m", "prepend_bos": true,
            "hook_name": format!("blocks.{LAYER}.hook_mlp_in"), "hook_name_out": format!("blocks.{LAYER}.hook_mlp_out"),
            "hf_hook_name": format!("model.layers.{LAYER}.pre_feedforward_layernorm.output"),
            "hf_hook_name_out": format!("model.layers.{LAYER}.post_feedforward_layernorm.output"),
        }),
        seed,
    )
}

fn at(site: BlockSite) -> HookPoint {
    HookPoint::block(LAYER, site)
}

fn close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1.0);
    let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst <= tol * scale, "{what}: worst difference {worst} (scale {scale})");
}

fn mean_loss(logits: &[f32], tokens: &[u32], vocab: usize) -> f32 {
    // Position 0 holds the BOS, which predicts nothing that counts (SAELens's masks).
    let losses = lm::next_token_losses(logits, tokens, vocab);
    losses[1..].iter().sum::<f32>() / (losses.len() - 1) as f32
}

#[test]
fn a_gemma_scope_2_transcoder_reads_the_mlps_normalised_input_and_is_spliced_at_its_output() {
    let model = model();
    let vocab = model.cfg.vocab_size;
    // BOS (2) first, as the transcoder's prepend_bos asks; 13 tokens (not a multiple of anything).
    let tokens: Vec<u32> = [2, 5, 17, 33, 8, 91, 40, 12, 7, 64, 3, 29, 55].to_vec();
    assert!(model.cfg.special_tokens.contains(2));
    // The Hugging Face module names say where: hook_mlp_in in TransformerLens's sense (the residual
    // stream before the norm) would be another point.
    let sae = gemma_scope_2("jumprelu_skip_transcoder", 7);
    assert_eq!(
        lm::attachment(&model, &sae).unwrap(),
        Attachment { reads: at(BlockSite::Ln2Out), writes: at(BlockSite::MlpOut), head: None }
    );
    let tl_only = transcoder(
        "transcoder",
        json!({ "hook_name": format!("blocks.{LAYER}.hook_mlp_in"), "hook_name_out": format!("blocks.{LAYER}.hook_mlp_out") }),
        8,
    );
    assert_eq!(
        lm::attachment(&model, &tl_only).unwrap(),
        Attachment { reads: at(BlockSite::MlpIn), writes: at(BlockSite::MlpOut), head: None }
    );

    // What the transcoder should see and predict, and the splice made by hand from plain passes.
    let (clean_logits, hooks) = cpu::run(&model, &tokens, &[at(BlockSite::Ln2Out), at(BlockSite::MlpOut)], &[]).unwrap();
    let (input, output) = (&hooks[0], &hooks[1]);
    let reference = analyze_cpu_against(&sae, input, output, RunRequest { recon: true, dense_acts: true });
    let recon = reference.recon.clone().unwrap();
    let d = 48;
    let mut spliced = output.clone();
    spliced[d..].copy_from_slice(&recon[d..]); // the BOS row keeps the model's own value
    let replace =
        |values: &[f32]| cpu::run(&model, &tokens, &[], &[Intervention::Replace { hook: at(BlockSite::MlpOut), values }]).unwrap().0;
    let want_spliced = mean_loss(&replace(&spliced), &tokens, vocab);
    let want_zero = mean_loss(&replace(&vec![0.0; output.len()]), &tokens, vocab);
    let want_clean = mean_loss(&clean_logits, &tokens, vocab);
    assert!((want_spliced - want_clean).abs() > 1e-3, "a random transcoder's prediction changes the loss");

    for backend in [Backend::Cpu, common::gpu_backend()] {
        let (loaded, placed) = (common::model_on(&model, &backend), common::sae_on(&sae, &backend));
        let run = pollster::block_on(lm::run_text(&loaded, &placed, &tokens)).unwrap();
        let what = backend.name();
        assert_eq!((run.at.reads, run.at.writes), (at(BlockSite::Ln2Out), at(BlockSite::MlpOut)));
        close(&format!("{what}: input"), &run.hook_acts, input, 1e-4);
        close(&format!("{what}: target"), run.target(), output, 1e-4);
        close(&format!("{what}: prediction"), &run.recon, &recon, 1e-4);
        close(&format!("{what}: features"), &run.sae_acts, reference.acts.as_ref().unwrap(), 1e-4);
        let r = pollster::block_on(lm::splice_from(&loaded, &tokens, &run, 3)).unwrap();
        assert_eq!(r.hook, at(BlockSite::MlpOut), "{what}: the splice is at the output hook");
        assert!((r.ce_clean - want_clean).abs() < 1e-4, "{what}: clean {} vs {want_clean}", r.ce_clean);
        assert!((r.ce_spliced - want_spliced).abs() < 1e-4, "{what}: spliced {} vs {want_spliced}", r.ce_spliced);
        assert!((r.ce_zero_ablation - want_zero).abs() < 1e-4, "{what}: zero-ablated {} vs {want_zero}", r.ce_zero_ablation);
        assert!(r.ce_random_error.is_finite() && r.kl > 0.0, "{what}: {r:?}");
    }
}

#[test]
fn steering_a_transcoder_feature_acts_at_its_output_hook() {
    let model = model();
    let sae = gemma_scope_2("jumprelu_transcoder", 11);
    let loaded = common::model_on(&model, &Backend::Cpu);
    let placed = LoadedSae::new(std::rc::Rc::new(sae.clone()), &Backend::Cpu).unwrap();
    let prompt = [2u32, 9, 44, 71, 6];
    let sampling = Sampling { new_tokens: 4, temperature: 0.0, seed: 1 };
    let plain = pollster::block_on(lm::generate(&loaded, None, None, &prompt, sampling)).unwrap();
    let feature = 5;
    // Adding α·W_dec[f] at hook_mlp_out, by hand, greedy.
    let direction: Vec<f32> = sae.w_dec()[feature * 48..(feature + 1) * 48].iter().map(|w| 40.0 * w).collect();
    let mut by_hand = prompt.to_vec();
    for _ in 0..4 {
        let add = Intervention::AddToEveryToken { hook: at(BlockSite::MlpOut), vector: &direction };
        let (logits, _) = cpu::run(&model, &by_hand, &[], &[add]).unwrap();
        let last = &logits[(by_hand.len() - 1) * model.cfg.vocab_size..];
        by_hand.push(lm::pick_next(last, 0.0, &mut saelab::random::Rng::new(0)));
    }
    let steered =
        pollster::block_on(lm::generate(&loaded, Some(&placed), Some(Steer::Add { feature, alpha: 40.0 }), &prompt, sampling)).unwrap();
    assert_eq!(steered, by_hand);
    assert_ne!(steered, plain, "a strong steer changes the continuation");
    // Clamping a feature to 0 subtracts f(x)·W_dec[f] from the output hook's own values, f(x)
    // from the input hook: by hand, one greedy step.
    let (_, hooks) = cpu::run(&model, &prompt, &[at(BlockSite::Ln2Out), at(BlockSite::MlpOut)], &[]).unwrap();
    let acts = saelab::sae::cpu::encode(&sae, &hooks[0]);
    let fires = |f: usize| acts.chunks_exact(37).filter(|row| row[f] != 0.0).count();
    let feature = (0..37).max_by_key(|&f| fires(f)).unwrap();
    assert!(fires(feature) > 0, "some feature fires on the prompt");
    let w = &sae.w_dec()[feature * 48..(feature + 1) * 48];
    let mut changed = hooks[1].clone();
    for (row, a) in changed.chunks_exact_mut(48).zip(acts.chunks_exact(37)) {
        row.iter_mut().zip(w).for_each(|(v, w)| *v -= a[feature] * w);
    }
    let (logits, _) = cpu::run(&model, &prompt, &[], &[Intervention::Replace { hook: at(BlockSite::MlpOut), values: &changed }]).unwrap();
    let last = &logits[(prompt.len() - 1) * model.cfg.vocab_size..];
    let want = lm::pick_next(last, 0.0, &mut saelab::random::Rng::new(0));
    let one_step = Sampling { new_tokens: 1, ..sampling };
    let clamped =
        pollster::block_on(lm::generate(&loaded, Some(&placed), Some(Steer::Clamp { feature, value: 0.0 }), &prompt, one_step)).unwrap();
    assert_eq!(clamped[prompt.len()], want);
}

#[test]
fn transcoders_that_do_not_fit_the_model_say_why() {
    let model = model();
    let backwards = transcoder(
        "transcoder",
        json!({ "hook_name": format!("blocks.{LAYER}.hook_mlp_out"), "hook_name_out": format!("blocks.{LAYER}.hook_resid_pre") }),
        3,
    );
    let e = lm::attachment(&model, &backwards).unwrap_err().to_string();
    assert!(e.contains("reads blocks.2.hook_mlp_out but writes blocks.2.hook_resid_pre, which is not after it"), "{e}");
    let nowhere = transcoder("transcoder", json!({ "hook_name": format!("blocks.{LAYER}.hook_mlp_in") }), 4);
    let e = lm::attachment(&model, &nowhere).unwrap_err().to_string();
    assert!(e.contains("names no hook_name_out"), "{e}");
    let past_the_end =
        transcoder("transcoder", json!({ "hook_name": "blocks.2.hook_mlp_in", "hook_name_out": "blocks.9.hook_mlp_out" }), 5);
    let e = lm::attachment(&model, &past_the_end).unwrap_err().to_string();
    assert!(e.contains("the SAE's hook_name_out") && e.contains("blocks.9"), "{e}");
}

/// `saelab eval` measures a transcoder against `--target` (its output hook's values) and refuses
/// to measure it against its input; an SAE refuses a target.
#[test]
fn the_cli_evaluates_a_transcoder_against_its_target() {
    let dir = common::temp_dir("transcoder-eval");
    let sae = gemma_scope_2("jumprelu_skip_transcoder", 21);
    saelab::sae::files::save_dir(&sae, &dir.join("tc")).unwrap();
    let (x, y) = (common::random_input(19, 48, 1), common::random_input(19, 48, 2));
    std::fs::write(dir.join("x.npy"), saelab::formats::npy::write_f32(&[19, 48], &x)).unwrap();
    std::fs::write(dir.join("y.npy"), saelab::formats::npy::write_f32(&[19, 48], &y)).unwrap();
    std::fs::write(dir.join("y_short.npy"), saelab::formats::npy::write_f32(&[18, 48], &y[..18 * 48])).unwrap();
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_saelab"))
            .args(["eval", "--device", "cpu", "--sae"])
            .arg(dir.join("tc"))
            .arg("--input")
            .arg(dir.join("x.npy"))
            .args(extra)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (ok, _, err) = run(&[]);
    assert!(!ok && err.contains("this is a transcoder") && err.contains("--target"), "{err}");
    let target = dir.join("y.npy").display().to_string();
    let (ok, out, err) = run(&["--target", &target]);
    assert!(ok, "{err}");
    let got: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let want = analyze_cpu_against(&sae, &x, &y, RunRequest::default()).metrics;
    assert!((got["mse"].as_f64().unwrap() - want.mse).abs() <= 1e-6 * want.mse.max(1.0), "{got} vs {}", want.mse);
    assert!((got["fvu"].as_f64().unwrap() - want.fvu).abs() <= 1e-6 * want.fvu.max(1.0), "{got} vs {}", want.fvu);
    let short = dir.join("y_short.npy").display().to_string();
    let (ok, _, err) = run(&["--target", &short]);
    assert!(!ok && err.contains("18 rows, but --input has 19"), "{err}");
}
