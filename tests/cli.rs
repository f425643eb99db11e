//! The `saelab` binary as a user drives it: results on stdout, one-line errors with exit 2.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fixtures, read_npy, temp_dir};

fn saelab(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_saelab")).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// The stderr lines that are ours (the Vulkan loader may add its own XDG_RUNTIME_DIR notices).
fn our_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("saelab")).collect()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn info_describes_the_sae() {
    let (code, out, _) = saelab(&["info", path(&fixtures().join("topk_bdec0_layer_norm"))]);
    assert_eq!(code, 0);
    for expected in [
        "architecture          topk",
        "d_in                  24",
        "d_sae                 80",
        "k                     6",
        "normalization         layer_norm",
        "apply_b_dec_to_input  false",
        "parameters            3944",
    ] {
        assert!(out.contains(expected), "missing '{expected}' in:\n{out}");
    }
    let (_, out, _) = saelab(&["info", path(&fixtures().join("topk_bfloat16"))]);
    assert!(out.contains("stored as bfloat16"), "{out}");
}

#[test]
fn encode_reconstruct_and_eval_match_saelens_on_both_devices() {
    let case = fixtures().join("gated_bdec1_layer_norm");
    let x = case.join("x.npy");
    let dir = temp_dir("cli");
    for device in ["cpu", "gpu"] {
        let acts = dir.join(format!("acts-{device}.npy"));
        let recon = dir.join(format!("recon-{device}.npy"));
        let sae = path(&case);
        let (code, _, err) = saelab(&["encode", "--sae", sae, "--input", path(&x), "--output", path(&acts), "--device", device]);
        assert_eq!(code, 0, "{err}");
        let (code, _, err) = saelab(&["reconstruct", "--sae", sae, "--input", path(&x), "--output", path(&recon), "--device", device]);
        assert_eq!(code, 0, "{err}");
        for (got, want) in [(read_npy(&acts), read_npy(&case.join("encode.npy"))), (read_npy(&recon), read_npy(&case.join("recon.npy")))] {
            assert_eq!(got.shape, want.shape);
            for (g, w) in got.data.iter().zip(&want.data) {
                assert!((g - w).abs() <= 1e-5 + 1e-4 * w.abs(), "{device}: {g} vs {w}");
            }
        }
        let (code, out, err) = saelab(&["eval", "--sae", sae, "--input", path(&x), "--device", device]);
        assert_eq!(code, 0, "{err}");
        let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        for key in ["n", "l0", "mse", "fvu", "cosine", "dead_fraction", "device"] {
            assert!(json.get(key).is_some(), "eval output lacks {key}: {out}");
        }
        assert_eq!(json["n"], 10);
        let want_acts = read_npy(&case.join("encode.npy"));
        let l0 = want_acts.data.iter().filter(|&&a| a > 0.0).count() as f64 / 10.0;
        assert!((json["l0"].as_f64().unwrap() - l0).abs() < 1e-9, "{device}: l0 {} vs {l0}", json["l0"]);
        if device == "cpu" {
            assert!(json["device"].as_str().unwrap().starts_with("cpu ("), "{json}");
        } else {
            assert!(!json["device"].as_str().unwrap().starts_with("cpu ("), "{json}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn errors_are_one_line_with_exit_status_2() {
    let dir = temp_dir("cli-errors");
    let good = fixtures().join("standard_bdec1_none");
    // A copy of the SAE with a corrupted weights file.
    let broken = dir.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::copy(good.join("cfg.json"), broken.join("cfg.json")).unwrap();
    let weights = std::fs::read(good.join("sae_weights.safetensors")).unwrap();
    std::fs::write(broken.join("sae_weights.safetensors"), &weights[..weights.len() / 2]).unwrap();
    // Activations of the wrong width, and with NaN rows.
    let wide = dir.join("wide.npy");
    std::fs::write(&wide, saelab::formats::npy::write_f32(&[3, 25], &[0.5; 75])).unwrap();
    let mut values = vec![0.25f32; 4 * 24];
    values[24 + 3] = f32::NAN;
    values[72] = f32::INFINITY;
    let nan = dir.join("nan.npy");
    std::fs::write(&nan, saelab::formats::npy::write_f32(&[4, 24], &values)).unwrap();
    let garbage = dir.join("garbage.npy");
    std::fs::write(&garbage, b"not numpy at all").unwrap();

    let x = good.join("x.npy");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["eval", "--sae", path(&broken), "--input", path(&x)], "sae_weights.safetensors: "),
        (vec!["eval", "--sae", path(&good), "--input", path(&wide)], "wide.npy: expected activations of shape [n, 24]"),
        (vec!["eval", "--sae", path(&good), "--input", path(&nan)], "nan.npy: 2 of 4 rows contain NaN or Inf (first: row 1)"),
        (vec!["eval", "--sae", path(&good), "--input", path(&garbage)], "garbage.npy: not a .npy file"),
        (vec!["eval", "--sae", path(&good), "--input", "/nonexistent/x.npy"], "/nonexistent/x.npy: "),
        (vec!["eval", "--sae", path(&good), "--input", path(&x), "--device", "tpu"], "--device must be cpu or gpu"),
        (vec!["encode", "--sae", path(&good), "--input", path(&x)], "missing --output"),
        (vec!["frobnicate"], "unknown command 'frobnicate'"),
        (vec!["info", "/nonexistent"], "/nonexistent: not a folder"),
    ];
    for (args, expected) in cases {
        let (code, out, err) = saelab(&args);
        assert_eq!(code, 2, "{args:?}: exit status; stderr: {err}");
        assert!(out.is_empty(), "{args:?}: printed to stdout: {out}");
        let lines = our_lines(&err);
        assert_eq!(lines.len(), 1, "{args:?}: expected one line, got {err}");
        assert!(lines[0].contains(expected), "{args:?}: '{}' lacks '{expected}'", lines[0]);
        assert!(!err.contains("panicked") && !err.contains("backtrace"), "{args:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn toy_trains_reports_json_and_saves_a_loadable_sae() {
    let dir = temp_dir("toy");
    let save = dir.join("sae");
    let args = [
        "toy",
        "--features",
        "16",
        "--dims",
        "8",
        "--p",
        "0.1",
        "--arch",
        "topk",
        "--k",
        "3",
        "--dict",
        "32",
        "--batch",
        "64",
        "--steps",
        "200",
        "--seed",
        "4",
        "--lr",
        "0.003",
        "--save",
        path(&save),
    ];
    let (code, out, err) = saelab(&args);
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for key in ["mmcs", "recovered", "fvu", "l0", "dead", "steps_per_s", "device"] {
        assert!(json.get(key).is_some(), "toy output lacks {key}: {out}");
    }
    assert!(json["mmcs"].as_f64().unwrap() > 0.5, "{out}");
    let sae = saelab::sae::files::load_dir(&save).unwrap();
    assert_eq!(sae.cfg.architecture, saelab::sae::Architecture::TopK { k: 3 });
    assert_eq!((sae.d_in(), sae.d_sae()), (8, 32));
    // Same seed, same result.
    let (_, again, _) = saelab(&args);
    let again: serde_json::Value = serde_json::from_str(again.trim()).unwrap();
    assert_eq!(again["mmcs"], json["mmcs"]);
    // The other architectures save as SAELens does: batchtopk as jumprelu with one threshold.
    for (arch, extra, saved_as) in [("batchtopk", "--k", "jumprelu"), ("jumprelu", "--l0", "jumprelu"), ("gated", "--l1", "gated")] {
        let folder = dir.join(arch);
        let mut a: Vec<&str> = args[..args.len() - 2].to_vec();
        a.extend(["--arch", arch, extra, if arch == "jumprelu" { "0.05" } else { "2" }, "--save", path(&folder)]);
        let (code, out, err) = saelab(&a);
        assert_eq!(code, 0, "{arch}: {err}");
        let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert!(json["mmcs"].as_f64().unwrap() > 0.5, "{arch}: {out}");
        let sae = saelab::sae::files::load_dir(&folder).unwrap();
        let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(folder.join("cfg.json")).unwrap()).unwrap();
        assert_eq!(cfg["architecture"], saved_as, "{arch}");
        if arch == "batchtopk" {
            let threshold = sae.weights().tensor("threshold").expect("a threshold");
            assert!(threshold[0] > 0.0 && threshold.iter().all(|&t| t == threshold[0]), "one learned threshold for all latents");
        }
    }

    for (bad, expected) in [
        (vec!["--k", "40"], "k must be between 1 and dict (32)"),
        (vec!["--p", "1.5"], "p must be in (0, 1]"),
        (vec!["--dims", "0"], "dims must be at least 1"),
        (vec!["--lr", "nan"], "--lr: 'nan' is not a finite number"),
        (vec!["--lr", "-1"], "lr must be a positive number"),
        (vec!["--arch", "relu"], "--arch: 'relu' is not one of standard, topk, batchtopk, jumprelu, gated"),
        (vec!["--arch", "jumprelu", "--l0", "-1"], "l0 must be ≥ 0"),
        (vec!["--arch", "jumprelu", "--bandwidth", "0"], "bandwidth must be a positive number"),
        (vec!["--arch", "gated", "--l1", "inf"], "--l1: 'inf' is not a finite number"),
        (vec!["--preset", "nope"], "--preset: unknown preset 'nope'"),
        (vec!["--k", "banana"], "--k: 'banana' is not a valid number"),
        (vec!["--device", "tpu"], "--device must be cpu or gpu"),
    ] {
        let mut a: Vec<&str> = args[..args.len() - 2].to_vec();
        a.extend(bad.iter().copied());
        let (code, _, err) = saelab(&a);
        assert_eq!(code, 2, "{bad:?}");
        assert!(our_lines(&err).len() == 1 && err.contains(expected), "{bad:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn superposition_appears_as_features_get_sparse() {
    let run = |sparsity: &str| {
        let (code, out, err) = saelab(&["superposition", "--sparsity", sparsity, "--steps", "3000"]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()
    };
    assert_eq!(run("0")["represented"], 2);
    assert_eq!(run("0.95")["represented"], 5);
    let (code, _, err) = saelab(&["superposition", "--sparsity", "1.5"]);
    assert_eq!(code, 2);
    assert!(err.contains("sparsity must be in [0, 1)"), "{err}");
}

#[test]
fn forward_runs_tokens_and_text_and_refuses_what_it_cannot_run() {
    use saelab::model::files::{load_model_dir, random_gpt2, serialize_gpt2};
    let dir = temp_dir("forward");
    // A tiny random model with GPT-2's vocabulary, so that GPT-2's tokenizer applies.
    let model = random_gpt2(50257, 12, 12, 2, 3, true, 5);
    let folder = dir.join("model");
    std::fs::create_dir_all(&folder).unwrap();
    let (config, weights) = serialize_gpt2(&model).unwrap();
    std::fs::write(folder.join("config.json"), config).unwrap();
    std::fs::write(folder.join("model.safetensors"), weights).unwrap();
    assert_eq!(load_model_dir(&folder).unwrap(), model, "serialize_gpt2 round-trips through the loader");
    let tokenizer = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2_tokenizer/tokenizer.json");
    std::fs::copy(tokenizer, folder.join("tokenizer.json")).unwrap();

    let (logits, hook) = (dir.join("logits.npy"), dir.join("resid.npy"));
    let hook_arg = format!("blocks.1.hook_resid_mid={}", path(&hook));
    let (code, out, err) = saelab(&[
        "forward",
        "--model",
        path(&folder),
        "--text",
        "Hello world",
        "--logits",
        path(&logits),
        "--hook",
        &hook_arg,
        "--device",
        "cpu",
    ]);
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["tokens"], serde_json::json!([15496, 995]));
    let read = |p: &std::path::Path| saelab::formats::npy::read_f32("x", &std::fs::read(p).unwrap()).unwrap();
    let (l, h) = (read(&logits), read(&hook));
    assert_eq!((l.shape.as_slice(), h.shape.as_slice()), (&[2, 50257][..], &[2, 12][..]));
    // The same numbers as the library's forward.
    let (want_logits, want_hooks) =
        saelab::model::cpu::run_with_hooks(&model, &[15496, 995], &["blocks.1.hook_resid_mid".parse().unwrap()]).unwrap();
    assert_eq!((&l.data, &h.data), (&want_logits, &want_hooks[0]));
    // On the GPU: the same within f32 reordering.
    let (code, out, err) =
        saelab(&["forward", "--model", path(&folder), "--text", "Hello world", "--logits", path(&logits), "--device", "gpu"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["next_token"], json["next_token"]);
    let on_gpu = read(&logits);
    assert!(on_gpu.data.iter().zip(&l.data).all(|(a, b)| (a - b).abs() <= 1e-4 * (1.0 + b.abs())));
    // --tokens gives the same as --text.
    let tokens = dir.join("tokens.npy");
    std::fs::write(&tokens, npy_i64(&[15496, 995])).unwrap();
    let (code, again, _) = saelab(&["forward", "--model", path(&folder), "--tokens", path(&tokens), "--device", "cpu"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<serde_json::Value>(again.trim()).unwrap()["next_token"], json["next_token"]);

    std::fs::write(dir.join("big.npy"), npy_i64(&[1, 50257])).unwrap();
    std::fs::write(dir.join("negative.npy"), npy_i64(&[1, -4])).unwrap();
    let long = "word ".repeat(20);
    for (args, expected) in [
        (vec!["--text", &long], "tokens are more than the model's context of 12 positions"),
        (vec!["--tokens", path(&dir.join("big.npy"))], "token 50257 at position 1 is outside the vocabulary (size 50257)"),
        (vec!["--tokens", path(&dir.join("negative.npy"))], "token -4 at position 1 is not a token id"),
        (vec!["--text", "a", "--hook", "blocks.2.hook_resid_pre=x.npy"], "is not a hook point of this gpt2 model"),
        (vec!["--text", "a", "--hook", "blocks.0.hook_resid_pre"], "expected NAME=OUT.npy"),
        (vec![], "give one of --tokens T.npy or --text TEXT"),
    ] {
        let mut a = vec!["forward", "--model", path(&folder), "--device", "cpu"];
        a.extend(args.iter().copied());
        let (code, _, err) = saelab(&a);
        assert_eq!(code, 2, "{args:?}");
        assert!(our_lines(&err).len() == 1 && err.contains(expected), "{args:?}: {err}");
    }
    let (code, _, err) = saelab(&["forward", "--model", path(&dir), "--text", "a", "--device", "cpu"]);
    assert_eq!(code, 2);
    assert!(err.contains("config.json: No such file"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A 1-D int64 `.npy`.
fn npy_i64(values: &[i64]) -> Vec<u8> {
    let header = format!("{{'descr': '<i8', 'fortran_order': False, 'shape': ({},), }}", values.len());
    let pad = 64 - (10 + header.len() + 1) % 64;
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend(((header.len() + pad + 1) as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    values.iter().for_each(|v| out.extend(v.to_le_bytes()));
    out
}

/// `dir/tiny-gpt2`: a random 2-layer, width-24, context-40 GPT-2 with GPT-2's tokenizer.
fn tiny_model(dir: &Path) -> PathBuf {
    let model = dir.join("tiny-gpt2");
    let tokenizer = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2_tokenizer/tokenizer.json");
    let (code, _, err) = saelab(&[
        "random-model",
        "--out",
        path(&model),
        "--vocab-from",
        path(&tokenizer),
        "--layers",
        "2",
        "--width",
        "24",
        "--heads",
        "3",
        "--context",
        "40",
    ]);
    assert_eq!(code, 0, "{err}");
    model
}

#[test]
fn train_on_a_model_reports_progress_saves_an_sae_and_refuses_bad_input() {
    let dir = temp_dir("train");
    let model = tiny_model(&dir);
    let corpus = dir.join("corpus.txt");
    std::fs::write(&corpus, "The cat sat on the mat. A dog ran in the park; déjà vu, 東京.\n".repeat(60)).unwrap();
    let save = dir.join("sae");
    let base = ["train", "--model", path(&model), "--hook", "blocks.1.hook_resid_pre", "--corpus", path(&corpus)];
    let args = |extra: &[&str]| base.iter().chain(extra).copied().map(String::from).collect::<Vec<String>>();
    let run = |extra: &[&str]| {
        let a = args(extra);
        saelab(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (code, out, err) = run(&[
        "--arch",
        "topk",
        "--k",
        "4",
        "--dict",
        "48",
        "--tokens",
        "1280",
        "--batch",
        "64",
        "--context",
        "20",
        "--eval-every",
        "5",
        "--device",
        "cpu",
        "--save",
        path(&save),
    ]);
    assert_eq!(code, 0, "{err}");
    let result: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(result["step"], 20);
    assert_eq!(result["tokens"], 1280);
    assert!(result["fvu"].as_f64().unwrap() < 1.0 && result["l0"] == 4.0, "{result}");
    for key in ["ce_recovered", "dead_fraction", "tokens_per_s", "eta_s"] {
        assert!(result[key].is_number(), "{key} in {result}");
    }
    let progress = err.lines().filter(|l| l.starts_with("{\"step\"")).count();
    assert_eq!(progress, 4, "a progress line every 5 steps on stderr: {err}");
    let sae = saelab::sae::files::load_dir(&save).unwrap();
    assert_eq!(sae.cfg.hook_name.as_deref(), Some("blocks.1.hook_resid_pre"));
    assert_eq!((sae.d_in(), sae.d_sae()), (24, 48));
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(save.join("cfg.json")).unwrap()).unwrap();
    assert_eq!(cfg["metadata"]["model_name"], "tiny-gpt2");
    assert_eq!(cfg["metadata"]["context_size"], 20);

    // The throughput benchmark, on both devices (a smoke run: figures are not asserted).
    let (code, out, err) = saelab(&[
        "bench-train",
        "--model",
        path(&model),
        "--hook",
        "blocks.1.hook_resid_pre",
        "--corpus",
        path(&corpus),
        "--context",
        "16",
        "--contexts",
        "2",
        "--dict",
        "32",
        "--k",
        "4",
        "--batch",
        "16",
        "--steps",
        "1",
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines.iter().all(|l| l["harvest_tokens_per_s"].as_f64().unwrap() > 0.0 && l["train_tokens_per_s"].as_f64().unwrap() > 0.0),
        "{out}"
    );

    // Bad input: one line naming what is wrong, and nothing saved over the SAE already there.
    let before = std::fs::read(save.join("sae_weights.safetensors")).unwrap();
    let refused = |extra: &[&str], corpus_bytes: Option<&[u8]>| {
        if let Some(bytes) = corpus_bytes {
            std::fs::write(&corpus, bytes).unwrap();
        }
        let (code, _, err) = run(extra);
        assert_eq!(code, 2, "{err}");
        our_lines(&err).join("\n")
    };
    let ok = ["--arch", "topk", "--k", "4", "--dict", "48", "--tokens", "1280", "--batch", "64", "--device", "cpu", "--save", path(&save)];
    assert!(refused(&ok, Some(b"")).contains("empty"));
    assert!(refused(&ok, Some(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")).contains("binary file"));
    assert!(refused(&ok, Some(b"caf\xe9")).contains("not UTF-8"));
    std::fs::write(&corpus, "Some text to train on.\n".repeat(50)).unwrap();
    let mut bad_hook = vec!["train", "--model", path(&model), "--hook", "blocks.5.hook_resid_pre", "--corpus", path(&corpus)];
    bad_hook.extend(ok);
    let (code, _, err) = saelab(&bad_hook);
    assert_eq!(code, 2);
    assert!(our_lines(&err).join("").contains("not a hook point"), "{err}");
    assert!(refused(&["--arch", "topk", "--k", "60", "--dict", "48", "--tokens", "1280", "--device", "cpu", "--save", path(&save)], None)
        .contains("k must be between 1 and dict (48)"));
    assert!(refused(&["--arch", "sparse", "--dict", "48", "--tokens", "1280", "--device", "cpu", "--save", path(&save)], None)
        .contains("unknown architecture 'sparse'"));
    assert!(refused(&["--arch", "topk", "--dict", "48", "--tokens", "10", "--device", "cpu", "--save", path(&save)], None)
        .contains("at least one batch"));
    assert!(refused(
        &[
            "--arch",
            "topk",
            "--dict",
            "48",
            "--tokens",
            "1280",
            "--batch",
            "64",
            "--context",
            "41",
            "--device",
            "cpu",
            "--save",
            path(&save)
        ],
        None
    )
    .contains("the model's context (40 positions)"));
    assert_eq!(std::fs::read(save.join("sae_weights.safetensors")).unwrap(), before);
}

#[test]
fn train_stops_at_a_checkpoint_and_resumes_to_the_same_sae() {
    let dir = temp_dir("train-resume");
    let model = tiny_model(&dir);
    let corpus = dir.join("corpus.txt");
    std::fs::write(&corpus, "Once upon a time, in a land of hills and rivers, a fox met a crow.\n".repeat(60)).unwrap();
    let (whole, part, checkpoint) = (dir.join("whole"), dir.join("part"), dir.join("run.ckpt"));
    let data = ["--model", path(&model), "--corpus", path(&corpus), "--device", "cpu"];
    let settings = [
        "--hook",
        "blocks.0.hook_resid_post",
        "--arch",
        "batchtopk",
        "--k",
        "3",
        "--dict",
        "40",
        "--tokens",
        "1600",
        "--batch",
        "64",
        "--context",
        "20",
        "--eval-every",
        "5",
    ];
    let train = |extra: &[&str]| saelab(&[&["train"][..], &data, extra].concat());

    let (code, out, err) = train(&[&settings[..], &["--save", path(&whole)]].concat());
    assert_eq!(code, 0, "{err}");
    let whole_result: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    // The same run in two sessions: 9 steps, checkpointed, stopped; then resumed to the end.
    let (code, out, err) =
        train(&[&settings[..], &["--save", path(&part), "--checkpoint", path(&checkpoint), "--stop-after", "9"]].concat());
    assert_eq!(code, 0, "{err}");
    let stopped: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(stopped["stopped_at_step"], 9, "{stopped}");
    let (code, out, err) = train(&["--resume", path(&checkpoint), "--save", path(&part)]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("\"from_step\":9"), "{err}");
    let resumed: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (resumed["step"].clone(), resumed["fvu"].clone(), resumed["ce_recovered"].clone()),
        (whole_result["step"].clone(), whole_result["fvu"].clone(), whole_result["ce_recovered"].clone())
    );
    let weights = |d: &Path| std::fs::read(d.join("sae_weights.safetensors")).unwrap();
    assert_eq!(weights(&part), weights(&whole), "the resumed run ends on the uninterrupted run's SAE, bit for bit");

    // A resumed run keeps its settings; another corpus or a file that is not a checkpoint is refused.
    let (code, _, err) = train(&["--resume", path(&checkpoint), "--save", path(&part), "--dict", "80"]);
    assert!(code == 2 && err.contains("--dict: a resumed run keeps the settings it was saved with"), "{err}");
    let other = dir.join("other.txt");
    std::fs::write(&other, "Different words entirely, about ships and the sea.\n".repeat(40)).unwrap();
    let (code, _, err) = saelab(&[
        "train",
        "--model",
        path(&model),
        "--corpus",
        path(&other),
        "--device",
        "cpu",
        "--resume",
        path(&checkpoint),
        "--save",
        path(&part),
    ]);
    assert!(code == 2 && err.contains("another corpus"), "{err}");
    let (code, _, err) = train(&["--resume", path(&part.join("sae_weights.safetensors")), "--save", path(&part)]);
    assert!(code == 2 && err.contains("not a saelab checkpoint"), "{err}");
    let (code, _, err) = train(&[&settings[..], &["--save", path(&part), "--stop-after", "3"]].concat());
    assert!(code == 2 && err.contains("--stop-after needs --checkpoint"), "{err}");
}

/// The README's command list (the CLI section's code block) and `--help` agree: every command
/// `saelab --help` lists is in the README, and each command's flags there are exactly those its
/// `--help` lists.
#[test]
fn the_readme_command_list_matches_help() {
    use std::collections::{BTreeMap, BTreeSet};
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme.split("## The CLI").nth(1).expect("a CLI section").split("\n## ").next().unwrap();
    let block = section.split("```sh").nth(1).expect("a code block").split("```").next().unwrap();
    let flags_in = |text: &str| -> BTreeSet<String> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(str::to_string)
            .collect()
    };
    // Continuation lines belong to the command above them; comments after '#' are not flags.
    let mut readme_commands: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current = String::new();
    for line in block.lines() {
        let code = line.split(" # ").next().unwrap();
        if let Some(rest) = code.trim_start().strip_prefix("saelab ") {
            current = rest.split_whitespace().next().unwrap().to_string();
        }
        if !current.is_empty() {
            readme_commands.entry(current.clone()).or_default().extend(flags_in(code));
        }
    }
    let (code, help, _) = saelab(&["--help"]);
    assert_eq!(code, 0);
    let commands: Vec<String> = help
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("Options:")
        .next()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert!(commands.len() >= 16, "{help}");
    for command in &commands {
        let documented = readme_commands.get(command).unwrap_or_else(|| panic!("the README does not list `saelab {command}`"));
        let (code, help, _) = saelab(&[command, "--help"]);
        assert_eq!(code, 0, "{command} --help");
        let mut offered = flags_in(&help);
        offered.remove("--help");
        offered.remove("--version");
        assert_eq!(documented, &offered, "`saelab {command}`: the README's flags (left) and --help's (right)");
    }
    for documented in readme_commands.keys() {
        assert!(commands.contains(documented), "the README lists `saelab {documented}`, which --help does not");
    }
}

/// `--text` is read as the SAE was trained: the model's BOS first when its prepend_bos says so
/// (random-model's SAE says nothing, so SAELens's default, true), marked special; `--no-bos` runs
/// the text's own tokens. `generate` with an SAE reads its prompt the same way.
#[test]
fn text_gets_the_bos_the_sae_was_trained_with() {
    let dir = temp_dir("bos");
    let model = dir.join("tiny");
    let sae = dir.join("sae");
    let tokenizer = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2_tokenizer/tokenizer.json");
    let (code, _, err) = saelab(&[
        "random-model",
        "--out",
        path(&model),
        "--vocab-from",
        path(&tokenizer),
        "--layers",
        "2",
        "--width",
        "24",
        "--heads",
        "3",
        "--context",
        "40",
        "--sae-out",
        path(&sae),
        "--hook",
        "blocks.1.hook_resid_pre",
    ]);
    assert_eq!(code, 0, "{err}");
    let features = |extra: &[&str]| {
        let mut a = vec!["features", "--model", path(&model), "--sae", path(&sae), "--text", "Hello world", "--device", "cpu"];
        a.extend(extra);
        let (code, out, err) = saelab(&a);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["tokens"].as_array().unwrap().clone()
    };
    let with = features(&[]);
    let ids: Vec<u64> = with.iter().map(|t| t["token"].as_u64().unwrap()).collect();
    assert_eq!(ids, [50256, 15496, 995], "<|endoftext|> (random-model's bos_token_id), then 'Hello', ' world'");
    assert_eq!(with.iter().map(|t| t["special"].as_bool().unwrap()).collect::<Vec<_>>(), [true, false, false]);
    let without = features(&["--no-bos"]);
    assert_eq!(without.iter().map(|t| t["token"].as_u64().unwrap()).collect::<Vec<_>>(), [15496, 995]);
    let generate = |extra: &[&str]| {
        let mut a = vec![
            "generate",
            "--model",
            path(&model),
            "--text",
            "Hello world",
            "--tokens",
            "2",
            "--sae",
            path(&sae),
            "--steer",
            "3=2",
            "--device",
            "cpu",
        ];
        a.extend(extra);
        let (code, out, err) = saelab(&a);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["prompt"]["tokens"].as_array().unwrap().len()
    };
    assert_eq!((generate(&[]), generate(&["--no-bos"])), (3, 2));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `random-model --family llama3|gemma3 --dtype bf16` writes a folder that loads as that family,
/// stored in bf16 (half the f32 file), with the tokenizer's own BOS/EOS, and runs with its SAE.
#[test]
fn random_models_of_other_families_load_and_run() {
    use saelab::formats::safetensors::FloatDtype;
    let dir = temp_dir("families");
    for (family, tokenizer, model_type, bos) in
        [("llama3", "llama3", "llama", "<|begin_of_text|>"), ("gemma3", "gemma", "gemma3_text", "<bos>")]
    {
        let tokenizer = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizers").join(tokenizer).join("tokenizer.json");
        let (model, sae) = (dir.join(family), dir.join(format!("{family}-sae")));
        let (code, _, err) = saelab(&[
            "random-model",
            "--family",
            family,
            "--dtype",
            "bf16",
            "--out",
            path(&model),
            "--vocab-from",
            path(&tokenizer),
            "--layers",
            "2",
            "--width",
            "48",
            "--heads",
            "4",
            "--context",
            "32",
            "--sae-out",
            path(&sae),
            "--hook",
            "blocks.1.attn.hook_z",
        ]);
        assert_eq!(code, 0, "{err}");
        let loaded = saelab::model::files::load_model_dir(&model).unwrap();
        assert_eq!((loaded.cfg.model_type.as_str(), loaded.weights.dtype), (model_type, FloatDtype::BF16), "{family}");
        let tok = saelab::formats::tokenizer::TextTokenizer::parse(&std::fs::read(&tokenizer).unwrap()).unwrap();
        assert_eq!(loaded.cfg.special_tokens.bos, tok.special_id(bos), "{family}: the tokenizer's BOS");
        let (code, out, err) = saelab(&[
            "features",
            "--model",
            path(&model),
            "--sae",
            path(&sae),
            "--text",
            "The fox ran.",
            "--feature",
            "3",
            "--device",
            "cpu",
        ]);
        assert_eq!(code, 0, "{family}: {err}");
        let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(json["tokens"][0]["token"].as_u64(), tok.special_id(bos).map(u64::from), "{family}: BOS first");
    }
    // The same model sharded as save_pretrained shards: it loads as the single file does.
    let tokenizer = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizers/gemma/tokenizer.json");
    let (one, sharded) = (dir.join("one"), dir.join("sharded"));
    for (out, extra) in [(&one, vec![]), (&sharded, vec!["--shard-bytes", "40000"])] {
        let mut a = vec!["random-model", "--family", "gemma3", "--dtype", "bf16", "--out", path(out), "--vocab-from", path(&tokenizer)];
        a.extend(extra);
        let (code, _, err) = saelab(&a);
        assert_eq!(code, 0, "{err}");
    }
    assert!(!sharded.join("model.safetensors").exists() && sharded.join("model.safetensors.index.json").exists());
    let shards =
        std::fs::read_dir(&sharded).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("model-")).count();
    assert!(shards >= 2, "{shards} shards");
    assert_eq!(saelab::model::files::load_model_dir(&sharded).unwrap(), saelab::model::files::load_model_dir(&one).unwrap());
    let (code, _, err) = saelab(&["random-model", "--family", "mamba", "--out", path(&dir.join("x"))]);
    assert_eq!(code, 2);
    assert!(err.contains("--family 'mamba' is not one of gpt2, llama3, gemma3"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The harness's lines as a user reads them: the ceilings, each workload on each device, the peer
/// (here a stand-in Python that reports fixed figures, so the ratios can be checked) and, with no
/// usable Python, a line saying why the peer is missing. Figures are not asserted.
#[test]
fn bench_reports_ceilings_workloads_and_the_peer_ratio() {
    let dir = temp_dir("bench");
    let fake = dir.join("fake-python");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho '{\"workload\": \"sae-topk\", \"device\": \"stand-in\", \"rows_per_s\": 100.0}'\necho 'a line that is not JSON is ignored'\n",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let small =
        ["bench", "--n", "19", "--d-in", "24", "--d-sae", "70", "--k", "5", "--cpu-rows", "13", "--train-batch", "17", "--repeats", "2"];
    let lines = |out: &str| -> Vec<serde_json::Value> { out.lines().map(|l| serde_json::from_str(l).unwrap()).collect() };
    let (code, out, err) = saelab(&[&small[..], &["--device", "both", "--python", path(&fake)]].concat());
    assert_eq!(code, 0, "{err}");
    let lines = lines(&out);
    let ceilings: Vec<&serde_json::Value> = lines.iter().filter(|l| l["ceiling"].is_string()).collect();
    assert_eq!(ceilings.len(), 4, "FMA and copy, GPU then CPU: {out}");
    for pair in ceilings.chunks(2) {
        assert!(pair[0]["gflop_per_s"].as_f64().unwrap() > 0.0 && pair[1]["gb_per_s"].as_f64().unwrap() > 0.0, "{out}");
    }
    let ours: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["workload"].is_string() && l["peer"].is_null() && l["ratio"].is_null()).collect();
    let names: Vec<(&str, bool, u64)> = ours
        .iter()
        .map(|l| (l["workload"].as_str().unwrap(), l["device"].as_str().unwrap().starts_with("cpu"), l["rows"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("sae-standard", false, 19),
            ("sae-topk", false, 19),
            ("train-topk", false, 17),
            ("sae-standard", true, 13),
            ("sae-topk", true, 13),
            ("train-topk", true, 13)
        ],
        "{out}"
    );
    for l in &ours {
        assert!(l["seconds"].as_f64().unwrap() > 0.0 && l["repeats"] == 2 && l["gflop_per_s"].as_f64().unwrap() > 0.0, "{l}");
        assert!(l["of_fma_ceiling"].as_f64().unwrap() > 0.0 && l["of_copy_ceiling"].as_f64().unwrap() > 0.0, "{l}");
    }
    let topk_cpu = ours[4]["rows_per_s"].as_f64().unwrap();
    let ratios: Vec<&serde_json::Value> = lines.iter().filter(|l| l["ratio"].is_string()).collect();
    assert_eq!(ratios.len(), 1, "one ratio: the stand-in reports one workload: {out}");
    assert_eq!(ratios[0]["workload"], "sae-topk");
    assert!((ratios[0]["value"].as_f64().unwrap() - topk_cpu / 100.0).abs() < 1e-9 * topk_cpu, "{out}");

    // A Python that is not there: the peer's line says so, the run still succeeds.
    let (code, out, err) = saelab(&[&small[..], &["--device", "cpu", "--python", "/nonexistent/python"]].concat());
    assert_eq!(code, 0, "{err}");
    let skipped: Vec<serde_json::Value> =
        out.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter(|l| l["skipped"].is_string()).collect();
    assert_eq!(skipped.len(), 1, "{out}");
    assert!(skipped[0]["skipped"].as_str().unwrap().contains("/nonexistent/python"), "{out}");
    assert!(!out.contains("\"ratio\""), "{out}");

    // Bad settings: one line.
    let (code, _, err) = saelab(&["bench", "--k", "0", "--device", "cpu"]);
    assert_eq!(code, 2);
    assert!(our_lines(&err).join("").contains("at least 1"), "{err}");
    let (code, _, err) = saelab(&["bench", "--peer", "maybe", "--device", "cpu"]);
    assert_eq!(code, 2);
    assert!(our_lines(&err).join("").contains("--peer must be auto or none"), "{err}");
}
