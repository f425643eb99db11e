//! The language-model view: load a model of any supported family (from a Hugging Face URL, with per-file progress and
//! the browser's Cache Storage, or from files) and an SAE at one of its hooks, then run text:
//! tokens coloured by a feature's activation, each token's top features, a feature's logit lens
//! and dashboard, the splice metrics, and steered generation beside unsteered. Everything runs
//! through `lm`, on the page's backend.
//!
//! One component per panel — `loader` (model loader, SAE picker), `by_name` (SAELens's registry
//! picker, and opening an SAE by release and id), `tokens` (text and token view),
//! `feature` (logit lens, dashboard), `steering`, `splice`, and `lm_train`'s training panel —
//! sharing [`Lm`] through leptos context: the loaded objects, and one signal per thing shown.
//!
//! Token text is always put in the page as text nodes (leptos escapes it), never as HTML.

mod by_name;
mod feature;
mod loader;
mod splice;
mod steering;
mod tokens;
mod upload;

use std::rc::Rc;

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::bundled::{BUNDLED_MODEL, BUNDLED_SAES, BUNDLED_TEXT};
use super::lm_train::ModelEntry;
pub(crate) use super::lm_train::ModelOrigin;
use super::{web, PageBackend};
use crate::dashboard::SampleActivations;
use crate::engine::LoadedSae;
use crate::lm::{self, SpliceReport};
use crate::sae::files::{CFG_FILE, WEIGHTS_FILE as SAE_WEIGHTS_FILE};
use crate::sae::Sae;

/// Tokens (as text) with a feature's effect on their logits.
type NamedEffects = Vec<(String, f32)>;

/// Loaded objects (not reactive: wgpu objects are not `Send`).
#[derive(Default)]
struct LmState {
    /// The model on the page's backend, its tokenizer and where it came from.
    model: Option<Rc<ModelEntry>>,
    sae: Option<Rc<(LoadedSae, String)>>,
    /// The loaded SAE over the dashboard sample (dropped when another SAE or model loads).
    sample: Option<Rc<SampleActivations>>,
    /// A second SAE whose features are matched to the selected one by decoder cosine.
    compare: Option<Rc<(Sae, String)>>,
}

/// The last run, as shown.
#[derive(Clone, Debug, PartialEq, Default)]
struct RunView {
    texts: Vec<String>,
    /// Per token: not a special token (the BOS put first is shown apart).
    evaluated: Vec<bool>,
    /// Per token: (feature, activation), strongest first.
    features: Vec<Vec<(usize, f32)>>,
    /// The SAE's activations `[n_tokens, d_sae]`, for colouring by any feature.
    acts: std::sync::Arc<Vec<f32>>,
    d_sae: usize,
    /// Per token: the selected feature's activation, and that feature (none until one is chosen).
    selected_acts: Vec<f32>,
    selected: Option<usize>,
    splice: Option<SpliceReport>,
    device: String,
}

/// An SAE opened by name: what its views link to and the URL holds.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Named {
    pub release: String,
    pub sae_id: String,
    /// Its Neuronpedia id (`gpt2-small/8-res-jb`), when Neuronpedia has it.
    pub neuronpedia: Option<String>,
}

impl Named {
    /// The feature's Neuronpedia page, when Neuronpedia has the SAE.
    pub fn neuronpedia_url(&self, feature: usize) -> Option<String> {
        self.neuronpedia.as_deref().map(|id| crate::sae::registry::neuronpedia_url(id, feature))
    }
}

/// The view's shared state, in leptos context: what is loaded, and a signal for each thing shown
/// (each panel reads the few it needs). `Copy`, so handlers and tasks take it by value.
#[derive(Clone, Copy)]
struct Lm {
    page: PageBackend,
    loaded: StoredValue<LmState, LocalStorage>,
    /// SAELens's registry, once fetched.
    registry: StoredValue<Option<Rc<crate::sae::registry::Registry>>, LocalStorage>,
    /// The Hub (or mirror) models and SAEs are downloaded from.
    base: RwSignal<String>,
    status: RwSignal<String>,
    error: RwSignal<Option<String>>,
    model_name: RwSignal<String>,
    /// The model's files being downloaded.
    downloads: RwSignal<Vec<loader::Progress>>,
    /// The SAE's files being downloaded (opened by name).
    sae_downloads: RwSignal<Vec<loader::Progress>>,
    /// The loaded SAE's release and id, when it was opened by name.
    named: RwSignal<Option<Named>>,
    /// Where the loaded model's weights are.
    memory: RwSignal<Option<loader::ModelMemory>>,
    sae_name: RwSignal<String>,
    /// Put the model's BOS first (set from the SAE's `prepend_bos` when one loads).
    prepend_bos: RwSignal<bool>,
    text: RwSignal<String>,
    run: RwSignal<Option<RunView>>,
    clicked_token: RwSignal<Option<usize>>,
    feature: RwSignal<usize>,
    lens: RwSignal<Option<(NamedEffects, NamedEffects)>>,
    dash: feature::DashSignals,
}

impl Lm {
    fn new(page: PageBackend, link: &crate::page::LmLink) -> Lm {
        Lm {
            page,
            loaded: StoredValue::new_local(LmState::default()),
            registry: StoredValue::new_local(None),
            base: RwSignal::new(link.base.clone()),
            sae_downloads: RwSignal::new(Vec::new()),
            named: RwSignal::new(None),
            status: RwSignal::new(String::new()),
            error: RwSignal::new(None),
            model_name: RwSignal::new(String::new()),
            downloads: RwSignal::new(Vec::new()),
            memory: RwSignal::new(None),
            sae_name: RwSignal::new(String::new()),
            prepend_bos: RwSignal::new(true),
            text: RwSignal::new("The quick brown fox jumps over the lazy dog.".to_string()),
            run: RwSignal::new(None),
            clicked_token: RwSignal::new(None),
            feature: RwSignal::new(0),
            lens: RwSignal::new(None),
            dash: feature::DashSignals::new(),
        }
    }

    /// Shows an error in place; what was loaded stays.
    fn fail(&self, message: impl Into<String>) {
        self.error.set(Some(message.into()));
    }

    /// The model and SAE of a run, taken out of the state (so no borrow is held across an await),
    /// checked to fit each other.
    fn loaded(&self) -> Result<Loaded, String> {
        let (model, sae) = self.loaded.with_value(|st| (st.model.clone(), st.sae.clone()));
        let model = model.ok_or("load a model first")?;
        let sae = sae.ok_or("load an SAE for this model first")?;
        lm::attach_point(&model.0, &sae.0).map_err(|e| e.to_string())?;
        Ok(Loaded { model, sae })
    }

    /// Selects a feature (its activations on the last run, logit lens and dashboard).
    fn select(self, feature: usize) {
        spawn_local(tokens::select(self, feature));
    }
}

/// Everything a run needs.
struct Loaded {
    model: Rc<ModelEntry>,
    sae: Rc<(LoadedSae, String)>,
}

impl Loaded {
    /// Where the model runs (and the SAE: both were placed on the page's backend).
    fn device(&self) -> String {
        self.model.0.backend().name()
    }
}

/// The cfg.json and weights of a bundled SAE.
async fn bundled_sae_files(name: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
    let folder = format!("{BUNDLED_MODEL}/saes/{name}");
    Ok((web::fetch_bytes(&format!("{folder}/{CFG_FILE}")).await?, web::fetch_bytes(&format!("{folder}/{SAE_WEIGHTS_FILE}")).await?))
}

/// One handler for the feature buttons (`data-feature`) inside a panel: reactive children hold no
/// callbacks.
fn on_feature_click(lm: Lm) -> impl Fn(leptos::ev::MouseEvent) + Clone + 'static {
    move |ev: leptos::ev::MouseEvent| {
        use wasm_bindgen::JsCast;
        let feature = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            .and_then(|e| e.get_attribute("data-feature"))
            .and_then(|f| f.parse::<usize>().ok());
        if let Some(f) = feature {
            lm.select(f);
        }
    }
}

#[component]
pub fn LanguageModel(visible: Signal<bool>) -> impl IntoView {
    let link = crate::page::LmLink::parse(&web::hash());
    let lm = Lm::new(expect_context::<PageBackend>(), &link);
    provide_context(lm);

    // The first time the tab is shown (once the backend is known): a link's SAE by name (with its
    // model, text and feature), or with no repository in the link, the bundled model, its first
    // SAE, and a run on a sample text.
    let started = StoredValue::new(link.repo_named && link.sae.is_none());
    let opening = StoredValue::new(link.clone());
    Effect::new(move |_| {
        if !(lm.page.ready.get() && visible.get()) || started.get_value() {
            return;
        }
        started.set_value(true);
        let link = opening.get_value();
        if let Some((release, sae_id)) = link.sae {
            spawn_local(async move {
                by_name::open_by_name(lm, release, sae_id).await;
                if lm.loaded.with_value(|st| st.sae.is_none()) {
                    return;
                }
                if let Some(f) = link.feature {
                    lm.feature.set(f);
                }
                if let Some(text) = link.text {
                    lm.text.set(text.clone());
                    tokens::run_text(lm, text).await;
                    if let Some(f) = link.feature {
                        tokens::select(lm, f).await;
                    }
                }
            });
        } else {
            spawn_local(async move {
                loader::download_model(lm, BUNDLED_MODEL.into()).await;
                if lm.loaded.with_value(|st| st.model.is_none()) {
                    return;
                }
                loader::load_bundled_sae(lm, BUNDLED_SAES[0]).await;
                lm.text.set(BUNDLED_TEXT.into());
                tokens::run_text(lm, BUNDLED_TEXT.into()).await;
            });
        }
    });
    // An SAE opened by name is in the URL with the text and the selected feature, so a link
    // reopens this view.
    Effect::new(move |_| {
        if let Some(named) = lm.named.get() {
            let link = crate::page::LmLink {
                base: lm.base.get(),
                repo: crate::page::LmLink::DEFAULT_REPO.into(),
                repo_named: false,
                sae: Some((named.release, named.sae_id)),
                text: Some(lm.text.get()),
                feature: Some(lm.feature.get()),
            };
            web::set_hash(&link.to_hash());
        }
    });

    let source = super::lm_train::ModelSource {
        model: Box::new(move || lm.loaded.with_value(|st| st.model.clone())),
        open_sae: Box::new(move |cfg, weights| {
            spawn_local(async move { loader::install_sae(lm, &cfg, &weights, " (trained here)").await });
        }),
    };
    view! {
        <section class="lm">
            <div class="panel lm-load" id="lm-drop" on:dragover=|ev: leptos::ev::DragEvent| ev.prevent_default() on:drop=loader::on_drop(lm)>
                <loader::ModelLoader link=link />
                <loader::SaePicker />
                <by_name::RegistryPicker />
                <p>"SAE: " <span id="lm-sae-name">{move || lm.sae_name.get()}</span></p>
                <p id="lm-status" class="status">{move || lm.status.get()}</p>
                <Show when=move || lm.error.with(Option::is_some)>
                    <p id="lm-error" class="error" role="alert">{move || lm.error.get().unwrap_or_default()}</p>
                </Show>
            </div>
            <tokens::TokenView />
            <feature::FeatureView />
            <splice::SplicePanel />
            <super::lm_train::TrainPanel source=Rc::new(source) />
        </section>
    }
}
