//! Training an SAE on the loaded model's activations in the page: the same `LmTrainer` as `saelab
//! train` (activation store, the lab's training step on WebGPU or the CPU reference, held-out
//! evaluation), run a few steps per frame with a progress bar, tokens/s, ETA and live L0 / FVU /
//! dead fraction / CE loss recovered; Pause and Resume; the result exported in SAELens format or
//! opened in the language-model view.
//!
//! The corpus is the bundled held-out text or a text file the user chooses.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::{web, Engine};
use crate::formats::corpus::parse_corpus;
use crate::formats::sae_files::serialize_sae;
use crate::lm::LmBackend;
use crate::model::Gpt2;
use crate::formats::tokenizer::TextTokenizer;
use crate::gpu::model_runner::GpuGpt2;
use crate::gpu::Gpu;
use crate::train::activations::StoreConfig;
use crate::train::lm_train::{LmEval, LmTrainer};
use crate::train::sae_train::TrainArch;
use crate::train::trainer::TrainConfig;

/// What the panel needs of the language-model view: the loaded model (with its tokenizer, name
/// and GPU copy), and a way to open a trained SAE there.
pub struct ModelSource {
    pub model: Box<dyn Fn() -> Option<(Rc<(Gpt2, TextTokenizer, String)>, Option<Rc<GpuGpt2>>)>>,
    pub open_sae: Box<dyn Fn(Vec<u8>, Vec<u8>)>,
}

/// Training as shown.
#[derive(Clone, Debug, Default, PartialEq)]
struct Shown {
    running: bool,
    paused: bool,
    tokens_done: u64,
    tokens_total: u64,
    tokens_per_s: f64,
    evals: Vec<LmEval>,
    status: String,
    error: Option<String>,
    trained: bool,
}

struct Run {
    trainer: Option<LmTrainer>,
    model: Rc<(Gpt2, TextTokenizer, String)>,
    gpu_model: Option<Rc<GpuGpt2>>,
    steps: usize,
    eval_every: usize,
    /// Milliseconds spent stepping (not paused), for tokens/s.
    busy_ms: f64,
}

/// Settings as typed.
#[derive(Clone)]
struct Settings {
    hook: String,
    arch: String,
    k: String,
    dict: String,
    tokens: String,
    batch: String,
    lr: String,
}

fn parse_settings(s: &Settings, model: &Gpt2) -> Result<(StoreConfig, TrainConfig, usize), String> {
    let num = |name: &str, v: &str| v.trim().parse::<f64>().map_err(|_| format!("{name}: '{v}' is not a number"));
    let (k, dict, tokens, batch, lr) = (num("k", &s.k)? as usize, num("dict", &s.dict)? as usize, num("tokens", &s.tokens)? as usize, num("batch", &s.batch)? as usize, num("lr", &s.lr)? as f32);
    let arch = TrainArch::from_name(&s.arch, k, 5.0, 1e-3, 0.05)?;
    if batch == 0 || tokens < batch {
        return Err(format!("tokens must be at least one batch ({batch})"));
    }
    if dict > 65_536 || batch > 8192 {
        return Err("the page trains dictionaries of at most 65,536 latents with batches of at most 8192".into());
    }
    let steps = tokens / batch;
    let mut train = TrainConfig::new(arch, dict, batch, steps, 1);
    train.lr = lr;
    train.lr_warmup_steps = steps / 20;
    train.dead_after_steps = (10_000_000 / batch).clamp(50, 5000);
    train.validate()?;
    let store = StoreConfig { hook: s.hook.trim().to_string(), context: model.cfg.n_positions.min(128), buffer_rows: (batch * 4).max(1024), hold_out_every: 20, seed: 1 };
    // About four evaluations per run: each splices a held-out context (four forward passes).
    Ok((store, train, steps.div_ceil(4)))
}

#[component]
pub fn TrainPanel(engine: Rc<RefCell<Engine>>, source: Rc<ModelSource>) -> impl IntoView {
    let shown = RwSignal::new(Shown::default());
    let run: Rc<RefCell<Option<Run>>> = Rc::new(RefCell::new(None));
    let pause_requested = Rc::new(Cell::new(false));
    let corpus_file: Rc<RefCell<Option<web_sys::File>>> = Rc::new(RefCell::new(None));
    let hook = RwSignal::new("blocks.2.hook_resid_pre".to_string());
    let arch = RwSignal::new("topk".to_string());
    let k = RwSignal::new("16".to_string());
    let dict = RwSignal::new("512".to_string());
    let tokens = RwSignal::new("65536".to_string());
    let batch = RwSignal::new("512".to_string());
    let lr = RwSignal::new("0.001".to_string());

    let start = {
        let (engine, source, run, pause_requested, corpus_file) = (engine.clone(), source.clone(), run.clone(), pause_requested.clone(), corpus_file.clone());
        move |_| {
            if shown.with_untracked(|s| s.running) {
                return;
            }
            let settings = Settings { hook: hook.get_untracked(), arch: arch.get_untracked(), k: k.get_untracked(), dict: dict.get_untracked(), tokens: tokens.get_untracked(), batch: batch.get_untracked(), lr: lr.get_untracked() };
            let (engine, source, run, pause_requested, file) = (engine.clone(), source.clone(), run.clone(), pause_requested.clone(), corpus_file.borrow().clone());
            spawn_local(async move {
                if let Err(e) = begin(&engine, &source, &run, shown, settings, file).await {
                    return shown.update(|s| {
                        s.error = Some(e);
                        s.running = false;
                    });
                }
                pause_requested.set(false);
                drive(engine, run, shown, pause_requested).await;
            });
        }
    };
    let pause = {
        let pause_requested = pause_requested.clone();
        move |_| pause_requested.set(true)
    };
    let resume = {
        let (engine, run, pause_requested) = (engine.clone(), run.clone(), pause_requested.clone());
        move |_| {
            if !shown.with_untracked(|s| s.paused) {
                return;
            }
            pause_requested.set(false);
            let (engine, run, pause_requested) = (engine.clone(), run.clone(), pause_requested.clone());
            spawn_local(async move { drive(engine, run, shown, pause_requested).await });
        }
    };
    let export = {
        let run = run.clone();
        move |_| match trained_files(&run) {
            Ok((cfg, weights)) => {
                let outcome = web::download("cfg.json", &cfg, "application/json").and_then(|_| web::download("sae_weights.safetensors", &weights, "application/octet-stream"));
                shown.update(|s| s.error = outcome.err());
            }
            Err(e) => shown.update(|s| s.error = Some(e)),
        }
    };
    let open = {
        let (run, source) = (run.clone(), source.clone());
        move |_| match trained_files(&run) {
            Ok((cfg, weights)) => (source.open_sae)(cfg, weights),
            Err(e) => shown.update(|s| s.error = Some(e)),
        }
    };
    let on_corpus = {
        let corpus_file = corpus_file.clone();
        move |ev: leptos::ev::Event| {
            *corpus_file.borrow_mut() = web::files_of(&ev).into_iter().next();
        }
    };
    let field = |id: &'static str, label: &'static str, value: RwSignal<String>| {
        view! { <label class="field"><span>{label}</span><input id=id prop:value=move || value.get() on:change=move |ev| value.set(event_target_value(&ev)) /></label> }
    };

    view! {
        <div class="panel lm-train">
            <h2>"Train an SAE on this model"</h2>
            <div class="fields">
                {field("tr-hook", "hook", hook)}
                <label class="field"><span>"architecture"</span>
                    <select id="tr-arch" on:change=move |ev| arch.set(event_target_value(&ev))>
                        {["topk", "batchtopk", "jumprelu", "standard", "gated"].into_iter().map(|a| view! { <option value=a>{a}</option> }).collect_view()}
                    </select></label>
                {field("tr-k", "k", k)}
                {field("tr-dict", "latents", dict)}
                {field("tr-tokens", "training tokens", tokens)}
                {field("tr-batch", "batch", batch)}
                {field("tr-lr", "learning rate", lr)}
            </div>
            <label>"corpus: a text file (else the bundled held-out text) " <input id="tr-corpus" type="file" accept=".txt,text/plain" on:change=on_corpus /></label>
            <div class="buttons">
                <button id="tr-start" on:click=start>"Train"</button>
                <button id="tr-pause" on:click=pause>"Pause"</button>
                <button id="tr-resume" on:click=resume>"Resume"</button>
                <button id="tr-export" on:click=export>"Export (SAELens)"</button>
                <button id="tr-open" on:click=open>"Open in the view above"</button>
            </div>
            <p>
                <progress id="tr-progress" max=move || shown.with(|s| s.tokens_total.max(1).to_string()) value=move || shown.with(|s| s.tokens_done.to_string())></progress>
                <span id="tr-rate">{move || shown.with(|s| {
                    let eta = if s.tokens_per_s > 0.0 { (s.tokens_total.saturating_sub(s.tokens_done)) as f64 / s.tokens_per_s } else { 0.0 };
                    format!(" {} / {} tokens · {:.0} tokens/s · ETA {:.0} s", s.tokens_done, s.tokens_total, s.tokens_per_s, eta)
                })}</span>
            </p>
            <p id="tr-status" class="status">{move || shown.with(|s| s.status.clone())}</p>
            {move || shown.with(|s| s.error.clone()).map(|e| view! { <p id="tr-error" class="error" role="alert">{e}</p> })}
            <table id="tr-evals" class="feature-list">
                <tr><th>"step"</th><th>"tokens"</th><th>"L0"</th><th>"FVU"</th><th>"dead"</th><th>"CE recovered"</th></tr>
                {move || shown.with(|s| s.evals.iter().map(|e| view! {
                    <tr><td>{e.step}</td><td>{e.tokens}</td><td>{format!("{:.2}", e.l0)}</td><td>{format!("{:.4}", e.fvu)}</td>
                        <td>{format!("{:.1}%", 100.0 * e.dead_fraction)}</td><td>{e.ce_recovered.map_or("–".to_string(), |c| format!("{c:.4}"))}</td></tr>
                }).collect_view())}
            </table>
        </div>
    }
}

/// The trained SAE's files, when there is one and it is not stepping right now.
fn trained_files(run: &Rc<RefCell<Option<Run>>>) -> Result<(Vec<u8>, Vec<u8>), String> {
    let run = run.borrow();
    let trainer = run.as_ref().and_then(|r| r.trainer.as_ref()).ok_or("train an SAE first (or pause the one training)")?;
    let (cfg, weights, _) = serialize_sae(&trainer.to_sae());
    Ok((cfg, weights))
}

/// Where the model runs for harvesting: WebGPU when the page has it and the model is there (the
/// SAE being trained lives in the trainer, not in the backend).
fn harvest_backend<'a>(gpu: &'a Option<Rc<Gpu>>, gpu_model: &'a Option<Rc<GpuGpt2>>) -> LmBackend<'a> {
    match (gpu, gpu_model) {
        (Some(g), Some(m)) => LmBackend::Gpu { gpu: g, model: m, sae: None },
        _ => LmBackend::Cpu,
    }
}

/// Sets up a run: the corpus read and tokenized, the store's first buffer harvested, the trainer on
/// the GPU when the page has one.
async fn begin(engine: &Rc<RefCell<Engine>>, source: &ModelSource, run: &Rc<RefCell<Option<Run>>>, shown: RwSignal<Shown>, settings: Settings, file: Option<web_sys::File>) -> Result<(), String> {
    let (model, gpu_model) = (source.model)().ok_or("load a model first")?;
    let (store_cfg, train_cfg, eval_every) = parse_settings(&settings, &model.0)?;
    model.0.cfg.check_hook(&store_cfg.hook).map_err(|e| format!("hook: {e}"))?;
    shown.update(|s| {
        *s = Shown { running: true, status: "Reading and tokenizing the corpus …".into(), ..Shown::default() };
    });
    web::yield_to_browser().await;
    let (name, bytes) = match &file {
        Some(f) => (f.name(), web::read_file(f).await?),
        None => ("heldout.txt (bundled)".to_string(), web::fetch_bytes("models/kjv-gpt2/heldout.txt").await?),
    };
    let text = parse_corpus(&name, &bytes).map_err(|e| e.to_string())?;
    let corpus = model.1.encode(&text).map_err(|e| e.to_string())?;
    let gpu = engine.borrow().gpu.clone();
    let backend = harvest_backend(&gpu, &gpu_model);
    shown.update(|s| s.status = format!("Harvesting the first activations from {name} ({} tokens) …", corpus.len()));
    web::yield_to_browser().await;
    let steps = train_cfg.steps;
    let tokens_total = (steps * train_cfg.batch) as u64;
    // The model's name as SAELens records it: the repository's last part ("gpt2" for
    // huggingface.co/gpt2 or openai-community/gpt2, "kjv-gpt2" for the bundled model).
    let model_name = model.2.trim_end_matches("/resolve/main").rsplit('/').next().unwrap_or(&model.2).to_string();
    let mut trainer = LmTrainer::new(&model.0, &model_name, &backend, &corpus, model.1.special_id("<|endoftext|>"), store_cfg, train_cfg).await?;
    (trainer.eval_rows, trainer.eval_contexts) = (256, 1);
    if let (Some(g), Some(_)) = (&gpu, &gpu_model) {
        trainer.training.use_gpu(g).map_err(|e| format!("{e} — try fewer latents or a smaller batch"))?;
    }
    let device = backend.name();
    drop(backend);
    *run.borrow_mut() = Some(Run { trainer: Some(trainer), model, gpu_model, steps, eval_every, busy_ms: 0.0 });
    shown.update(|s| {
        s.tokens_total = tokens_total;
        s.status = format!("Training on {device} …");
    });
    Ok(())
}

/// Steps until done or paused, a few per frame; evaluates every `eval_every` steps.
async fn drive(engine: Rc<RefCell<Engine>>, run: Rc<RefCell<Option<Run>>>, shown: RwSignal<Shown>, pause_requested: Rc<Cell<bool>>) {
    // The trainer is taken out while stepping, so no RefCell borrow is held across an await.
    let Some((mut trainer, model, gpu_model, steps, eval_every)) = run.borrow_mut().as_mut().and_then(|r| r.trainer.take().map(|t| (t, r.model.clone(), r.gpu_model.clone(), r.steps, r.eval_every))) else {
        return;
    };
    shown.update(|s| {
        s.running = true;
        s.paused = false;
        s.error = None;
    });
    let gpu = engine.borrow().gpu.clone();
    let on_gpu = trainer.training.on_gpu();
    let backend = harvest_backend(&gpu, &gpu_model);
    let gpu_for_steps = if on_gpu { gpu.as_deref() } else { None };
    let mut outcome: Result<(), String> = Ok(());
    while trainer.training.step < steps && !pause_requested.get() {
        let frame = web::now_ms();
        while trainer.training.step < steps && web::now_ms() - frame < 30.0 {
            if let Err(e) = trainer.step(&model.0, &backend, gpu_for_steps).await {
                outcome = Err(e);
                break;
            }
            let step = trainer.training.step;
            if step % eval_every == 0 || step == steps {
                if let Some(g) = gpu_for_steps {
                    if let Err(e) = trainer.training.sync(g).await {
                        outcome = Err(e);
                        break;
                    }
                }
                match trainer.evaluate(&model.0, &backend, gpu_for_steps).await {
                    Ok(e) => shown.update(|s| s.evals.push(e)),
                    Err(e) => {
                        outcome = Err(e.to_string());
                        break;
                    }
                }
            }
        }
        let elapsed = web::now_ms() - frame;
        let busy = run.borrow_mut().as_mut().map_or(elapsed, |r| {
            r.busy_ms += elapsed;
            r.busy_ms
        });
        let done = trainer.tokens_trained();
        shown.update(|s| {
            s.tokens_done = done;
            s.tokens_per_s = done as f64 / (busy / 1e3).max(1e-3);
        });
        if outcome.is_err() {
            break;
        }
        web::yield_to_browser().await;
    }
    if let Some(g) = gpu_for_steps {
        if let Err(e) = trainer.training.sync(g).await {
            outcome = outcome.and(Err(e));
        }
    }
    let finished = trainer.training.step >= steps;
    let step = trainer.training.step;
    if let Some(r) = run.borrow_mut().as_mut() {
        r.trainer = Some(trainer);
    }
    shown.update(|s| {
        s.running = false;
        s.paused = !finished;
        s.trained = true;
        s.status = if finished { format!("Trained: {step} steps.") } else { format!("Paused at step {step} of {steps}.") };
        s.error = outcome.err();
    });
}
