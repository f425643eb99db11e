//! An SAE spliced into GPT-2 at its hook: cross-entropy clean / spliced / zero-ablated, CE loss
//! recovered, KL, the random-error baseline, and per-token features — on SAEs whose answers are
//! known (a perfect reconstruction; an SAE that outputs zeros), CPU and GPU, and through the CLI.

mod common;

use std::path::Path;

use saelab::backend::Backend;
use saelab::formats::safetensors::TensorFile;
use saelab::lm;
use saelab::model::files::load_model_dir;
use saelab::sae::files::{sae_from_f32_tensors, save_dir};
use saelab::sae::Sae;

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2/tied_f32")
}

fn tokens() -> Vec<u32> {
    let bytes = std::fs::read(fixture().join("tokens.npy")).unwrap();
    saelab::formats::npy::read_i64("tokens", &bytes).unwrap().1.into_iter().map(|t| t as u32).collect()
}

/// A standard SAE at `hook` with d_sae = 2·d: `W_enc = [I, −I]`, `W_dec = [I; −I]`, so that
/// `relu(x) − relu(−x) = x` comes back exactly — scaled by `gain` (1: perfect, 0: all zeros).
fn mirror_sae(d: usize, hook: &str, gain: f32) -> Sae {
    let m = 2 * d;
    let mut w_enc = vec![0.0; d * m];
    let mut w_dec = vec![0.0; m * d];
    for i in 0..d {
        w_enc[i * m + i] = 1.0;
        w_enc[i * m + d + i] = -1.0;
        w_dec[i * d + i] = gain;
        w_dec[(d + i) * d + i] = -gain;
    }
    let cfg = serde_json::json!({
        "architecture": "standard", "d_in": d, "d_sae": m, "dtype": "float32", "apply_b_dec_to_input": false,
        "normalize_activations": "none", "metadata": { "hook_name": hook, "model_name": "tiny" },
    });
    let (zeros_sae, zeros_in) = (vec![0.0; m], vec![0.0; d]);
    sae_from_f32_tensors(
        &cfg,
        &[("W_enc", vec![d, m], &w_enc), ("b_enc", vec![m], &zeros_sae), ("W_dec", vec![m, d], &w_dec), ("b_dec", vec![d], &zeros_in)],
    )
    .unwrap()
}

fn cpu_model(model: &saelab::model::Model) -> saelab::lm::LoadedModel {
    common::model_on(model, &Backend::Cpu)
}

fn cpu_sae(sae: &Sae) -> saelab::engine::LoadedSae {
    common::sae_on(sae, &Backend::Cpu)
}

#[test]
fn splice_metrics_on_saes_with_known_answers() {
    let model = load_model_dir(&fixture()).unwrap();
    // The fixture's tokens start with its BOS (id 0); these known answers are for text without a
    // special token (the BOS rules are the next test's).
    let with_bos = tokens();
    assert!(model.cfg.special_tokens.contains(with_bos[0]) && !with_bos[1..].iter().any(|&t| model.cfg.special_tokens.contains(t)));
    let tokens = with_bos[1..].to_vec();
    let hook = "blocks.1.hook_resid_pre";
    let gpu = common::gpu_backend();
    // Clean CE equals the one from Hugging Face's own logits.
    let (hf_logits, _) = saelab::model::cpu::run(&model, &tokens, &[], &[]).unwrap();
    let hf = lm::next_token_losses(&hf_logits, &tokens, 211);
    let hf_ce = hf.iter().sum::<f32>() / hf.len() as f32;
    for gain in [1.0f32, 0.0] {
        let sae = mirror_sae(60, hook, gain);
        for backend in [Backend::Cpu, gpu.clone()] {
            let (model, sae) = (common::model_on(&model, &backend), common::sae_on(&sae, &backend));
            let r = pollster::block_on(lm::splice(&model, &sae, &tokens, 3)).unwrap();
            let what = format!("gain {gain} on {}", r.device);
            assert!((r.ce_clean - hf_ce).abs() < 1e-4, "{what}: clean CE {} vs transformers {hf_ce}", r.ce_clean);
            // (A random model predicts worse than uniform, so ablation need not hurt; it must differ.)
            assert!((r.ce_zero_ablation - r.ce_clean).abs() > 0.05, "{what}: zero-ablating the residual stream changes the loss ({r:?})");
            assert_eq!(r.per_token_delta.len(), tokens.len() - 1);
            if gain == 1.0 {
                // A perfect reconstruction costs nothing; its error is zero, so is the random one.
                assert!((r.ce_spliced - r.ce_clean).abs() < 1e-4 && r.kl.abs() < 1e-5, "{what}: {r:?}");
                assert!((r.ce_recovered - 1.0).abs() < 1e-3 && (r.ce_random_error - r.ce_clean).abs() < 1e-4, "{what}: {r:?}");
                assert!(r.l0 > 50.0, "{what}: every dimension is nonzero, so is one of each pair");
            } else {
                // An SAE that outputs zeros is zero-ablation.
                assert!((r.ce_spliced - r.ce_zero_ablation).abs() < 1e-4 && r.ce_recovered.abs() < 1e-3, "{what}: {r:?}");
                assert!(r.kl > 0.01);
            }
        }
    }
    // A half-strength SAE: the random-error baseline is a different, seeded run.
    let sae = mirror_sae(60, hook, 0.5);
    let r = pollster::block_on(lm::splice(&cpu_model(&model), &cpu_sae(&sae), &tokens, 3)).unwrap();
    let again = pollster::block_on(lm::splice(&cpu_model(&model), &cpu_sae(&sae), &tokens, 3)).unwrap();
    assert_eq!(r.ce_random_error, again.ce_random_error);
    assert!(r.ce_random_error != r.ce_spliced && r.kl > 0.0, "{r:?}");
    // The page and the CLI splice from the clean pass they already made; a pass over other
    // tokens is refused rather than mixed in.
    let run = pollster::block_on(lm::run_text(&cpu_model(&model), &cpu_sae(&sae), &tokens)).unwrap();
    assert_eq!(pollster::block_on(lm::splice_from(&cpu_model(&model), &tokens, &run, 3)).unwrap(), r);
    let err = pollster::block_on(lm::splice_from(&cpu_model(&model), &tokens[..5], &run, 3)).unwrap_err();
    assert!(err.to_string().contains("other tokens"), "{err}");
}

/// The BOS as SAELens has it: `tokens_for` puts the model's BOS first when the SAE's prepend_bos
/// says so; at special positions the model's own activation stays in the splice, and L0, CE and KL
/// leave those positions out — checked against the same rules computed here from plain forward
/// passes, and against transformers' logits for the clean CE.
#[test]
fn special_tokens_are_left_out_as_saelens_leaves_them_out() {
    use saelab::model::{HookPoint, Intervention};
    let model = load_model_dir(&fixture()).unwrap();
    let tokens = tokens();
    let text = &tokens[1..];
    assert_eq!(lm::tokens_for(&model, text, true).unwrap(), tokens, "the fixture's BOS is the model's bos_token_id");
    assert_eq!(lm::tokens_for(&model, text, false).unwrap(), text);
    let hook: HookPoint = "blocks.1.hook_resid_pre".parse().unwrap();
    let sae = mirror_sae(60, &hook.to_string(), 0.0);
    let r = pollster::block_on(lm::splice(&cpu_model(&model), &cpu_sae(&sae), &tokens, 3)).unwrap();
    // Clean CE: transformers' losses of predicting from every position but the BOS.
    let expected = TensorFile::parse("e", &std::fs::read(fixture().join("expected.safetensors")).unwrap()).unwrap();
    let hf = lm::next_token_losses(&expected.tensors["logits"].to_f32(), &tokens, 211);
    let hf_ce = hf[1..].iter().sum::<f32>() / (hf.len() - 1) as f32;
    assert!((r.ce_clean - hf_ce).abs() < 1e-4, "clean CE {} vs transformers without the BOS {hf_ce}", r.ce_clean);
    // The all-zero SAE's splice keeps the BOS row and zeroes the rest.
    let (_, acts) = saelab::model::cpu::run(&model, &tokens, &[hook], &[]).unwrap();
    let mut kept = vec![0.0; acts[0].len()];
    kept[..60].copy_from_slice(&acts[0][..60]);
    let (logits, _) = saelab::model::cpu::run(&model, &tokens, &[], &[Intervention::Replace { hook, values: &kept }]).unwrap();
    let losses = lm::next_token_losses(&logits, &tokens, 211);
    let want = losses[1..].iter().sum::<f32>() / (losses.len() - 1) as f32;
    assert!((r.ce_spliced - want).abs() < 1e-5, "spliced CE {} vs {want}", r.ce_spliced);
    assert!((r.ce_spliced - r.ce_zero_ablation).abs() > 1e-3, "zero-ablation zeroes the BOS row too");
    let kl = lm::kl_per_row(&pollster::block_on(cpu_model(&model).run(&tokens, &[], &[])).unwrap().0, &logits, 211);
    let want_kl = kl[1..].iter().sum::<f32>() / (kl.len() - 1) as f32;
    assert!((r.kl - want_kl).abs() < 1e-6, "KL {} vs {want_kl}", r.kl);
    // L0 over the text's positions only.
    let perfect = mirror_sae(60, &hook.to_string(), 1.0);
    let run = pollster::block_on(lm::run_text(&cpu_model(&model), &cpu_sae(&perfect), &tokens)).unwrap();
    assert_eq!(run.evaluated, (0..tokens.len()).map(|i| i > 0).collect::<Vec<_>>());
    let counts: Vec<usize> = run.sae_acts.chunks_exact(120).skip(1).map(|row| row.iter().filter(|&&a| a != 0.0).count()).collect();
    assert_eq!(run.l0, counts.iter().sum::<usize>() as f32 / counts.len() as f32);
    // A text that is only the BOS and one token has nothing to evaluate.
    let e = pollster::block_on(lm::splice(&cpu_model(&model), &cpu_sae(&sae), &tokens[..2], 3)).unwrap_err().to_string();
    assert!(e.contains("no position to evaluate"), "{e}");
    // A model that names no BOS (nor EOS) refuses to put one first, saying why.
    let mut bare = model.clone();
    bare.cfg.special_tokens = Default::default();
    assert!(lm::tokens_for(&bare, text, true).unwrap_err().to_string().contains("names no bos_token_id"));
}

#[test]
fn features_per_token_and_saes_that_do_not_fit() {
    let model = load_model_dir(&fixture()).unwrap();
    let tokens = tokens();
    let sae = mirror_sae(60, "blocks.2.hook_mlp_out", 1.0);
    let per_token = pollster::block_on(lm::token_features(&cpu_model(&model), &cpu_sae(&sae), &tokens, 4)).unwrap();
    let (_, hooks) = saelab::model::cpu::run_with_hooks(&model, &tokens, &["blocks.2.hook_mlp_out".parse().unwrap()]).unwrap();
    for (t, features) in per_token.iter().enumerate() {
        // The strongest feature is the largest |x_i| (feature i for positive, d + i for negative).
        let row = &hooks[0][t * 60..(t + 1) * 60];
        let (i, v) = row.iter().enumerate().max_by(|a, b| a.1.abs().total_cmp(&b.1.abs())).unwrap();
        assert_eq!(features[0].0, if *v > 0.0 { i } else { 60 + i });
        assert!(features.len() == 4 && features.windows(2).all(|w| w[0].1 >= w[1].1));
    }
    let err = |sae: &Sae| lm::attach_point(&model, sae).unwrap_err().to_string();
    assert!(err(&mirror_sae(60, "blocks.7.hook_resid_pre", 1.0)).contains("is not a hook point"));
    assert!(
        err(&mirror_sae(32, "blocks.0.hook_resid_pre", 1.0)).contains("d_in is 32 but blocks.0.hook_resid_pre of this model is 60 wide")
    );
}

#[test]
fn cli_splice_and_features() {
    let dir = std::env::temp_dir().join(format!("saelab-splice-{}", std::process::id()));
    let sae_dir = dir.join("sae");
    save_dir(&mirror_sae(60, "blocks.1.hook_resid_mid", 0.5), &sae_dir).unwrap();
    let tokens = fixture().join("tokens.npy");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_saelab")).args(args).env("XDG_RUNTIME_DIR", "/tmp").output().unwrap();
        (out.status.code().unwrap(), String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let model_dir = fixture();
    let base = ["--model", model_dir.to_str().unwrap(), "--sae", sae_dir.to_str().unwrap(), "--tokens", tokens.to_str().unwrap()];
    let mut reports = Vec::new();
    for device in ["cpu", "gpu"] {
        let (code, out, err) = run(&[&["splice"][..], &base, &["--device", device]].concat());
        assert_eq!(code, 0, "{err}");
        let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        for key in ["ce_clean", "ce_spliced", "ce_zero_ablation", "ce_recovered", "kl", "l0", "ce_random_error"] {
            assert!(json[key].is_number(), "{key} missing: {out}");
        }
        reports.push(json);
    }
    let (a, b) = (reports[0]["ce_spliced"].as_f64().unwrap(), reports[1]["ce_spliced"].as_f64().unwrap());
    assert!((a - b).abs() < 1e-4, "cpu {a} gpu {b}");
    let (code, out, err) = run(&[&["features"][..], &base, &["--top", "3", "--device", "cpu"]].concat());
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    // Token ids run as given (they start with the fixture's BOS, marked special).
    assert_eq!(json["tokens"].as_array().unwrap().len(), 23);
    assert_eq!((json["tokens"][0]["token"].as_u64(), json["tokens"][0]["special"].as_bool()), (Some(0), Some(true)));
    assert_eq!(json["tokens"][0]["features"].as_array().unwrap().len(), 3);
    let (code, _, err) =
        run(&["splice", "--model", fixture().to_str().unwrap(), "--sae", sae_dir.to_str().unwrap(), "--text", "hi", "--device", "cpu"]);
    assert_eq!(code, 2);
    assert!(err.contains("tokenizer.json"), "{err}");
    // Generation, side by side with a steered run.
    let (code, out, err) = run(&[
        "generate",
        "--model",
        model_dir.to_str().unwrap(),
        "--prompt-tokens",
        tokens.to_str().unwrap(),
        "--tokens",
        "4",
        "--sae",
        sae_dir.to_str().unwrap(),
        "--steer",
        "2=50",
        "--device",
        "cpu",
    ]);
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["unsteered"]["tokens"].as_array().unwrap().len(), 4);
    assert_eq!(json["steered"]["tokens"].as_array().unwrap().len(), 4);
    assert_eq!(json["steer"]["feature"], 2);
    for (args, expected) in [
        (vec!["--steer", "2"], "expected FEATURE=NUMBER"),
        (vec!["--steer", "2=1", "--clamp", "2=1"], "not both"),
        (vec!["--temperature", "-1"], "--temperature must be ≥ 0"),
    ] {
        let mut a = vec![
            "generate",
            "--model",
            model_dir.to_str().unwrap(),
            "--prompt-tokens",
            tokens.to_str().unwrap(),
            "--sae",
            sae_dir.to_str().unwrap(),
            "--device",
            "cpu",
        ];
        a.extend(args.iter().copied());
        let (code, _, err) = run(&a);
        assert!(code == 2 && err.contains(expected), "{args:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn generation_greedy_sampled_and_steered() {
    use saelab::lm::{Sampling, Steer};
    let model = load_model_dir(&fixture()).unwrap();
    let prompt = &tokens()[..5];
    let greedy = Sampling { new_tokens: 6, temperature: 0.0, seed: 1 };
    let plain = pollster::block_on(lm::generate(&cpu_model(&model), None, None, prompt, greedy)).unwrap();
    // Greedy is the argmax of the forward pass, token after token.
    let mut want = prompt.to_vec();
    for _ in 0..6 {
        let logits = saelab::model::cpu::forward(&model, &want, &mut |_, _, _| {}).unwrap();
        let last = &logits[(want.len() - 1) * 211..];
        want.push((0..211).max_by(|&a, &b| last[a].total_cmp(&last[b])).unwrap() as u32);
    }
    assert_eq!(plain, want);
    // Sampling is seeded: same seed, same text; the GPU agrees with the CPU.
    let sampled = Sampling { new_tokens: 6, temperature: 1.0, seed: 7 };
    let a = pollster::block_on(lm::generate(&cpu_model(&model), None, None, prompt, sampled)).unwrap();
    let b = pollster::block_on(lm::generate(&cpu_model(&model), None, None, prompt, sampled)).unwrap();
    assert_eq!(a, b);
    let on_gpu = pollster::block_on(lm::generate(&common::model_on(&model, &common::gpu_backend()), None, None, prompt, greedy)).unwrap();
    assert_eq!(on_gpu, plain);
    // Steering: a large push along one feature's decoder direction changes the continuation; a
    // clamp at the feature's own value (a perfect SAE, so f(x) = x_i) changes nothing.
    let sae = mirror_sae(60, "blocks.2.hook_resid_pre", 1.0);
    let steered = pollster::block_on(lm::generate(
        &cpu_model(&model),
        Some(&cpu_sae(&sae)),
        Some(Steer::Add { feature: 3, alpha: 40.0 }),
        prompt,
        greedy,
    ))
    .unwrap();
    assert_ne!(steered, plain);
    let zero = pollster::block_on(lm::generate(
        &cpu_model(&model),
        Some(&cpu_sae(&sae)),
        Some(Steer::Add { feature: 3, alpha: 0.0 }),
        prompt,
        greedy,
    ))
    .unwrap();
    assert_eq!(zero, plain);
    let clamped = pollster::block_on(lm::generate(
        &cpu_model(&model),
        Some(&cpu_sae(&sae)),
        Some(Steer::Clamp { feature: 3, value: 30.0 }),
        prompt,
        greedy,
    ))
    .unwrap();
    assert_ne!(clamped, plain);
    let err = pollster::block_on(lm::generate(
        &cpu_model(&model),
        Some(&cpu_sae(&sae)),
        Some(Steer::Add { feature: 120, alpha: 1.0 }),
        prompt,
        greedy,
    ))
    .unwrap_err();
    assert!(err.to_string().contains("feature 120 does not exist (the SAE has 120 features)"), "{err}");
    // The context length bounds generation.
    let long = Sampling { new_tokens: 100, temperature: 0.0, seed: 0 };
    assert_eq!(pollster::block_on(lm::generate(&cpu_model(&model), None, None, prompt, long)).unwrap().len(), 40);
}

#[test]
fn logit_lens_of_a_feature() {
    let model = load_model_dir(&fixture()).unwrap();
    let sae = mirror_sae(60, "blocks.2.hook_resid_post", 1.0);
    let (top, bottom) = lm::logit_lens(&model, &sae, 7, 5).unwrap();
    // Feature 7 writes +e_7 and feature 60 + 7 writes −e_7: the same tokens, in reverse order.
    let (top_neg, bottom_neg) = lm::logit_lens(&model, &sae, 67, 5).unwrap();
    assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), bottom_neg.iter().map(|t| t.0).collect::<Vec<_>>());
    assert_eq!(bottom.iter().map(|t| t.0).collect::<Vec<_>>(), top_neg.iter().map(|t| t.0).collect::<Vec<_>>());
    // By hand: effect on token v is g_7 · W_U[v, 7], centred.
    let (d, g) = (60, model.weights.final_norm.weight[7]);
    let raw: Vec<f32> = model.weights.embed.chunks_exact(d).map(|u| u[7] * g).collect();
    let mean = raw.iter().sum::<f32>() / raw.len() as f32;
    let best = (0..raw.len()).max_by(|&a, &b| raw[a].total_cmp(&raw[b])).unwrap();
    assert_eq!(top[0].0 as usize, best);
    assert!((top[0].1 - (raw[best] - mean)).abs() < 1e-5);
    assert!(top.windows(2).all(|w| w[0].1 >= w[1].1) && bottom.windows(2).all(|w| w[0].1 <= w[1].1));
}

/// An SAE on one attention head (`hook_head_index`) reads that head's columns of `attn.hook_z`
/// and changes only them: a perfect one costs nothing, an all-zero one is SAELens's
/// single-head zero ablation (the other heads untouched) — both against plain forward passes with
/// the same replacement made by hand, CPU and GPU; steering and the logit lens act through the
/// head's columns only; heads that do not fit say why.
#[test]
fn a_single_head_sae_reads_and_writes_its_head_only() {
    use saelab::model::{BlockSite, HookPoint, Intervention};
    let model = load_model_dir(&fixture()).unwrap();
    let tokens = tokens();
    let (head, d_head) = (2, 12);
    let z: HookPoint = HookPoint::block(1, BlockSite::AttnZ);
    let on_head = |gain: f32, head: serde_json::Value| {
        let mut sae = mirror_sae(d_head, "blocks.1.attn.hook_z", gain);
        sae.cfg.raw.get_mut("metadata").unwrap().as_object_mut().unwrap().insert("hook_head_index".into(), head);
        sae
    };
    let (clean_logits, captured) = saelab::model::cpu::run(&model, &tokens, &[z], &[]).unwrap();
    let full = &captured[0];
    let columns: Vec<f32> = full.chunks_exact(60).flat_map(|row| row[head * d_head..(head + 1) * d_head].to_vec()).collect();
    let ce = |logits: &[f32]| {
        let l = lm::next_token_losses(logits, &tokens, 211);
        l[1..].iter().sum::<f32>() / (l.len() - 1) as f32
    };
    // Head 2 zeroed (the BOS row too: SAELens's zero ablation has no mask), the others as they were.
    let mut zeroed = full.clone();
    zeroed.chunks_exact_mut(60).for_each(|row| row[head * d_head..(head + 1) * d_head].fill(0.0));
    let (zero_logits, _) = saelab::model::cpu::run(&model, &tokens, &[], &[Intervention::Replace { hook: z, values: &zeroed }]).unwrap();
    let want_zero = ce(&zero_logits);
    assert!((want_zero - ce(&clean_logits)).abs() > 1e-3, "zeroing one head changes the loss");
    let gpu = common::gpu_backend();
    for backend in [Backend::Cpu, gpu] {
        for gain in [1.0f32, 0.0] {
            let sae = on_head(gain, serde_json::json!(head));
            let at = lm::attachment(&model, &sae).unwrap();
            assert_eq!((at.reads, at.head), (z, Some((head * d_head, d_head))));
            let (m, s) = (common::model_on(&model, &backend), common::sae_on(&sae, &backend));
            let run = pollster::block_on(lm::run_text(&m, &s, &tokens)).unwrap();
            assert_eq!(run.hook_acts.len(), columns.len());
            run.hook_acts.iter().zip(&columns).for_each(|(a, b)| assert!((a - b).abs() < 1e-5, "{a} vs {b}"));
            let r = pollster::block_on(lm::splice_from(&m, &tokens, &run, 3)).unwrap();
            let what = format!("gain {gain} on {}", r.device);
            assert!((r.ce_zero_ablation - want_zero).abs() < 1e-4, "{what}: zero-ablated {} vs {want_zero}", r.ce_zero_ablation);
            if gain == 1.0 {
                assert!((r.ce_spliced - r.ce_clean).abs() < 1e-4 && r.kl.abs() < 1e-5, "{what}: {r:?}");
            } else {
                // Zero outside the BOS row, which keeps the model's values.
                let mut spliced = zeroed.clone();
                spliced[..60].copy_from_slice(&full[..60]);
                let (logits, _) =
                    saelab::model::cpu::run(&model, &tokens, &[], &[Intervention::Replace { hook: z, values: &spliced }]).unwrap();
                assert!((r.ce_spliced - ce(&logits)).abs() < 1e-4, "{what}: spliced {} vs {}", r.ce_spliced, ce(&logits));
            }
        }
    }
    // Steering adds α·W_dec[f] in the head's columns only.
    let sae = on_head(1.0, serde_json::json!(head));
    let sampling = lm::Sampling { new_tokens: 3, temperature: 0.0, seed: 0 };
    let prompt = &tokens[..6];
    let steered = pollster::block_on(lm::generate(
        &cpu_model(&model),
        Some(&cpu_sae(&sae)),
        Some(lm::Steer::Add { feature: 4, alpha: 30.0 }),
        prompt,
        sampling,
    ))
    .unwrap();
    let mut vector = vec![0.0; 60];
    vector[head * d_head + 4] = 30.0; // mirror_sae's W_dec[4] is e_4 of the head
    let mut by_hand = prompt.to_vec();
    for _ in 0..3 {
        let add = Intervention::AddToEveryToken { hook: z, vector: &vector };
        let (logits, _) = saelab::model::cpu::run(&model, &by_hand, &[], &[add]).unwrap();
        by_hand.push(lm::pick_next(&logits[(by_hand.len() - 1) * 211..], 0.0, &mut saelab::random::Rng::new(0)));
    }
    assert_eq!(steered, by_hand);
    // The logit lens goes through the head's columns of W_O: the same as an all-heads SAE whose
    // decoder row is the head's row placed in those columns.
    let mut all_heads = mirror_sae(60, "blocks.1.attn.hook_z", 0.0);
    all_heads = all_heads
        .with_weights(|w| {
            w.w_dec[4 * 60 + head * d_head + 4] = 1.0;
        })
        .unwrap();
    assert_eq!(lm::logit_lens(&model, &sae, 4, 5).unwrap(), lm::logit_lens(&model, &all_heads, 4, 5).unwrap());
    // Heads that do not fit.
    let e = lm::attachment(&model, &on_head(1.0, serde_json::json!(5))).unwrap_err().to_string();
    assert!(e.contains("reads head 5, but this model has 5 heads"), "{e}");
    let e = lm::attachment(&model, &on_head(1.0, serde_json::json!("two"))).unwrap_err().to_string();
    assert!(e.contains("hook_head_index must be a head number"), "{e}");
    let mut on_resid = mirror_sae(d_head, "blocks.1.hook_resid_pre", 1.0);
    on_resid.cfg.raw.insert("hook_head_index".into(), serde_json::json!(1));
    let e = lm::attachment(&model, &on_resid).unwrap_err().to_string();
    assert!(e.contains("reads at attn.hook_z only"), "{e}");
    let mut too_wide = mirror_sae(60, "blocks.1.attn.hook_z", 1.0);
    too_wide.cfg.raw.insert("hook_head_index".into(), serde_json::json!(1));
    let e = lm::attachment(&model, &too_wide).unwrap_err().to_string();
    assert!(e.contains("one head of blocks.1.attn.hook_z is 12 wide"), "{e}");
}
