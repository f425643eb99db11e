//! The `saelab` command-line tool. Errors are one line on stderr naming the file and the problem,
//! with exit status 2; results go to stdout (JSON for `eval` and `bench`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use std::rc::Rc;

use crate::backend::Backend;
use crate::engine::{self, Analysis, LoadedSae};
use crate::formats::{npy, FormatError};
use crate::gpu::RunRequest;
use crate::lm::LoadedModel;
use crate::model::HookPoint;
use crate::sae::files as sae_files;
use crate::sae::{Architecture, EncoderTensors, Sae};

pub mod args;
mod bench;

use args::*;
use clap::Parser;

/// A failure to report: one line, exit status 2.
#[derive(Debug)]
pub struct CliError(pub String);

impl<E: std::fmt::Display> From<E> for CliError {
    fn from(e: E) -> CliError {
        CliError(e.to_string())
    }
}

/// Runs the CLI and returns the process exit status.
pub fn run(args: Vec<String>) -> i32 {
    // A bug must still end in one line and status 2, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        eprintln!("saelab: internal error: {}", msg.lines().next().unwrap_or(""));
        std::process::exit(2);
    }));
    match dispatch(&args) {
        Ok(()) => 0,
        Err(CliError(msg)) => {
            eprintln!("saelab: {}", msg.replace('\n', " "));
            2
        }
    }
}

/// `--device cpu|gpu` (default gpu): the one place the CLI chooses where its work runs.
fn backend(device: &DeviceArg) -> Result<Backend, CliError> {
    match device.device.as_str() {
        "cpu" => Ok(Backend::Cpu),
        "gpu" => open_gpu(),
        other => Err(CliError(format!("--device must be cpu or gpu, not '{other}'"))),
    }
}

/// `--device cpu|gpu|both` for the benchmarks: which of the two to measure.
fn bench_devices(device: &BenchDeviceArg) -> Result<(bool, bool), CliError> {
    match device.device.as_str() {
        "cpu" => Ok((true, false)),
        "gpu" => Ok((false, true)),
        "both" => Ok((true, true)),
        other => Err(CliError(format!("--device must be cpu, gpu or both, not '{other}'"))),
    }
}

fn open_gpu() -> Result<Backend, CliError> {
    Ok(pollster::block_on(Backend::open_gpu())?)
}

/// clap's errors as one line (`--help` and `--version` print to stdout and end with status 0).
fn parse_error(e: clap::Error) -> Result<Cli, CliError> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let context = |kind: ContextKind| match e.get(kind) {
        Some(ContextValue::String(s)) => s.clone(),
        Some(ContextValue::Strings(v)) => v.join(", "),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    // "--output <OUT.npy>" → "--output"
    let flag = |s: String| s.split([' ', '=']).next().unwrap_or_default().to_string();
    let message = match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            std::process::exit(if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand { 2 } else { 0 });
        }
        ErrorKind::InvalidSubcommand => format!("unknown command '{}' (saelab --help lists them)", context(ContextKind::InvalidSubcommand)),
        ErrorKind::MissingRequiredArgument => {
            let missing: Vec<String> = context(ContextKind::InvalidArg).split(", ").map(|a| flag(a.to_string())).collect();
            format!("missing {} (see --help)", missing.join(", "))
        }
        ErrorKind::UnknownArgument => format!("unknown option {} (see --help)", context(ContextKind::InvalidArg)),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue => {
            format!("{}: '{}' is not a valid value", flag(context(ContextKind::InvalidArg)), context(ContextKind::InvalidValue))
        }
        _ => e.to_string().lines().next().unwrap_or("bad arguments").trim_start_matches("error: ").to_string(),
    };
    Err(CliError(message))
}

fn dispatch(args: &[String]) -> Result<(), CliError> {
    let cli = Cli::try_parse_from(std::iter::once("saelab".to_string()).chain(args.iter().cloned())).or_else(parse_error)?;
    match cli.command {
        Command::Info { dir } => {
            print!("{}", describe(&open_sae(&dir)?));
            Ok(())
        }
        Command::Encode(a) => run_sae(&a.eval, None, Some(&a.output), RunRequest { dense_acts: true, ..Default::default() }),
        Command::Reconstruct(a) => run_sae(&a.eval, None, Some(&a.output), RunRequest { recon: true, ..Default::default() }),
        Command::Eval(a) => run_sae(&a.eval, Some(a.target.as_deref()), None, RunRequest::default()),
        Command::Bench(a) => bench::bench(&a),
        Command::Toy(a) => toy(&a),
        Command::RandomModel(a) => random_model(&a),
        Command::BenchModel(a) => bench::bench_model(&a),
        Command::Dashboard(a) => dashboard_command(&a),
        Command::BenchTrain(a) => bench::bench_train(&a),
        Command::Forward(a) => forward(&a),
        Command::Splice(a) => splice(&a),
        Command::Features(a) => features(&a),
        Command::Generate(a) => generate(&a),
        Command::Train(a) => train_on_model(&a),
        Command::Superposition(a) => superposition(&a),
        Command::Registry(a) => registry(&a),
        Command::Convert(a) => {
            let sae = open_sae(&a.sae)?;
            sae_files::save_dir(&sae, &a.out)?;
            println!(
                "{}",
                serde_json::json!({ "out": a.out.display().to_string(), "architecture": sae.cfg.architecture_name(), "d_in": sae.d_in(), "d_sae": sae.d_sae(), "hook_name": sae.cfg.hook_name })
            );
            Ok(())
        }
    }
}

/// `--sae`: a folder (or single-file SAE) in any known format, or `RELEASE/SAE_ID` from the registry, read from the
/// Hugging Face cache.
fn open_sae(arg: &Path) -> Result<Sae, CliError> {
    use crate::sae::local;
    let registry = crate::sae::registry::Registry::bundled();
    if arg.exists() {
        return Ok(local::open_folder(arg, &registry)?);
    }
    let name = arg.to_string_lossy();
    let (release, entry) = local::split_name(&name, &registry).map_err(|e| {
        if arg.is_absolute() || name.starts_with('.') {
            CliError(format!("{name}: not a folder or file (nor RELEASE/SAE_ID of SAELens's registry)"))
        } else {
            CliError(format!("{name}: not a folder, nor an SAE of SAELens's registry: {e}"))
        }
    })?;
    let cache = local::hub_cache().ok_or_else(|| CliError("no Hugging Face cache: set HF_HOME or HF_HUB_CACHE".into()))?;
    Ok(local::open_by_name(release, entry, &cache)?)
}

/// `saelab registry`: the releases (or with --json every SAE) and whether saelab opens them.
fn registry(a: &crate::cli::args::RegistryArgs) -> Result<(), CliError> {
    let registry = crate::sae::registry::Registry::bundled();
    let wanted = a.model.as_deref().map(str::to_lowercase);
    let releases: Vec<_> = registry
        .releases
        .iter()
        .filter(|r| wanted.as_ref().is_none_or(|m| r.model.to_lowercase().contains(m) || r.hf_model.to_lowercase().contains(m)))
        .collect();
    if releases.is_empty() {
        return Err(CliError(format!("no release's model contains '{}'", a.model.as_deref().unwrap_or_default())));
    }
    let (mut open, mut total) = (0, 0);
    for r in &releases {
        let why: Vec<Option<String>> = r.saes.iter().map(|e| r.why_not(e)).collect();
        let opens = why.iter().filter(|w| w.is_none()).count();
        (open, total) = (open + opens, total + r.saes.len());
        if a.json {
            for (e, why) in r.saes.iter().zip(&why) {
                let line = serde_json::json!({ "release": r.release, "id": e.id, "model": r.hf_model, "path": e.path, "l0": e.l0,
                    "variance_explained": e.variance_explained, "neuronpedia": e.neuronpedia, "opens": why.is_none(), "why_not": why });
                println!("{line}");
            }
        } else {
            let note = why.iter().flatten().next().map(|w| format!("  ({} not: {w})", r.saes.len() - opens)).unwrap_or_default();
            println!("{opens:>5}/{:<5} {:<48} {:<32} {}{note}", r.saes.len(), r.release, r.hf_model, r.conversion);
        }
    }
    if !a.json {
        println!("saelab opens {open} of these {total} SAEs ({:.1}%), from {}", 100.0 * open as f64 / total as f64, registry.source);
        if wanted.is_none() {
            println!("the others, by cause:");
            for (n, cause) in registry.why_not_by_cause() {
                println!("{n:>6}  {cause}");
            }
        }
    }
    Ok(())
}

/// `encode`, `reconstruct` and `eval`: activations through an SAE, the result to `output` (dense
/// activations or reconstructions, as `request` asks) or the metrics as JSON (`eval`, which passes
/// its `--target`: a transcoder's output is measured against its output hook's values).
fn run_sae(a: &EvalArgs, eval_target: Option<Option<&Path>>, output: Option<&Path>, request: RunRequest) -> Result<(), CliError> {
    let sae = open_sae(&a.sae)?;
    let x = read_activations(&a.input, &sae)?;
    let target = match (eval_target.flatten(), sae.cfg.transcoder.is_some()) {
        (None, true) if eval_target.is_some() => return Err(CliError(
            "this is a transcoder: it predicts the activations at its output hook, not its input, so eval needs those as --target Y.npy"
                .into(),
        )),
        (Some(_), false) => return Err(CliError("--target is for transcoders; an SAE is measured against its input".into())),
        (Some(path), true) => {
            let y = read_activations(path, &sae)?;
            if y.len() != x.len() {
                return Err(CliError(format!(
                    "{}: {} rows, but --input has {}",
                    path.display(),
                    y.len() / sae.d_in(),
                    x.len() / sae.d_in()
                )));
            }
            Some(y)
        }
        _ => None,
    };
    let sae = LoadedSae::new(Rc::new(sae), &backend(&a.device)?)?;
    let analysis = match &target {
        None => pollster::block_on(engine::analyze(&sae, &x, request))?,
        Some(y) => pollster::block_on(engine::analyze_against(&sae, &x, y, request))?,
    };
    let rows = x.len() / sae.d_in();
    match output {
        Some(path) if request.dense_acts => write_npy(path, rows, sae.d_sae(), analysis.acts),
        Some(path) => write_npy(path, rows, sae.d_in(), analysis.recon),
        None => {
            println!("{}", eval_json(&analysis));
            Ok(())
        }
    }
}

fn read_activations(path: &Path, sae: &Sae) -> Result<Vec<f32>, CliError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| FormatError::Io { file: name.clone(), msg: e.to_string() })?;
    let array = npy::read_f32(&name, &bytes)?;
    engine::check_activations(&name, &array, sae.d_in())?;
    Ok(array.data)
}

fn write_npy(path: &Path, rows: usize, cols: usize, data: Option<Vec<f32>>) -> Result<(), CliError> {
    let data = data.ok_or_else(|| CliError(format!("{}: nothing was computed to write", path.display())))?;
    std::fs::write(path, npy::write_f32(&[rows, cols], &data)).map_err(|e| CliError(format!("{}: {e}", path.display())))
}

/// `eval`'s JSON: the batch metrics plus the device that computed them.
pub fn eval_json(a: &Analysis) -> String {
    let m = &a.metrics;
    serde_json::json!({
        "n": m.n, "l0": m.l0, "mse": m.mse, "fvu": m.fvu, "cosine": m.cosine,
        "dead_fraction": m.dead_fraction, "device": a.device,
    })
    .to_string()
}

/// `info`'s text.
pub fn describe(sae: &Sae) -> String {
    let c = &sae.cfg;
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<22}{v}\n"));
    line("architecture", c.architecture_name());
    line("d_in", c.d_in.to_string());
    line("d_sae", c.d_sae.to_string());
    match c.architecture {
        Architecture::TopK { k } => line("k", k.to_string()),
        Architecture::BatchTopK { k } => line("k (training)", k.to_string()),
        _ => {}
    }
    if let EncoderTensors::Threshold { threshold: t, .. } = &sae.weights().encoder {
        let (min, max) = t.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let mean = t.iter().map(|&v| v as f64).sum::<f64>() / t.len() as f64;
        line("threshold", format!("min {min:.4}  mean {mean:.4}  max {max:.4}"));
    }
    line("hook_name", c.hook_name.clone().unwrap_or_else(|| "(none)".into()));
    line("model_name", c.model_name.clone().unwrap_or_else(|| "(none)".into()));
    line("dtype", format!("{} (stored as {})", c.dtype, sae.stored_dtype.name()));
    line("normalization", c.normalization.name().to_string());
    line("apply_b_dec_to_input", c.apply_b_dec_to_input.to_string());
    line("parameters", sae.parameter_count().to_string());
    let kwargs = c.model_from_pretrained_kwargs();
    if !kwargs.is_empty() {
        line("model processing", serde_json::Value::Object(kwargs).to_string());
    }
    let neuronpedia = c.raw.get("neuronpedia_id").or_else(|| c.raw.get("metadata").and_then(|m| m.get("neuronpedia_id")));
    if let Some(id) = neuronpedia.and_then(|v| v.as_str()) {
        line("neuronpedia", format!("https://www.neuronpedia.org/{id}"));
    }
    out
}

/// Writes a model folder with random weights (for tests, demos of the page's plumbing and
/// benchmarks) — a GPT-2, or Llama-3- or Gemma-3-shaped, stored in f32/f16/bf16 — with a copy of a
/// `tokenizer.json` whose vocabulary sets the model's (and its BOS/EOS ids), and optionally a random
/// TopK SAE at one of its hook points.
fn random_model(a: &RandomModelArgs) -> Result<(), CliError> {
    use crate::formats::safetensors::FloatDtype;
    use crate::formats::tokenizer::TextTokenizer;
    use crate::model::files::{random_gpt2, serialize_gpt2, serialize_weights, TOKENIZER_FILE};
    let out = a.out.clone();
    let io = |p: &Path, e: std::io::Error| CliError(format!("{}: {e}", p.display()));
    std::fs::create_dir_all(&out).map_err(|e| io(&out, e))?;
    let tokenizer = match &a.vocab_from {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
            let tokenizer = TextTokenizer::parse(&bytes)?;
            std::fs::write(out.join(TOKENIZER_FILE), &bytes).map_err(|e| io(&out, e))?;
            Some(tokenizer)
        }
        None => None,
    };
    let vocab_size = tokenizer.as_ref().map_or(256, TextTokenizer::vocab_size);
    let (width, heads) = (a.width, a.heads);
    if width == 0 || heads == 0 || !width.is_multiple_of(heads) || (width / heads) % 2 == 1 {
        return Err(CliError(format!("--heads ({heads}) must divide --width ({width}) into heads of an even size")));
    }
    if a.layers == 0 || a.context == 0 {
        return Err(CliError("--layers and --context must be at least 1".into()));
    }
    let dtype = dtype_flag(&a.dtype)?;
    // The tokenizer's own BOS and EOS where it has them (the families' names for them).
    let special =
        |names: &[&str]| names.iter().find_map(|n| tokenizer.as_ref().and_then(|t| t.special_id(n))).unwrap_or(vocab_size as u32 - 1);
    let bos = special(&["<bos>", "<|begin_of_text|>", "<s>", "<|endoftext|>"]);
    let eos = special(&["<eos>", "<|end_of_text|>", "</s>", "<|endoftext|>"]);
    let seed = a.seed;
    let kv_heads = if heads.is_multiple_of(2) { heads / 2 } else { heads };
    let (head_dim, mlp) = (width / heads, 3 * width);
    let config = match a.family.as_str() {
        "gpt2" => None,
        "llama3" => Some(serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab_size, "hidden_size": width,
            "intermediate_size": mlp, "num_hidden_layers": a.layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
            "head_dim": head_dim, "max_position_embeddings": a.context, "hidden_act": "silu", "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192}, "tie_word_embeddings": false, "bos_token_id": bos, "eos_token_id": eos,
        })),
        "gemma3" => Some(serde_json::json!({
            "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "vocab_size": vocab_size, "hidden_size": width,
            "intermediate_size": mlp, "num_hidden_layers": a.layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
            "head_dim": head_dim, "query_pre_attn_scalar": head_dim, "sliding_window": 8, "sliding_window_pattern": 2,
            "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "max_position_embeddings": a.context,
            "hidden_activation": "gelu_pytorch_tanh", "rms_norm_eps": 1e-6, "tie_word_embeddings": true,
            "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": 0,
        })),
        // Gemma 3 from 4B up: the same text model inside Gemma3ForConditionalGeneration's config,
        // beside a (tiny, never run) vision tower.
        "gemma3-vlm" => Some(serde_json::json!({
            "architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3", "image_token_index": vocab_size - 1,
            "mm_tokens_per_image": 4, "text_config": {
                "model_type": "gemma3_text", "vocab_size": vocab_size, "hidden_size": width, "intermediate_size": mlp,
                "num_hidden_layers": a.layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads, "head_dim": head_dim,
                "query_pre_attn_scalar": head_dim, "sliding_window": 8, "sliding_window_pattern": 2, "max_position_embeddings": a.context,
                "rope_scaling": {"rope_type": "linear", "factor": 8.0}, "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": 0,
            },
            "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
                "num_attention_heads": 2, "image_size": 28, "patch_size": 14},
        })),
        other => return Err(CliError(format!("--family '{other}' is not one of gpt2, llama3, gemma3, gemma3-vlm"))),
    };
    let (model, files) = match config {
        None => {
            let model = random_gpt2(vocab_size, a.context, width, a.layers, heads, true, seed);
            let (config, weights) = serialize_gpt2(&model).map_err(CliError)?;
            let weights = if dtype == FloatDtype::F32 { weights } else { serialize_weights(&model, dtype).map_err(CliError)? };
            (model, [config, weights])
        }
        Some(json) => {
            let cfg = crate::model::families::describe(json.to_string().as_bytes())?;
            let weights = crate::model::decoder_weights::DecoderWeights::random(&cfg, seed).in_precision(dtype);
            let model = crate::model::Model { cfg, weights };
            let bytes = serialize_weights(&model, dtype).map_err(CliError)?;
            (model, [serde_json::to_vec_pretty(&json).expect("JSON"), bytes])
        }
    };
    let cfg = model.cfg.clone();
    let [config, weights] = files;
    let mut written = vec![("config.json".to_string(), config)];
    match a.shard_bytes {
        None => written.push(("model.safetensors".into(), weights)),
        Some(0) => return Err(CliError("--shard-bytes must be at least 1".into())),
        Some(max) => {
            let (index, shards) =
                crate::formats::shards::shard(&crate::formats::safetensors::TensorFile::parse("model.safetensors", &weights)?, max);
            written.push((crate::formats::shards::INDEX_FILE.into(), index));
            written.extend(shards);
        }
    }
    for (name, bytes) in written {
        std::fs::write(out.join(name), bytes).map_err(|e| io(&out, e))?;
    }
    if let Some(sae_out) = &a.sae_out {
        let hook = a.hook.as_deref().ok_or_else(|| CliError("--sae-out needs --hook NAME".into()))?;
        let point = cfg.hook_point(hook).map_err(|e| CliError(format!("--hook: {e}")))?;
        let mut extra = serde_json::Map::new();
        extra.insert("metadata".into(), serde_json::json!({"hook_name": hook, "model_name": format!("random {}", a.family)}));
        let sae = crate::sae::random::random_sae_with("topk", cfg.hook_width(point), a.d_sae, a.k, seed + 1, extra);
        sae_files::save_dir(&sae, sae_out)?;
    }
    println!(
        "{}",
        serde_json::json!({"model": out.display().to_string(), "model_type": cfg.model_type, "vocab_size": vocab_size, "d_model": width, "n_layers": cfg.n_layers})
    );
    Ok(())
}

/// `--dtype`'s value.
fn dtype_flag(value: &str) -> Result<crate::formats::safetensors::FloatDtype, CliError> {
    use crate::formats::safetensors::FloatDtype;
    match value {
        "f32" => Ok(FloatDtype::F32),
        "f16" => Ok(FloatDtype::F16),
        "bf16" => Ok(FloatDtype::BF16),
        other => Err(CliError(format!("--dtype '{other}' is not one of f32, f16, bf16"))),
    }
}

/// `--corpus FILE` (UTF-8 text, checked by `parse_corpus`) as token ids through the model folder's
/// `tokenizer.json`, with the tokenizer.
fn corpus_tokens(corpus: &Path, dir: &Path) -> Result<(crate::formats::tokenizer::TextTokenizer, Vec<u32>), CliError> {
    use crate::model::files::TOKENIZER_FILE;
    let name = corpus.display().to_string();
    let bytes = std::fs::read(corpus).map_err(|e| CliError(format!("{name}: {e}")))?;
    let text = crate::formats::corpus::parse_corpus(&name, &bytes)?;
    let path = dir.join(TOKENIZER_FILE);
    let tokenizer =
        crate::formats::tokenizer::TextTokenizer::parse(&std::fs::read(&path).map_err(|e| CliError(format!("{}: {e}", path.display())))?)?;
    let tokens = tokenizer.encode(&text)?;
    Ok((tokenizer, tokens))
}

/// `saelab dashboard`: one feature's dashboard (SAE-Vis style) over a text sample, and the feature
/// list's summary, as JSON; the page computes the same from the same sample.
fn dashboard_command(a: &DashboardArgs) -> Result<(), CliError> {
    use crate::model::files::load_model_dir;
    let dir = a.source.model.as_path();
    let sae = open_sae(&a.sae)?;
    let model = load_model_dir(dir)?;
    let (tokenizer, mut tokens) = corpus_tokens(&a.source.corpus, dir)?;
    tokens.truncate(a.tokens);
    let feature = a.feature;
    if feature >= sae.d_sae() {
        return Err(CliError(format!("--feature {feature} does not exist (the SAE has {} features)", sae.d_sae())));
    }
    let context = a.context.unwrap_or(model.cfg.max_positions.min(128));
    let backend = backend(&a.device)?;
    let (model, sae) = (LoadedModel::new(Rc::new(model), &backend)?, LoadedSae::new(Rc::new(sae), &backend)?);
    // Each context starts with the model's BOS when the SAE was trained so.
    let bos = if sae.sae.cfg.prepend_bos { model.cfg.special_tokens.bos_or_eos() } else { None };
    let run = pollster::block_on(crate::dashboard::run_sample(&model, &sae, &tokens, bos, context, |_, _| {}))?;
    let d = run.dashboard(feature, 10, 24, 5, 3);
    let text_of = |e: &crate::dashboard::Example| tokenizer.token_texts(&run.contexts[e.context][e.position..e.position + 1]).concat();
    let top: Vec<serde_json::Value> = d
        .top
        .iter()
        .map(|e| serde_json::json!({"context": e.context, "position": e.position, "activation": e.activation, "token": text_of(e)}))
        .collect();
    let nearest = crate::dashboard::nearest_features(&sae.sae, feature, &sae.sae, 6).map_err(CliError)?;
    let summaries = run.summaries();
    let alive = summaries.iter().filter(|s| s.density > 0.0).count();
    println!(
        "{}",
        serde_json::json!({
            "feature": feature, "sample_tokens": run.n_tokens, "density": d.density, "max_activation": d.max_activation,
            "histogram": d.histogram, "top": top, "nearest": nearest, "features_firing": alive, "device": backend.name(),
        })
    );
    Ok(())
}

/// Trains an SAE on synthetic data with known features and reports recovery (teaching lab).
/// Settings are the lab page's (`train::lab::LabSettings`), so a preset or a shared URL's values
/// give the same run here.
fn toy(a: &ToyArgs) -> Result<(), CliError> {
    use crate::train::lab::LabSettings;
    use crate::train::toy::ToyTrainer;

    let given = a.settings();
    let mut settings = match &a.preset {
        Some(id) => LabSettings::preset(id).ok_or_else(|| {
            let ids: Vec<&str> = crate::train::lab::PRESETS.iter().map(|p| p.id).collect();
            CliError(format!("--preset: unknown preset '{id}' (known: {})", ids.join(", ")))
        })?,
        None => {
            // Without a preset, the run is described in full.
            let required = ["features", "dims", "p", "arch", "dict", "batch", "steps", "seed"];
            let missing: Vec<String> =
                given.iter().filter(|(n, v)| required.contains(n) && v.is_none()).map(|(n, _)| format!("--{n}")).collect();
            if !missing.is_empty() {
                return Err(CliError(format!("missing {} (or give --preset ID)", missing.join(", "))));
            }
            LabSettings::default()
        }
    };
    for (name, value) in given.into_iter().filter_map(|(n, v)| v.map(|v| (n, v))) {
        settings.set(&name.replace('-', "_"), value).map_err(|e| CliError(format!("--{name}: {e}")))?;
    }
    let cfg = settings.to_config().map_err(CliError)?;
    let backend = backend(&a.device)?;
    let mut trainer = ToyTrainer::new(cfg.clone(), &backend).map_err(CliError)?;
    let start = Instant::now();
    for step in 0..cfg.train.steps {
        pollster::block_on(trainer.step()).map_err(CliError)?;
        // On a GPU the parameters stay there; look at them now and then to catch divergence.
        if (step + 1) % 250 == 0 || step + 1 == cfg.train.steps {
            pollster::block_on(trainer.sync()).map_err(CliError)?;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let device_name = backend.name();
    let (rec, m) = trainer.evaluate(4096);
    if let Some(dir) = &a.save {
        sae_files::save_dir(&trainer.to_sae(), dir)?;
    }
    println!(
        "{}",
        serde_json::json!({
            "mmcs": rec.mmcs, "recovered": rec.recovered, "fvu": m.fvu, "l0": m.l0,
            "dead": m.fire_counts.iter().filter(|&&c| c == 0).count(),
            "steps_per_s": cfg.train.steps as f64 / seconds, "device": device_name,
        })
    );
    Ok(())
}

/// The tokens to run: a 1-D `.npy` of ids (int32/int64; the flag `npy_flag` names it) or text
/// through the model folder's `tokenizer.json`.
fn model_tokens(
    npy: Option<&Path>,
    text: Option<&str>,
    npy_flag: &str,
    dir: &Path,
    model: &crate::model::Model,
) -> Result<Vec<u32>, CliError> {
    use crate::formats::tokenizer::TextTokenizer;
    use crate::model::files::TOKENIZER_FILE;
    let tokens = match (npy, text) {
        (Some(path), None) => {
            let path = path.display().to_string();
            let bytes = std::fs::read(&path).map_err(|e| CliError(format!("{path}: {e}")))?;
            let (shape, ids) = npy::read_i64(&path, &bytes)?;
            if shape.len() != 1 {
                return Err(CliError(format!("{path}: expected a 1-D array of token ids, got shape {shape:?}")));
            }
            ids.into_iter()
                .enumerate()
                .map(|(i, t)| u32::try_from(t).map_err(|_| CliError(format!("{path}: token {t} at position {i} is not a token id"))))
                .collect::<Result<Vec<u32>, _>>()?
        }
        (None, Some(text)) => {
            let path = dir.join(TOKENIZER_FILE);
            let bytes =
                std::fs::read(&path).map_err(|e| CliError(format!("{}: {e} (--text needs the model's tokenizer)", path.display())))?;
            TextTokenizer::parse(&bytes).map_err(|e| CliError(format!("{}: {e}", dir.display())))?.encode(text)?
        }
        _ => return Err(CliError(format!("give one of --{npy_flag} T.npy or --text TEXT"))),
    };
    model.check_tokens(&tokens)?;
    Ok(tokens)
}

/// `saelab forward`: the logits and the requested hook points of a model for some tokens.
fn forward(a: &ForwardArgs) -> Result<(), CliError> {
    use crate::model::files::load_model_dir;
    let dir = a.model.as_path();
    let model = load_model_dir(dir)?;
    let tokens = model_tokens(a.tokens.tokens.as_deref(), a.tokens.text.as_deref(), "tokens", dir, &model)?;
    let mut hooks: Vec<(HookPoint, PathBuf)> = Vec::new();
    for value in &a.hook {
        let (hook, path) = value.split_once('=').ok_or_else(|| CliError(format!("--hook {value}: expected NAME=OUT.npy")))?;
        let hook = model.cfg.hook_point(hook).map_err(|e| CliError(format!("--hook: {e}")))?;
        hooks.push((hook, PathBuf::from(path)));
    }
    let names: Vec<HookPoint> = hooks.iter().map(|(n, _)| *n).collect();
    let backend = backend(&a.device)?;
    let vocab = model.cfg.vocab_size;
    let (logits, captured) = pollster::block_on(LoadedModel::new(Rc::new(model), &backend)?.run(&tokens, &names, &[]))?;
    let device_name = backend.name();
    let n = tokens.len();
    if let Some(path) = &a.logits {
        write_npy(path, n, vocab, Some(logits.clone()))?;
    }
    for ((_, path), values) in hooks.iter().zip(captured) {
        write_npy(path, n, values.len() / n, Some(values))?;
    }
    let last = &logits[(n - 1) * vocab..];
    let next = (0..last.len()).fold(0, |best, i| if last[i] > last[best] { i } else { best });
    println!(
        "{}",
        serde_json::json!({
            "n_tokens": n, "tokens": tokens, "next_token": next, "device": device_name,
            "hooks": names,
        })
    );
    Ok(())
}

/// A model with an SAE at its hook on the chosen backend, the tokens, and one clean run of both.
struct LmRun {
    dir: PathBuf,
    model: LoadedModel,
    sae: LoadedSae,
    tokens: Vec<u32>,
    run: crate::lm::TextRun,
    backend: Backend,
}

fn lm_run(a: &ModelSaeArgs) -> Result<LmRun, CliError> {
    use crate::lm;
    use crate::model::files::load_model_dir;
    let sae = open_sae(&a.sae)?;
    let model = load_model_dir(&a.model)?;
    let text = model_tokens(a.tokens.tokens.as_deref(), a.tokens.text.as_deref(), "tokens", &a.model, &model)?;
    lm::attach_point(&model, &sae)?;
    // Text is read as TransformerLens's to_tokens reads it (BOS first when the SAE says so);
    // token ids given as a file run as they are.
    let tokens = lm::tokens_for(&model, &text, a.tokens.text.is_some() && sae.cfg.prepend_bos && !a.no_bos)?;
    model.check_tokens(&tokens)?;
    let backend = backend(&a.device)?;
    let (model, sae) = (LoadedModel::new(Rc::new(model), &backend)?, LoadedSae::new(Rc::new(sae), &backend)?);
    let run = pollster::block_on(lm::run_text(&model, &sae, &tokens))?;
    Ok(LmRun { dir: a.model.clone(), model, sae, tokens, run, backend })
}

/// `saelab splice`: what the SAE's reconstruction error costs the model.
fn splice(a: &SpliceArgs) -> Result<(), CliError> {
    let LmRun { model, tokens, run, .. } = lm_run(&a.run)?;
    let report = pollster::block_on(crate::lm::splice_from(&model, &tokens, &run, a.seed))?;
    println!("{}", serde_json::to_string(&report).map_err(|e| CliError(e.to_string()))?);
    Ok(())
}

/// `saelab features`: per token, the SAE's strongest features; with `--feature`, one in detail.
fn features(a: &FeaturesArgs) -> Result<(), CliError> {
    use crate::formats::tokenizer::TextTokenizer;
    use crate::lm;
    let LmRun { dir, model, sae, tokens, run, backend } = lm_run(&a.run)?;
    let top = a.top;
    // One forward pass and one SAE run serve both the per-token lists and `--feature`.
    let acts = &run.sae_acts;
    let per_token = lm::top_features(acts, sae.d_sae(), top);
    let tokenizer = std::fs::read(dir.join(crate::model::files::TOKENIZER_FILE)).ok().and_then(|bytes| TextTokenizer::parse(&bytes).ok());
    let texts = tokenizer.as_ref().map(|t| t.token_texts(&tokens));
    let rows: Vec<serde_json::Value> = per_token
        .iter()
        .enumerate()
        .map(|(i, features)| {
            serde_json::json!({
                "position": i, "token": tokens[i], "text": texts.as_ref().map(|t| t[i].clone()), "special": !run.evaluated[i],
                "features": features.iter().map(|&(f, a)| serde_json::json!({"feature": f, "activation": a})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut out = serde_json::json!({ "hook": sae.cfg.hook_name, "device": backend.name(), "l0": run.l0, "tokens": rows });
    if let Some(feature) = a.feature {
        // One feature in detail: its activation on every token and its logit-lens tokens.
        let (top_tokens, bottom_tokens) = pollster::block_on(model.logit_lens(&sae, feature, top))?;
        let on_tokens: Vec<f32> = acts.chunks_exact(sae.d_sae()).map(|row| row[feature]).collect();
        let named = |list: &[(u32, f32)]| {
            list.iter()
                .map(|&(t, e)| serde_json::json!({"token": t, "text": tokenizer.as_ref().and_then(|tk| tk.token_texts(&[t]).pop()), "effect": e}))
                .collect::<Vec<_>>()
        };
        out["feature"] = serde_json::json!({
            "index": feature, "activations": on_tokens,
            "logit_lens": {"top": named(&top_tokens), "bottom": named(&bottom_tokens), "note": "W_dec[f]·W_U with the final norm's scale folded into W_U, centred over the vocabulary"},
        });
    }
    println!("{out}");
    Ok(())
}

/// `saelab generate`: a continuation, and with a steering feature the steered one beside it.
fn generate(a: &GenerateArgs) -> Result<(), CliError> {
    use crate::formats::tokenizer::TextTokenizer;
    use crate::lm::{self, Sampling, Steer};
    use crate::model::files::{load_model_dir, TOKENIZER_FILE};
    let dir = a.model.as_path();
    let model = load_model_dir(dir)?;
    let text = model_tokens(a.prompt_tokens.as_deref(), a.text.as_deref(), "prompt-tokens", dir, &model)?;
    let sampling = Sampling { new_tokens: a.tokens, temperature: a.temperature, seed: a.seed };
    if !(sampling.temperature >= 0.0 && sampling.temperature.is_finite()) {
        return Err(CliError(format!("--temperature must be ≥ 0, not {}", sampling.temperature)));
    }
    let parse_pair = |name: &str, given: &Option<String>| -> Result<Option<(usize, f32)>, CliError> {
        given
            .as_ref()
            .map(|v| {
                let bad = || CliError(format!("--{name} {v}: expected FEATURE=NUMBER"));
                let (f, number) = v.split_once('=').ok_or_else(bad)?;
                let value: f32 = number.parse().map_err(|_| bad())?;
                if !value.is_finite() {
                    return Err(bad());
                }
                Ok((f.parse().map_err(|_| bad())?, value))
            })
            .transpose()
    };
    let steer = match (parse_pair("steer", &a.steer)?, parse_pair("clamp", &a.clamp)?) {
        (Some((feature, alpha)), None) => Some(Steer::Add { feature, alpha }),
        (None, Some((feature, value))) => Some(Steer::Clamp { feature, value }),
        (None, None) => None,
        (Some(_), Some(_)) => return Err(CliError("give --steer or --clamp, not both".into())),
    };
    let sae = match &a.sae {
        Some(p) => Some(open_sae(p)?),
        None if steer.is_some() => return Err(CliError("--steer and --clamp need --sae DIR".into())),
        None => None,
    };
    // With an SAE, the prompt is read as the SAE reads text (its BOS first if it was trained so).
    let prompt = lm::tokens_for(&model, &text, a.text.is_some() && sae.as_ref().is_some_and(|s| s.cfg.prepend_bos) && !a.no_bos)?;
    model.check_tokens(&prompt)?;
    let backend = backend(&a.device)?;
    let model = LoadedModel::new(Rc::new(model), &backend)?;
    let sae = sae.map(|s| LoadedSae::new(Rc::new(s), &backend)).transpose()?;
    let tokenizer = std::fs::read(dir.join(TOKENIZER_FILE)).ok().and_then(|b| TextTokenizer::parse(&b).ok());
    let describe = |tokens: &[u32]| {
        serde_json::json!({
            "tokens": tokens,
            "text": tokenizer.as_ref().and_then(|t| t.decode(tokens).ok()),
        })
    };
    let plain = pollster::block_on(lm::generate(&model, None, None, &prompt, sampling))?;
    let mut out = serde_json::json!({
        "prompt": describe(&prompt), "unsteered": describe(&plain[prompt.len()..]),
        "temperature": sampling.temperature, "seed": sampling.seed, "device": backend.name(),
    });
    if let Some(s) = steer {
        let steered = pollster::block_on(lm::generate(&model, sae.as_ref(), Some(s), &prompt, sampling))?;
        out["steered"] = describe(&steered[prompt.len()..]);
        out["steer"] = match s {
            Steer::Add { feature, alpha } => {
                serde_json::json!({"feature": feature, "add": alpha, "hook": sae.as_ref().and_then(|s| s.sae.cfg.hook_name.clone())})
            }
            Steer::Clamp { feature, value } => {
                serde_json::json!({"feature": feature, "clamp": value, "hook": sae.as_ref().and_then(|s| s.sae.cfg.hook_name.clone())})
            }
        };
    }
    println!("{out}");
    Ok(())
}

/// `saelab train`: an SAE on a model's activations at a hook over a text corpus, with progress
/// and held-out evaluations on stderr, the final evaluation as JSON on stdout, saved in SAELens
/// format.
fn train_on_model(a: &TrainArgs) -> Result<(), CliError> {
    use crate::model::files::load_model_dir;
    use crate::train::checkpoint::Checkpoint;
    use crate::train::lm_train::LmTrainer;

    let dir = a.source.model.as_path();
    let save = a.save.clone();
    let model = load_model_dir(dir)?;
    let (_, corpus) = corpus_tokens(&a.source.corpus, dir)?;
    // Contexts start with the model's BOS, as SAELens's training does by default.
    let bos = model.cfg.special_tokens.bos_or_eos();
    let backend = backend(&a.device)?;
    // The model harvests where the SAE trains.
    let model = LoadedModel::new(Rc::new(model), &backend)?;
    let start = Instant::now();

    let (mut trainer, eval_every) = match &a.resume {
        // The run's settings are the checkpoint's; a flag that would change them is refused.
        Some(path) => {
            if let Some(flag) = a.run_settings_given() {
                return Err(CliError(format!("--{flag}: a resumed run keeps the settings it was saved with")));
            }
            let name = path.display().to_string();
            let bytes = std::fs::read(path).map_err(|e| FormatError::Io { file: name.clone(), msg: e.to_string() })?;
            let checkpoint = Checkpoint::parse(&name, &bytes)?;
            let saved_every = checkpoint.header.extra.get("eval_every").and_then(|v| v.as_u64()).unwrap_or(1) as usize;
            let trainer =
                LmTrainer::resume(&model, &corpus, bos, checkpoint, &backend).map_err(|e| CliError(format!("--resume {name}: {e}")))?;
            (trainer, a.eval_every.unwrap_or(saved_every).max(1))
        }
        None => new_model_trainer(a, &model, dir, &backend, &corpus, bos)?,
    };
    let (steps, batch) = (trainer.training.cfg.steps, trainer.training.cfg.batch);
    let tokens = steps * batch;
    let checkpoint_to = a.checkpoint.clone();
    let checkpoint_every = a.checkpoint_every.unwrap_or(eval_every).max(1);
    eprintln!(
        "{}",
        serde_json::json!({"corpus_tokens": corpus.len(), "rows_per_epoch": trainer.store.rows_per_epoch(), "held_out_contexts": trainer.store.held_out_contexts().len(), "steps": steps, "from_step": trainer.training.step, "device": backend.name()})
    );
    let mut last = None;
    let resumed_tokens = trainer.tokens_trained();
    // A time-boxed session trains this many steps, checkpoints, and stops (`--resume` goes on).
    let stop_at = match a.stop_after {
        Some(_) if checkpoint_to.is_none() => return Err(CliError("--stop-after needs --checkpoint FILE to go on from".into())),
        Some(n) => (trainer.training.step + n).min(steps),
        None => steps,
    };
    while trainer.training.step < stop_at {
        pollster::block_on(trainer.step(&model)).map_err(CliError)?;
        let step = trainer.training.step;
        if step % eval_every == 0 || step == steps {
            pollster::block_on(trainer.training.sync()).map_err(CliError)?;
            let eval = pollster::block_on(trainer.evaluate(&model))?;
            let seconds = start.elapsed().as_secs_f64();
            let done = trainer.tokens_trained() as f64;
            let rate = (done - resumed_tokens as f64) / seconds;
            let mut line = serde_json::to_value(&eval).map_err(|e| CliError(e.to_string()))?;
            line["tokens_per_s"] = rate.into();
            line["eta_s"] = ((tokens as f64 - done).max(0.0) / rate).into();
            line["epochs"] = trainer.store.epochs.into();
            eprintln!("{line}");
            last = Some(line);
        }
        if let Some(path) = &checkpoint_to {
            if step % checkpoint_every == 0 || step == stop_at {
                let extra = serde_json::json!({ "eval_every": eval_every });
                let bytes = pollster::block_on(trainer.checkpoint(extra)).map_err(CliError)?.serialize();
                // Written beside and renamed over: an interrupted write leaves the last checkpoint whole.
                let partial = path.with_extension("partial");
                std::fs::write(&partial, &bytes)
                    .and_then(|_| std::fs::rename(&partial, path))
                    .map_err(|e| CliError(format!("--checkpoint {}: {e}", path.display())))?;
            }
        }
    }
    sae_files::save_dir(&trainer.to_sae(), &save)?;
    let mut out = last.unwrap_or_default();
    out["saved"] = save.display().to_string().into();
    out["device"] = backend.name().into();
    out["harvested_rows"] = trainer.store.rows_harvested.into();
    out["seconds"] = start.elapsed().as_secs_f64().into();
    if stop_at < steps {
        out["stopped_at_step"] = stop_at.into();
    }
    println!("{out}");
    Ok(())
}

/// A new run from `saelab train`'s flags (defaults from the training policy), with its
/// evaluation interval.
fn new_model_trainer(
    a: &TrainArgs,
    model: &LoadedModel,
    dir: &Path,
    backend: &Backend,
    corpus: &[u32],
    bos: Option<u32>,
) -> Result<(crate::train::lm_train::LmTrainer, usize), CliError> {
    use crate::train::lm_train::LmTrainer;
    use crate::train::policy::{TrainPlan, TrainSettings};

    let d = TrainSettings::default();
    let settings = TrainSettings {
        hook: a.hook.clone().ok_or_else(|| CliError("missing --hook (or give --resume FILE)".into()))?,
        arch: a.arch.clone().ok_or_else(|| CliError("missing --arch (or give --resume FILE)".into()))?,
        k: a.k.unwrap_or(d.k),
        l1: a.l1.unwrap_or(d.l1),
        l0: a.l0.unwrap_or(d.l0),
        bandwidth: a.bandwidth.unwrap_or(d.bandwidth),
        dict: a.dict.unwrap_or(d.dict),
        tokens: a.tokens.unwrap_or(d.tokens),
        batch: a.batch.unwrap_or(d.batch),
        lr: a.lr.unwrap_or(d.lr),
        seed: a.seed.unwrap_or(d.seed),
        context: a.context,
        buffer_rows: a.buffer,
        dead_after: a.dead_after,
        eval_every: a.eval_every,
    };
    // The policy names the setting; the CLI's flags carry the same names.
    let TrainPlan { store, train, eval_every } = settings.plan(&model.cfg).map_err(|e| CliError(format!("--{e}")))?;
    let model_name = dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
    let trainer = pollster::block_on(LmTrainer::new(model, &model_name, corpus, bos, store, train, backend)).map_err(CliError)?;
    Ok((trainer, eval_every))
}

/// The toy model of superposition (Elhage et al. 2022): how many features the hidden dimensions hold.
fn superposition(a: &SuperpositionArgs) -> Result<(), CliError> {
    use crate::train::superposition::{train, SuperpositionConfig};
    let cfg = SuperpositionConfig {
        features: a.features,
        dims: a.dims,
        sparsity: a.sparsity,
        importance_decay: a.importance_decay,
        batch: a.batch,
        steps: a.steps,
        lr: a.lr,
        seed: a.seed,
    };
    let result = train(&cfg).map_err(CliError)?;
    let mut json = serde_json::to_value(&result).map_err(|e| CliError(e.to_string()))?;
    if let serde_json::Value::Object(map) = &mut json {
        map.remove("directions");
    }
    println!("{json}");
    Ok(())
}
