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
use crate::sae::{Architecture, Sae};

const USAGE: &str = "usage:
  saelab info DIR
  saelab encode --sae DIR --input X.npy --output ACTS.npy [--device cpu|gpu]
  saelab reconstruct --sae DIR --input X.npy --output RECON.npy [--device cpu|gpu]
  saelab eval --sae DIR --input X.npy [--device cpu|gpu]
  saelab bench [--n N] [--d-in D] [--d-sae M] [--k K] [--cpu-rows R] [--device cpu|gpu|both]
  saelab toy --features N --dims D --p P --arch standard|topk|batchtopk|jumprelu|gated [--k K] [--l1 C]
             [--l0 C] [--bandwidth E] --dict M --batch B --steps S --seed SEED [--lr LR] [--geometry random|polygon] [--hierarchy P,C] [--noise S]
             [--dead-after STEPS] [--b-dec-init zeros|mean|geometric_median]
             [--resample-every STEPS] [--p-decay A] [--magnitude constant:V|uniform:LO,HI|exponential:MEAN]
             [--correlated PAIRS] [--anti-correlated PAIRS] [--device cpu|gpu] [--save DIR]
  saelab toy --preset ID [any option above]
  saelab random-model --out DIR [--vocab-from tokenizer.json] [--layers 2] [--width 32] [--heads 4]
             [--context 64] [--sae-out DIR --hook NAME [--d-sae 96] [--k 4]] [--seed S]
  saelab bench-model [--tokens 1,64,1024] [--layers 12] [--device cpu|gpu|both]
  saelab dashboard --model DIR --sae DIR --corpus FILE [--tokens 4096] [--feature F] [--context 128] [--device cpu|gpu]
  saelab bench-train --model DIR --hook NAME --corpus FILE [--context 128] [--contexts 16] [--dict 4096] [--k 16]
             [--batch 1024] [--steps 5] [--device cpu|gpu|both]
  saelab forward --model DIR (--tokens T.npy | --text TEXT) [--logits OUT.npy] [--hook NAME=OUT.npy]...
             [--device cpu|gpu]
  saelab splice --model DIR --sae DIR (--text TEXT | --tokens T.npy) [--device cpu|gpu] [--seed S]
  saelab features --model DIR --sae DIR (--text TEXT | --tokens T.npy) [--top N] [--feature F] [--device cpu|gpu]
  saelab generate --model DIR (--text TEXT | --prompt-tokens T.npy) --tokens N [--temperature T] [--seed S]
             [--sae DIR (--steer FEATURE=ALPHA | --clamp FEATURE=VALUE)] [--device cpu|gpu]
  saelab train --model DIR --hook NAME --corpus FILE --arch standard|topk|batchtopk|jumprelu|gated [--k 32] [--l1 5]
             [--l0 0.001] [--bandwidth 0.05] --dict M --tokens T [--batch 1024] [--lr 0.001] [--context 128]
             [--buffer ROWS] [--eval-every STEPS] [--dead-after STEPS] [--seed S] [--device cpu|gpu] --save DIR
             [--checkpoint FILE [--checkpoint-every STEPS]] [--stop-after STEPS]
  saelab train --model DIR --corpus FILE --resume FILE --save DIR [--checkpoint FILE] [--stop-after STEPS] [--device cpu|gpu]
  saelab superposition [--features 5] [--dims 2] [--sparsity 0.9] [--importance-decay 0.9]
             [--batch 256] [--steps 3000] [--lr 0.01] [--seed 1]";

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

struct Flags {
    positional: Vec<String>,
    named: Vec<(String, String)>,
}

impl Flags {
    fn parse(args: &[String], allowed: &[&str]) -> Result<Flags, CliError> {
        let mut flags = Flags { positional: Vec::new(), named: Vec::new() };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                if !allowed.contains(&name) {
                    return Err(CliError(format!("unknown option --{name}\n{USAGE}")));
                }
                let value = it.next().ok_or_else(|| CliError(format!("--{name} needs a value")))?;
                flags.named.push((name.to_string(), value.clone()));
            } else {
                flags.positional.push(a.clone());
            }
        }
        Ok(flags)
    }
    fn get(&self, name: &str) -> Option<&str> {
        self.named.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    fn required(&self, name: &str) -> Result<&str, CliError> {
        self.get(name).ok_or_else(|| CliError(format!("missing --{name}\n{USAGE}")))
    }
    fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, CliError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| CliError(format!("--{name}: '{v}' is not a valid number"))),
        }
    }
}

/// `--device cpu|gpu` (default gpu): the one place the CLI chooses where its work runs.
fn backend(flags: &Flags) -> Result<Backend, CliError> {
    match flags.get("device").unwrap_or("gpu") {
        "cpu" => Ok(Backend::Cpu),
        "gpu" => open_gpu(),
        other => Err(CliError(format!("--device must be cpu or gpu, not '{other}'"))),
    }
}

fn open_gpu() -> Result<Backend, CliError> {
    Ok(pollster::block_on(Backend::open_gpu())?)
}

fn dispatch(args: &[String]) -> Result<(), CliError> {
    let Some((command, rest)) = args.split_first() else {
        return Err(CliError(USAGE.into()));
    };
    match command.as_str() {
        "info" => {
            let flags = Flags::parse(rest, &[])?;
            let [dir] = flags.positional.as_slice() else {
                return Err(CliError(format!("info takes one SAE folder\n{USAGE}")));
            };
            print!("{}", describe(&sae_files::load_dir(Path::new(dir))?));
            Ok(())
        }
        "encode" | "reconstruct" | "eval" => {
            let mut allowed = vec!["sae", "input", "device"];
            if command != "eval" {
                allowed.push("output");
            }
            let flags = Flags::parse(rest, &allowed)?;
            if let Some(extra) = flags.positional.first() {
                return Err(CliError(format!("unexpected argument '{extra}'\n{USAGE}")));
            }
            let sae = sae_files::load_dir(Path::new(flags.required("sae")?))?;
            let input = flags.required("input")?;
            let output = if command == "eval" { None } else { Some(PathBuf::from(flags.required("output")?)) };
            let x = read_activations(Path::new(input), &sae)?;
            let request = RunRequest { dense_acts: command == "encode", lists: false, recon: command == "reconstruct" };
            let sae = LoadedSae::new(Rc::new(sae), &backend(&flags)?)?;
            let analysis = pollster::block_on(engine::analyze(&sae, &x, request))?;
            let sae = &sae.sae;
            match command.as_str() {
                "encode" => write_npy(output.as_deref().expect("encode has --output"), x.len() / sae.d_in(), sae.d_sae(), analysis.acts)?,
                "reconstruct" => {
                    write_npy(output.as_deref().expect("reconstruct has --output"), x.len() / sae.d_in(), sae.d_in(), analysis.recon)?
                }
                _ => println!("{}", eval_json(&analysis)),
            }
            Ok(())
        }
        "bench" => bench(&Flags::parse(rest, &["n", "d-in", "d-sae", "k", "cpu-rows", "device"])?),
        "toy" => toy(&Flags::parse(
            rest,
            &[
                "features",
                "dims",
                "p",
                "arch",
                "k",
                "l1",
                "l0",
                "bandwidth",
                "dict",
                "batch",
                "steps",
                "seed",
                "lr",
                "device",
                "save",
                "preset",
                "geometry",
                "hierarchy",
                "noise",
                "dead-after",
                "b-dec-init",
                "resample-every",
                "p-decay",
                "magnitude",
                "correlated",
                "anti-correlated",
            ],
        )?),
        "random-model" => random_model(&Flags::parse(
            rest,
            &["out", "vocab-from", "layers", "width", "heads", "context", "sae-out", "hook", "d-sae", "k", "seed"],
        )?),
        "dashboard" => dashboard_command(&Flags::parse(rest, &["model", "sae", "corpus", "tokens", "feature", "context", "device"])?),
        "bench-train" => {
            bench_train(&Flags::parse(rest, &["model", "hook", "corpus", "context", "contexts", "dict", "k", "batch", "steps", "device"])?)
        }
        "bench-model" => bench_model(&Flags::parse(rest, &["tokens", "layers", "device"])?),
        "splice" | "features" => {
            lm_command(command, &Flags::parse(rest, &["model", "sae", "text", "tokens", "device", "seed", "top", "feature"])?)
        }
        "generate" => generate(&Flags::parse(
            rest,
            &["model", "sae", "text", "prompt-tokens", "tokens", "temperature", "seed", "steer", "clamp", "device"],
        )?),
        "train" => train_on_model(&Flags::parse(
            rest,
            &[
                "model",
                "hook",
                "corpus",
                "arch",
                "k",
                "l1",
                "l0",
                "bandwidth",
                "dict",
                "tokens",
                "batch",
                "lr",
                "device",
                "save",
                "seed",
                "context",
                "buffer",
                "eval-every",
                "dead-after",
                "checkpoint",
                "checkpoint-every",
                "resume",
                "stop-after",
            ],
        )?),
        "forward" => forward(&Flags::parse(rest, &["model", "tokens", "text", "logits", "hook", "device"])?),
        "superposition" => {
            superposition(&Flags::parse(rest, &["features", "dims", "sparsity", "importance-decay", "batch", "steps", "lr", "seed"])?)
        }
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(CliError(format!("unknown command '{other}'\n{USAGE}"))),
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
    let data = data.expect("requested output is present");
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
    line("architecture", c.architecture.name().to_string());
    line("d_in", c.d_in.to_string());
    line("d_sae", c.d_sae.to_string());
    match c.architecture {
        Architecture::TopK { k } => line("k", k.to_string()),
        Architecture::BatchTopK { k } => line("k (training)", k.to_string()),
        _ => {}
    }
    if let Some(t) = &sae.threshold {
        let (min, max) = t.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let mean = t.iter().map(|&v| v as f64).sum::<f64>() / t.len() as f64;
        line("threshold", format!("min {min:.4}  mean {mean:.4}  max {max:.4}"));
    }
    line("hook_name", c.hook_name.clone().unwrap_or_else(|| "(none)".into()));
    line("model_name", c.model_name.clone().unwrap_or_else(|| "(none)".into()));
    line("dtype", format!("{} (stored as {})", c.dtype, sae.stored_dtype()));
    line("normalization", c.normalization.name().to_string());
    line("apply_b_dec_to_input", c.apply_b_dec_to_input.to_string());
    line("parameters", sae.parameter_count().to_string());
    out
}

/// Throughput of encode + decode + metrics on random data, GPU and/or CPU.
fn bench(flags: &Flags) -> Result<(), CliError> {
    let n: usize = flags.number("n", 4096)?;
    let d_in: usize = flags.number("d-in", 768)?;
    let d_sae: usize = flags.number("d-sae", 24_576)?;
    let k: usize = flags.number("k", 32)?;
    let cpu_rows: usize = flags.number("cpu-rows", 256)?;
    let which = flags.get("device").unwrap_or("both");
    let mut rng = crate::random::Rng::new(7);
    let x: Vec<f32> = (0..n * d_in).map(|_| rng.normal()).collect();
    let gpu = if which != "cpu" { Some(open_gpu()?) } else { None };
    for arch in ["standard", "topk"] {
        let sae = crate::sae::random::random_sae(arch, d_in, d_sae, k, 11);
        // Encode and decode are each a [n, d_in] x [d_in, d_sae] product (decode is sparse for TopK).
        let flops_dense = 2.0 * 2.0 * (d_in * d_sae) as f64;
        let flops_per_row = if arch == "topk" { 2.0 * (d_in * d_sae) as f64 + 2.0 * (k * d_in) as f64 } else { flops_dense };
        let report = |device: &str, rows: usize, seconds: f64, note: &str| {
            println!(
                "{}",
                serde_json::json!({
                    "arch": arch, "device": device, "n": rows, "d_in": d_in, "d_sae": d_sae,
                    "k": if arch == "topk" { Some(k) } else { None },
                    "seconds": seconds, "rows_per_s": rows as f64 / seconds,
                    "gflop_per_s": flops_per_row * rows as f64 / seconds / 1e9, "note": note,
                })
            );
        };
        let sae = Rc::new(sae);
        if let Some(gpu) = &gpu {
            let on_gpu = LoadedSae::new(sae.clone(), gpu)?;
            let warm = &x[..d_in * n.min(64)];
            pollster::block_on(engine::analyze(&on_gpu, warm, RunRequest::default()))?;
            let start = Instant::now();
            pollster::block_on(engine::analyze(&on_gpu, &x, RunRequest::default()))?;
            report(
                &gpu.name(),
                n,
                start.elapsed().as_secs_f64(),
                "encode+decode+metrics, wall time incl. upload of x and readback of metrics",
            );
        }
        if which != "gpu" {
            let rows = cpu_rows.min(n);
            let start = Instant::now();
            pollster::block_on(engine::analyze(&LoadedSae::new(sae, &Backend::Cpu)?, &x[..rows * d_in], RunRequest::default()))?;
            report("cpu (reference, 1 thread)", rows, start.elapsed().as_secs_f64(), "encode+decode+metrics");
        }
    }
    Ok(())
}

/// Writes a GPT-2 model folder with random weights (for tests, demos of the page's plumbing and
/// benchmarks), with a copy of a `tokenizer.json` whose vocabulary sets the model's, and
/// optionally a random TopK SAE at one of its hook points.
fn random_model(flags: &Flags) -> Result<(), CliError> {
    use crate::formats::tokenizer::TextTokenizer;
    use crate::model::files::{serialize_gpt2, TOKENIZER_FILE};
    use crate::model::{Gpt2, Gpt2Config};
    let out = PathBuf::from(flags.required("out")?);
    let io = |p: &Path, e: std::io::Error| CliError(format!("{}: {e}", p.display()));
    std::fs::create_dir_all(&out).map_err(|e| io(&out, e))?;
    let vocab_size = match flags.get("vocab-from") {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| CliError(format!("{path}: {e}")))?;
            let size = TextTokenizer::parse(&bytes)?.vocab_size();
            std::fs::write(out.join(TOKENIZER_FILE), &bytes).map_err(|e| io(&out, e))?;
            size
        }
        None => 256,
    };
    let width: usize = flags.number("width", 32)?;
    let heads: usize = flags.number("heads", 4)?;
    if width == 0 || heads == 0 || !width.is_multiple_of(heads) {
        return Err(CliError(format!("--heads ({heads}) must divide --width ({width})")));
    }
    let cfg = Gpt2Config {
        vocab_size,
        n_positions: flags.number("context", 64)?,
        d_model: width,
        n_layers: flags.number("layers", 2)?,
        n_heads: heads,
        d_mlp: 4 * width,
        layer_norm_eps: 1e-5,
        scale_attn_weights: true,
    };
    let seed: u64 = flags.number("seed", 1)?;
    let model = Gpt2::random(cfg.clone(), true, seed);
    let (config, weights) = serialize_gpt2(&model);
    for (name, bytes) in [("config.json", config), ("model.safetensors", weights)] {
        std::fs::write(out.join(name), bytes).map_err(|e| io(&out, e))?;
    }
    if let Some(sae_out) = flags.get("sae-out") {
        let hook = flags.required("hook")?;
        cfg.hook_point(hook).map_err(|e| CliError(format!("--hook: {e}")))?;
        let mut extra = serde_json::Map::new();
        extra.insert("metadata".into(), serde_json::json!({"hook_name": hook, "model_name": "random gpt2"}));
        let sae = crate::sae::random::random_sae_with("topk", width, flags.number("d-sae", 96)?, flags.number("k", 4)?, seed + 1, extra);
        sae_files::save_dir(&sae, Path::new(sae_out))?;
    }
    println!(
        "{}",
        serde_json::json!({"model": out.display().to_string(), "vocab_size": vocab_size, "d_model": width, "n_layers": cfg.n_layers})
    );
    Ok(())
}

/// Forward-pass throughput of a GPT-2-small-shaped model with random weights (optionally fewer
/// layers), CPU reference and GPU, one JSON line per (device, input length).
fn bench_model(flags: &Flags) -> Result<(), CliError> {
    use crate::model::{Gpt2, Gpt2Config};
    let lengths: Vec<usize> = flags
        .get("tokens")
        .unwrap_or("1,64,1024")
        .split(',')
        .map(|t| t.trim().parse().map_err(|_| CliError(format!("--tokens: '{t}' is not a number"))))
        .collect::<Result<_, _>>()?;
    let mut cfg = Gpt2Config::gpt2_small();
    cfg.n_layers = flags.number("layers", cfg.n_layers)?;
    let which = flags.get("device").unwrap_or("both");
    let model = Gpt2::random(cfg.clone(), true, 3);
    let report = |device: &str, n: usize, seconds: f64, note: &str| {
        println!(
            "{}",
            serde_json::json!({
                "model": format!("gpt2-small shape, {} layers, random weights", cfg.n_layers), "device": device,
                "tokens": n, "seconds": seconds, "tokens_per_s": n as f64 / seconds, "note": note,
            })
        );
    };
    let tokens_of = |n: usize| (0..n as u32).map(|i| (i * 7919) % cfg.vocab_size as u32).collect::<Vec<u32>>();
    if which != "cpu" {
        let gpu = open_gpu()?;
        let on_gpu = LoadedModel::new(Rc::new(model.clone()), &gpu)?;
        pollster::block_on(on_gpu.run(&tokens_of(2), &[], &[]))?; // compile pipelines
        for &n in &lengths {
            let start = Instant::now();
            pollster::block_on(on_gpu.run(&tokens_of(n), &[], &[]))?;
            report(&gpu.name(), n, start.elapsed().as_secs_f64(), "wall time incl. token upload and reading back all logits");
        }
    }
    if which != "gpu" {
        for &n in &lengths {
            let start = Instant::now();
            crate::model::cpu::forward(&model, &tokens_of(n), &mut |_, _, _| {})?;
            report("cpu (reference, 1 thread)", n, start.elapsed().as_secs_f64(), "logits for every position");
        }
    }
    Ok(())
}

/// `--corpus FILE` (UTF-8 text, checked by `parse_corpus`) as token ids through the model folder's
/// `tokenizer.json`, with the tokenizer (its `<|endoftext|>` is the BOS of harvested contexts).
fn corpus_tokens(flags: &Flags, dir: &Path) -> Result<(crate::formats::tokenizer::TextTokenizer, Vec<u32>), CliError> {
    use crate::model::files::TOKENIZER_FILE;
    let corpus_path = flags.required("corpus")?;
    let bytes = std::fs::read(corpus_path).map_err(|e| CliError(format!("{corpus_path}: {e}")))?;
    let text = crate::formats::corpus::parse_corpus(corpus_path, &bytes)?;
    let path = dir.join(TOKENIZER_FILE);
    let tokenizer =
        crate::formats::tokenizer::TextTokenizer::parse(&std::fs::read(&path).map_err(|e| CliError(format!("{}: {e}", path.display())))?)?;
    let tokens = tokenizer.encode(&text)?;
    Ok((tokenizer, tokens))
}

/// `saelab dashboard`: one feature's dashboard (SAE-Vis style) over a text sample, and the feature
/// list's summary, as JSON; the page computes the same from the same sample.
fn dashboard_command(flags: &Flags) -> Result<(), CliError> {
    use crate::model::files::load_model_dir;
    let dir = Path::new(flags.required("model")?);
    let model = load_model_dir(dir)?;
    let sae = sae_files::load_dir(Path::new(flags.required("sae")?))?;
    let (tokenizer, mut tokens) = corpus_tokens(flags, dir)?;
    tokens.truncate(flags.number("tokens", 4096)?);
    let feature: usize = flags.number("feature", 0)?;
    if feature >= sae.d_sae() {
        return Err(CliError(format!("--feature {feature} does not exist (the SAE has {} features)", sae.d_sae())));
    }
    let context = flags.number("context", model.cfg.n_positions.min(128))?;
    let backend = backend(flags)?;
    let (model, sae) = (LoadedModel::new(Rc::new(model), &backend)?, LoadedSae::new(Rc::new(sae), &backend)?);
    let run =
        pollster::block_on(crate::dashboard::run_sample(&model, &sae, &tokens, tokenizer.special_id("<|endoftext|>"), context, |_, _| {}))?;
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

/// `saelab bench-train`: activation harvesting and SAE training throughput, each on its own, on
/// the CPU reference and the GPU: harvest = the model's blocks up to the hook over `--contexts`
/// contexts of `--context` tokens; train = `--steps` training steps on batches already harvested.
fn bench_train(flags: &Flags) -> Result<(), CliError> {
    use crate::model::files::load_model_dir;
    use crate::train::sae_train::TrainArch;
    use crate::train::trainer::{SaeTrainer, TrainConfig};
    let dir = Path::new(flags.required("model")?);
    let model = load_model_dir(dir)?;
    let hook = model.cfg.hook_point(flags.required("hook")?).map_err(|e| CliError(format!("--hook: {e}")))?;
    let (_, corpus) = corpus_tokens(flags, dir)?;
    let context: usize = flags.number("context", 128)?;
    let contexts: usize = flags.number("contexts", 16)?;
    let (dict, k, batch, steps): (usize, usize, usize, usize) =
        (flags.number("dict", 4096)?, flags.number("k", 16)?, flags.number("batch", 1024)?, flags.number("steps", 5)?);
    let windows: Vec<&[u32]> = corpus.chunks_exact(context).take(contexts).collect();
    if windows.len() < contexts {
        return Err(CliError(format!("--corpus holds fewer than {contexts} contexts of {context} tokens")));
    }
    let which = flags.get("device").unwrap_or("both");
    let mut backends: Vec<(String, Backend)> = Vec::new();
    if which != "cpu" {
        let gpu = open_gpu()?;
        backends.push((gpu.name(), gpu));
    }
    if which != "gpu" {
        backends.push(("cpu (reference, 1 thread)".into(), Backend::Cpu));
    }
    let model = Rc::new(model);
    for (name, backend) in &backends {
        let loaded = LoadedModel::new(model.clone(), backend)?;
        pollster::block_on(loaded.activations_at(windows[0], hook))?; // compile pipelines
        let start = Instant::now();
        let mut rows = Vec::new();
        for w in &windows {
            rows.extend(pollster::block_on(loaded.activations_at(w, hook))?);
        }
        let harvest = (contexts * context) as f64 / start.elapsed().as_secs_f64();
        let d = model.cfg.d_model;
        while rows.len() < batch * d {
            rows.extend_from_within(..rows.len().min(batch * d - rows.len()));
        }
        let x = &rows[..batch * d];
        let cfg = TrainConfig::new(TrainArch::TopK { k }, dict, batch, steps + 1, 0);
        let mut trainer = SaeTrainer::new(cfg, d, x, backend).map_err(CliError)?;
        if backend.gpu().is_some() {
            pollster::block_on(trainer.step(x, Vec::new)).map_err(CliError)?; // compile pipelines
            pollster::block_on(trainer.sync()).map_err(CliError)?;
        }
        let start = Instant::now();
        for _ in 0..steps {
            pollster::block_on(trainer.step(x, Vec::new)).map_err(CliError)?;
        }
        pollster::block_on(trainer.sync()).map_err(CliError)?;
        let train = (steps * batch) as f64 / start.elapsed().as_secs_f64();
        println!(
            "{}",
            serde_json::json!({
                "device": name, "model": dir.display().to_string(), "hook": hook, "context": context,
                "harvest_tokens_per_s": harvest, "sae": format!("topk k={k}, {d}×{dict}, batch {batch}"), "train_tokens_per_s": train,
            })
        );
    }
    Ok(())
}

/// Trains an SAE on synthetic data with known features and reports recovery (teaching lab).
/// Settings are the lab page's (`train::lab::LabSettings`), so a preset or a shared URL's values
/// give the same run here.
fn toy(flags: &Flags) -> Result<(), CliError> {
    use crate::train::lab::LabSettings;
    use crate::train::toy::ToyTrainer;

    let mut settings = match flags.get("preset") {
        Some(id) => LabSettings::preset(id).ok_or_else(|| {
            let ids: Vec<&str> = crate::train::lab::PRESETS.iter().map(|p| p.id).collect();
            CliError(format!("--preset: unknown preset '{id}' (known: {})", ids.join(", ")))
        })?,
        None => {
            for name in ["features", "dims", "p", "arch", "dict", "batch", "steps", "seed"] {
                flags.required(name)?;
            }
            LabSettings::default()
        }
    };
    for (name, value) in &flags.named {
        if name == "device" || name == "save" || name == "preset" {
            continue;
        }
        settings.set(&name.replace('-', "_"), value).map_err(|e| CliError(format!("--{name}: {e}")))?;
    }
    let cfg = settings.to_config().map_err(CliError)?;
    let backend = backend(flags)?;
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
    if let Some(dir) = flags.get("save") {
        sae_files::save_dir(&trainer.to_sae(), Path::new(dir))?;
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

/// The tokens to run: `--tokens T.npy` (1-D int32/int64) or `--text` through the model folder's
/// `tokenizer.json`.
fn model_tokens(flags: &Flags, dir: &Path, model: &crate::model::Gpt2) -> Result<Vec<u32>, CliError> {
    model_tokens_from(flags, "tokens", dir, model)
}

/// As `model_tokens`, with the `.npy` path in `--{npy_flag}`.
fn model_tokens_from(flags: &Flags, npy_flag: &str, dir: &Path, model: &crate::model::Gpt2) -> Result<Vec<u32>, CliError> {
    use crate::formats::tokenizer::TextTokenizer;
    use crate::model::files::TOKENIZER_FILE;
    let tokens = match (flags.get(npy_flag), flags.get("text")) {
        (Some(path), None) => {
            let bytes = std::fs::read(path).map_err(|e| CliError(format!("{path}: {e}")))?;
            let (shape, ids) = npy::read_i64(path, &bytes)?;
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
        _ => return Err(CliError(format!("give one of --{npy_flag} T.npy or --text TEXT\n{USAGE}"))),
    };
    crate::model::check_tokens(&model.cfg, &tokens)?;
    Ok(tokens)
}

/// `saelab forward`: the logits and the requested hook points of a GPT-2 model for some tokens.
fn forward(flags: &Flags) -> Result<(), CliError> {
    use crate::model::files::load_model_dir;
    let dir = Path::new(flags.required("model")?);
    let model = load_model_dir(dir)?;
    let tokens = model_tokens(flags, dir, &model)?;
    let mut hooks: Vec<(HookPoint, PathBuf)> = Vec::new();
    for (name, value) in &flags.named {
        if name == "hook" {
            let (hook, path) = value.split_once('=').ok_or_else(|| CliError(format!("--hook {value}: expected NAME=OUT.npy")))?;
            let hook = model.cfg.hook_point(hook).map_err(|e| CliError(format!("--hook: {e}")))?;
            hooks.push((hook, PathBuf::from(path)));
        }
    }
    let names: Vec<HookPoint> = hooks.iter().map(|(n, _)| *n).collect();
    let backend = backend(flags)?;
    let vocab = model.cfg.vocab_size;
    let (logits, captured) = pollster::block_on(LoadedModel::new(Rc::new(model), &backend)?.run(&tokens, &names, &[]))?;
    let device_name = backend.name();
    let n = tokens.len();
    if let Some(path) = flags.get("logits") {
        write_npy(Path::new(path), n, vocab, Some(logits.clone()))?;
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

/// `saelab splice` (what the SAE's reconstruction error costs the model) and `saelab features`
/// (per token, the SAE's strongest features): a model with an SAE at its hook.
fn lm_command(command: &str, flags: &Flags) -> Result<(), CliError> {
    use crate::formats::tokenizer::TextTokenizer;
    use crate::lm;
    use crate::model::files::load_model_dir;
    let dir = Path::new(flags.required("model")?);
    let model = load_model_dir(dir)?;
    let sae = sae_files::load_dir(Path::new(flags.required("sae")?))?;
    let tokens = model_tokens(flags, dir, &model)?;
    lm::attach_point(&model, &sae)?;
    let backend = backend(flags)?;
    let (model, sae) = (LoadedModel::new(Rc::new(model), &backend)?, LoadedSae::new(Rc::new(sae), &backend)?);
    let run = pollster::block_on(lm::run_text(&model, &sae, &tokens))?;
    if command == "splice" {
        let report = pollster::block_on(lm::splice_from(&model, &tokens, &run, flags.number("seed", 0)?))?;
        println!("{}", serde_json::to_string(&report).map_err(|e| CliError(e.to_string()))?);
        return Ok(());
    }
    let top: usize = flags.number("top", 5)?;
    // One forward pass and one SAE run serve both the per-token lists and `--feature`.
    let acts = run.sae_acts;
    let per_token = lm::top_features(&acts, sae.d_sae(), top);
    let tokenizer = std::fs::read(dir.join(crate::model::files::TOKENIZER_FILE)).ok().and_then(|bytes| TextTokenizer::parse(&bytes).ok());
    let texts = tokenizer.as_ref().map(|t| t.token_texts(&tokens));
    let rows: Vec<serde_json::Value> = per_token
        .iter()
        .enumerate()
        .map(|(i, features)| {
            serde_json::json!({
                "position": i, "token": tokens[i], "text": texts.as_ref().map(|t| t[i].clone()),
                "features": features.iter().map(|&(f, a)| serde_json::json!({"feature": f, "activation": a})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut out = serde_json::json!({ "hook": sae.cfg.hook_name, "device": backend.name(), "tokens": rows });
    if let Some(f) = flags.get("feature") {
        // One feature in detail: its activation on every token and its logit-lens tokens.
        let feature: usize = f.parse().map_err(|_| CliError(format!("--feature: '{f}' is not a feature index")))?;
        let (top_tokens, bottom_tokens) = lm::logit_lens(&model, &sae, feature, top)?;
        let on_tokens: Vec<f32> = acts.chunks_exact(sae.d_sae()).map(|row| row[feature]).collect();
        let named = |list: &[(u32, f32)]| {
            list.iter()
                .map(|&(t, e)| serde_json::json!({"token": t, "text": tokenizer.as_ref().and_then(|tk| tk.token_texts(&[t]).pop()), "effect": e}))
                .collect::<Vec<_>>()
        };
        out["feature"] = serde_json::json!({
            "index": feature, "activations": on_tokens,
            "logit_lens": {"top": named(&top_tokens), "bottom": named(&bottom_tokens), "note": "W_dec[f]·W_U with ln_final's scale folded into W_U, centred over the vocabulary"},
        });
    }
    println!("{out}");
    Ok(())
}

/// `saelab generate`: a continuation, and with a steering feature the steered one beside it.
fn generate(flags: &Flags) -> Result<(), CliError> {
    use crate::formats::tokenizer::TextTokenizer;
    use crate::lm::{self, Sampling, Steer};
    use crate::model::files::{load_model_dir, TOKENIZER_FILE};
    let dir = Path::new(flags.required("model")?);
    let model = load_model_dir(dir)?;
    let prompt = model_tokens_from(flags, "prompt-tokens", dir, &model)?;
    let sampling = Sampling {
        new_tokens: flags.number("tokens", 20)?,
        temperature: flags.number("temperature", 0.0)?,
        seed: flags.number("seed", 0)?,
    };
    if !(sampling.temperature >= 0.0 && sampling.temperature.is_finite()) {
        return Err(CliError(format!("--temperature must be ≥ 0, not {}", sampling.temperature)));
    }
    let parse_pair = |name: &str| -> Result<Option<(usize, f32)>, CliError> {
        flags
            .get(name)
            .map(|v| {
                let bad = || CliError(format!("--{name} {v}: expected FEATURE=NUMBER"));
                let (f, a) = v.split_once('=').ok_or_else(bad)?;
                let value: f32 = a.parse().map_err(|_| bad())?;
                if !value.is_finite() {
                    return Err(bad());
                }
                Ok((f.parse().map_err(|_| bad())?, value))
            })
            .transpose()
    };
    let steer = match (parse_pair("steer")?, parse_pair("clamp")?) {
        (Some((feature, alpha)), None) => Some(Steer::Add { feature, alpha }),
        (None, Some((feature, value))) => Some(Steer::Clamp { feature, value }),
        (None, None) => None,
        (Some(_), Some(_)) => return Err(CliError("give --steer or --clamp, not both".into())),
    };
    let sae = match flags.get("sae") {
        Some(p) => Some(sae_files::load_dir(Path::new(p))?),
        None if steer.is_some() => return Err(CliError("--steer and --clamp need --sae DIR".into())),
        None => None,
    };
    let backend = backend(flags)?;
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
fn train_on_model(flags: &Flags) -> Result<(), CliError> {
    use crate::model::files::load_model_dir;
    use crate::train::checkpoint::Checkpoint;
    use crate::train::lm_train::LmTrainer;

    let dir = Path::new(flags.required("model")?);
    let save = PathBuf::from(flags.required("save")?);
    let model = load_model_dir(dir)?;
    let (tokenizer, corpus) = corpus_tokens(flags, dir)?;
    let bos = tokenizer.special_id("<|endoftext|>");
    let backend = backend(flags)?;
    let start = Instant::now();

    let (mut trainer, eval_every) = match flags.get("resume") {
        // The run's settings are the checkpoint's; a flag that would change them is refused.
        Some(path) => {
            if let Some(flag) =
                ["hook", "arch", "k", "l1", "l0", "bandwidth", "dict", "tokens", "batch", "lr", "seed", "context", "buffer", "dead-after"]
                    .into_iter()
                    .find(|f| flags.get(f).is_some())
            {
                return Err(CliError(format!("--{flag}: a resumed run keeps the settings it was saved with")));
            }
            let bytes = std::fs::read(path).map_err(|e| FormatError::Io { file: path.to_string(), msg: e.to_string() })?;
            let checkpoint = Checkpoint::parse(path, &bytes)?;
            let saved_every = checkpoint.header.extra.get("eval_every").and_then(|v| v.as_u64()).unwrap_or(1) as usize;
            let trainer =
                LmTrainer::resume(&model, &corpus, bos, checkpoint, &backend).map_err(|e| CliError(format!("--resume {path}: {e}")))?;
            (trainer, flags.number::<usize>("eval-every", saved_every)?.max(1))
        }
        None => new_model_trainer(flags, &model, dir, &backend, &corpus, bos)?,
    };
    let model = LoadedModel::new(Rc::new(model), &backend)?;
    let (steps, batch) = (trainer.training.cfg.steps, trainer.training.cfg.batch);
    let tokens = steps * batch;
    let checkpoint_to = flags.get("checkpoint").map(PathBuf::from);
    let checkpoint_every: usize = flags.number("checkpoint-every", eval_every)?.max(1);
    eprintln!(
        "{}",
        serde_json::json!({"corpus_tokens": corpus.len(), "rows_per_epoch": trainer.store.rows_per_epoch(), "held_out_contexts": trainer.store.held_out_contexts().len(), "steps": steps, "from_step": trainer.training.step, "device": backend.name()})
    );
    let mut last = None;
    let resumed_tokens = trainer.tokens_trained();
    // A time-boxed session trains this many steps, checkpoints, and stops (`--resume` goes on).
    let stop_at = match flags.get("stop-after") {
        Some(_) if checkpoint_to.is_none() => return Err(CliError("--stop-after needs --checkpoint FILE to go on from".into())),
        Some(_) => (trainer.training.step + flags.number::<usize>("stop-after", 0)?).min(steps),
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

/// A new run from `saelab train`'s flags, with its evaluation interval.
fn new_model_trainer(
    flags: &Flags,
    model: &crate::model::Gpt2,
    dir: &Path,
    backend: &Backend,
    corpus: &[u32],
    bos: Option<u32>,
) -> Result<(crate::train::lm_train::LmTrainer, usize), CliError> {
    use crate::train::lm_train::LmTrainer;
    use crate::train::policy::{TrainPlan, TrainSettings};

    let d = TrainSettings::default();
    let settings = TrainSettings {
        hook: flags.required("hook")?.to_string(),
        arch: flags.required("arch")?.to_string(),
        k: flags.number("k", d.k)?,
        l1: flags.number("l1", d.l1)?,
        l0: flags.number("l0", d.l0)?,
        bandwidth: flags.number("bandwidth", d.bandwidth)?,
        dict: flags.number("dict", d.dict)?,
        tokens: flags.number("tokens", d.tokens)?,
        batch: flags.number("batch", d.batch)?,
        lr: flags.number("lr", d.lr)?,
        seed: flags.number("seed", d.seed)?,
        context: flags.get("context").map(|_| flags.number("context", 0)).transpose()?,
        buffer_rows: flags.get("buffer").map(|_| flags.number("buffer", 0)).transpose()?,
        dead_after: flags.get("dead-after").map(|_| flags.number("dead-after", 0)).transpose()?,
        eval_every: flags.get("eval-every").map(|_| flags.number("eval-every", 0)).transpose()?,
    };
    // The policy names the setting; the CLI's flags carry the same names.
    let TrainPlan { store, train, eval_every } = settings.plan(&model.cfg).map_err(|e| CliError(format!("--{e}")))?;
    let model_name = dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
    // The first batch (b_dec's initialisation) is harvested where the model will run.
    let loaded = LoadedModel::new(Rc::new(model.clone()), backend)?;
    let trainer = pollster::block_on(LmTrainer::new(&loaded, &model_name, corpus, bos, store, train, backend)).map_err(CliError)?;
    Ok((trainer, eval_every))
}

/// The toy model of superposition (Elhage et al. 2022): how many features the hidden dimensions hold.
fn superposition(flags: &Flags) -> Result<(), CliError> {
    use crate::train::superposition::{train, SuperpositionConfig};
    let cfg = SuperpositionConfig {
        features: flags.number("features", 5)?,
        dims: flags.number("dims", 2)?,
        sparsity: flags.number("sparsity", 0.9)?,
        importance_decay: flags.number("importance-decay", 0.9)?,
        batch: flags.number("batch", 256)?,
        steps: flags.number("steps", 3000)?,
        lr: flags.number("lr", 0.01)?,
        seed: flags.number("seed", 1)?,
    };
    let result = train(&cfg).map_err(CliError)?;
    let mut json = serde_json::to_value(&result).map_err(|e| CliError(e.to_string()))?;
    if let serde_json::Value::Object(map) = &mut json {
        map.remove("directions");
    }
    println!("{json}");
    Ok(())
}
