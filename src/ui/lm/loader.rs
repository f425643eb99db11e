//! The model loader and the SAE picker, and what they load: a model from a Hugging Face URL (with
//! per-file progress and the browser's Cache Storage), from chosen files or a dropped folder; an
//! SAE from its files, bundled with the page, or trained in the page. What fails to load is
//! reported in place; what was loaded before stays.

use std::rc::Rc;

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::super::bundled::BUNDLED_SAES;
use super::super::web;
use super::Lm;
use crate::engine::LoadedSae;
use crate::formats::shards::ShardIndex;
use crate::formats::tokenizer::TextTokenizer;
use crate::lm::{self, LoadedModel};
use crate::model::files::{parse_model, parse_weights, WeightFiles, CONFIG_FILE, INDEX_FILE, TOKENIZER_FILE, WEIGHTS_FILE};
use crate::page::LmLink;
use crate::sae::files::{parse_sae, SaeFileBytes, CFG_FILE, WEIGHTS_FILE as SAE_WEIGHTS_FILE};

/// The Cache Storage bucket for downloaded model files.
const CACHE: &str = "saelab-models-v1";

/// One file's download as shown.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Progress {
    file: String,
    loaded: f64,
    total: f64,
    cached: bool,
}

/// The model: where to download it from (the link's mirror and repository, if any), or its files.
#[component]
pub(super) fn ModelLoader(link: LmLink) -> impl IntoView {
    let lm = expect_context::<Lm>();
    let base = RwSignal::new(link.base);
    let repo = RwSignal::new(link.repo);
    let download = move |_| {
        let url = format!("{}/{}/resolve/main", base.get_untracked().trim_end_matches('/'), repo.get_untracked().trim_matches('/'));
        spawn_local(download_model(lm, url));
    };
    let on_model_files = move |ev: leptos::ev::Event| spawn_local(load_model_files(lm, "files".into(), web::files_of(&ev)));
    // A folder picker: `webkitdirectory` has no typed attribute in leptos, so it is set once mounted.
    let folder_input = NodeRef::<leptos::html::Input>::new();
    Effect::new(move |_| {
        if let Some(input) = folder_input.get() {
            let _ = input.set_attribute("webkitdirectory", "");
        }
    });
    let progress = lm.downloads;
    view! {
                <h2>"Model " <span id="lm-model-name">{move || lm.model_name.get()}</span></h2>
                <div class="fields">
                    <label class="field"><span>"Hugging Face (or a mirror)"</span>
                        <input id="lm-base" prop:value=move || base.get() on:change=move |ev| base.set(event_target_value(&ev)) /></label>
                    <label class="field"><span>"repository"</span>
                        <input id="lm-repo" prop:value=move || repo.get() on:change=move |ev| repo.set(event_target_value(&ev)) /></label>
                </div>
                <div class="buttons"><button id="lm-download" on:click=download>"Download model"</button></div>
                <ul id="lm-progress" class="progress">
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
                <p class="muted">"…or drop the model's folder here, or choose its files:"</p>
                <label>"the model's files (config.json, model.safetensors or its index and shards, tokenizer.json) "
                    <input id="lm-model-files" type="file" multiple accept=".json,.safetensors" on:change=on_model_files /></label>
                <label>"…or its folder "
                    <input id="lm-model-folder" type="file" node_ref=folder_input on:change=on_model_files /></label>
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
                <p>"SAE: " <span id="lm-sae-name">{move || lm.sae_name.get()}</span></p>
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

/// Whether a file name is part of a model folder saelab reads (a sharded checkpoint's shards too).
fn is_model_file(name: &str) -> bool {
    [CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE, INDEX_FILE].contains(&name)
        || (name.starts_with("model-") && name.ends_with(".safetensors"))
}

/// Installs a model from chosen or dropped files, found by name (other files are ignored).
async fn load_model_files(lm: Lm, origin: String, files: Vec<web_sys::File>) {
    let mut bytes = std::collections::HashMap::new();
    for f in &files {
        if !is_model_file(&f.name()) {
            continue;
        }
        match web::read_file(f).await {
            Ok(b) => {
                bytes.insert(f.name(), b);
            }
            Err(e) => return lm.fail(format!("{}: {e}", f.name())),
        }
    }
    let get = |name: &str| bytes.get(name).cloned().ok_or_else(|| format!("the model's {name} is missing ({origin})"));
    // One model.safetensors, or a sharded checkpoint's index and every shard it names.
    let weights = match (bytes.get(WEIGHTS_FILE), bytes.get(INDEX_FILE)) {
        (Some(w), _) => Ok(WeightFiles::Single(w.clone())),
        (None, Some(index)) => ShardIndex::parse(index).map_err(|e| e.to_string()).and_then(|parsed| {
            let shards = parsed.files().into_iter().map(|name| get(name).map(|b| (name.to_string(), b))).collect::<Result<Vec<_>, _>>()?;
            Ok(WeightFiles::Sharded { index: index.clone(), shards })
        }),
        (None, None) => Err(format!("the model's {WEIGHTS_FILE} (or {INDEX_FILE} and its shards) is missing ({origin})")),
    };
    match (get(CONFIG_FILE), weights, get(TOKENIZER_FILE)) {
        (Ok(c), Ok(w), Ok(t)) => install_model(lm, origin, &c, w, &t).await,
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => lm.fail(e),
    }
}

pub(super) async fn download_model(lm: Lm, url: String) {
    let progress = lm.downloads;
    lm.error.set(None);
    lm.status.set(format!("Downloading {url} …"));
    progress.set(
        [CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE]
            .iter()
            .map(|f| Progress { file: f.to_string(), loaded: 0.0, total: 0.0, cached: false })
            .collect(),
    );
    let fetch = |name: String| {
        let file = name.clone();
        let on_progress = move |loaded: f64, total: f64, cached: bool| {
            progress.update(|list| {
                if let Some(p) = list.iter_mut().find(|p| p.file == file) {
                    (p.loaded, p.total, p.cached) = (loaded, total, cached);
                }
            })
        };
        let address = format!("{url}/{name}");
        async move { web::fetch_cached(&address, CACHE, on_progress).await }
    };
    let failed = |e: String| {
        // What was loaded before stays; the button can be pressed again.
        lm.fail(format!("{e} — nothing was kept of this file; press Download to retry"));
        lm.status.set(String::new());
    };
    let (config, tokenizer) = match (fetch(CONFIG_FILE.into()).await, fetch(TOKENIZER_FILE.into()).await) {
        (Ok(c), Ok(t)) => (c, t),
        (Err(e), _) | (_, Err(e)) => return failed(e),
    };
    let weights = match fetch(WEIGHTS_FILE.into()).await {
        Ok(bytes) => WeightFiles::Single(bytes),
        // No single file: a sharded checkpoint, as the Hub serves large models.
        Err(e) if e.ends_with("HTTP 404") => {
            let row = |file: &str| Progress { file: file.to_string(), loaded: 0.0, total: 0.0, cached: false };
            progress.update(|list| list.retain(|p| p.file != WEIGHTS_FILE));
            progress.update(|list| list.push(row(INDEX_FILE)));
            let index = match fetch(INDEX_FILE.into()).await {
                Ok(b) => b,
                Err(e) => return failed(format!("{e} (there is no {WEIGHTS_FILE} either)")),
            };
            let names = match ShardIndex::parse(&index) {
                Ok(parsed) => parsed.files().into_iter().map(str::to_string).collect::<Vec<_>>(),
                Err(e) => return lm.fail(e.to_string()),
            };
            progress.update(|list| list.extend(names.iter().map(|n| row(n))));
            let mut shards = Vec::new();
            for name in names {
                match fetch(name.clone()).await {
                    Ok(bytes) => shards.push((name, bytes)),
                    Err(e) => return failed(e),
                }
            }
            WeightFiles::Sharded { index, shards }
        }
        Err(e) => return failed(e),
    };
    install_model(lm, url, &config, weights, &tokenizer).await;
}

async fn install_model(lm: Lm, name: String, config: &[u8], weights: WeightFiles, tokenizer: &[u8]) {
    lm.status.set("Parsing the model …".into());
    web::yield_to_browser().await;
    let parsed = parse_weights(&weights)
        .and_then(|file| parse_model(config, vec![file]))
        .map_err(|e| e.to_string())
        .and_then(|m| TextTokenizer::parse(tokenizer).map(|t| (m, t)).map_err(|e| e.to_string()));
    let (model, tokenizer) = match parsed {
        Ok(x) => x,
        Err(e) => return lm.fail(e),
    };
    if tokenizer.vocab_size() > model.cfg.vocab_size {
        return lm.fail(format!(
            "tokenizer.json has {} tokens but the model's vocabulary is {}",
            tokenizer.vocab_size(),
            model.cfg.vocab_size
        ));
    }
    let model = match LoadedModel::new(Rc::new(model), &lm.page.backend()) {
        Ok(m) => m,
        Err(e) => return lm.fail(e.to_string()),
    };
    let facts = format!(
        "{name} — {}, {} layers, width {}, {} heads, vocab {}, context {}",
        model.cfg.model_type, model.cfg.n_layers, model.cfg.d_model, model.cfg.n_heads, model.cfg.vocab_size, model.cfg.max_positions
    );
    // An SAE loaded for another model may not fit this one; it is checked again on every run.
    lm.loaded.update_value(|st| st.model = Some(Rc::new((model, tokenizer, name))));
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

/// Parses an SAE, checks it fits the loaded model and puts it on the page's backend; the SAE
/// loaded before stays when any of that fails.
pub(super) async fn install_sae(lm: Lm, cfg: &[u8], weights: &[u8], origin: &str) {
    let sae = match parse_sae(SaeFileBytes { cfg, weights, sparsity: None }) {
        Ok(s) => s,
        Err(e) => return lm.fail(e.to_string()),
    };
    if let Some(model) = lm.loaded.with_value(|st| st.model.clone()) {
        if let Err(e) = lm::attach_point(&model.0, &sae) {
            return lm.fail(e.to_string());
        }
    }
    let sae = match LoadedSae::new(Rc::new(sae), &lm.page.backend()) {
        Ok(x) => x,
        Err(e) => return lm.fail(e.to_string()),
    };
    let name = format!(
        "{} {} × {} at {}{origin}",
        sae.cfg.architecture.name(),
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
    lm.sae_name.set(name);
    lm.error.set(None);
    lm.status.set(String::new());
    lm.feature.set(0);
    lm.lens.set(None);
}
