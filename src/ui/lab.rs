//! The teaching lab: choose a lesson (or any settings), train an SAE on synthetic data with
//! known features — on the CPU or on WebGPU, whichever a few timed steps show is faster for
//! the problem (or the one the user chose) — and watch it recover them. Settings live in the URL
//! (`#lab?…`), so a teacher shares one link.
//! Training yields to the browser every ~30 ms, so the page stays responsive.

use std::cell::RefCell;
use std::rc::Rc;

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::{plots, web, PageBackend};
use crate::backend::Backend;
use crate::sae::files::serialize_sae;
use crate::sae::metrics::DensityHistogram;
use crate::train::lab::{LabSettings, PRESETS};
use crate::train::superposition::{self, SuperpositionResult};
use crate::train::toy::{fastest_backend, DeviceSpeed, ToyTrainer};

/// One evaluation point on the curves.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub step: usize,
    pub mmcs: f64,
    pub fvu: f64,
    pub l0: f64,
    pub dead: usize,
}

/// A 2-D direction drawn as an arrow.
type Arrow = [f32; 2];

#[derive(Clone, Debug, Default, PartialEq)]
struct LabShown {
    status: String,
    error: Option<String>,
    device: String,
    running: bool,
    finished: bool,
    history: Vec<Point>,
    recovered: usize,
    n_true: usize,
    /// Up to 32 true features × their best-matching latents, cosines.
    heatmap: Vec<Vec<f32>>,
    /// dims = 2: (true feature directions, decoder directions).
    arrows: Option<(Vec<Arrow>, Vec<Arrow>)>,
    histogram: Option<DensityHistogram>,
}

/// The trainer and whether a loop is driving it; not reactive (the GPU trainer is not `Send`).
#[derive(Default)]
struct LabState {
    trainer: Option<ToyTrainer>,
    running: bool,
    /// Bumped by every Start/Reset so that a stale loop stops.
    generation: u64,
    /// A Start is timing the devices or building its trainer (Resume waits for it).
    starting: bool,
}

#[component]
pub fn Lab() -> impl IntoView {
    let page = expect_context::<PageBackend>();
    let hash = web::hash();
    let query = hash.strip_prefix("#lab").unwrap_or("").trim_start_matches('?');
    let (initial, url_problems) = LabSettings::from_query(query);
    let settings = RwSignal::new(initial);
    let problems = RwSignal::new(url_problems);
    let shown = RwSignal::new(LabShown { status: "Choose a lesson or settings, then Start.".into(), ..Default::default() });
    let state = Rc::new(RefCell::new(LabState::default()));
    let from_url = query.split('&').find_map(|kv| kv.strip_prefix("preset=")).filter(|id| LabSettings::preset(id).is_some());
    let preset_id = RwSignal::new(from_url.unwrap_or("").to_string());

    let start = {
        let state = state.clone();
        move |_| start_training(state.clone(), page, settings, problems, shown)
    };
    let pause = {
        let state = state.clone();
        move |_| {
            state.borrow_mut().running = false;
            shown.update(|s| {
                s.running = false;
                s.status = format!("Paused at step {}.", s.history.last().map_or(0, |p| p.step));
            });
        }
    };
    let resume = {
        let state = state.clone();
        move |_| {
            let generation = {
                let mut st = state.borrow_mut();
                if st.trainer.is_none() || st.running || st.starting {
                    return;
                }
                st.running = true;
                st.generation
            };
            shown.update(|s| s.running = true);
            spawn_local(run_loop(state.clone(), shown, generation));
        }
    };
    let reset = {
        let state = state.clone();
        move |_| {
            let mut st = state.borrow_mut();
            st.generation += 1;
            st.running = false;
            st.starting = false;
            st.trainer = None;
            shown.set(LabShown { status: "Reset. Start trains from scratch.".into(), ..Default::default() });
        }
    };
    let download = {
        let state = state.clone();
        move |_| {
            let st = state.borrow();
            let Some(trainer) = &st.trainer else { return };
            let (cfg, weights, _) = serialize_sae(&trainer.to_sae());
            let result = web::download("cfg.json", &cfg, "application/json")
                .and_then(|_| web::download("sae_weights.safetensors", &weights, "application/octet-stream"));
            if let Err(e) = result {
                shown.update(|s| s.error = Some(format!("download failed: {e}")));
            }
        }
    };
    let choose_preset = move |ev: leptos::ev::Event| {
        let id = event_target_value(&ev);
        if let Some(p) = LabSettings::preset(&id) {
            settings.set(p);
            problems.set(Vec::new());
            preset_id.set(id);
            web::set_hash(&format!("#lab?{}", settings.get_untracked().to_query()));
        }
    };

    let lesson = move || {
        let id = preset_id.get();
        PRESETS.iter().find(|p| p.id == id).map(|p| p.lesson).unwrap_or("")
    };

    view! {
        <section class="lab">
            <div class="lab-left">
            <div class="panel lab-controls">
                <label>"Lesson "
                    <select id="lab-preset" on:change=choose_preset prop:value=move || preset_id.get()>
                        <option value="">"— custom settings —"</option>
                        {PRESETS.iter().map(|p| view! { <option value=p.id>{p.title}</option> }).collect_view()}
                    </select>
                </label>
                <p id="lab-lesson" class="lesson">{lesson}</p>
                <div class="fields">
                    {field("features", "true features", settings, problems)}
                    {field("dims", "dimensions", settings, problems)}
                    {field("p", "firing probability p", settings, problems)}
                    {field("geometry", "geometry (random|polygon)", settings, problems)}
                    {field("hierarchy", "hierarchy parents,children", settings, problems)}
                    {field("noise", "noise σ", settings, problems)}
                    {field("arch", "architecture (standard|topk|batchtopk|jumprelu|gated)", settings, problems)}
                    {field("k", "k (topk, batchtopk)", settings, problems)}
                    {field("l1", "L1 coefficient (standard, gated)", settings, problems)}
                    {field("l0", "L0 coefficient (jumprelu)", settings, problems)}
                    {field("bandwidth", "STE bandwidth (jumprelu)", settings, problems)}
                    {field("dict", "dictionary size", settings, problems)}
                    {field("batch", "batch", settings, problems)}
                    {field("steps", "steps", settings, problems)}
                    {field("lr", "learning rate", settings, problems)}
                    {field("seed", "seed", settings, problems)}
                    {field("dead_after", "dead after (steps)", settings, problems)}
                    {field("b_dec_init", "b_dec init (zeros|mean|geometric_median)", settings, problems)}
                    {field("resample_every", "resample dead every (steps, 0 = off)", settings, problems)}
                    {field("p_decay", "p decay (pᵢ = p·(i+1)^−a)", settings, problems)}
                    {field("magnitude", "magnitude (uniform:lo,hi | constant:v | exponential:mean)", settings, problems)}
                    {field("correlated", "correlated pairs", settings, problems)}
                    {field("anti_correlated", "anti-correlated pairs", settings, problems)}
                    {field("device", "device (auto|cpu|gpu: auto times both)", settings, problems)}
                </div>
                <div class="buttons">
                    <button id="lab-start" on:click=start>"Start"</button>
                    <button id="lab-pause" on:click=pause disabled=move || !shown.with(|s| s.running)>"Pause"</button>
                    <button id="lab-resume" on:click=resume disabled=move || shown.with(|s| s.running || s.finished || s.history.is_empty())>"Resume"</button>
                    <button id="lab-reset" on:click=reset>"Reset"</button>
                    <button id="lab-download" on:click=download disabled=move || shown.with(|s| s.history.is_empty())>"Download SAE (SAELens)"</button>
                </div>
                <p id="lab-status" class="status">{move || shown.with(|s| s.status.clone())}</p>
                <Show when=move || shown.with(|s| s.error.is_some())>
                    <p id="lab-error" class="error" role="alert">{move || shown.with(|s| s.error.clone().unwrap_or_default())}</p>
                </Show>
            </div>
            <SuperpositionPanel settings problems />
            </div>
            <div class="panel lab-results">
                <h2>"Recovery " <span class="muted">{move || shown.with(|s| s.device.clone())}</span></h2>
                {move || shown.with(|s| s.history.last().cloned().map(|p| view! {
                    <table class="lab-figures">
                        <tr><th>"step"</th><td id="lab-step">{p.step}</td></tr>
                        <tr><th>"MMCS"</th><td id="lab-mmcs">{format!("{:.4}", p.mmcs)}</td></tr>
                        <tr><th>"recovered (cos > 0.9)"</th><td id="lab-recovered">{format!("{} / {}", s.recovered, s.n_true)}</td></tr>
                        <tr><th>"FVU"</th><td id="lab-fvu">{format!("{:.4}", p.fvu)}</td></tr>
                        <tr><th>"L0"</th><td id="lab-l0">{format!("{:.3}", p.l0)}</td></tr>
                        <tr><th>"dead latents"</th><td id="lab-dead">{p.dead}</td></tr>
                    </table>
                }))}
                <div class="lab-plots">
                    {move || shown.with(|s| (!s.history.is_empty()).then(|| view! {
                        <figure><figcaption>"MMCS (mean max cosine of true features with the decoder)"</figcaption>
                            {plots::line_chart("lab-mmcs-plot", "step", &s.history.iter().map(|p| (p.step as f64, p.mmcs)).collect::<Vec<_>>(), Some((0.0, 1.0)))}</figure>
                        <figure><figcaption>"FVU"</figcaption>
                            {plots::line_chart("lab-fvu-plot", "step", &s.history.iter().map(|p| (p.step as f64, p.fvu)).collect::<Vec<_>>(), None)}</figure>
                        <figure><figcaption>"L0 (active latents per input)"</figcaption>
                            {plots::line_chart("lab-l0-plot", "step", &s.history.iter().map(|p| (p.step as f64, p.l0)).collect::<Vec<_>>(), None)}</figure>
                    }))}
                    {move || shown.with(|s| (!s.heatmap.is_empty()).then(|| view! {
                        <figure><figcaption>"Cosine of true features (rows) with their best-matching latents (columns)"</figcaption>
                            {plots::heatmap("lab-heatmap", &s.heatmap)}</figure>
                    }))}
                    {move || shown.with(|s| s.arrows.clone().map(|(t, l)| view! {
                        <figure><figcaption>"Feature directions: true (grey) and learned decoder rows (blue)"</figcaption>
                            {plots::arrows("lab-arrows", &t, &l)}</figure>
                    }))}
                    {move || shown.with(|s| s.histogram.as_ref().map(|h| view! {
                        <figure><figcaption>"Latent firing density (log10)"</figcaption>{plots::density_histogram(h)}</figure>
                    }))}
                </div>
            </div>
        </section>
    }
}

/// A text input bound to one setting, with its problem (if any) shown next to it.
fn field(
    key: &'static str,
    label: &'static str,
    settings: RwSignal<LabSettings>,
    problems: RwSignal<Vec<(String, String)>>,
) -> impl IntoView {
    let value = move || {
        let q = settings.with(|s| s.to_query());
        q.split('&').find_map(|kv| kv.strip_prefix(&format!("{key}="))).unwrap_or("").to_string()
    };
    let on_change = move |ev: leptos::ev::Event| {
        let text = event_target_value(&ev);
        let mut next = settings.get_untracked();
        let result = next.set(key, &text);
        problems.update(|ps| ps.retain(|(k, _)| k != key));
        match result {
            Ok(()) => {
                settings.set(next);
                web::set_hash(&format!("#lab?{}", settings.get_untracked().to_query()));
            }
            Err(msg) => problems.update(|ps| ps.push((key.to_string(), msg))),
        }
    };
    let problem = move || problems.with(|ps| ps.iter().find(|(k, _)| k == key).map(|(_, m)| m.clone()));
    view! {
        <label class="field">
            <span>{label}</span>
            <input id=format!("lab-{key}") prop:value=value on:change=on_change />
            {move || problem().map(|m| view! { <span class="field-error" id=format!("lab-{key}-error")>{m}</span> })}
        </label>
    }
}

fn start_training(
    state: Rc<RefCell<LabState>>,
    page: PageBackend,
    settings: RwSignal<LabSettings>,
    problems: RwSignal<Vec<(String, String)>>,
    shown: RwSignal<LabShown>,
) {
    // The superposition panel's settings (sp_…) do not concern SAE training.
    if let Some((key, msg)) = problems.get_untracked().iter().find(|(k, _)| !k.starts_with("sp_")) {
        return shown.update(|s| s.error = Some(format!("{key}: {msg}")));
    }
    let s = settings.get_untracked();
    web::set_hash(&format!("#lab?{}", s.to_query()));
    // A bad configuration is refused before anything is replaced: the current run stays.
    let candidates = match (s.device.as_str(), page.backend()) {
        ("cpu", _) => vec![Backend::Cpu],
        ("gpu", Backend::Cpu) => {
            return shown.update(|sh| sh.error = Some("device: this browser has no WebGPU; choose cpu or auto".into()));
        }
        ("gpu", gpu) => vec![gpu],
        (_, Backend::Cpu) => vec![Backend::Cpu],
        (_, gpu) => vec![Backend::Cpu, gpu],
    };
    let cfg = match s.to_config() {
        Ok(cfg) => cfg,
        Err(e) => return shown.update(|sh| sh.error = Some(e)),
    };
    // The current run pauses (a stale loop stops at its next frame) while the devices are timed.
    let generation = {
        let mut st = state.borrow_mut();
        st.generation += 1;
        st.running = false;
        st.starting = true;
        st.generation
    };
    let timing = candidates.len() > 1;
    let status = if timing { "Timing a few steps on the CPU and on WebGPU…" } else { "Starting…" };
    shown.update(|sh| {
        sh.status = status.into();
        sh.error = None;
    });
    spawn_local(async move {
        let picked = if timing { fastest_backend(&cfg, &candidates, 150.0).await } else { Ok((0, Vec::new())) };
        let trainer = picked.and_then(|(fastest, speeds)| {
            let backend = &candidates[fastest];
            Ok((ToyTrainer::new(cfg, backend)?, device_note(backend, &speeds)))
        });
        if state.borrow().generation != generation {
            return; // Start or Reset was pressed again meanwhile (and owns `starting`).
        }
        state.borrow_mut().starting = false;
        let (trainer, device) = match trainer {
            Ok(t) => t,
            Err(e) => {
                return shown.update(|sh| {
                    sh.error = Some(e);
                    sh.running = false;
                    sh.status = "Not started. The previous run, if any, is paused (Resume goes on with it).".into();
                })
            }
        };
        {
            let mut st = state.borrow_mut();
            st.trainer = Some(trainer);
            st.running = true;
        }
        shown.set(LabShown { status: "Training…".into(), device, running: true, ..Default::default() });
        run_loop(state, shown, generation).await;
    });
}

/// Where the run trains, and why when it was picked by timing: "cpu (wasm SIMD, 1 thread) — the
/// faster here, timed: cpu (wasm SIMD, 1 thread) 10638.8 steps/s; WebGPU: … swiftshader 10.6
/// steps/s".
fn device_note(backend: &Backend, speeds: &[DeviceSpeed]) -> String {
    if speeds.len() < 2 {
        return backend.name();
    }
    let rates: Vec<String> = speeds.iter().map(|s| format!("{} {:.1} steps/s", s.device, s.steps_per_s)).collect();
    format!("{} — the faster here, timed: {}", backend.name(), rates.join("; "))
}

/// Steps the trainer for ~30 ms at a time, evaluating every few steps, until done or paused.
async fn run_loop(state: Rc<RefCell<LabState>>, shown: RwSignal<LabShown>, generation: u64) {
    loop {
        // Take the trainer out so that no borrow is held across an await.
        let taken = {
            let mut st = state.borrow_mut();
            if st.generation != generation || !st.running {
                return;
            }
            st.trainer.take()
        };
        let Some(mut trainer) = taken else { return };
        let total = trainer.cfg.train.steps;
        let eval_every = (total / 40).max(10);
        let frame_start = web::now_ms();
        let mut outcome = Ok(());
        while trainer.training.step < total && web::now_ms() - frame_start < 30.0 {
            outcome = trainer.step().await;
            if outcome.is_err() || trainer.training.step % eval_every == 0 {
                break;
            }
        }
        let finished = trainer.training.step >= total;
        if outcome.is_ok() && (trainer.training.step % eval_every == 0 || finished) {
            outcome = trainer.sync().await;
            if outcome.is_ok() {
                record_evaluation(&trainer, shown);
            }
        }
        let stale = {
            let mut st = state.borrow_mut();
            let stale = st.generation != generation;
            if !stale {
                st.trainer = Some(trainer);
                if finished || outcome.is_err() {
                    st.running = false;
                }
            }
            stale
        };
        if stale {
            return;
        }
        if let Err(e) = outcome {
            return shown.update(|s| {
                s.error = Some(e);
                s.running = false;
                s.status = "Stopped. The last good parameters are kept (Download still works).".into();
            });
        }
        if finished {
            return shown.update(|s| {
                s.running = false;
                s.finished = true;
                s.status = format!("Finished {total} steps.");
            });
        }
        web::yield_to_browser().await;
    }
}

fn record_evaluation(trainer: &ToyTrainer, shown: RwSignal<LabShown>) {
    // Evaluation runs on the CPU between frames: keep it to ~2e8 multiply-adds so large
    // dictionaries do not freeze the page.
    let work_per_row = (trainer.cfg.data.dims * trainer.cfg.train.dict).max(1);
    let (rec, m) = trainer.evaluate((200_000_000 / work_per_row).clamp(64, 1024));
    let dead = m.fire_counts.iter().filter(|&&c| c == 0).count();
    let point = Point { step: trainer.training.step, mmcs: rec.mmcs as f64, fvu: m.fvu, l0: m.l0, dead };
    // Heatmap: the first 32 true features against the latents that match them best, in order.
    let rows = rec.n_true.min(32);
    let mut columns: Vec<usize> = Vec::new();
    for i in 0..rows {
        let row = &rec.cosines[i * rec.n_learned..(i + 1) * rec.n_learned];
        let best = (0..rec.n_learned).filter(|j| !columns.contains(j)).max_by(|&a, &b| row[a].total_cmp(&row[b]));
        if let Some(j) = best {
            columns.push(j);
        }
    }
    let heatmap: Vec<Vec<f32>> = (0..rows).map(|i| columns.iter().map(|&j| rec.cosines[i * rec.n_learned + j]).collect()).collect();
    let d = trainer.cfg.data.dims;
    let arrows = (d == 2).then(|| {
        let to_pairs = |m: &[f32]| m.chunks_exact(2).map(|r| [r[0], r[1]]).collect::<Vec<_>>();
        (to_pairs(&trainer.data.features), to_pairs(&trainer.training.params().w_dec))
    });
    let histogram = m.log10_density_histogram(20);
    shown.update(|s| {
        s.status = format!("Step {} of {}", trainer.training.step, trainer.cfg.train.steps);
        s.history.push(point);
        s.recovered = rec.recovered;
        s.n_true = rec.n_true;
        s.heatmap = heatmap;
        s.arrows = arrows;
        s.histogram = Some(histogram);
        s.error = None;
    });
}

/// Elhage et al.'s toy model: pick the sparsity, train (a few thousand tiny steps, well under a
/// second), and see how many features the hidden dimensions hold.
#[component]
fn SuperpositionPanel(settings: RwSignal<LabSettings>, problems: RwSignal<Vec<(String, String)>>) -> impl IntoView {
    let result: RwSignal<Option<Result<SuperpositionResult, String>>> = RwSignal::new(None);
    let train = move |_| {
        let panel_problem = problems.with_untracked(|ps| ps.iter().find(|(k, _)| k.starts_with("sp_")).cloned());
        let outcome = match panel_problem {
            Some((key, msg)) => Err(format!("{key}: {msg}")),
            None => settings.with_untracked(|s| s.to_superposition_config()).and_then(|c| superposition::train(&c)),
        };
        result.set(Some(outcome));
    };
    view! {
        <div class="panel superposition">
            <h2>"Toy model of superposition"</h2>
            <p class="lesson">"Elhage et al. 2022: n features with importance 0.9ⁱ pass through m dimensions, x′ = ReLU(WᵀWx + b). Raise the sparsity (the chance a feature is off) and watch more features than dimensions get packed in."</p>
            <div class="fields">
                {field("sp_sparsity", "sparsity S", settings, problems)}
                {field("sp_features", "features", settings, problems)}
                {field("sp_dims", "dimensions", settings, problems)}
                {field("sp_importance_decay", "importance decay", settings, problems)}
            </div>
            <div class="buttons"><button id="sp-train" on:click=train>"Train toy model"</button></div>
            {move || result.get().map(|r| match r {
                Err(e) => view! { <p id="sp-error" class="error">{e}</p> }.into_any(),
                Ok(r) => {
                    let m = r.directions.len() / r.norms.len().max(1);
                    let arrows = (m == 2).then(|| {
                        let dirs: Vec<[f32; 2]> = r.directions.chunks_exact(2).map(|v| [v[0], v[1]]).collect();
                        plots::arrows("sp-arrows", &dirs, &[])
                    });
                    let norms: Vec<(f64, f64)> = r.norms.iter().enumerate().map(|(i, &v)| (i as f64, v as f64)).collect();
                    view! {
                        <p id="sp-represented">{format!("{} of {} features represented (‖Wᵢ‖ > 0.5) in {m} dimensions; loss {:.4}", r.represented, r.norms.len(), r.loss)}</p>
                        {arrows}
                        <figure><figcaption>"‖Wᵢ‖ by feature (most important first)"</figcaption>{plots::line_chart("sp-norms", "feature", &norms, None)}</figure>
                    }.into_any()
                }
            })}
        </div>
    }
}
