//! The benchmarks: `saelab bench` (the SAE workloads with the host's ceilings and the PyTorch
//! peer), `bench-model` (a model's forward) and `bench-train` (harvest and training on a model).
//! Figures are printed as JSON lines; nothing here asserts a speed.

use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;

use super::args::{BenchArgs, BenchModelArgs, BenchTrainArgs};
use super::{bench_devices, corpus_tokens, dtype_flag, open_gpu, CliError};
use crate::backend::Backend;
use crate::bench::{cpu_copy_ceiling, cpu_fma_ceiling, median_seconds, Ceiling, Timing};
use crate::engine::{self, LoadedSae};
use crate::gpu::RunRequest;
use crate::lm::LoadedModel;

/// One workload of `saelab bench`: its name (the key the PyTorch peer reports under too), the
/// flops and compulsory bytes (weights read once, inputs read, outputs written) per row.
struct Workload {
    name: &'static str,
    what: &'static str,
    flops_per_row: f64,
    bytes_per_row: f64,
    fixed_bytes: f64,
}

impl Workload {
    /// The JSON line for a timing of `rows` rows on `device`, with the fraction of the host's
    /// ceilings (the device's own, measured in this run).
    fn line(&self, device: &str, kernels: Option<String>, rows: usize, t: &Timing, ceilings: Option<&[Ceiling; 2]>) -> serde_json::Value {
        let gflops = self.flops_per_row * rows as f64 / t.median / 1e9;
        let gbs = (self.fixed_bytes + self.bytes_per_row * rows as f64) / t.median / 1e9;
        serde_json::json!({
            "workload": self.name, "device": device, "kernels": kernels, "rows": rows, "seconds": t.median, "min_seconds": t.min,
            "repeats": t.runs, "rows_per_s": rows as f64 / t.median, "gflop_per_s": gflops, "gb_per_s": gbs,
            "of_fma_ceiling": ceilings.map(|c| gflops / c[0].value), "of_copy_ceiling": ceilings.map(|c| gbs / c[1].value),
            "note": self.what,
        })
    }
}

/// `saelab bench`: on random data, dense encode + decode (standard SAE), encode → TopK → sparse
/// decode, and one TopK training step (AuxK over latents that did not fire in the previous step,
/// Adam), each the median of `--repeats` after a warm-up, on the GPU and/or the CPU backend; the
/// CPU's FMA and copy ceilings; and, beside the CPU backend, SAELens on PyTorch's CPU doing the
/// same (`tools/bench_torch_cpu.py`), with each ratio.
pub(super) fn bench(a: &BenchArgs) -> Result<(), CliError> {
    let BenchArgs { n, d_in, d_sae, k, cpu_rows, train_batch, repeats, .. } = *a;
    if [n, d_in, d_sae, k, cpu_rows, train_batch, repeats].contains(&0) || k > d_sae {
        return Err(CliError(
            "--n, --d-in, --d-sae, --k, --cpu-rows, --train-batch and --repeats must be at least 1, and --k at most --d-sae".into(),
        ));
    }
    let (on_cpu, on_gpu) = bench_devices(&a.device)?;
    let peer = match a.peer.as_str() {
        "auto" => on_cpu,
        "none" => false,
        other => return Err(CliError(format!("--peer must be auto or none, not '{other}'"))),
    };
    let mut rng = crate::random::Rng::new(7);
    let x: Vec<f32> = (0..n.max(train_batch) * d_in).map(|_| rng.normal()).collect();
    let gpu = if on_gpu { Some(open_gpu()?) } else { None };
    let gpu_ceilings = match gpu.as_ref().and_then(Backend::gpu) {
        Some(device) => Some(pollster::block_on(crate::bench::gpu_ceilings(device))?),
        None => None,
    };
    let cpu_ceilings = on_cpu.then(|| [cpu_fma_ceiling(300), cpu_copy_ceiling(256, 3)]);
    for (device, ceilings) in [(gpu.as_ref().map(Backend::name), &gpu_ceilings), (Some(Backend::Cpu.name()), &cpu_ceilings)] {
        for (c, unit) in ceilings.iter().flatten().zip(["gflop_per_s", "gb_per_s"]) {
            println!("{}", serde_json::json!({"ceiling": c.what, "device": device, unit: c.value}));
        }
    }
    let (dm, f32_bytes) = ((d_in * d_sae) as f64, 4.0);
    let workloads = [
        Workload {
            name: "sae-standard",
            what: "standard SAE encode + dense decode + metrics; wall time incl. upload of x and read-back of metrics on a GPU",
            flops_per_row: 4.0 * dm,
            bytes_per_row: 2.0 * f32_bytes * d_in as f64,
            fixed_bytes: 2.0 * f32_bytes * dm,
        },
        Workload {
            name: "sae-topk",
            what: "TopK SAE encode → top k → sparse decode + metrics; wall time incl. upload and read-back on a GPU",
            flops_per_row: 2.0 * dm + 2.0 * (k * d_in) as f64,
            bytes_per_row: 2.0 * f32_bytes * d_in as f64,
            fixed_bytes: f32_bytes * dm,
        },
        Workload {
            name: "train-topk",
            what: "one TopK training step (forward, AuxK, backward, Adam, unit decoder rows); flops counted: the three dense products, 6·d_in·d_sae a row; bytes: parameters, gradients and Adam's moments once each",
            flops_per_row: 6.0 * dm + 2.0 * (k * d_in) as f64,
            bytes_per_row: f32_bytes * d_in as f64,
            fixed_bytes: 7.0 * 2.0 * f32_bytes * dm,
        },
    ];
    let mut ours = Vec::new();
    let mut devices: Vec<(Backend, usize, usize)> = Vec::new();
    if let Some(gpu) = gpu {
        devices.push((gpu, n, train_batch));
    }
    if on_cpu {
        devices.push((Backend::Cpu, cpu_rows.min(n), cpu_rows.min(train_batch)));
    }
    for (backend, rows, batch) in &devices {
        let on_cpu = backend.gpu().is_none();
        let ceilings = if on_cpu { cpu_ceilings.as_ref() } else { gpu_ceilings.as_ref() };
        for (w, arch) in workloads[..2].iter().zip(["standard", "topk"]) {
            let sae = LoadedSae::new(Rc::new(crate::sae::random::random_sae(arch, d_in, d_sae, k, 11)), backend)?;
            let rows_x = &x[..rows * d_in];
            let t = median_seconds(repeats, || pollster::block_on(engine::analyze(&sae, rows_x, RunRequest::default())).map(|_| ()))?;
            let line = w.line(&backend.name(), backend.kernel_choices(), *rows, &t, ceilings);
            println!("{line}");
            ours.push((on_cpu, line));
        }
        let (t, dead) = time_training_step(backend, &x[..batch * d_in], d_in, d_sae, k, repeats)?;
        let mut line = workloads[2].line(&backend.name(), backend.kernel_choices(), *batch, &t, ceilings);
        line["dead_fraction"] = dead.into();
        println!("{line}");
        ours.push((on_cpu, line));
    }
    if peer {
        let peer_lines = pytorch_peer(a, cpu_rows.min(n), cpu_rows.min(train_batch))?;
        for line in &peer_lines {
            println!("{line}");
        }
        for (_, mine) in ours.iter().filter(|(cpu, _)| *cpu) {
            if let Some(theirs) = peer_lines.iter().find(|p| p["workload"] == mine["workload"]) {
                let ratio = mine["rows_per_s"].as_f64().unwrap_or(0.0) / theirs["rows_per_s"].as_f64().unwrap_or(f64::NAN);
                println!(
                    "{}",
                    serde_json::json!({"ratio": format!("{} / {}", mine["device"].as_str().unwrap_or("?"), theirs["device"].as_str().unwrap_or("?")),
                        "workload": mine["workload"], "value": ratio, "note": "rows per second, same sizes, same machine, this run"})
                );
            }
        }
    }
    Ok(())
}

/// The median time of one TopK training step on `backend` (batch `x`), after a warm-up step;
/// latents that did not fire in the previous step count as dead, so AuxK runs (the peer uses
/// SAELens's `dead_feature_window = 0`, the same rule). Also the dead fraction at the end.
fn time_training_step(
    backend: &Backend,
    x: &[f32],
    d_in: usize,
    d_sae: usize,
    k: usize,
    repeats: usize,
) -> Result<(Timing, f32), CliError> {
    use crate::train::sae_train::TrainArch;
    use crate::train::trainer::{SaeTrainer, TrainConfig};
    let batch = x.len() / d_in;
    let mut cfg = TrainConfig::new(TrainArch::TopK { k }, d_sae, batch, repeats + 1, 0);
    cfg.dead_after_steps = 1;
    let mut trainer = SaeTrainer::new(cfg, d_in, x, backend).map_err(CliError)?;
    let t = median_seconds(repeats, || {
        pollster::block_on(async {
            trainer.step(x, Vec::new).await?;
            trainer.sync().await
        })
        .map_err(CliError)
    })?;
    Ok((t, trainer.dead_fraction()))
}

/// The Python the PyTorch peer runs on: `--python`, else `$SAELAB_PYTHON`, else this checkout's
/// `.venv`, else `python3` on the PATH.
fn peer_python(a: &BenchArgs) -> PathBuf {
    if let Some(p) = &a.python {
        return p.clone();
    }
    if let Some(p) = std::env::var_os("SAELAB_PYTHON") {
        return p.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

/// Runs `tools/bench_torch_cpu.py` at the CPU's sizes and returns its JSON lines. When Python or
/// its packages are not there, one line says so (the ratios are then missing, never guessed).
fn pytorch_peer(a: &BenchArgs, rows: usize, batch: usize) -> Result<Vec<serde_json::Value>, CliError> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/bench_torch_cpu.py");
    let python = peer_python(a);
    let skipped = |why: String| Ok(vec![serde_json::json!({"peer": "pytorch cpu", "skipped": why})]);
    if !script.exists() {
        return skipped(format!("{} is not there (the peer runs from a checkout)", script.display()));
    }
    let sizes = [("--n", rows), ("--train-batch", batch), ("--d-in", a.d_in), ("--d-sae", a.d_sae), ("--k", a.k), ("--repeats", a.repeats)];
    let mut command = std::process::Command::new(&python);
    command.arg(&script);
    for (flag, value) in sizes {
        command.arg(flag).arg(value.to_string());
    }
    let output = match command.output() {
        Ok(o) => o,
        Err(e) => return skipped(format!("{}: {e}", python.display())),
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
        return skipped(format!("{} {} failed: {last}", python.display(), script.display()));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut lines = Vec::new();
    for line in stdout.lines().filter(|l| l.starts_with('{')) {
        let mut value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| CliError(format!("{}: a line that is not JSON ({e}): {line}", script.display())))?;
        value["peer"] = "pytorch cpu".into();
        lines.push(value);
    }
    Ok(lines)
}

/// Forward-pass throughput of a model of a named shape with random weights (optionally fewer
/// layers), CPU reference and GPU, one JSON line per (device, input length).
pub(super) fn bench_model(a: &BenchModelArgs) -> Result<(), CliError> {
    let lengths: Vec<usize> = a
        .tokens
        .split(',')
        .map(|t| t.trim().parse().map_err(|_| CliError(format!("--tokens: '{t}' is not a number"))))
        .collect::<Result<_, _>>()?;
    let (on_cpu, on_gpu) = bench_devices(&a.device)?;
    let model = bench_model_of_shape(&a.shape, a.layers, &a.dtype)?;
    let cfg = model.cfg.clone();
    let label = format!("{} shape, {} layers, random {} weights", a.shape, cfg.n_layers, a.dtype);
    let gpu_bytes = std::cell::Cell::new(None);
    let kernels = std::cell::RefCell::new(None);
    let report = |device: &str, n: usize, seconds: f64, note: &str| {
        let kernels = if device.starts_with("cpu") { None } else { kernels.borrow().clone() };
        println!(
            "{}",
            serde_json::json!({
                "model": label, "device": device, "kernels": kernels, "tokens": n, "seconds": seconds, "tokens_per_s": n as f64 / seconds,
                "gpu_weight_bytes": if device.starts_with("cpu") { None } else { gpu_bytes.get() }, "note": note,
            })
        );
    };
    let tokens_of = |n: usize| (0..n as u32).map(|i| (i * 7919) % cfg.vocab_size as u32).collect::<Vec<u32>>();
    if on_gpu {
        let gpu = open_gpu()?;
        let Backend::Gpu(device) = &gpu else { unreachable!("open_gpu opens a GPU") };
        *kernels.borrow_mut() = gpu.kernel_choices();
        let uploaded = crate::gpu::model_runner::GpuModel::upload(device, &model)?;
        gpu_bytes.set(Some(uploaded.weight_bytes()));
        drop(uploaded);
        let on_gpu = LoadedModel::new(Rc::new(model.clone()), &gpu)?;
        pollster::block_on(on_gpu.run(&tokens_of(2), &[], &[]))?; // compile pipelines
        for &n in &lengths {
            let start = Instant::now();
            pollster::block_on(on_gpu.run(&tokens_of(n), &[], &[]))?;
            report(&gpu.name(), n, start.elapsed().as_secs_f64(), "wall time incl. token upload and reading back all logits");
        }
    }
    if on_cpu {
        for &n in &lengths {
            let start = Instant::now();
            crate::model::cpu::forward(&model, &tokens_of(n), &mut |_, _, _| {})?;
            report(&Backend::Cpu.name(), n, start.elapsed().as_secs_f64(), "logits for every position");
        }
    }
    Ok(())
}

/// A random model of a named shape: the shape's `config.json` (as its Hub repository has it,
/// read by `families::describe`), optionally fewer layers, weights rounded to `dtype`.
fn bench_model_of_shape(shape: &str, layers: Option<usize>, dtype: &str) -> Result<crate::model::Model, CliError> {
    let mut config = match shape {
        "gpt2-small" => crate::model::families::gpt2::config_json(50257, 1024, 768, 12, 12, true),
        "gemma-2-2b" => serde_json::json!({
            "model_type": "gemma2", "vocab_size": 256000, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
            "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "query_pre_attn_scalar": 256, "sliding_window": 4096,
            "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0, "hidden_activation": "gelu_pytorch_tanh",
            "max_position_embeddings": 8192, "rope_theta": 10000.0, "rms_norm_eps": 1e-6,
        }),
        "gemma-3-1b" => serde_json::json!({
            "model_type": "gemma3_text", "vocab_size": 262144, "hidden_size": 1152, "intermediate_size": 6912, "num_hidden_layers": 26,
            "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256, "query_pre_attn_scalar": 256, "sliding_window": 512,
            "sliding_window_pattern": 6, "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "max_position_embeddings": 32768,
            "hidden_activation": "gelu_pytorch_tanh", "rms_norm_eps": 1e-6,
        }),
        other => return Err(CliError(format!("--shape '{other}' is not one of gpt2-small, gemma-2-2b, gemma-3-1b"))),
    };
    if let Some(n) = layers {
        config[if shape == "gpt2-small" { "n_layer" } else { "num_hidden_layers" }] = n.into();
    }
    let dtype = dtype_flag(dtype)?;
    let cfg = crate::model::families::describe(config.to_string().as_bytes()).map_err(|e| CliError(format!("--layers: {e}")))?;
    let weights = crate::model::decoder_weights::DecoderWeights::random(&cfg, 3).in_precision(dtype);
    Ok(crate::model::Model { cfg, weights })
}

/// `saelab bench-train`: activation harvesting and SAE training throughput, each on its own, on
/// the CPU reference and the GPU: harvest = the model's blocks up to the hook over `--contexts`
/// contexts of `--context` tokens; train = `--steps` training steps on batches already harvested.
pub(super) fn bench_train(a: &BenchTrainArgs) -> Result<(), CliError> {
    use crate::model::files::load_model_dir;
    use crate::train::sae_train::TrainArch;
    use crate::train::trainer::{SaeTrainer, TrainConfig};
    let dir = a.source.model.as_path();
    let model = load_model_dir(dir)?;
    let hook = model.cfg.hook_point(&a.hook).map_err(|e| CliError(format!("--hook: {e}")))?;
    let (_, corpus) = corpus_tokens(&a.source.corpus, dir)?;
    let BenchTrainArgs { context, contexts, dict, k, batch, steps, .. } = *a;
    let windows: Vec<&[u32]> = corpus.chunks_exact(context).take(contexts).collect();
    if windows.len() < contexts {
        return Err(CliError(format!("--corpus holds fewer than {contexts} contexts of {context} tokens")));
    }
    let (on_cpu, on_gpu) = bench_devices(&a.device)?;
    let mut backends: Vec<(String, Backend)> = Vec::new();
    if on_gpu {
        let gpu = open_gpu()?;
        backends.push((gpu.name(), gpu));
    }
    if on_cpu {
        backends.push((Backend::Cpu.name(), Backend::Cpu));
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
                "device": name, "kernels": backend.kernel_choices(), "model": dir.display().to_string(), "hook": hook, "context": context,
                "harvest_tokens_per_s": harvest, "sae": format!("topk k={k}, {d}×{dict}, batch {batch}"), "train_tokens_per_s": train,
            })
        );
    }
    Ok(())
}
