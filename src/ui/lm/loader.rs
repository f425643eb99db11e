//! The model loader and the SAE picker, and what they load: a model from a Hugging Face URL (with
//! per-file progress and the browser's Cache Storage), from chosen files or a dropped folder; an
//! SAE from its files, bundled with the page, or trained in the page. What fails to load is
//! reported in place; what was loaded before stays.

use std::rc::Rc;

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::super::bundled::BUNDLED_SAES;
use super::super::web;
use super::upload::{self, WeightBlobs};
use super::{Lm, ModelOrigin};
use crate::backend::Backend;
use crate::engine::LoadedSae;
use crate::formats::tokenizer::TextTokenizer;
use crate::lm::{self, LoadedModel};
use crate::model::files::{FolderName, CONFIG_FILE, INDEX_FILE, TOKENIZER_FILE, WEIGHTS_FILE};
use crate::page::LmLink;
use crate::sae::files::{parse_sae, SaeFileBytes, CFG_FILE, WEIGHTS_FILE as SAE_WEIGHTS_FILE};

/// The Cache Storage bucket for downloaded model and SAE files.
pub(super) const CACHE: &str = "saelab-models-v1";

/// Where the loaded model's weights are, as shown (and read by the browser tests).
#[derive(Clone, Debug, PartialEq, Default)]
pub(super) struct ModelMemory {
    /// GPU bytes the weights take (none on the CPU reference).
    gpu_bytes: Option<u64>,
    /// Weight bytes that passed through wasm memory while loading.
    through_wasm: u64,
    /// Weight bytes read in all.
    weight_bytes: u64,
    /// The page's wasm memory once loaded.
    wasm_memory: u64,
}

/// One file's download as shown.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Progress {
    pub(super) file: String,
    loaded: f64,
    total: f64,
    cached: bool,
}

/// The model: where to download it from (the link's mirror and repository, if any), or its files.
#[component]
pub(super) fn ModelLoader(link: LmLink) -> impl IntoView {
    let lm = expect_context::<Lm>();
    let base = lm.base;
    let repo = RwSignal::new(link.repo);
    let download = move |_| {
        let url = format!("{}/{}/resolve/main", base.get_untracked().trim_end_matches('/'), repo.get_untracked().trim_matches('/'));
        spawn_local(download_model(lm, url));
    };
    let on_model_files = move |ev: leptos::ev::Event| spawn_local(load_model_files(lm, "files".into(), web::files_with_paths_of(&ev)));
    // A folder picker: `webkitdirectory` has no typed attribute in leptos, so it is set once mounted.
    let folder_input = NodeRef::<leptos::html::Input>::new();
    Effect::new(move |_| {
        if let Some(input) = folder_input.get() {
            let _ = input.set_attribute("webkitdirectory", "");
        }
    });
    let progress = lm.downloads;
    let cache = RwSignal::new(None::<(u64, u64)>);
    Effect::new(move |_| {
        // Counted when the loader opens and again whenever a model loads (a download changes it).
        lm.model_name.track();
        spawn_local(refresh_cache(cache));
    });
    let clear_cache = move |_| {
        spawn_local(async move {
            if let Err(e) = web::cache_clear(CACHE).await {
                lm.fail(format!("clearing the cached models: {e}"));
            }
            refresh_cache(cache).await;
        })
    };
    let memory = lm.memory;
    view! {
                <h2>"Model " <span id="lm-model-name">{move || lm.model_name.get()}</span></h2>
                <div class="fields">
                    <label class="field"><span>"Hugging Face (or a mirror)"</span>
                        <input id="lm-base" prop:value=move || base.get() on:change=move |ev| base.set(event_target_value(&ev)) /></label>
                    <label class="field"><span>"repository"</span>
                        <input id="lm-repo" prop:value=move || repo.get() on:change=move |ev| repo.set(event_target_value(&ev)) /></label>
                </div>
                <div class="buttons"><button id="lm-download" on:click=download>"Download model"</button></div>
                <ProgressList id="lm-progress" progress=progress />
                <p id="lm-model-memory" class="muted"
                    data-gpu-bytes=move || memory.get().and_then(|m| m.gpu_bytes).unwrap_or(0).to_string()
                    data-through-wasm=move || memory.get().map_or(0, |m| m.through_wasm).to_string()
                    data-weight-bytes=move || memory.get().map_or(0, |m| m.weight_bytes).to_string()
                    data-wasm-memory=move || memory.get().map_or(0, |m| m.wasm_memory).to_string()>
                    {move || memory.get().map(|m| describe_memory(&m)).unwrap_or_default()}
                </p>
                <p id="lm-cache" class="muted">"Cached models and SAEs: "
                    <span id="lm-cache-total">{move || match cache.get() {
                        None => "…".to_string(),
                        Some((files, bytes)) => format!("{:.1} MB in {files} file{}", bytes as f64 / 1e6, if files == 1 { "" } else { "s" }),
                    }}</span>" "
                    <button id="lm-cache-clear" on:click=clear_cache>"Clear the cache"</button></p>
                <p class="muted">"…or drop the model's folder here, or choose its files:"</p>
                <label>"the model's files (config.json, model.safetensors or its index and shards, tokenizer.json) "
                    <input id="lm-model-files" type="file" multiple accept=".json,.safetensors" on:change=on_model_files /></label>
                <label>"…or its folder "
                    <input id="lm-model-folder" type="file" node_ref=folder_input on:change=on_model_files /></label>
    }
}

/// One progress bar per file being downloaded.
#[component]
pub(super) fn ProgressList(id: &'static str, progress: RwSignal<Vec<Progress>>) -> impl IntoView {
    view! {
        <ul id=id class="progress">
            {move || progress.with(|list| list.iter().map(|p| {
                let pct = if p.total > 0.0 { 100.0 * p.loaded / p.total } else { 0.0 };
                view! {
                    <li data-file=p.file.clone()>
                        <span class="file">{p.file.clone()}</span>
                        <progress max="100" value=format!("{pct:.0}")></progress>
                        <span class="bytes">{format!("{:.1} / {:.1} MB{}", p.loaded / 1e6, p.total / 1e6, if p.cached { " (cached)" } else { "" })}</span>
                    </li>
                }
            }).collect_view())}
        </ul>
    }
}

impl Progress {
    /// A file about to be downloaded.
    pub(super) fn waiting(file: &str) -> Progress {
        Progress { file: file.to_string(), loaded: 0.0, total: 0.0, cached: false }
    }
}

/// A callback that moves `file`'s bar in `progress` as its bytes arrive.
pub(super) fn progress_of(progress: RwSignal<Vec<Progress>>, file: &str) -> impl FnMut(f64, f64, bool) + 'static {
    let file = file.to_string();
    move |loaded: f64, total: f64, cached: bool| {
        progress.update(|list| {
            if let Some(p) = list.iter_mut().find(|p| p.file == file) {
                (p.loaded, p.total, p.cached) = (loaded, total, cached);
            }
        })
    }
}

/// The SAE at one of the model's hooks: its files, or one bundled with the page.
#[component]
pub(super) fn SaePicker() -> impl IntoView {
    let lm = expect_context::<Lm>();
    let on_sae_files = move |ev: leptos::ev::Event| spawn_local(load_sae(lm, web::files_of(&ev)));
    let on_bundled_sae = move |ev: leptos::ev::Event| {
        let name = event_target_value(&ev);
        if let Some(name) = BUNDLED_SAES.iter().find(|n| **n == name) {
            spawn_local(load_bundled_sae(lm, name));
        }
    };
    view! {
                <label>"SAE at one of its hooks (cfg.json, sae_weights.safetensors) "
                    <input id="lm-sae-files" type="file" multiple accept=".json,.safetensors" on:change=on_sae_files /></label>
                <label>"…or one bundled with the page "
                    <select id="lm-bundled-sae" on:change=on_bundled_sae>
                        {BUNDLED_SAES.iter().map(|n| view! { <option value=*n>{*n}</option> }).collect_view()}
                    </select></label>
    }
}

/// A model folder (or its files) dropped anywhere on the loader's panel.
pub(super) fn on_drop(lm: Lm) -> impl Fn(leptos::ev::DragEvent) + 'static {
    move |ev: leptos::ev::DragEvent| {
        ev.prevent_default();
        let event: web_sys::Event = ev.into();
        spawn_local(async move {
            match web::dropped_files(&event).await {
                Ok(files) => load_model_files(lm, "dropped folder".into(), files).await,
                Err(e) => lm.fail(format!("drop: {e}")),
            }
        });
    }
}

/// What the loaded model's weights take, in words.
fn describe_memory(m: &ModelMemory) -> String {
    let mb = |b: u64| b as f64 / 1e6;
    match m.gpu_bytes {
        Some(gpu) => format!(
            "Weights: {:.1} MB on the GPU; {:.2} MB of the {:.1} MB read passed through the page's memory (wasm memory {:.0} MB).",
            mb(gpu),
            mb(m.through_wasm),
            mb(m.weight_bytes),
            mb(m.wasm_memory)
        ),
        None => format!(
            "Weights: {:.1} MB in the page's memory, for the CPU reference (wasm memory {:.0} MB).",
            mb(m.weight_bytes),
            mb(m.wasm_memory)
        ),
    }
}

async fn refresh_cache(cache: RwSignal<Option<(u64, u64)>>) {
    cache.set(web::cache_usage(CACHE).await.ok());
}

/// A model folder's files as the page holds them: the small ones read, the weights as Blobs.
struct ModelSource {
    origin: ModelOrigin,
    config: Vec<u8>,
    tokenizer: Vec<u8>,
    weights: WeightBlobs,
}

/// Installs a model from chosen or dropped files (each with its path from the chosen or dropped
/// folder), found by name (other files are ignored).
async fn load_model_files(lm: Lm, origin: String, files: Vec<(web_sys::File, String)>) {
    let folder = files.iter().find(|(f, _)| f.name() == CONFIG_FILE).and_then(|(_, path)| FolderName::of_config_path(path));
    let files: Vec<web_sys::File> = files.into_iter().map(|(f, _)| f).collect();
    let by_name = |name: &str| files.iter().find(|f| f.name() == name);
    let read = |name: &'static str| {
        let file = by_name(name).cloned();
        let origin = origin.clone();
        async move {
            match file {
                Some(f) => web::read_file(&f).await.map_err(|e| format!("{name}: {e}")),
                None => Err(format!("the model's {name} is missing ({origin})")),
            }
        }
    };
    let (config, tokenizer) = match (read(CONFIG_FILE).await, read(TOKENIZER_FILE).await) {
        (Ok(c), Ok(t)) => (c, t),
        (Err(e), _) | (_, Err(e)) => return lm.fail(e),
    };
    if let Err(e) = check_before_reading(lm, &config) {
        return lm.fail(e);
    }
    // One model.safetensors, or a sharded checkpoint's index and every shard it names.
    let blob = |f: &web_sys::File| -> web_sys::Blob { f.clone().into() };
    let weights = match (by_name(WEIGHTS_FILE), by_name(INDEX_FILE)) {
        (Some(w), _) => Ok(WeightBlobs { index: None, files: vec![(WEIGHTS_FILE.to_string(), blob(w))] }),
        (None, Some(index)) => match web::read_file(index).await.map_err(|e| format!("{INDEX_FILE}: {e}")) {
            Ok(index) => upload::shard_names(&index).and_then(|names| {
                let files = names
                    .into_iter()
                    .map(|n| {
                        by_name(&n)
                            .map(|f| (n.clone(), blob(f)))
                            .ok_or_else(|| format!("the shard {n} that {INDEX_FILE} names is missing ({origin})"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(WeightBlobs { index: Some(index), files })
            }),
            Err(e) => Err(e),
        },
        (None, None) => Err(format!("the model's {WEIGHTS_FILE} (or {INDEX_FILE} and its shards) is missing ({origin})")),
    };
    match weights {
        Ok(weights) => install_model(lm, ModelSource { origin: ModelOrigin { label: origin, folder }, config, tokenizer, weights }).await,
        Err(e) => lm.fail(e),
    }
}

/// Refuses, before any weight is read or downloaded, a model this backend cannot hold.
fn check_before_reading(lm: Lm, config: &[u8]) -> Result<(), String> {
    let cfg = crate::model::families::describe(config).map_err(|e| e.to_string())?;
    let backend = lm.page.backend();
    let gpu = match &backend {
        Backend::Gpu(gpu) => Some(gpu.as_ref()),
        Backend::Cpu => None,
    };
    upload::check_fits(&cfg, gpu)
}

pub(super) async fn download_model(lm: Lm, url: String) {
    let progress = lm.downloads;
    lm.error.set(None);
    lm.status.set(format!("Downloading {url} …"));
    progress.set([CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE].iter().map(|f| Progress::waiting(f)).collect());
    let on_progress = |name: &str| progress_of(progress, name);
    let address = |name: &str| format!("{url}/{name}");
    let failed = |e: String| {
        // What was loaded before stays; the button can be pressed again.
        lm.fail(format!("{e} — nothing was kept of this file; press Download to retry"));
        lm.status.set(String::new());
    };
    let small = |name: &'static str| {
        let (url, progress) = (address(name), on_progress(name));
        async move { web::fetch_cached(&url, CACHE, progress).await }
    };
    let (config, tokenizer) = match (small(CONFIG_FILE).await, small(TOKENIZER_FILE).await) {
        (Ok(c), Ok(t)) => (c, t),
        (Err(e), _) | (_, Err(e)) => return failed(e),
    };
    if let Err(e) = check_before_reading(lm, &config) {
        lm.status.set(String::new());
        return lm.fail(format!("{e} (nothing was downloaded)"));
    }
    let weights = match web::fetch_blob(&address(WEIGHTS_FILE), CACHE, on_progress(WEIGHTS_FILE)).await {
        Ok(blob) => WeightBlobs { index: None, files: vec![(WEIGHTS_FILE.to_string(), blob)] },
        // No single file: a sharded checkpoint, as the Hub serves large models.
        Err(e) if e.ends_with("HTTP 404") => {
            progress.update(|list| list.retain(|p| p.file != WEIGHTS_FILE));
            progress.update(|list| list.push(Progress::waiting(INDEX_FILE)));
            let index = match small(INDEX_FILE).await {
                Ok(b) => b,
                Err(e) => return failed(format!("{e} (there is no {WEIGHTS_FILE} either)")),
            };
            let names = match upload::shard_names(&index) {
                Ok(names) => names,
                Err(e) => return lm.fail(e),
            };
            progress.update(|list| list.extend(names.iter().map(|n| Progress::waiting(n))));
            let mut files = Vec::new();
            for name in names {
                match web::fetch_blob(&address(&name), CACHE, on_progress(&name)).await {
                    Ok(blob) => files.push((name, blob)),
                    Err(e) => return failed(e),
                }
            }
            WeightBlobs { index: Some(index), files }
        }
        Err(e) => return failed(e),
    };
    install_model(lm, ModelSource { origin: ModelOrigin { label: url, folder: None }, config, tokenizer, weights }).await;
}

async fn install_model(lm: Lm, source: ModelSource) {
    let ModelSource { origin, config, tokenizer, weights } = source;
    let name = origin.label.clone();
    let tokenizer = match TextTokenizer::parse(&tokenizer) {
        Ok(t) => t,
        Err(e) => return lm.fail(e.to_string()),
    };
    let weight_bytes: u64 = weights.files.iter().map(|(_, b)| b.size() as u64).sum();
    let placed = match lm.page.backend() {
        Backend::Gpu(gpu) => {
            lm.status.set("Putting the weights on the GPU …".into());
            let status = lm.status;
            let on_progress = move |done: u64, total: u64| {
                status.set(format!("Putting the weights on the GPU: {:.1} of {:.1} MB …", done as f64 / 1e6, total as f64 / 1e6))
            };
            upload::to_gpu(gpu, &config, &weights, on_progress).await.map(|(m, stats)| (m, stats.host_bytes))
        }
        backend @ Backend::Cpu => {
            lm.status.set("Reading the model …".into());
            web::yield_to_browser().await;
            match upload::to_host(&config, &weights).await {
                Ok(model) => LoadedModel::new(Rc::new(model), &backend).map(|m| (m, weight_bytes)).map_err(|e| e.to_string()),
                Err(e) => Err(e),
            }
        }
    };
    let (model, through_wasm) = match placed {
        Ok(x) => x,
        Err(e) => {
            lm.status.set(String::new());
            return lm.fail(e);
        }
    };
    if tokenizer.vocab_size() > model.cfg.vocab_size {
        lm.status.set(String::new());
        return lm.fail(format!(
            "tokenizer.json has {} tokens but the model's vocabulary is {}",
            tokenizer.vocab_size(),
            model.cfg.vocab_size
        ));
    }
    let facts = format!(
        "{name} — {}, {} layers, width {}, {} heads, vocab {}, context {}",
        model.cfg.model_type, model.cfg.n_layers, model.cfg.d_model, model.cfg.n_heads, model.cfg.vocab_size, model.cfg.max_positions
    );
    lm.memory.set(Some(ModelMemory { gpu_bytes: model.gpu_bytes(), through_wasm, weight_bytes, wasm_memory: web::wasm_memory_bytes() }));
    // An SAE loaded for another model may not fit this one; it is checked again on every run.
    lm.loaded.update_value(|st| st.model = Some(Rc::new((model, tokenizer, origin))));
    lm.model_name.set(facts);
    lm.status.set("Model loaded.".into());
    lm.error.set(None);
    lm.run.set(None);
}

async fn load_sae(lm: Lm, files: Vec<web_sys::File>) {
    let mut cfg = None;
    let mut weights = None;
    for f in &files {
        let bytes = match web::read_file(f).await {
            Ok(b) => b,
            Err(e) => return lm.fail(format!("{}: {e}", f.name())),
        };
        match f.name().as_str() {
            CFG_FILE => cfg = Some(bytes),
            SAE_WEIGHTS_FILE => weights = Some(bytes),
            _ => {}
        }
    }
    let (Some(cfg), Some(weights)) = (cfg, weights) else {
        return lm.fail(format!("choose the SAE's {CFG_FILE} and {SAE_WEIGHTS_FILE} together"));
    };
    install_sae(lm, &cfg, &weights, "").await;
}

/// One of the SAEs bundled with the page, by name.
pub(super) async fn load_bundled_sae(lm: Lm, name: &str) {
    lm.status.set(format!("Loading the bundled SAE {name} …"));
    match super::bundled_sae_files(name).await {
        Ok((cfg, weights)) => install_sae(lm, &cfg, &weights, &format!(" (bundled {name})")).await,
        Err(e) => lm.fail(format!("the bundled SAE {name}: {e}")),
    }
}

/// Parses an SAELens folder's files and installs the SAE (`install`).
pub(super) async fn install_sae(lm: Lm, cfg: &[u8], weights: &[u8], origin: &str) {
    match parse_sae(SaeFileBytes { cfg, weights, sparsity: None }) {
        Ok(sae) => install(lm, sae, origin, None).await,
        Err(e) => lm.fail(e.to_string()),
    }
}

/// Checks an SAE fits the loaded model and puts it on the page's backend; the SAE loaded before
/// stays when any of that fails. `by_name`: its release, SAE id and registry entry, when it was
/// opened by name (the feature views then link to Neuronpedia, and the URL names it).
pub(super) async fn install(lm: Lm, sae: crate::sae::Sae, origin: &str, by_name: Option<super::Named>) {
    if let Some(model) = lm.loaded.with_value(|st| st.model.clone()) {
        if let Err(e) = lm::attach_point(&model.0, &sae) {
            return lm.fail(e.to_string());
        }
    }
    let sae = match LoadedSae::new(Rc::new(sae), &lm.page.backend()) {
        Ok(x) => x,
        Err(e) => return lm.fail(e.to_string()),
    };
    // A transcoder says both ends: what it reads and the hook whose values it predicts.
    let writes = sae.cfg.transcoder.as_ref().and_then(|t| t.hook_name_out.as_deref()).map(|out| format!(" → {out}")).unwrap_or_default();
    let name = format!(
        "{} {} × {} at {}{writes}{origin}",
        sae.cfg.architecture_name(),
        sae.d_in(),
        sae.d_sae(),
        sae.cfg.hook_name.clone().unwrap_or_default()
    );
    let prepend_bos = sae.cfg.prepend_bos;
    lm.loaded.update_value(|st| {
        st.sae = Some(Rc::new((sae, name.clone())));
        st.sample = None;
    });
    // Setting the name tells the panels that show the SAE's features (the dashboards restore
    // those this browser computed before for it).
    lm.prepend_bos.set(prepend_bos);
    lm.named.set(by_name);
    lm.sae_name.set(name);
    lm.error.set(None);
    lm.status.set(String::new());
    lm.feature.set(0);
    lm.lens.set(None);
}
