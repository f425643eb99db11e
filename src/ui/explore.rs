//! The explore tab: an SAE and a batch of its activations, run on the page's backend and checked
//! against the CPU reference. It opens on the SAE and activations bundled in `www/demo/`; the user
//! loads their own SAE folder and `.npy` activations. A file that fails to load is reported in
//! place; whatever was loaded before stays loaded and usable.

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::{plots, web, PageBackend};
use crate::backend::Backend;
use crate::engine::{self, Analysis, LoadedSae};
use crate::formats::npy;
use crate::gpu::RunRequest;
use crate::sae::files::{parse_sae, SaeFileBytes, CFG_FILE, SPARSITY_FILE, WEIGHTS_FILE};
use crate::sae::metrics::DensityHistogram;
use crate::sae::{Architecture, Sae};

/// Above this many multiply-adds the CPU cross-check is skipped (it would stall the page).
const CPU_CHECK_LIMIT: f64 = 3e9;

/// What the tab has loaded; not reactive (wgpu objects are not `Send`).
#[derive(Default)]
struct Loaded {
    sae: Option<(LoadedSae, String)>,
    activations: Option<(Vec<f32>, String)>,
}

/// The tab's state, shared by its handlers (all `Copy`).
#[derive(Clone, Copy)]
struct Explore {
    page: PageBackend,
    loaded: StoredValue<Loaded, LocalStorage>,
    shown: RwSignal<Shown>,
}

/// Metrics as shown.
#[derive(Clone, Debug, PartialEq)]
struct MetricsView {
    device: String,
    n: usize,
    l0: f64,
    mse: f64,
    fvu: f64,
    cosine: f64,
    dead_fraction: f64,
}

impl MetricsView {
    fn of(a: &Analysis) -> MetricsView {
        let m = &a.metrics;
        MetricsView { device: a.device.clone(), n: m.n, l0: m.l0, mse: m.mse, fvu: m.fvu, cosine: m.cosine, dead_fraction: m.dead_fraction }
    }
    fn values(&self) -> [f64; 5] {
        [self.l0, self.mse, self.fvu, self.cosine, self.dead_fraction]
    }
}

/// Everything the tab shows, derived from what is loaded after each change.
#[derive(Clone, Debug, Default, PartialEq)]
struct Shown {
    status: String,
    error: Option<String>,
    sae_name: String,
    sae_facts: Vec<(String, String)>,
    activations_name: String,
    primary: Option<MetricsView>,
    reference: Option<MetricsView>,
    /// Largest relative difference between the GPU's and the CPU reference's metrics.
    check: Option<f64>,
    histogram: Option<DensityHistogram>,
    row_errors: Vec<f64>,
}

fn sae_facts(sae: &Sae) -> Vec<(String, String)> {
    let c = &sae.cfg;
    let mut facts = vec![
        ("architecture".to_string(), c.architecture_name()),
        ("d_in".into(), c.d_in.to_string()),
        ("d_sae".into(), c.d_sae.to_string()),
    ];
    if let Architecture::TopK { k } = c.architecture {
        facts.push(("k".into(), k.to_string()));
    }
    facts.push(("hook".into(), c.hook_name.clone().unwrap_or_else(|| "—".into())));
    facts.push(("dtype".into(), sae.stored_dtype.name().to_string()));
    facts.push(("normalisation".into(), c.normalization.name().to_string()));
    facts.push(("parameters".into(), sae.parameter_count().to_string()));
    facts
}

/// The tab, opening on the bundled demo once the page's backend is known.
#[component]
pub fn ExploreTab(visible: Signal<bool>) -> impl IntoView {
    let page = expect_context::<PageBackend>();
    let tab = Explore {
        page,
        loaded: StoredValue::new_local(Loaded::default()),
        shown: RwSignal::new(Shown { status: "Starting…".into(), ..Default::default() }),
    };
    let shown = tab.shown;
    let demo_started = StoredValue::new(false);
    Effect::new(move |_| {
        if page.ready.get() && !demo_started.get_value() {
            demo_started.set_value(true);
            spawn_local(load_demo(tab));
        }
    });
    let on_sae_files = move |ev: leptos::ev::Event| spawn_local(load_sae_files(tab, web::files_of(&ev)));
    let on_npy_file = move |ev: leptos::ev::Event| spawn_local(load_activations_file(tab, web::files_of(&ev)));
    view! {
        <main style:display=move || if visible.get() { "grid" } else { "none" }>
            <section class="panel loaders">
                <label>"SAE folder files (cfg.json, sae_weights.safetensors, optional sparsity.safetensors) "
                    <input id="sae-files" type="file" multiple accept=".json,.safetensors" on:change=on_sae_files />
                </label>
                <label>"Activations (.npy, [n, d_in]) "
                    <input id="npy-file" type="file" accept=".npy" on:change=on_npy_file />
                </label>
                <p id="status" class="status">{move || shown.with(|s| s.status.clone())}</p>
                <Show when=move || shown.with(|s| s.error.is_some())>
                    <p id="error" class="error" role="alert">{move || shown.with(|s| s.error.clone().unwrap_or_default())}</p>
                </Show>
            </section>
            <section class="panel">
                <h2>"SAE " <span id="sae-name">{move || shown.with(|s| s.sae_name.clone())}</span></h2>
                <dl id="sae-facts" class="facts">
                    {move || shown.with(|s| s.sae_facts.iter().map(|(k, v)| view! {
                        <dt>{k.clone()}</dt><dd data-key=k.clone()>{v.clone()}</dd>
                    }).collect_view())}
                </dl>
                <p>"Activations: " <span id="activations-name">{move || shown.with(|s| s.activations_name.clone())}</span></p>
            </section>
            <section class="panel">
                <h2>"Metrics"</h2>
                {move || shown.with(metrics_table)}
            </section>
            <section class="panel plots">
                <figure>
                    <figcaption>"Feature firing density (log10), dead features apart"</figcaption>
                    {move || shown.with(|s| s.histogram.as_ref().map(plots::density_histogram))}
                </figure>
                <figure>
                    <figcaption>"Reconstruction error per row, Σ(x − x̂)² / Σx²"</figcaption>
                    {move || shown.with(|s| (!s.row_errors.is_empty()).then(|| plots::row_errors(&s.row_errors)))}
                </figure>
            </section>
        </main>
    }
}

fn metrics_table(s: &Shown) -> impl IntoView {
    let Some(primary) = s.primary.clone() else {
        return view! { <p class="muted">"No results yet."</p> }.into_any();
    };
    let names = ["L0", "MSE", "FVU", "cosine", "dead fraction"];
    let ids = ["l0", "mse", "fvu", "cosine", "dead"];
    let reference = s.reference.clone();
    let rows = names
        .iter()
        .zip(ids)
        .enumerate()
        .map(|(i, (name, id))| {
            let p = primary.values()[i];
            let r = reference.as_ref().map(|r| format_metric(r.values()[i]));
            view! {
                <tr><th>{*name}</th><td id=format!("m-{id}")>{format_metric(p)}</td>
                    <td id=format!("ref-{id}")>{r.unwrap_or_else(|| "—".into())}</td></tr>
            }
        })
        .collect_view();
    let check = match (s.check, &s.reference) {
        (Some(d), _) => view! { <p id="check" class=if d < 1e-3 { "ok" } else { "bad" }>
        {format!("GPU vs CPU reference: largest relative difference {d:.2e} {}", if d < 1e-3 { "✓ match" } else { "✗ MISMATCH" })}</p> }
        .into_any(),
        (None, Some(_)) => view! { <p id="check" class="muted">"Computed by the CPU reference only."</p> }.into_any(),
        (None, None) => view! { <p id="check" class="muted">"CPU cross-check skipped for this size."</p> }.into_any(),
    };
    view! {
        <table id="metrics">
            <thead><tr><th></th><th id="primary-device">{primary.device.clone()}</th><th>"CPU reference"</th></tr></thead>
            <tbody>{rows}</tbody>
        </table>
        <p>{format!("{} rows", primary.n)}</p>
        {check}
    }
    .into_any()
}

fn format_metric(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e5) {
        format!("{v:.4e}")
    } else {
        format!("{v:.5}")
    }
}

async fn load_demo(tab: Explore) {
    let shown = tab.shown;
    shown.update(|s| s.status = "Loading the bundled demo SAE…".into());
    let fetched = async {
        let cfg = web::fetch_bytes("demo/sae/cfg.json").await?;
        let weights = web::fetch_bytes("demo/sae/sae_weights.safetensors").await?;
        let acts = web::fetch_bytes("demo/activations.npy").await?;
        Ok::<_, String>((cfg, weights, acts))
    }
    .await;
    let (cfg, weights, acts) = match fetched {
        Ok(v) => v,
        Err(e) => return shown.update(|s| s.error = Some(format!("could not load the bundled demo: {e}"))),
    };
    if let Err(e) =
        install_sae(tab, SaeFileBytes { cfg: &cfg, weights: &weights, sparsity: None }, "bundled demo (TopK, 128 known features)")
    {
        return shown.update(|s| s.error = Some(e));
    }
    if let Err(e) = install_activations(tab, &acts, "demo/activations.npy (bundled, 512 rows)") {
        return shown.update(|s| s.error = Some(e));
    }
    run_and_show(tab).await;
}

/// Parses and uploads an SAE; on any error returns the message and leaves what was loaded unchanged.
fn install_sae(tab: Explore, files: SaeFileBytes<'_>, name: &str) -> Result<(), String> {
    let sae = parse_sae(files).map_err(|e| e.to_string())?;
    let loaded = LoadedSae::new(std::rc::Rc::new(sae), &tab.page.backend()).map_err(|err| err.to_string())?;
    tab.loaded.update_value(|l| l.sae = Some((loaded, name.to_string())));
    Ok(())
}

fn install_activations(tab: Explore, bytes: &[u8], name: &str) -> Result<(), String> {
    let array = npy::read_f32(name, bytes).map_err(|e| e.to_string())?;
    if let Some(d_in) = tab.loaded.with_value(|l| l.sae.as_ref().map(|(sae, _)| sae.d_in())) {
        engine::check_activations(name, &array, d_in).map_err(|err| err.to_string())?;
    }
    tab.loaded.update_value(|l| l.activations = Some((array.data, name.to_string())));
    Ok(())
}

async fn load_sae_files(tab: Explore, files: Vec<web_sys::File>) {
    let shown = tab.shown;
    shown.update(|s| s.status = "Reading SAE files…".into());
    let mut cfg = None;
    let mut weights = None;
    let mut sparsity = None;
    let mut folder = String::new();
    for file in files {
        let name = file.name();
        let bytes = match web::read_file(&file).await {
            Ok(b) => b,
            Err(e) => return fail(shown, format!("{name}: {e}")),
        };
        match name.as_str() {
            CFG_FILE => cfg = Some(bytes),
            WEIGHTS_FILE => weights = Some(bytes),
            SPARSITY_FILE => sparsity = Some(bytes),
            _ => {}
        }
        if let Some(path) = web::relative_path(&file) {
            folder = path.rsplit_once('/').map(|(d, _)| d.to_string()).unwrap_or_default();
        }
    }
    let (Some(cfg), Some(weights)) = (cfg, weights) else {
        return fail(shown, format!("choose both {CFG_FILE} and {WEIGHTS_FILE} of an SAELens SAE folder"));
    };
    let name = if folder.is_empty() { "your SAE".to_string() } else { folder };
    if let Err(e) = install_sae(tab, SaeFileBytes { cfg: &cfg, weights: &weights, sparsity: sparsity.as_deref() }, &name) {
        return fail(shown, e);
    }
    shown.update(|s| s.error = None);
    run_and_show(tab).await;
}

async fn load_activations_file(tab: Explore, files: Vec<web_sys::File>) {
    let shown = tab.shown;
    let Some(file) = files.into_iter().next() else { return };
    let name = file.name();
    let bytes = match web::read_file(&file).await {
        Ok(b) => b,
        Err(e) => return fail(shown, format!("{name}: {e}")),
    };
    if let Err(e) = install_activations(tab, &bytes, &name) {
        return fail(shown, e);
    }
    shown.update(|s| s.error = None);
    run_and_show(tab).await;
}

/// Shows an error in place; the previous SAE, activations and results stay.
fn fail(shown: RwSignal<Shown>, message: String) {
    shown.update(|s| {
        s.error = Some(message);
        s.status = "Kept what was loaded before.".into();
    });
}

/// Says why the loaded SAE and activations cannot be run together, and shows no results for them.
fn refuse(shown: RwSignal<Shown>, message: String) {
    shown.update(|s| {
        s.error = Some(message);
        s.primary = None;
        s.reference = None;
        s.histogram = None;
        s.row_errors.clear();
    });
}

/// Runs the current activations through the current SAE (GPU if there is one, and the CPU
/// reference as a cross-check) and refreshes what is shown.
async fn run_and_show(tab: Explore) {
    let shown = tab.shown;
    // Everything is cloned out of what is loaded first: no borrow is held across an await.
    let inputs = tab.loaded.with_value(|l| match (&l.sae, &l.activations) {
        (Some((sae, sae_name)), Some((x, x_name))) => Some((sae.clone(), sae_name.clone(), x.clone(), x_name.clone())),
        _ => None,
    });
    let Some((sae, sae_name, x, x_name)) = inputs else { return };
    shown.update(|s| {
        s.sae_name = sae_name.clone();
        s.sae_facts = sae_facts(&sae);
        s.activations_name = x_name.clone();
    });
    if x.len() % sae.d_in() != 0 || x.is_empty() {
        return refuse(
            shown,
            format!("the activations ({x_name}) do not have the SAE's width d_in={}: load matching activations", sae.d_in()),
        );
    }
    if let Some(t) = &sae.cfg.transcoder {
        // Its metrics compare sae(x) with the output hook's values, which one activation file lacks.
        let out = t.hook_name_out.as_deref().unwrap_or("its output hook");
        return refuse(shown, format!("{sae_name} is a transcoder: it predicts the activations at {out}, not the ones it reads, so metrics against these would be wrong; run it on its model in the language-model tab (features, splice) or with `saelab eval --target`"));
    }
    let n = x.len() / sae.d_in();
    shown.update(|s| s.status = format!("Running {n} rows…"));
    web::yield_to_browser().await;

    let started = web::now_ms();
    let primary = match sae.backend() {
        Backend::Gpu(_) => match engine::analyze(&sae, &x, RunRequest::default()).await {
            Ok(a) => Some(a),
            Err(err) => return fail(shown, format!("GPU run failed: {err}")),
        },
        Backend::Cpu => None,
    };
    let gpu_ms = web::now_ms() - started;
    let work = n as f64 * sae.d_in() as f64 * sae.d_sae() as f64;
    let reference = if primary.is_none() || work <= CPU_CHECK_LIMIT {
        web::yield_to_browser().await;
        Some(engine::analyze_cpu(&sae, &x, RunRequest::default()))
    } else {
        None
    };
    let shown_primary = primary.as_ref().or(reference.as_ref()).expect("the CPU reference runs when the GPU does not");
    let check = match (&primary, &reference) {
        (Some(p), Some(r)) => Some(
            MetricsView::of(p)
                .values()
                .iter()
                .zip(MetricsView::of(r).values())
                .map(|(a, b)| (a - b).abs() / b.abs().max(1e-6))
                .fold(0.0, f64::max),
        ),
        _ => None,
    };
    let histogram = shown_primary.metrics.log10_density_histogram(24);
    let row_errors: Vec<f64> = x
        .chunks_exact(sae.d_in())
        .zip(&shown_primary.metrics.rows)
        .map(|(row, stats)| stats.sse as f64 / row.iter().map(|v| (v * v) as f64).sum::<f64>().max(1e-12))
        .collect();
    let status = match &primary {
        Some(_) => format!("Done: {n} rows on the GPU in {gpu_ms:.0} ms."),
        None => format!("Done: {n} rows on the CPU reference."),
    };
    shown.update(|s| {
        s.primary = Some(MetricsView::of(shown_primary));
        s.reference = if primary.is_some() { reference.as_ref().map(MetricsView::of) } else { None };
        s.check = check;
        s.histogram = Some(histogram);
        s.row_errors = row_errors;
        s.status = status;
    });
}
