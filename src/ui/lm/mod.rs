//! The language-model view: load a model of any supported family (from a Hugging Face URL, with per-file progress and
//! the browser's Cache Storage, or from files) and an SAE at one of its hooks, then run text:
//! tokens coloured by a feature's activation, each token's top features, a feature's logit lens
//! and dashboard, the splice metrics, and steered generation beside unsteered. Everything runs
//! through `lm`, on the page's backend.
//!
//! One component per panel — `loader` (model loader, SAE picker), `tokens` (text and token view),
//! `feature` (logit lens, dashboard), `steering`, `splice`, and `lm_train`'s training panel —
//! sharing [`Lm`] through leptos context: the loaded objects, and one signal per thing shown.
//!
//! Token text is always put in the page as text nodes (leptos escapes it), never as HTML.

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
use super::{web, PageBackend};
use crate::dashboard::SampleActivations;
use crate::engine::LoadedSae;
use crate::formats::tokenizer::TextTokenizer;
use crate::lm::{self, LoadedModel, SpliceReport};
use crate::sae::files::{CFG_FILE, WEIGHTS_FILE as SAE_WEIGHTS_FILE};
use crate::sae::Sae;

/// Tokens (as text) with a feature's effect on their logits.
type NamedEffects = Vec<(String, f32)>;

/// Loaded objects (not reactive: wgpu objects are not `Send`).
#[derive(Default)]
struct LmState {
    /// The model on the page's backend, its tokenizer and its name.
    model: Option<Rc<(LoadedModel, TextTokenizer, String)>>,
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
    /// Per token: the selected feature's activation.
    selected_acts: Vec<f32>,
    splice: Option<SpliceReport>,
    device: String,
}

/// The view's shared state, in leptos context: what is loaded, and a signal for each thing shown
/// (each panel reads the few it needs). `Copy`, so handlers and tasks take it by value.
#[derive(Clone, Copy)]
struct Lm {
    page: PageBackend,
    loaded: StoredValue<LmState, LocalStorage>,
    status: RwSignal<String>,
    error: RwSignal<Option<String>>,
    model_name: RwSignal<String>,
    /// The model's files being downloaded.
    downloads: RwSignal<Vec<loader::Progress>>,
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
    fn new(page: PageBackend) -> Lm {
        Lm {
            page,
            loaded: StoredValue::new_local(LmState::default()),
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
    model: Rc<(LoadedModel, TextTokenizer, String)>,
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
    let lm = Lm::new(expect_context::<PageBackend>());
    provide_context(lm);
    let link = crate::page::LmLink::parse(&web::hash());

    // The first time the tab is shown (once the backend is known), with no repository in its
    // link: the bundled model, its first SAE, and a run on a sample text.
    let bundled_started = StoredValue::new(link.repo_named);
    Effect::new(move |_| {
        if lm.page.ready.get() && visible.get() && !bundled_started.get_value() {
            bundled_started.set_value(true);
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
