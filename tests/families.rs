//! Every family's `config.json`, read by saelab, against what `transformers` 5.24 reads from the
//! same file (`tests/fixtures/families/*/expected.json`, made by `tools/make_model_configs.py`):
//! sizes, heads, per-layer attention, RoPE per layer type, norms, caps, layout, activation. And the
//! configs saelab must refuse, with the field the message must name.

use std::path::Path;

use saelab::model::decoder::{Activation, BlockLayout, DecoderConfig, LayerAttention, Mlp, NormKind, Positions, Rope, RopeScaling};
use saelab::model::families::describe;
use serde_json::Value;

fn fixtures() -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(Path::new("tests/fixtures/families")).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    assert!(dirs.len() >= 18, "run tools/make_model_configs.py");
    dirs
}

/// Within 1e-4 of the largest magnitude (at least 1): f32 sums in another order.
fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1.0);
    let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst <= 1e-4 * scale, "{what}: worst difference {worst} (scale {scale})");
}

/// A fixture model loaded by saelab.
fn fixture_model(dir: &Path) -> saelab::model::Model {
    use saelab::formats::safetensors::TensorFile;
    let cfg = describe(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let file = TensorFile::parse("model.safetensors", &std::fs::read(dir.join("model.safetensors")).unwrap()).unwrap();
    let weights = saelab::model::families::load(&cfg, vec![file]).unwrap();
    saelab::model::Model { cfg, weights }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

fn check_rope(name: &str, rope: &Rope, want: &Value, d_head: usize) {
    assert!(close(rope.theta, want["rope_theta"].as_f64().unwrap()), "{name}: theta {} vs {want}", rope.theta);
    let partial = want.get("partial_rotary_factor").and_then(Value::as_f64).unwrap_or(1.0);
    assert_eq!(rope.rotary_dim, (d_head as f64 * partial) as usize, "{name}: rotary dims");
    match (want["rope_type"].as_str().unwrap(), rope.scaling) {
        ("default", RopeScaling::None) => {}
        ("linear", RopeScaling::Linear { factor }) => assert!(close(factor, want["factor"].as_f64().unwrap())),
        ("llama3", RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings }) => {
            assert!(close(factor, want["factor"].as_f64().unwrap()), "{name}");
            assert!(close(low_freq_factor, want["low_freq_factor"].as_f64().unwrap()), "{name}");
            assert!(close(high_freq_factor, want["high_freq_factor"].as_f64().unwrap()), "{name}");
            assert!(close(original_max_position_embeddings, want["original_max_position_embeddings"].as_f64().unwrap()), "{name}");
        }
        (kind, scaling) => panic!("{name}: transformers reads rope_type {kind}, saelab {scaling:?}"),
    }
}

fn check(name: &str, cfg: &DecoderConfig, want: &Value) {
    let n = |key: &str| want[key].as_u64().unwrap() as usize;
    assert_eq!(cfg.model_type, want["model_type"].as_str().unwrap(), "{name}");
    assert_eq!(
        (cfg.vocab_size, cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.d_head, cfg.d_mlp),
        (n("vocab_size"), n("d_model"), n("n_layers"), n("n_heads"), n("n_kv_heads"), n("d_head"), n("d_mlp")),
        "{name}: sizes"
    );
    assert_eq!(cfg.tied_embeddings, want["tied_embeddings"].as_bool().unwrap(), "{name}: tied");

    // Per layer: transformers' layer_types (all global when it has none), the window on sliding ones.
    let types: Vec<String> = match want["layer_types"].as_array() {
        Some(t) => t.iter().map(|v| v.as_str().unwrap().to_string()).collect(),
        None => vec!["full_attention".into(); cfg.n_layers],
    };
    for (layer, (got, t)) in cfg.layers.iter().zip(&types).enumerate() {
        match (t.as_str(), got) {
            ("full_attention", LayerAttention::Global) => {}
            ("sliding_attention", LayerAttention::Sliding { window }) => assert_eq!(*window, n("sliding_window"), "{name} layer {layer}"),
            _ => panic!("{name} layer {layer}: transformers reads {t}, saelab {got:?}"),
        }
    }
    assert_eq!(cfg.layers.len(), cfg.n_layers, "{name}");

    match &cfg.positions {
        Positions::Learned => assert!(want["rope"]["full_attention"].is_null(), "{name}: transformers has rotary positions"),
        Positions::Rotary { global, local } => {
            check_rope(&format!("{name} global"), global, &want["rope"]["full_attention"], cfg.d_head);
            if let Some(sliding) = want["rope"].get("sliding_attention") {
                check_rope(&format!("{name} local"), local, sliding, cfg.d_head);
            }
        }
    }

    let eps = ["rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon"].iter().find_map(|k| want.get(*k)).unwrap().as_f64().unwrap();
    assert!(close(cfg.norm.eps as f64, eps as f32 as f64), "{name}: eps");
    let gemma = cfg.model_type.starts_with("gemma");
    assert_eq!(
        cfg.norm.kind,
        if cfg.model_type.starts_with("gpt") { NormKind::LayerNorm } else { NormKind::RmsNorm { unit_offset: gemma } }
    );
    match want.get("query_pre_attn_scalar").and_then(Value::as_f64) {
        Some(s) => assert!(close(cfg.attn_scale as f64, s.powf(-0.5) as f32 as f64), "{name}: scale"),
        None => assert!(close(cfg.attn_scale as f64, (1.0 / (cfg.d_head as f32).sqrt()) as f64), "{name}: scale"),
    }
    for (key, got) in [("attn_logit_softcapping", cfg.attn_softcap), ("final_logit_softcapping", cfg.final_softcap)] {
        assert_eq!(got.map(f64::from), want.get(key).and_then(Value::as_f64), "{name}: {key}");
    }
    match want.get("use_parallel_residual").and_then(Value::as_bool) {
        Some(true) => assert_eq!(cfg.layout, BlockLayout::Parallel, "{name}"),
        // Gemma 2 and 3 norm around attention and MLP both; Gemma 1 is pre-norm as Llama.
        _ if gemma && cfg.model_type != "gemma" => assert_eq!(cfg.layout, BlockLayout::Sandwich, "{name}"),
        _ => assert_eq!(cfg.layout, BlockLayout::Sequential, "{name}"),
    }
    let act = ["hidden_activation", "hidden_act", "activation_function"].iter().find_map(|k| want.get(*k)).unwrap().as_str().unwrap();
    let want_act = match act {
        // Gemma 1 runs with TransformerLens's exact GELU (gemma_1_runs_as_transformer_lens_runs_it).
        "gelu_new" | "gelu_pytorch_tanh" if cfg.model_type == "gemma" => Activation::GeluErf,
        "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
        "gelu" => Activation::GeluErf,
        "silu" => Activation::Silu,
        other => panic!("{name}: no expectation for {other}"),
    };
    assert_eq!(cfg.activation, want_act, "{name}");
    assert_eq!(cfg.mlp, if cfg.model_type.starts_with("gpt") { Mlp::Plain } else { Mlp::Gated }, "{name}");
    if let Some(b) = want.get("attention_bias").and_then(Value::as_bool) {
        assert_eq!(cfg.qkv_bias, b, "{name}: q/k/v bias");
    }
    if let Some(b) = want.get("mlp_bias").and_then(Value::as_bool) {
        assert_eq!(cfg.mlp_bias, b, "{name}: MLP bias");
    }
    assert_eq!(cfg.qk_norm, matches!(cfg.model_type.as_str(), "qwen3" | "gemma3_text" | "gemma3"), "{name}: q/k norm");
    assert_eq!(cfg.embedding_scale.is_some(), gemma, "{name}: embedding scale");
}

#[test]
fn every_family_reads_as_transformers_reads_it() {
    let mut read = 0;
    for dir in fixtures() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let config = std::fs::read(dir.join("config.json")).unwrap();
        if let Ok(field) = std::fs::read_to_string(dir.join("refused.txt")) {
            let e = describe(&config).expect_err(&name).to_string();
            assert!(e.starts_with("config.json: ") && e.contains(field.trim()), "{name}: '{e}' does not name {}", field.trim());
            continue;
        }
        let want: Value = serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
        let cfg = describe(&config).unwrap_or_else(|e| panic!("{name}: {e}"));
        check(&name, &cfg, &want);
        read += 1;
    }
    assert!(read >= 18, "{read} families read");
}

#[test]
fn family_specifics_the_fixtures_pin() {
    let read = |name: &str| describe(&std::fs::read(format!("tests/fixtures/families/{name}/config.json")).unwrap()).unwrap();
    // Qwen 2: biases on q, k, v only.
    let qwen2 = read("qwen2");
    assert!(qwen2.qkv_bias && !qwen2.o_bias && !qwen2.mlp_bias);
    // Gemma: √d on the embeddings; GQA groups.
    let gemma3 = read("gemma3_hub");
    assert_eq!(gemma3.embedding_scale, Some((48f32).sqrt()));
    assert_eq!(gemma3.group_size(), 4);
    // Gemma 3 4B's config as the Hub has it: the wrapper's eos list, Gemma3TextConfig's BOS.
    let vlm = read("gemma3_multimodal_hub");
    assert_eq!((vlm.model_type.as_str(), vlm.special_tokens.bos, vlm.special_tokens.eos.clone()), ("gemma3", Some(2), vec![1, 106]));
    // Pythia: a quarter of each head rotates.
    let Positions::Rotary { global, .. } = read("pythia_hub").positions else { panic!("pythia has rotary positions") };
    assert_eq!(global.rotary_dim, 16 / 4);
}

#[test]
fn broken_configs_are_errors_naming_the_field() {
    let base: Value = serde_json::from_slice(&std::fs::read("tests/fixtures/families/llama_gqa/config.json").unwrap()).unwrap();
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut v = base.clone();
        edit(&mut v);
        describe(v.to_string().as_bytes()).map(|_| ()).unwrap_err().to_string()
    };
    assert!(with(&|v| v["num_key_value_heads"] = 4.into()).contains("num_key_value_heads (4) does not divide num_attention_heads (6)"));
    assert!(with(&|v| v["hidden_size"] = (-3).into()).contains("'hidden_size' must be a whole number"));
    assert!(with(&|v| v["hidden_size"] = 0.into()).contains("hidden_size"));
    assert!(with(&|v| v.as_object_mut().unwrap().remove("num_hidden_layers").map(|_| ()).unwrap()).contains("missing 'num_hidden_layers'"));
    assert!(with(&|v| v["layer_types"] = serde_json::json!(["full_attention"])).contains("'layer_types' lists 1 layers"));
    assert!(with(&|v| v["layer_types"] = serde_json::json!(vec!["chunked_attention"; 4])).contains("chunked_attention"));
    assert!(with(&|v| v["num_local_experts"] = 8.into()).contains("num_local_experts: a mixture of experts"));
    assert!(with(&|v| v["model_type"] = "mamba".into()).contains("model_type 'mamba' is not supported (gpt2, gpt_neox, llama"));
    assert!(with(&|v| v["head_dim"] = 7.into()).contains("rotary dimensions (7) must be even"));
    for bytes in [&b""[..], b"[]", b"{\"model_type\": 3}", b"{\"model_type\": \"llama\""] {
        assert!(describe(bytes).unwrap_err().to_string().starts_with("config.json: "));
    }
}

/// The reference forward of every family against `transformers` on the same random weights
/// (`tools/make_family_models.py`): the residual stream entering each layer, the final norm's
/// output and the logits, within 1e-4 of the largest magnitude (f32 sums in another order).
#[test]
fn every_family_runs_as_transformers_runs_it() {
    use saelab::formats::safetensors::TensorFile;
    use saelab::model::{cpu, families, Model};
    let mut ran = 0;
    for dir in fixtures() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let Ok(weights) = std::fs::read(dir.join("model.safetensors")) else { continue };
        let cfg = describe(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        let weights =
            families::load(&cfg, vec![TensorFile::parse("model.safetensors", &weights).unwrap()]).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = TensorFile::parse("outputs.safetensors", &std::fs::read(dir.join("outputs.safetensors")).unwrap()).unwrap();
        let tokens: Vec<u32> = want.tensors["tokens"].to_f32().iter().map(|&t| t as u32).collect();
        // The parameters a download is checked by, before any weight is read: what the file holds
        // (a tied checkpoint's saved lm_head aside).
        let stored: u64 = TensorFile::parse("model.safetensors", &std::fs::read(dir.join("model.safetensors")).unwrap())
            .unwrap()
            .tensors
            .iter()
            .filter(|(n, _)| {
                let unused = (cfg.tied_embeddings && n.as_str() == "lm_head.weight")
                    || [".inv_freq", ".attn.bias", ".attn.masked_bias"].iter().any(|s| n.ends_with(s))
                    // A multimodal Gemma 3's vision tower and projector: in the file, never run.
                    || (cfg.model_type == "gemma3" && !n.starts_with("language_model."));
                !unused
            })
            .map(|(_, t)| t.len() as u64)
            .sum();
        assert_eq!(cfg.parameter_count(), stored, "{name}: parameter count");
        let mut cfg = cfg;
        if cfg.model_type == "gemma" {
            // transformers' GemmaMLP uses the tanh GELU; saelab runs TransformerLens's exact one
            // (gemma_1_runs_as_transformer_lens_runs_it): with transformers' put back, the rest of
            // the model is transformers'.
            cfg.activation = Activation::GeluTanh;
        }
        let out = cpu::hidden_states(&Model { cfg, weights }, &tokens).unwrap();
        let close = |what: &str, got: &[f32], want: &[f32]| assert_close(&format!("{name} {what}"), got, want);
        for (i, h) in out.hidden.iter().enumerate() {
            close(&format!("hidden.{i}"), h, &want.tensors[&format!("hidden.{i}")].to_f32());
        }
        close("logits", &out.logits, &want.tensors["logits"].to_f32());
        ran += 1;
    }
    assert!(ran >= 18, "{ran} models ran");
}

#[test]
fn checkpoints_that_do_not_fit_the_config_are_errors_naming_the_tensor() {
    use saelab::formats::safetensors::{RawTensor, TensorFile};
    use saelab::model::families;
    let dir = Path::new("tests/fixtures/families/qwen3");
    let cfg = describe(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let file = TensorFile::parse("model.safetensors", &std::fs::read(dir.join("model.safetensors")).unwrap()).unwrap();
    let with = |edit: &dyn Fn(&mut TensorFile)| {
        let mut f = file.clone();
        edit(&mut f);
        families::load(&cfg, vec![f]).map(|_| ()).unwrap_err().to_string()
    };
    let e = with(&|f| drop(f.tensors.remove("model.layers.1.self_attn.k_norm.weight")));
    assert!(e.contains("missing tensor 'model.layers.1.self_attn.k_norm.weight'"), "{e}");
    let e =
        with(&|f| drop(f.tensors.insert("model.layers.0.mlp.down_proj.weight".into(), RawTensor::from_f32(vec![48, 79], &[0.0; 48 * 79]))));
    assert!(e.contains("'model.layers.0.mlp.down_proj.weight' has shape [48, 79], the config implies [48, 80]"), "{e}");
    let e = with(&|f| drop(f.tensors.insert("model.layers.0.mlp.experts.0.weight".into(), RawTensor::from_f32(vec![1], &[0.0]))));
    assert!(e.contains("tensor 'model.layers.0.mlp.experts.0.weight' is not part of a qwen3 model"), "{e}");
    let e = with(&|f| drop(f.tensors.insert("model.norm.weight".into(), RawTensor::from_f32(vec![48], &[f32::NAN; 48]))));
    assert!(e.contains("'model.norm.weight' holds a non-finite value"), "{e}");
    // The base model saved alone (no `model.` prefix) loads the same.
    let bare = TensorFile {
        tensors: file.tensors.iter().map(|(k, v)| (k.strip_prefix("model.").unwrap_or(k).to_string(), v.clone())).collect(),
        metadata: None,
    };
    assert_eq!(families::load(&cfg, vec![bare]).unwrap(), families::load(&cfg, vec![file.clone()]).unwrap());
}

#[test]
fn a_sharded_checkpoint_loads_as_the_single_file_does() {
    use saelab::formats::safetensors::{RawTensor, TensorFile};
    use saelab::formats::shards::{ShardIndex, INDEX_FILE};
    use saelab::model::families;
    let dir = Path::new("tests/fixtures/families/gemma3_hub");
    let cfg = describe(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let index_bytes = std::fs::read(dir.join("sharded").join(INDEX_FILE)).unwrap();
    let index = ShardIndex::parse(&index_bytes).unwrap();
    assert_eq!(index.files().len(), 4, "save_pretrained wrote four shards");
    let shards: Vec<(String, TensorFile)> = index
        .files()
        .iter()
        .map(|f| (f.to_string(), TensorFile::parse(f, &std::fs::read(dir.join("sharded").join(f)).unwrap()).unwrap()))
        .collect();
    let merged = index.merge(shards.clone()).unwrap();
    let single = TensorFile::parse("model.safetensors", &std::fs::read(dir.join("model.safetensors")).unwrap()).unwrap();
    assert_eq!(families::load(&cfg, vec![merged]).unwrap(), families::load(&cfg, vec![single]).unwrap());

    // A shard missing, a tensor in the wrong shard or in none, an index that points elsewhere.
    let e = index.merge(shards[1..].to_vec()).unwrap_err().to_string();
    assert!(e.contains("model-00001-of-00004.safetensors: model.safetensors.index.json names this shard"), "{e}");
    let mut moved = shards.clone();
    let (name, tensor) = moved[0].1.tensors.pop_first().unwrap();
    moved[1].1.tensors.insert(name.clone(), tensor);
    let e = index.merge(moved).unwrap_err().to_string();
    assert!(e.contains(&format!("holds '{name}', which model.safetensors.index.json puts in model-00001-of-00004")), "{e}");
    let mut extra = shards.clone();
    extra[2].1.tensors.insert("model.layers.0.extra".into(), RawTensor::from_f32(vec![1], &[1.0]));
    assert!(index.merge(extra).unwrap_err().to_string().contains("does not list"));
    let mut lost = shards.clone();
    let first = lost[3].1.tensors.keys().next().unwrap().clone();
    lost[3].1.tensors.remove(&first);
    assert!(index.merge(lost).unwrap_err().to_string().contains(&format!("does not hold '{first}'")));
    for bad in [
        &br#"{"weight_map": {"a": "../model.safetensors"}}"#[..],
        br#"{"weight_map": {"a": "/etc/passwd.safetensors"}}"#,
        br#"{"weight_map": {"a": "model.bin"}}"#,
        br#"{"weight_map": {}}"#,
        br#"{"metadata": {}}"#,
        br#"{"weight_map": {"a": 3}}"#,
        &index_bytes[..index_bytes.len() / 2],
    ] {
        assert!(ShardIndex::parse(bad).unwrap_err().to_string().starts_with("model.safetensors.index.json: "));
    }
}

/// TransformerLens's hook values on the same weights (`tools/make_tl_hooks.py`: HookedTransformer
/// built as SAELens builds it, no weight processing, `use_hook_mlp_in`): every hook point saelab
/// names, on every family TransformerLens runs as transformers does, is the value TransformerLens
/// computes — so an SAE trained on TransformerLens activations reads the same numbers here. And
/// saelab has exactly the hook points TransformerLens has (no resid_mid in a parallel block,
/// hook_pos_embed only with learned positions).
#[test]
fn every_hook_point_is_transformer_lens_s() {
    use saelab::formats::safetensors::TensorFile;
    use saelab::model::{cpu, HookPoint};
    let mut checked = 0;
    for dir in fixtures() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let Ok(bytes) = std::fs::read(dir.join("tl_hooks.safetensors")) else { continue };
        let tl = TensorFile::parse("tl_hooks.safetensors", &bytes).unwrap();
        let model = fixture_model(&dir);
        let tokens: Vec<u32> = TensorFile::parse("o", &std::fs::read(dir.join("outputs.safetensors")).unwrap()).unwrap().tensors["tokens"]
            .to_f32()
            .iter()
            .map(|&t| t as u32)
            .collect();
        let hooks = model.cfg.hook_points();
        let want: Vec<&str> = tl.tensors.keys().map(String::as_str).filter(|k| *k != "logits").collect();
        let mut have: Vec<String> = hooks.iter().map(|h| h.to_string()).filter(|h| !h.ends_with(".ln2.hook_out")).collect();
        have.sort();
        assert_eq!(have, want, "{name}: the hook points");
        let (logits, got) = cpu::run(&model, &tokens, &hooks, &[]).unwrap();
        assert_close(&format!("{name} logits"), &logits, &tl.tensors["logits"].to_f32());
        for (hook, values) in hooks.iter().zip(&got) {
            assert_eq!(values.len(), tokens.len() * model.cfg.hook_width(*hook), "{name} {hook}: width");
            if let Some(t) = tl.tensors.get(&hook.to_string()) {
                assert_close(&format!("{name} {hook}"), values, &t.to_f32());
                checked += 1;
            }
        }
        // Gemma Scope 2's Hugging Face names read the same points.
        if model.cfg.model_type.starts_with("gemma") {
            let layer = model.cfg.n_layers - 1;
            for (hf, tl_name) in [
                ("output", "hook_resid_post"),
                ("self_attn.o_proj.input", "attn.hook_z"),
                ("post_feedforward_layernorm.output", "hook_mlp_out"),
            ] {
                let hook = model.cfg.hook_point(&format!("model.layers.{layer}.{hf}")).unwrap();
                assert_eq!(hook, HookPoint::parse(&format!("blocks.{layer}.{tl_name}")).unwrap(), "{name} {hf}");
            }
        } else {
            let e = model.cfg.hook_point("model.layers.0.post_feedforward_layernorm.output").unwrap_err();
            assert!(e.contains("is not a hook point of this"), "{name}: {e}");
        }
    }
    assert!(checked >= 13 * 20, "{checked} hook values checked");
}

/// TransformerLens's one quirk on Gemma 1 (its `google/gemma-2b` branch, TransformerLens 3.9): the
/// MLP's GELU is the exact one, where transformers' `GemmaMLP` uses the tanh approximation
/// (`hidden_activation`). saelab follows TransformerLens, on whose activations every Gemma 1 SAE was
/// trained: every hook value is TransformerLens's; with transformers' tanh GELU put in instead,
/// `hook_mlp_out` and the logits are not (and the rest is transformers':
/// every_family_runs_as_transformers_runs_it).
#[test]
fn gemma_1_runs_as_transformer_lens_runs_it() {
    use saelab::formats::safetensors::TensorFile;
    use saelab::model::{cpu, BlockSite, HookPoint};
    for family in ["gemma", "gemma_hub"] {
        let dir = Path::new("tests/fixtures/families").join(family);
        let tl = TensorFile::parse("tl_hooks_exact_gelu.safetensors", &std::fs::read(dir.join("tl_hooks_exact_gelu.safetensors")).unwrap())
            .unwrap();
        let tokens: Vec<u32> = TensorFile::parse("o", &std::fs::read(dir.join("outputs.safetensors")).unwrap()).unwrap().tensors["tokens"]
            .to_f32()
            .iter()
            .map(|&t| t as u32)
            .collect();
        let mut model = fixture_model(&dir);
        assert_eq!(model.cfg.activation, Activation::GeluErf, "{family}: TransformerLens's GELU");
        let hooks = model.cfg.hook_points();
        let (logits, got) = cpu::run(&model, &tokens, &hooks, &[]).unwrap();
        assert_close(&format!("{family} logits"), &logits, &tl.tensors["logits"].to_f32());
        let mut checked = 0;
        for (hook, values) in hooks.iter().zip(&got) {
            if let Some(t) = tl.tensors.get(&hook.to_string()) {
                assert_close(&format!("{family} {hook}"), values, &t.to_f32());
                checked += 1;
            }
        }
        assert_eq!(checked, tl.tensors.len() - 1, "{family}: every hook TransformerLens wrote");

        model.cfg.activation = Activation::GeluTanh;
        let mlp_out = HookPoint::block(0, BlockSite::MlpOut);
        let (logits, got) = cpu::run(&model, &tokens, &[mlp_out], &[]).unwrap();
        let worst = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(
            worst(&got[0], &tl.tensors["blocks.0.hook_mlp_out"].to_f32()) > 1e-5,
            "{family}: the tanh GELU's hook_mlp_out is not TransformerLens's"
        );
        assert!(worst(&logits, &tl.tensors["logits"].to_f32()) > 1e-4, "{family}: nor its logits");
    }
}

/// `ln2.hook_out` (Gemma's `pre_feedforward_layernorm.output`: the norm with its weight, what the
/// MLP reads) is `ln2.hook_normalized` times the weight — `(1 + w)` on Gemma.
#[test]
fn the_mlp_input_after_its_norm_is_the_normalized_value_scaled() {
    use saelab::model::{cpu, BlockSite, HookPoint};
    for family in ["gemma2", "llama3_scaled", "gpt2"] {
        let model = fixture_model(&Path::new("tests/fixtures/families").join(family));
        let hooks = [HookPoint::block(1, BlockSite::Ln2Normalized), HookPoint::block(1, BlockSite::Ln2Out)];
        let (_, got) = cpu::run(&model, &[1, 2, 3, 4, 5], &hooks, &[]).unwrap();
        let w = &model.weights.layers[1].mlp_norm;
        let d = model.cfg.d_model;
        for (i, (normalized, out)) in got[0].iter().zip(&got[1]).enumerate() {
            let scale = if family == "gemma2" { 1.0 + w.weight[i % d] } else { w.weight[i % d] };
            let want = normalized * scale + w.bias.as_ref().map_or(0.0, |b| b[i % d]);
            assert!((out - want).abs() <= 1e-5 * want.abs().max(1.0), "{family} [{i}]: {out} vs {want}");
        }
    }
}

/// Interventions at the MLP's input change only what the MLP reads: replacing `hook_mlp_in` by
/// `hook_resid_mid`'s own value changes nothing; zeroing it leaves `hook_resid_mid` as it was but
/// changes `hook_mlp_out`; steering `attn.hook_z` (`n_heads · d_head` wide, not `d_model`, on
/// Gemma) runs, and a vector of the wrong width is refused naming the width.
#[test]
fn interventions_work_at_every_family_s_points() {
    use saelab::model::{cpu, BlockSite, HookPoint, Intervention};
    for family in ["gemma2", "qwen3", "gpt_neox_parallel", "llama3_scaled"] {
        let model = fixture_model(&Path::new("tests/fixtures/families").join(family));
        let tokens = [4, 8, 15, 16, 23, 42];
        let at = |site| HookPoint::block(0, site);
        let watch = [at(BlockSite::MlpIn), at(BlockSite::MlpOut), at(BlockSite::ResidPost)];
        let (clean_logits, clean) = cpu::run(&model, &tokens, &watch, &[]).unwrap();
        let same = Intervention::Replace { hook: at(BlockSite::MlpIn), values: &clean[0] };
        let (logits, _) = cpu::run(&model, &tokens, &[], &[same]).unwrap();
        assert_eq!(logits, clean_logits, "{family}: replacing a hook by its own value");
        let zeros = vec![0.0; clean[0].len()];
        let zeroed = Intervention::Replace { hook: at(BlockSite::MlpIn), values: &zeros };
        let (_, after) = cpu::run(&model, &tokens, &watch, &[zeroed]).unwrap();
        assert_eq!(after[0], zeros, "{family}: the captured value is the replaced one");
        assert_ne!(after[1], clean[1], "{family}: the MLP read the change");
        let width = model.cfg.hook_width(at(BlockSite::AttnZ));
        assert_eq!(width, model.cfg.n_heads * model.cfg.d_head);
        let steer = vec![0.5; width];
        let (steered, _) =
            cpu::run(&model, &tokens, &[], &[Intervention::AddToEveryToken { hook: at(BlockSite::AttnZ), vector: &steer }]).unwrap();
        assert_ne!(steered, clean_logits, "{family}: steering z changes the logits");
        let wrong = vec![0.5; width + 1];
        let e = cpu::run(&model, &tokens, &[], &[Intervention::AddToEveryToken { hook: at(BlockSite::AttnZ), vector: &wrong }])
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("needs a vector of {width}, got {}", width + 1)), "{family}: {e}");
    }
}

/// Harvesting stops at the hook: the activations equal the full run's, at every kind of point.
#[test]
fn activations_at_a_hook_are_the_full_run_s() {
    use saelab::model::{cpu, BlockSite, HookPoint};
    let model = fixture_model(Path::new("tests/fixtures/families/gemma3"));
    let tokens = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 11, 12];
    let hooks =
        [HookPoint::Embed, HookPoint::block(2, BlockSite::Ln2Out), HookPoint::block(1, BlockSite::AttnZ), HookPoint::FinalNormalized];
    let (_, full) = cpu::run(&model, &tokens, &hooks, &[]).unwrap();
    for (hook, want) in hooks.iter().zip(&full) {
        assert_eq!(&cpu::activations_at(&model, &tokens, *hook).unwrap(), want, "{hook}");
    }
    let e = cpu::activations_at(&model, &tokens, HookPoint::PosEmbed).unwrap_err().to_string();
    assert!(e.contains("hook_pos_embed is not a hook point of this gemma3_text model"), "{e}");
}

/// TransformerLens's weight processing on the same weights: with `center_writing_weights` and
/// `center_unembed` (what SAELens's registry asks for gpt2-small-res-jb), every hook and the logits
/// are TransformerLens's; on GPT-2 centring moved the residual hooks (it is not a no-op) to zero mean,
/// on Llama (RMSNorm) TransformerLens leaves them. `fold_ln` changes no hook value and no logit.
#[test]
fn weight_processing_gives_transformer_lens_s_values() {
    use saelab::formats::safetensors::TensorFile;
    use saelab::model::cpu;
    use saelab::model::processing::WeightProcessing;
    let tokens: Vec<u32> = vec![3, 17, 42, 99, 5, 64, 23, 8, 77, 12, 50, 1, 31, 88];
    let kwargs = serde_json::json!({"center_writing_weights": true, "center_unembed": true, "n_devices": 1});
    let centring = WeightProcessing::from_kwargs(kwargs.as_object().unwrap()).unwrap();
    assert!(centring.center_writing_weights && centring.center_unembed && !centring.fold_ln);
    for family in ["gpt2", "llama3_scaled"] {
        let dir = Path::new("tests/fixtures/families").join(family);
        let read = |file: &str| TensorFile::parse(file, &std::fs::read(dir.join(file)).unwrap()).unwrap();
        let model = fixture_model(&dir);
        let hooks = model.cfg.hook_points();
        let (plain_logits, plain) = cpu::run(&model, &tokens, &hooks, &[]).unwrap();
        let centred = model.clone().processed(centring);
        let (logits, got) = cpu::run(&centred, &tokens, &hooks, &[]).unwrap();
        let (tl, folded) = (read("tl_hooks_centered.safetensors"), read("tl_hooks_folded.safetensors"));
        assert_close(&format!("{family} centred logits"), &logits, &tl.tensors["logits"].to_f32());
        for ((hook, values), plain) in hooks.iter().zip(&got).zip(&plain) {
            let Some(want) = tl.tensors.get(&hook.to_string()) else { continue };
            assert_close(&format!("{family} centred {hook}"), values, &want.to_f32());
            assert_close(&format!("{family} folded {hook}"), plain, &folded.tensors[&hook.to_string()].to_f32());
        }
        assert_close(&format!("{family} folded logits"), &plain_logits, &folded.tensors["logits"].to_f32());
        let resid = hooks.iter().position(|h| h.to_string() == "blocks.1.hook_resid_pre").unwrap();
        let moved = got[resid].iter().zip(&plain[resid]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        let mean: f32 = got[resid][..model.cfg.d_model].iter().sum::<f32>() / model.cfg.d_model as f32;
        if family == "gpt2" {
            assert!(moved > 1e-2, "{family}: centring moved the residual stream by {moved}");
            assert!(mean.abs() < 1e-5, "{family}: the centred residual stream has mean {mean}");
        } else {
            assert_eq!(moved, 0.0, "{family}: RMSNorm models are not centred");
        }
    }
    let bad = serde_json::json!({"center_writing_weights": "yes"});
    let e = WeightProcessing::from_kwargs(bad.as_object().unwrap()).unwrap_err();
    assert_eq!(e, "model_from_pretrained_kwargs.center_writing_weights must be true or false, not \"yes\"");
}

/// The special token ids: config.json's (a number or a list), generation_config.json's where it
/// names them, and errors naming the field.
#[test]
fn special_tokens_come_from_config_and_generation_config() {
    use saelab::model::decoder::SpecialTokens;
    use saelab::model::files::with_generation_config;
    let model = fixture_model(Path::new("tests/fixtures/families/gemma2"));
    assert_eq!(model.cfg.special_tokens, SpecialTokens { bos: Some(2), eos: vec![1], pad: Some(0) });
    let model = with_generation_config(model, br#"{"bos_token_id": 5, "eos_token_id": [1, 7]}"#).unwrap();
    assert_eq!(model.cfg.special_tokens, SpecialTokens { bos: Some(5), eos: vec![1, 7], pad: Some(0) });
    assert!(model.cfg.special_tokens.contains(7) && !model.cfg.special_tokens.contains(3));
    let model = with_generation_config(model, br#"{"do_sample": true}"#).unwrap();
    assert_eq!(model.cfg.special_tokens.bos, Some(5), "a file that names none changes none");
    for (bad, field) in [
        (&br#"{"bos_token_id": "x"}"#[..], "'bos_token_id' must be a token id"),
        (b"[]", "expected a JSON object"),
        (b"{", "not valid JSON"),
    ] {
        let e = with_generation_config(model.clone(), bad).unwrap_err().to_string();
        assert!(e.starts_with("generation_config.json: ") && e.contains(field), "{e}");
    }
    // No BOS: TransformerLens puts the EOS first instead.
    let eos_only = SpecialTokens { bos: None, eos: vec![9, 4], pad: None };
    assert_eq!(eos_only.bos_or_eos(), Some(9));
}
