//! Parsers against truncated, oversized, malformed, wrong-dtype and wrong-shape input: each is an
//! error that names the file and the problem, never a panic.

mod common;

use common::fixtures;
use saelab::engine::check_activations;
use saelab::formats::npy;
use saelab::sae::files::{parse_sae, SaeFileBytes};

fn files(name: &str) -> (Vec<u8>, Vec<u8>) {
    let dir = fixtures().join(name);
    (std::fs::read(dir.join("cfg.json")).unwrap(), std::fs::read(dir.join("sae_weights.safetensors")).unwrap())
}

fn load_error(cfg: &[u8], weights: &[u8]) -> String {
    match parse_sae(SaeFileBytes { cfg, weights, sparsity: None }) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

/// A safetensors file from a JSON header and a data section.
fn safetensors_with(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn truncated_and_garbage_weights() {
    let (cfg, weights) = files("topk_bdec1_none");
    for cut in [0, 4, 8, 20, weights.len() / 2, weights.len() - 1] {
        let msg = load_error(&cfg, &weights[..cut]);
        assert!(msg.starts_with("sae_weights.safetensors: "), "cut {cut}: {msg}");
    }
    let msg = load_error(&cfg, b"\x00\x01garbage garbage garbage garbage");
    assert!(msg.contains("sae_weights.safetensors"), "{msg}");
    // A header length of 2^60: larger than the file, refused without allocating it.
    let mut huge = (1u64 << 60).to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    assert!(load_error(&cfg, &huge).contains("sae_weights.safetensors"));
}

#[test]
fn header_that_lies_about_offsets() {
    let cfg = br#"{"architecture":"standard","d_in":2,"d_sae":2}"#;
    // W_enc claims bytes 0..16 but b_enc overlaps it, and the data is shorter than claimed.
    let header =
        r#"{"W_enc":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b_enc":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#;
    let msg = load_error(cfg, &safetensors_with(header, &[0; 16]));
    assert!(msg.contains("offsets"), "{msg}");
    let header = r#"{"W_enc":{"dtype":"F32","shape":[2,2],"data_offsets":[0,64]}}"#;
    let msg = load_error(cfg, &safetensors_with(header, &[0; 16]));
    assert!(msg.contains("sae_weights.safetensors"), "{msg}");
    let header = r#"{"W_enc":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}"#;
    let msg = load_error(cfg, &safetensors_with(header, &[0; 12]));
    assert!(msg.contains("do not match its shape"), "{msg}");
}

#[test]
fn missing_tensor_wrong_shape_unknown_architecture_unsupported_dtype() {
    let (cfg, weights) = files("jumprelu_bdec1_none");
    let cfg_text = String::from_utf8(cfg.clone()).unwrap();
    // cfg.json says d_sae = 81 while the tensors have 80.
    let wrong = cfg_text.replace("\"d_sae\": 80", "\"d_sae\": 81");
    assert_ne!(wrong, cfg_text);
    let msg = load_error(wrong.as_bytes(), &weights);
    assert!(msg.contains("'W_enc' has shape [24, 80] but cfg.json (d_in=24, d_sae=81) implies [24, 81]"), "{msg}");
    // The same weights read as gated lack b_gate.
    let gated = cfg_text.replace("\"architecture\": \"jumprelu\"", "\"architecture\": \"gated\"");
    let msg = load_error(gated.as_bytes(), &weights);
    assert!(msg.contains("missing tensor 'b_gate'"), "{msg}");
    let unknown = cfg_text.replace("\"architecture\": \"jumprelu\"", "\"architecture\": \"matryoshka_magic\"");
    let msg = load_error(unknown.as_bytes(), &weights);
    assert_eq!(msg, "cfg.json: unknown architecture 'matryoshka_magic' (supported: standard, topk, batchtopk, jumprelu, gated, and the transcoders transcoder, skip_transcoder, jumprelu_transcoder, jumprelu_skip_transcoder)");
    // An integer tensor.
    let cfg = br#"{"architecture":"standard","d_in":1,"d_sae":1}"#;
    let header = r#"{"W_enc":{"dtype":"I64","shape":[1,1],"data_offsets":[0,8]}}"#;
    let msg = load_error(cfg, &safetensors_with(header, &[0; 8]));
    assert!(msg.contains("tensor 'W_enc' has dtype I64; only F32, F16 and BF16"), "{msg}");
    // Non-finite weights.
    let header = r#"{"W_enc":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]},"W_dec":{"dtype":"F32","shape":[1,1],"data_offsets":[4,8]},"b_enc":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},"b_dec":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}"#;
    let mut data = Vec::new();
    for v in [1.0f32, f32::NAN, 0.0, 0.0] {
        data.extend_from_slice(&v.to_le_bytes());
    }
    let msg = load_error(cfg, &safetensors_with(header, &data));
    assert!(msg.contains("'W_dec' holds a non-finite value"), "{msg}");
}

#[test]
fn oversized_and_malformed_cfg() {
    let (_, weights) = files("standard_bdec1_none");
    let mut big = b"{\"d_in\": 24, \"d_sae\": 80, \"pad\": \"".to_vec();
    big.extend(std::iter::repeat_n(b'x', 5_000_000));
    big.extend_from_slice(b"\"}");
    // Large but valid JSON loads (extra keys are kept, not refused).
    assert!(parse_sae(SaeFileBytes { cfg: &big, weights: &weights, sparsity: None }).is_ok());
    assert!(load_error(&big[..1000], &weights).starts_with("cfg.json: not valid JSON"));
    assert!(load_error(b"\xff\xfe", &weights).starts_with("cfg.json: not valid JSON"));
}

#[test]
fn activations_that_do_not_fit_the_sae() {
    let wide = npy::read_f32("wide.npy", &npy::write_f32(&[3, 25], &[0.0; 75])).unwrap();
    assert_eq!(
        check_activations("wide.npy", &wide, 24).unwrap_err().to_string(),
        "wide.npy: expected activations of shape [n, 24] (the SAE's d_in), found shape [3, 25]"
    );
    let mut values = vec![1.0f32; 5 * 4];
    values[4 * 2] = f32::NAN;
    values[4 * 4 + 1] = f32::NEG_INFINITY;
    let bad = npy::read_f32("bad.npy", &npy::write_f32(&[5, 4], &values)).unwrap();
    assert_eq!(
        check_activations("bad.npy", &bad, 4).unwrap_err().to_string(),
        "bad.npy: 2 of 5 rows contain NaN or Inf (first: row 2); remove or fix them"
    );
    let empty = npy::read_f32("e.npy", &npy::write_f32(&[0, 4], &[])).unwrap();
    assert!(check_activations("e.npy", &empty, 4).unwrap_err().to_string().contains("no rows"));
    let one_row = npy::read_f32("r.npy", &npy::write_f32(&[4], &[1.0; 4])).unwrap();
    assert_eq!(check_activations("r.npy", &one_row, 4), Ok(1));
}

/// Model folders (a GPT-2 one here; every family's in tests/families.rs): bad config.json, missing or mis-shaped tensors, truncated weights, bad tokens.
#[test]
fn gpt2_model_files_and_tokens() {
    use saelab::formats::safetensors::TensorFile;
    use saelab::model::files::parse_model;
    let parse_gpt2 = |c: &[u8], w: &[u8]| TensorFile::parse("model.safetensors", w).and_then(|file| parse_model(c, vec![file]));
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2/tied_f32");
    let config = std::fs::read(dir.join("config.json")).unwrap();
    let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
    let error = |c: &[u8], w: &[u8]| match parse_gpt2(c, w) {
        Ok(_) => "(no error)".to_string(),
        Err(e) => e.to_string(),
    };
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_slice(&config).unwrap();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    for (cfg, expected) in [
        (edit(&|v| v["n_head"] = 7.into()), "hidden_size (60) is not a multiple of num_attention_heads (7)"),
        (edit(&|v| v["model_type"] = "llama".into()), "config.json: missing 'hidden_size'"),
        (edit(&|v| v["model_type"] = "bert".into()), "model_type 'bert' is not supported"),
        (edit(&|v| v["activation_function"] = "swiglu".into()), "activation_function 'swiglu' is not supported"),
        (edit(&|v| v["add_cross_attention"] = true.into()), "add_cross_attention"),
        (edit(&|v| v["n_layer"] = 0.into()), "num_hidden_layers is 0"),
        (edit(&|v| v["n_layer"] = 2.into()), "tensor 'transformer.h.2.attn.c_attn.bias' is not part of a gpt2 model (12 such tensors)"),
        (edit(&|v| v["n_layer"] = 4.into()), "missing tensor 'transformer.h.3.attn.c_attn.weight'"),
        (edit(&|v| v["n_embd"] = 65.into()), "has shape [211, 60], the config implies [211, 65]"),
        (edit(&|v| v["tie_word_embeddings"] = false.into()), "missing tensor 'lm_head.weight'"),
        (edit(&|v| v["vocab_size"] = (-1).into()), "'vocab_size' must be a whole number"),
        (b"{\"n_embd\": ".to_vec(), "config.json: not valid JSON"),
        (b"[1, 2]".to_vec(), "expected a JSON object"),
    ] {
        let msg = error(&cfg, &weights);
        assert!(msg.contains(expected), "{expected}: {msg}");
    }
    for cut in [0, 8, 100, weights.len() / 2, weights.len() - 1] {
        let msg = error(&config, &weights[..cut]);
        assert!(msg.starts_with("model.safetensors: "), "cut {cut}: {msg}");
    }
    // A non-finite weight is named.
    let mut file = TensorFile::parse("model.safetensors", &weights).unwrap();
    let t = file.tensors.get_mut("transformer.h.1.mlp.c_fc.bias").unwrap();
    t.bytes[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
    let msg = error(&config, &file.serialize());
    assert!(msg.contains("'transformer.h.1.mlp.c_fc.bias' holds a non-finite value (NaN) at flat index 1"), "{msg}");

    // Tokens the model cannot take.
    let Ok(model) = parse_gpt2(&config, &weights) else { panic!("the fixture loads") };
    let run = |tokens: &[u32]| saelab::model::cpu::forward(&model, tokens, &mut |_, _, _| {}).expect_err("an error").to_string();
    assert_eq!(run(&[1, 2, 211]), "token 211 at position 2 is outside the vocabulary (size 211)");
    assert_eq!(run(&[0; 41]), "41 tokens are more than the model's context of 40 positions; shorten the text");
    assert_eq!(run(&[]), "no tokens to run");
    assert!(model.cfg.hook_point("blocks.3.hook_resid_pre").unwrap_err().contains("blocks.{0..2}"));
    assert!(model.cfg.hook_point("blocks.2.attn.hook_z").is_ok());
}
