//! SAEs by name: the picker over SAELens's registry (`registry.json`, beside the page), and opening
//! one by release and SAE id as `SAE.from_pretrained(release, sae_id)` does — its model downloaded
//! from the Hub (when another is loaded), the files its conversion reads downloaded through the
//! page's cache with a progress bar each, converted (`sae::convert`) and attached.

use std::collections::BTreeMap;
use std::rc::Rc;

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::super::lm_train::ModelEntry;
use super::super::web;
use super::loader::{self, Progress, ProgressList};
use super::{Lm, Named};
use crate::model::files::CONFIG_FILE;
use crate::sae::convert::{self, Conversion, SaeSource};
use crate::sae::registry::{Entry, Query, Registry, Release};

/// Downloaded SAE files share the models' cache (one total, one "clear" button).
const CACHE: &str = loader::CACHE;

/// Results shown at once (the count says how many matched).
const SHOWN: usize = 300;

/// The registry, fetched once (the picker and a link's SAE both wait for it).
async fn registry(lm: Lm) -> Result<Rc<Registry>, String> {
    if let Some(r) = lm.registry.get_value() {
        return Ok(r);
    }
    let bytes = web::fetch_bytes("registry.json").await.map_err(|e| format!("SAELens's registry: {e}"))?;
    let parsed = Rc::new(Registry::parse(&bytes).map_err(|e| e.to_string())?);
    lm.registry.set_value(Some(parsed.clone()));
    Ok(parsed)
}

/// The picker: a search box over the SAEs this build opens, the matches grouped by model, and
/// the count of the registry's SAEs this build can open.
#[component]
pub(super) fn RegistryPicker() -> impl IntoView {
    let lm = expect_context::<Lm>();
    let count = RwSignal::new(None::<Result<String, String>>);
    // Bumped once the registry is in, so the results list reads it.
    let ready = RwSignal::new(false);
    spawn_local(async move {
        count.set(Some(registry(lm).await.map(|r| {
            let (open, total) = r.openable();
            format!("This build opens {open} of the {total} SAEs in SAELens's registry ({}).", r.source)
        })));
        ready.set(true);
    });
    let query = RwSignal::new(String::new());
    let chosen = RwSignal::new(None::<(String, String)>);
    let results = Memo::new(move |_| {
        ready.track();
        let registry = lm.registry.get_value()?;
        Some(Query::parse(&query.get()).map(|q| {
            let found = registry.search(&q);
            let total = found.len();
            let groups = grouped(found.into_iter().take(SHOWN));
            (total, groups)
        }))
    });
    let open = move |_| {
        if let Some((release, sae_id)) = chosen.get_untracked() {
            spawn_local(open_by_name(lm, release, sae_id));
        } else {
            lm.fail("choose an SAE from the list first");
        }
    };
    let on_choose = move |ev: leptos::ev::Event| {
        let value = event_target_value(&ev);
        chosen.set(value.split_once('/').map(|(r, s)| (r.to_string(), s.to_string())));
    };
    view! {
        <h3>"SAELens's registry, by name"</h3>
        <p id="lm-registry-count" class="muted">{move || match count.get() {
            None => "Reading SAELens's registry …".to_string(),
            Some(Ok(c)) => c,
            Some(Err(e)) => e,
        }}</p>
        {move || {
            ready.track();
            let causes = lm.registry.get_value()?.why_not_by_cause();
            let total: usize = causes.iter().map(|(n, _)| n).sum();
            (total > 0).then(|| view! {
                <details id="lm-registry-why-not" class="muted">
                    <summary>{format!("Why not the other {total}")}</summary>
                    <ul>{causes.into_iter().map(|(n, cause)| view! { <li>{format!("{n}: {cause}")}</li> }).collect_view()}</ul>
                </details>
            })
        }}
        <label class="field"><span>"search: model, release, hook, width, l0<50"</span>
            <input id="lm-registry-search" placeholder="gpt2-small-res-jb blocks.8" prop:value=move || query.get()
                on:input=move |ev| query.set(event_target_value(&ev)) /></label>
        <p id="lm-registry-matches" class="muted">{move || match results.get() {
            None => String::new(),
            Some(Err(e)) => e,
            Some(Ok((total, _))) if total > SHOWN => format!("{total} SAEs match; the first {SHOWN} are listed."),
            Some(Ok((total, _))) => format!("{total} SAE{} match.", if total == 1 { "" } else { "s" }),
        }}</p>
        <select id="lm-registry-results" size="8" on:change=on_choose>
            {move || results.get().and_then(Result::ok).map(|(_, groups)| groups.into_iter().map(|(model, rows)| view! {
                <optgroup label=model>
                    {rows.into_iter().map(|(value, label)| view! { <option value=value>{label}</option> }).collect_view()}
                </optgroup>
            }).collect_view())}
        </select>
        <div class="buttons"><button id="lm-registry-open" on:click=open>"Open this SAE (and its model)"</button></div>
        <ProgressList id="lm-sae-progress" progress=lm.sae_downloads />
    }
}

/// `(model, [(value "release/sae_id", label)])` per model, in the search's order.
fn grouped<'r>(found: impl Iterator<Item = (&'r Release, &'r Entry)>) -> Vec<(String, Vec<(String, String)>)> {
    let mut groups: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for (r, e) in found {
        let l0 = e.l0.map(|l0| format!(" · L0 {l0:.0}")).unwrap_or_default();
        let row = (format!("{}/{}", r.release, e.id), format!("{} / {}{l0}", r.release, e.id));
        match groups.last_mut() {
            Some((model, rows)) if *model == r.hf_model => rows.push(row),
            _ => groups.push((r.hf_model.clone(), vec![row])),
        }
    }
    groups
}

/// Whether the loaded model is `repo`, the model an SAE was trained on: downloaded from its
/// address, or loaded from files whose folder's name says `repo` and whose config.json is the one
/// the Hub serves for it (fetched through the cache: a few hundred bytes, where the weights would
/// be gigabytes). The model's name line says when files are taken for the Hub's model, the status
/// why not.
async fn loaded_is(lm: Lm, model: &ModelEntry, repo: &str, model_url: &str) -> bool {
    let origin = &model.2;
    if origin.label == model_url {
        return true;
    }
    let Some(folder) = origin.folder.as_ref().filter(|f| f.names(repo)) else { return false };
    let config_url = format!("{model_url}/{CONFIG_FILE}");
    let same = match web::fetch_cached(&config_url, CACHE, loader::progress_of(lm.downloads, CONFIG_FILE)).await {
        Ok(hub_config) => folder.same_model(repo, &model.0.cfg, &hub_config).map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    match same {
        Ok(true) => {
            // Said beside the model's name, where it stays while the SAE downloads.
            let taken = format!(" · taken for {repo} (its folder's name and config.json are the Hub's)");
            lm.model_name.update(|name| {
                if !name.contains(&taken) {
                    name.push_str(&taken);
                }
            });
            true
        }
        Ok(false) => {
            lm.status
                .set(format!("The loaded model's folder is named as {repo}, but its config.json is not the Hub's: downloading {repo} …"));
            false
        }
        Err(e) => {
            lm.status.set(format!("Could not compare the loaded model with {repo} ({e}): downloading it …"));
            false
        }
    }
}

/// Opens `release`/`sae_id`: its model first (downloaded from the loader's Hub unless it is the
/// one loaded), then the SAE's files from its repository. What was loaded stays if any step fails.
pub(super) async fn open_by_name(lm: Lm, release: String, sae_id: String) {
    lm.error.set(None);
    let registry = match registry(lm).await {
        Ok(r) => r,
        Err(e) => return lm.fail(e),
    };
    let (r, e) = match registry.find(&release, &sae_id) {
        Ok(x) => x,
        Err(e) => return lm.fail(e),
    };
    if let Some(why) = r.why_not(e) {
        return lm.fail(format!("{release}/{sae_id}: saelab cannot open it: {why}"));
    }
    let base = lm.base.get_untracked().trim_end_matches('/').to_string();
    let model_url = format!("{base}/{}/resolve/main", r.hf_model);
    let use_loaded = match lm.loaded.with_value(|st| st.model.clone()) {
        Some(model) => loaded_is(lm, &model, &r.hf_model, &model_url).await,
        None => false,
    };
    if !use_loaded {
        loader::download_model(lm, model_url.clone()).await;
        if lm.loaded.with_value(|st| st.model.as_ref().map(|m| m.2.label.clone())).as_deref() != Some(model_url.as_str()) {
            // download_model said why.
            return;
        }
    }
    let conversion = Conversion::from_name(&r.conversion).expect("why_not checked the conversion");
    let wanted = conversion.wanted(&e.path);
    let progress = lm.sae_downloads;
    progress.set(wanted.iter().map(|w| Progress::waiting(&w.path)).collect());
    lm.status.set(format!("Downloading the SAE {release}/{sae_id} from {} …", r.repo));
    let mut files = BTreeMap::new();
    for w in &wanted {
        let url = format!("{base}/{}/resolve/main/{}", r.repo, w.path);
        let on_progress = loader::progress_of(progress, &w.path);
        let got = if w.required {
            web::fetch_cached(&url, CACHE, on_progress).await.map(Some)
        } else {
            web::fetch_cached_optional(&url, CACHE, on_progress).await
        };
        match got {
            Ok(Some(bytes)) => {
                files.insert(w.path.clone(), bytes);
            }
            Ok(None) => progress.update(|list| list.retain(|p| p.file != w.path)),
            Err(err) => {
                lm.status.set(String::new());
                return lm.fail(format!("{err} — nothing was kept of this file; press Open to retry"));
            }
        }
    }
    lm.status.set(format!("Converting {release}/{sae_id} ({} format) …", conversion.name()));
    web::yield_to_browser().await;
    let source = SaeSource { repo: Some(&r.repo), folder: &e.path, registry: Some((r, e)), files: &files };
    let sae = match convert::convert(conversion, &source) {
        Ok(s) => s,
        Err(err) => {
            lm.status.set(String::new());
            return lm.fail(format!("{release}/{sae_id}: {err}"));
        }
    };
    let named = Named { release: release.clone(), sae_id: sae_id.clone(), neuronpedia: e.neuronpedia.clone() };
    loader::install(lm, sae, &format!(" ({release}/{sae_id})"), Some(named)).await;
}
