//! Training an SAE on the loaded model's activations in the page: the same `LmTrainer` as `saelab
//! train` (activation store, the lab's training step on WebGPU or the CPU reference, held-out
//! evaluation), run a few steps per frame with a progress bar, tokens/s, ETA and live L0 / FVU /
//! dead fraction / CE loss recovered; Pause and Resume; the result exported in SAELens format or
//! opened in the language-model view.
//!
//! The corpus is the bundled held-out text or a text file the user chooses.
//!
//! The run is checkpointed into the page's IndexedDB (`train::checkpoint`: parameters, Adam's
//! moments, the activation store's place and buffer, the page's settings and evaluations) after
//! each evaluation, every `CHECKPOINT_EVERY_MS` of training, and when it pauses or ends; the corpus
//! goes with the run's first checkpoint, in the same transaction. After a reload the panel offers
//! the saved run, which resumes exactly where its checkpoint was taken. A checkpoint that cannot be
//! written (a full quota) is reported and training goes on; the SAE in memory is not touched.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::web;
use crate::formats::corpus::parse_corpus;
use crate::formats::tokenizer::TextTokenizer;
use crate::lm::LoadedModel;
use crate::sae::files::serialize_sae;
use crate::train::activations::StoreConfig;
use crate::train::checkpoint::{read_header, Checkpoint};
use crate::train::lm_train::{LmEval, LmTrainer};
use crate::train::trainer::TrainConfig;

/// A loaded model: on the page's backend, with its tokenizer and where it came from.
pub type ModelEntry = (LoadedModel, TextTokenizer, ModelOrigin);

/// Where the loaded model came from: what the page calls it (the address it was downloaded from,
/// or "files" / "dropped folder") and, for files, what their folder's name says they are.
pub struct ModelOrigin {
    pub label: String,
    pub folder: Option<crate::model::files::FolderName>,
}

/// What the panel needs of the language-model view: the loaded model (on the page's backend,
/// with its tokenizer and name), and a way to open a trained SAE there.
pub struct ModelSource {
    pub model: Box<dyn Fn() -> Option<Rc<ModelEntry>>>,
    pub open_sae: Box<dyn Fn(Vec<u8>, Vec<u8>)>,
}

/// IndexedDB keys of the saved run: its last checkpoint, and its corpus as UTF-8 text.
const CHECKPOINT_KEY: &str = "lm-train/checkpoint";
const CORPUS_KEY: &str = "lm-train/corpus";
/// Training time between two checkpoints (evaluations, Pause and the end checkpoint too).
const CHECKPOINT_EVERY_MS: f64 = 15_000.0;
/// A checkpoint is built in wasm memory (4 GiB at most) and copied to IndexedDB; larger runs
/// are not checkpointed in the page (the CLI's `--checkpoint` has no such limit).
const MAX_CHECKPOINT_BYTES: usize = 512 << 20;

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
    /// The last checkpoint's outcome: what was saved, or why it could not be.
    checkpoint: Option<Result<String, String>>,
    /// A run saved before this page was opened, described, while it can be resumed.
    saved: Option<String>,
}

struct Run {
    trainer: Option<LmTrainer>,
    /// The model the run harvests from; the SAE trains where it runs.
    model: Rc<ModelEntry>,
    steps: usize,
    eval_every: usize,
    /// Milliseconds spent stepping (not paused), for tokens/s.
    busy_ms: f64,
    /// `busy_ms` at the last checkpoint written.
    checkpointed_ms: f64,
    settings: Settings,
    corpus_name: String,
    /// The corpus's text until a checkpoint has stored it.
    unsaved_corpus: Option<Vec<u8>>,
}

/// What the page saves with a checkpoint besides the training state (`Checkpoint`'s `extra`).
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedExtra {
    settings: Settings,
    corpus_name: String,
    eval_every: usize,
    busy_ms: f64,
    evals: Vec<LmEval>,
}

/// Settings as typed (the page's form, parsed by `page::TrainForm::plan`).
type Settings = crate::page::TrainForm;

/// The form's settings through the one training policy, with the page's own limits.
fn parse_settings(s: &Settings, model: &LoadedModel) -> Result<(StoreConfig, TrainConfig, usize), String> {
    let plan = s.plan(&model.cfg)?;
    Ok((plan.store, plan.train, plan.eval_every))
}

/// The settings fields, as signals the form and a restored run share.
#[derive(Clone, Copy)]
struct Fields {
    hook: RwSignal<String>,
    arch: RwSignal<String>,
    k: RwSignal<String>,
    dict: RwSignal<String>,
    tokens: RwSignal<String>,
    batch: RwSignal<String>,
    lr: RwSignal<String>,
}

impl Fields {
    fn settings(&self) -> Settings {
        let get = |f: RwSignal<String>| f.get_untracked();
        Settings {
            hook: get(self.hook),
            arch: get(self.arch),
            k: get(self.k),
            dict: get(self.dict),
            tokens: get(self.tokens),
            batch: get(self.batch),
            lr: get(self.lr),
        }
    }

    fn show(&self, s: &Settings) {
        for (field, value) in [
            (self.hook, &s.hook),
            (self.arch, &s.arch),
            (self.k, &s.k),
            (self.dict, &s.dict),
            (self.tokens, &s.tokens),
            (self.batch, &s.batch),
            (self.lr, &s.lr),
        ] {
            field.set(value.clone());
        }
    }
}

#[component]
pub fn TrainPanel(source: Rc<ModelSource>) -> impl IntoView {
    let shown = RwSignal::new(Shown::default());
    let run: Rc<RefCell<Option<Run>>> = Rc::new(RefCell::new(None));
    let pause_requested = Rc::new(Cell::new(false));
    let corpus_file: Rc<RefCell<Option<web_sys::File>>> = Rc::new(RefCell::new(None));
    let text = |v: &str| RwSignal::new(v.to_string());
    let fields = Fields {
        hook: text("blocks.2.hook_resid_pre"),
        arch: text("topk"),
        k: text("16"),
        dict: text("512"),
        tokens: text("65536"),
        batch: text("512"),
        lr: text("0.001"),
    };
    let Fields { hook, arch, k, dict, tokens, batch, lr } = fields;
    spawn_local(async move { describe_saved_run(shown).await });

    let start = {
        let (source, run, pause_requested, corpus_file) = (source.clone(), run.clone(), pause_requested.clone(), corpus_file.clone());
        move |_| {
            if shown.with_untracked(|s| s.running) {
                return;
            }
            let settings = fields.settings();
            let (source, run, pause_requested, file) = (source.clone(), run.clone(), pause_requested.clone(), corpus_file.borrow().clone());
            spawn_local(async move {
                if let Err(e) = begin(&source, &run, shown, settings, file).await {
                    return shown.update(|s| {
                        s.error = Some(e);
                        s.running = false;
                    });
                }
                pause_requested.set(false);
                drive(run, shown, pause_requested).await;
            });
        }
    };
    let restore_saved = {
        let (source, run, pause_requested) = (source.clone(), run.clone(), pause_requested.clone());
        move |_| {
            if shown.with_untracked(|s| s.running) {
                return;
            }
            let (source, run, pause_requested) = (source.clone(), run.clone(), pause_requested.clone());
            spawn_local(async move {
                match restore(&source, &run, shown, fields).await {
                    Ok(true) => {
                        pause_requested.set(false);
                        drive(run, shown, pause_requested).await;
                    }
                    Ok(false) => {}
                    Err(e) => shown.update(|s| {
                        s.error = Some(e);
                        s.running = false;
                    }),
                }
            });
        }
    };
    let discard_saved = move |_| {
        spawn_local(async move {
            let outcome = web::storage_delete(&[CHECKPOINT_KEY, CORPUS_KEY]).await;
            shown.update(|s| match outcome {
                Ok(()) => s.saved = None,
                Err(e) => s.error = Some(format!("could not discard the saved run: {e}")),
            });
        })
    };
    let pause = {
        let pause_requested = pause_requested.clone();
        move |_| pause_requested.set(true)
    };
    let resume = {
        let (run, pause_requested) = (run.clone(), pause_requested.clone());
        move |_| {
            if !shown.with_untracked(|s| s.paused) {
                return;
            }
            pause_requested.set(false);
            let (run, pause_requested) = (run.clone(), pause_requested.clone());
            spawn_local(async move { drive(run, shown, pause_requested).await });
        }
    };
    let export = {
        let run = run.clone();
        move |_| match trained_files(&run) {
            Ok((cfg, weights)) => {
                let outcome = web::download("cfg.json", &cfg, "application/json")
                    .and_then(|_| web::download("sae_weights.safetensors", &weights, "application/octet-stream"));
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
                    <select id="tr-arch" prop:value=move || arch.get() on:change=move |ev| arch.set(event_target_value(&ev))>
                        {["topk", "batchtopk", "jumprelu", "standard", "gated"].into_iter().map(|a| view! { <option value=a>{a}</option> }).collect_view()}
                    </select></label>
                {field("tr-k", "k", k)}
                {field("tr-dict", "latents", dict)}
                {field("tr-tokens", "training tokens", tokens)}
                {field("tr-batch", "batch", batch)}
                {field("tr-lr", "learning rate", lr)}
            </div>
            <p id="tr-saved" class="notice" hidden=move || shown.with(|s| s.saved.is_none() || s.running)>
                {move || shown.with(|s| s.saved.clone().unwrap_or_default())}" "
                <button id="tr-restore" on:click=restore_saved>"Resume saved run"</button>
                <button id="tr-discard" on:click=discard_saved>"Discard it"</button>
            </p>
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
            {move || shown.with(|s| s.checkpoint.clone()).map(|c| {
                let (class, text) = match c {
                    Ok(saved) => ("status", saved),
                    Err(e) => ("error", e),
                };
                view! { <p id="tr-checkpoint" class=class>{text}</p> }
            })}
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

/// Sets up a run: the corpus read and tokenized, the store's first buffer harvested, the trainer on
/// the GPU when the page has one.
async fn begin(
    source: &ModelSource,
    run: &Rc<RefCell<Option<Run>>>,
    shown: RwSignal<Shown>,
    settings: Settings,
    file: Option<web_sys::File>,
) -> Result<(), String> {
    let model = (source.model)().ok_or("load a model first")?;
    let (store_cfg, train_cfg, eval_every) = parse_settings(&settings, &model.0)?;
    shown.update(|s| {
        // A run saved earlier stays on offer until this one's first checkpoint replaces it.
        *s = Shown { running: true, status: "Reading and tokenizing the corpus …".into(), saved: s.saved.take(), ..Shown::default() };
    });
    web::yield_to_browser().await;
    let (name, bytes) = match &file {
        Some(f) => (f.name(), web::read_file(f).await?),
        None => ("heldout.txt (bundled)".to_string(), web::fetch_bytes(super::bundled::BUNDLED_SAMPLE).await?),
    };
    let text = parse_corpus(&name, &bytes).map_err(|e| e.to_string())?;
    let corpus = model.1.encode(&text).map_err(|e| e.to_string())?;
    // The SAE trains where the model runs: WebGPU when the page has it.
    let backend = model.0.backend();
    shown.update(|s| s.status = format!("Harvesting the first activations from {name} ({} tokens) …", corpus.len()));
    web::yield_to_browser().await;
    let steps = train_cfg.steps;
    let tokens_total = (steps * train_cfg.batch) as u64;
    // The model's name as SAELens records it: the repository's last part ("gpt2" for
    // huggingface.co/gpt2 or openai-community/gpt2, "kjv-gpt2" for the bundled model).
    let label = &model.2.label;
    let model_name = label.trim_end_matches("/resolve/main").rsplit('/').next().unwrap_or(label).to_string();
    let mut trainer =
        LmTrainer::new(&model.0, &model_name, &corpus, model.0.cfg.special_tokens.bos_or_eos(), store_cfg, train_cfg, &backend).await?;
    (trainer.eval_rows, trainer.eval_contexts) = (256, 1);
    let device = backend.name();
    *run.borrow_mut() = Some(Run {
        trainer: Some(trainer),
        model,
        steps,
        eval_every,
        busy_ms: 0.0,
        checkpointed_ms: 0.0,
        settings,
        corpus_name: name,
        unsaved_corpus: Some(bytes),
    });
    shown.update(|s| {
        s.tokens_total = tokens_total;
        s.status = format!("Training on {device} …");
    });
    Ok(())
}

/// Steps until done or paused, a few per frame; evaluates every `eval_every` steps and
/// checkpoints after each evaluation, every `CHECKPOINT_EVERY_MS` of training and at the end.
async fn drive(run: Rc<RefCell<Option<Run>>>, shown: RwSignal<Shown>, pause_requested: Rc<Cell<bool>>) {
    // The trainer is taken out while stepping, so no RefCell borrow is held across an await.
    let Some((mut trainer, model, steps, eval_every)) =
        run.borrow_mut().as_mut().and_then(|r| r.trainer.take().map(|t| (t, r.model.clone(), r.steps, r.eval_every)))
    else {
        return;
    };
    shown.update(|s| {
        s.running = true;
        s.paused = false;
        s.error = None;
    });
    let mut outcome: Result<(), String> = Ok(());
    while trainer.training.step < steps && !pause_requested.get() {
        let frame = web::now_ms();
        let mut evaluated = false;
        while trainer.training.step < steps && web::now_ms() - frame < 30.0 {
            if let Err(e) = trainer.step(&model.0).await {
                outcome = Err(e);
                break;
            }
            let step = trainer.training.step;
            if step % eval_every == 0 || step == steps {
                if let Err(e) = trainer.training.sync().await {
                    outcome = Err(e);
                    break;
                }
                match trainer.evaluate(&model.0).await {
                    Ok(e) => shown.update(|s| s.evals.push(e)),
                    Err(e) => {
                        outcome = Err(e.to_string());
                        break;
                    }
                }
                evaluated = true;
            }
        }
        let elapsed = web::now_ms() - frame;
        let (busy, since_checkpoint) = run.borrow_mut().as_mut().map_or((elapsed, 0.0), |r| {
            r.busy_ms += elapsed;
            (r.busy_ms, r.busy_ms - r.checkpointed_ms)
        });
        let done = trainer.tokens_trained();
        shown.update(|s| {
            s.tokens_done = done;
            s.tokens_per_s = done as f64 / (busy / 1e3).max(1e-3);
        });
        if outcome.is_err() {
            break;
        }
        // The end (finished or paused) checkpoints below.
        let ending = trainer.training.step >= steps || pause_requested.get();
        if !ending && (evaluated || since_checkpoint >= CHECKPOINT_EVERY_MS) {
            save_checkpoint(&trainer, &run, shown).await;
        }
        web::yield_to_browser().await;
    }
    if let Err(e) = trainer.training.sync().await {
        outcome = outcome.and(Err(e));
    }
    // A run that failed keeps its last good checkpoint.
    if outcome.is_ok() {
        save_checkpoint(&trainer, &run, shown).await;
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

/// Writes the run's checkpoint (and, the first time, its corpus) to IndexedDB in one
/// transaction. A failure is shown and training goes on: the trainer in memory is untouched, and
/// the last checkpoint written stays as it was.
async fn save_checkpoint(trainer: &LmTrainer, run: &Rc<RefCell<Option<Run>>>, shown: RwSignal<Shown>) {
    let Some((extra, corpus)) = run.borrow().as_ref().map(|r| {
        let extra = SavedExtra {
            settings: r.settings.clone(),
            corpus_name: r.corpus_name.clone(),
            eval_every: r.eval_every,
            busy_ms: r.busy_ms,
            evals: shown.with_untracked(|s| s.evals.clone()),
        };
        (extra, r.unsaved_corpus.clone())
    }) else {
        return;
    };
    let step = trainer.training.step;
    let written = async {
        let size = trainer.checkpoint_size();
        if size > MAX_CHECKPOINT_BYTES {
            return Err(format!(
                "a checkpoint of this run would take {} MB, more than the page keeps ({} MB)",
                size >> 20,
                MAX_CHECKPOINT_BYTES >> 20
            ));
        }
        let extra = serde_json::to_value(&extra).map_err(|e| e.to_string())?;
        let bytes = trainer.checkpoint(extra).await?.serialize();
        let mut entries = vec![(CHECKPOINT_KEY, &bytes[..])];
        if let Some(text) = &corpus {
            entries.push((CORPUS_KEY, &text[..]));
        }
        web::storage_put(&entries).await?;
        Ok::<usize, String>(bytes.len())
    }
    .await;
    if let Some(r) = run.borrow_mut().as_mut() {
        // A failed write is not retried before the next interval either.
        r.checkpointed_ms = r.busy_ms;
        if written.is_ok() {
            r.unsaved_corpus = None;
        }
    }
    shown.update(|s| {
        if written.is_ok() {
            s.saved = None;
        }
        s.checkpoint = Some(match written {
            Ok(n) => Ok(format!(
                "Checkpointed at step {step} ({:.2} MB in this browser's storage): a reload can resume from here.",
                n as f64 / 1e6
            )),
            Err(e) => Err(format!(
                "Could not checkpoint at step {step}: {e}. Training goes on and nothing trained is lost; Export keeps the SAE."
            )),
        })
    });
}

/// Shows the run saved in this browser, if there is one.
async fn describe_saved_run(shown: RwSignal<Shown>) {
    let description = match web::storage_get(CHECKPOINT_KEY).await {
        Ok(None) => return,
        Ok(Some(bytes)) => match read_header("the saved run", &bytes) {
            Ok(h) => {
                let corpus = h.extra.get("corpus_name").and_then(|c| c.as_str()).unwrap_or("?");
                format!(
                    "A run saved in this browser: {} with {} latents at {} of {}, corpus {corpus}, checkpointed at step {} of {} ({} of {} tokens).",
                    h.train.arch.name(),
                    h.train.dict,
                    h.store.hook,
                    h.model_name,
                    h.step,
                    h.train.steps,
                    h.step * h.train.batch,
                    h.train.steps * h.train.batch
                )
            }
            Err(e) => format!("A saved run that cannot be read ({e}); discard it."),
        },
        Err(e) => return shown.update(|s| s.checkpoint = Some(Err(format!("Saved runs are unavailable: {e}")))),
    };
    shown.update(|s| {
        if !s.running && !s.trained {
            s.saved = Some(description);
        }
    });
}

/// Rebuilds the saved run on the loaded model: its corpus and checkpoint from IndexedDB, its
/// settings back in the form, its evaluations in the table. Says whether steps are left.
async fn restore(source: &ModelSource, run: &Rc<RefCell<Option<Run>>>, shown: RwSignal<Shown>, fields: Fields) -> Result<bool, String> {
    let model = (source.model)().ok_or("load the run's model first")?;
    shown.update(|s| {
        s.running = true;
        s.error = None;
        s.status = "Reading the saved run …".into();
    });
    let bytes = web::storage_get(CHECKPOINT_KEY).await?.ok_or("the saved run is no longer in this browser's storage")?;
    let corpus_bytes = web::storage_get(CORPUS_KEY).await?.ok_or("the saved run's corpus is no longer in this browser's storage")?;
    let checkpoint = Checkpoint::parse("the saved run", &bytes).map_err(|e| e.to_string())?;
    let extra: SavedExtra = serde_json::from_value(checkpoint.header.extra.clone())
        .map_err(|e| format!("the saved run's page settings cannot be read: {e}"))?;
    let text = parse_corpus(&extra.corpus_name, &corpus_bytes).map_err(|e| e.to_string())?;
    let corpus = model.1.encode(&text).map_err(|e| e.to_string())?;
    // The run goes on where the model runs (WebGPU when the page has it).
    let trainer = LmTrainer::resume(&model.0, &corpus, model.0.cfg.special_tokens.bos_or_eos(), checkpoint, &model.0.backend())?;
    let (step, steps, batch) = (trainer.training.step, trainer.training.cfg.steps, trainer.training.cfg.batch);
    fields.show(&extra.settings);
    let tokens_done = trainer.tokens_trained();
    shown.set(Shown {
        tokens_done,
        tokens_total: (steps * batch) as u64,
        tokens_per_s: tokens_done as f64 / (extra.busy_ms / 1e3).max(1e-3),
        evals: extra.evals,
        status: if step < steps {
            format!("Resumed the saved run at step {step} of {steps} …")
        } else {
            format!("Trained: {step} steps (restored).")
        },
        trained: true,
        running: step < steps,
        checkpoint: Some(Ok(format!("Restored from the checkpoint at step {step}."))),
        ..Shown::default()
    });
    *run.borrow_mut() = Some(Run {
        trainer: Some(trainer),
        model,
        steps,
        eval_every: extra.eval_every.max(1),
        busy_ms: extra.busy_ms,
        checkpointed_ms: extra.busy_ms,
        settings: extra.settings,
        corpus_name: extra.corpus_name,
        unsaved_corpus: None,
    });
    Ok(step < steps)
}
