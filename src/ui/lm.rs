//! The language-model view: load a GPT-2 model (from a Hugging Face URL, with per-file progress and
//! the browser's Cache Storage, or from files) and an SAE at one of its hooks, then run text:
//! tokens coloured by a feature's activation, each token's top features, a feature's logit lens,
//! the splice metrics, and steered generation beside unsteered. Everything runs through `lm`, on
//! WebGPU when the page has it, else on the CPU reference.
//!
//! Token text is always put in the page as text nodes (leptos escapes it), never as HTML.

use super::bundled::{BUNDLED_MODEL, BUNDLED_SAES, BUNDLED_SAMPLE, BUNDLED_TEXT};
use std::cell::RefCell;
use std::rc::Rc;

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::{web, Engine};
use crate::dashboard::{self, FeatureSummary, SampleActivations};
use crate::engine::LoadedSae;
use crate::formats::tokenizer::TextTokenizer;
use crate::lm::{self, LoadedModel, Sampling, SpliceReport, Steer};
use crate::model::files::{parse_gpt2, CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE};
use crate::sae::files::{parse_sae, SaeFileBytes, CFG_FILE, WEIGHTS_FILE as SAE_WEIGHTS_FILE};
use crate::sae::Sae;

/// The Cache Storage bucket for downloaded model files.
const CACHE: &str = "saelab-models-v1";

/// Features of another SAE nearest a feature, by decoder cosine, or why there are none.
type Matches = Result<Vec<(usize, f32)>, String>;
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

/// An example in a dashboard as shown: a few tokens before, the firing token, a few after.
#[derive(Clone, Debug, PartialEq)]
struct ExampleView {
    before: String,
    token: String,
    after: String,
    activation: f32,
}

/// One feature's dashboard as shown.
#[derive(Clone, Debug, PartialEq)]
struct DashView {
    feature: usize,
    density: f32,
    max_activation: f32,
    histogram: Vec<u32>,
    top: Vec<ExampleView>,
    intervals: Vec<(f32, f32, Vec<ExampleView>)>,
    nearest: Vec<(usize, f32)>,
    /// The nearest features of the comparison SAE (or why there are none), with its name.
    matched: Option<(String, Matches)>,
}

/// One file's download as shown.
#[derive(Clone, Debug, PartialEq)]
struct Progress {
    file: String,
    loaded: f64,
    total: f64,
    cached: bool,
}

/// The last run, as shown.
#[derive(Clone, Debug, PartialEq, Default)]
struct RunView {
    texts: Vec<String>,
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

#[derive(Clone, Debug, PartialEq, Default)]
struct Shown {
    model_name: String,
    sae_name: String,
    progress: Vec<Progress>,
    status: String,
    error: Option<String>,
    run: Option<RunView>,
    clicked_token: Option<usize>,
    feature: usize,
    lens: Option<(NamedEffects, NamedEffects)>,
    generated: Option<(String, String)>,
    /// Dashboards: the sample's size as typed; (contexts done, total) while computing; the
    /// feature list; the selected one.
    sample_limit: String,
    sample_progress: Option<(usize, usize)>,
    sample_status: String,
    feature_list: Vec<FeatureSummary>,
    sort_by_max: bool,
    dash: Option<DashView>,
}

/// Tokens per dashboard context (BOS included), as the bundled SAEs were trained.
const SAMPLE_CONTEXT: usize = 128;

#[component]
pub fn LanguageModel(engine: Rc<RefCell<Engine>>, ready: Signal<bool>, visible: Signal<bool>) -> impl IntoView {
    let state = Rc::new(RefCell::new(LmState::default()));
    let shown = RwSignal::new(Shown { sample_limit: "4096".into(), ..Shown::default() });
    let crate::page::LmLink { base: initial_base, repo: initial_repo, repo_named } = crate::page::LmLink::parse(&web::hash());
    let base = RwSignal::new(initial_base);
    let repo = RwSignal::new(initial_repo);
    let text = RwSignal::new("The quick brown fox jumps over the lazy dog.".to_string());

    // The first time the tab is shown (once WebGPU is set up or known to be missing), with no
    // repository in its link: the bundled model, its first SAE, and a run on a sample text.
    let bundled_started = Rc::new(std::cell::Cell::new(repo_named));
    {
        let (state, engine) = (state.clone(), engine.clone());
        Effect::new(move |_| {
            if ready.get() && visible.get() && !bundled_started.replace(true) {
                let (state, engine) = (state.clone(), engine.clone());
                spawn_local(async move {
                    download_model(state.clone(), engine.clone(), shown, BUNDLED_MODEL.into()).await;
                    if state.borrow().model.is_none() {
                        return;
                    }
                    load_bundled_sae(state.clone(), engine.clone(), shown, BUNDLED_SAES[0]).await;
                    text.set(BUNDLED_TEXT.into());
                    run_text(state, shown, BUNDLED_TEXT.into()).await;
                });
            }
        });
    }
    let on_bundled_sae = {
        let (state, engine) = (state.clone(), engine.clone());
        move |ev: leptos::ev::Event| {
            let name = event_target_value(&ev);
            let (state, engine) = (state.clone(), engine.clone());
            spawn_local(async move {
                if let Some(name) = BUNDLED_SAES.iter().find(|n| **n == name) {
                    load_bundled_sae(state, engine, shown, name).await;
                }
            });
        }
    };
    let on_compare = {
        let state = state.clone();
        move |ev: leptos::ev::Event| {
            let name = event_target_value(&ev);
            let state = state.clone();
            spawn_local(async move { load_comparison(state, shown, name).await });
        }
    };
    let compute_dashboards = {
        let state = state.clone();
        move |_| {
            let state = state.clone();
            spawn_local(async move { compute_sample(state, shown, Dashboards::Compute).await });
        }
    };
    let download = {
        let (state, engine) = (state.clone(), engine.clone());
        move |_| {
            let (state, engine) = (state.clone(), engine.clone());
            let url = format!("{}/{}/resolve/main", base.get_untracked().trim_end_matches('/'), repo.get_untracked().trim_matches('/'));
            spawn_local(async move { download_model(state, engine, shown, url).await });
        }
    };
    let on_model_files = {
        let (state, engine) = (state.clone(), engine.clone());
        move |ev: leptos::ev::Event| {
            let files = web::files_of(&ev);
            let (state, engine) = (state.clone(), engine.clone());
            spawn_local(async move { load_model_files(state, engine, shown, "files".into(), files).await });
        }
    };
    // A model folder (or its files) dropped anywhere on the model panel.
    let on_drop = {
        let (state, engine) = (state.clone(), engine.clone());
        move |ev: leptos::ev::DragEvent| {
            ev.prevent_default();
            let (state, engine) = (state.clone(), engine.clone());
            let event: web_sys::Event = ev.into();
            spawn_local(async move {
                match web::dropped_files(&event).await {
                    Ok(files) => load_model_files(state, engine, shown, "dropped folder".into(), files).await,
                    Err(e) => shown.update(|s| s.error = Some(format!("drop: {e}"))),
                }
            });
        }
    };
    // A folder picker: `webkitdirectory` has no typed attribute in leptos, so it is set once mounted.
    let folder_input = NodeRef::<leptos::html::Input>::new();
    Effect::new(move |_| {
        if let Some(input) = folder_input.get() {
            let _ = input.set_attribute("webkitdirectory", "");
        }
    });
    let on_sae_files = {
        let (state, engine) = (state.clone(), engine.clone());
        move |ev: leptos::ev::Event| {
            let files = web::files_of(&ev);
            let (state, engine) = (state.clone(), engine.clone());
            spawn_local(async move { load_sae(state, engine, shown, files).await });
        }
    };
    let run = {
        let state = state.clone();
        move |_| {
            let state = state.clone();
            spawn_local(async move { run_text(state, shown, text.get_untracked()).await });
        }
    };
    let select_feature = {
        let state = state.clone();
        move |feature: usize| {
            let state = state.clone();
            spawn_local(async move { select(state, shown, feature).await });
        }
    };
    let on_feature_click = {
        let select_feature = select_feature.clone();
        move |ev: leptos::ev::MouseEvent| {
            use wasm_bindgen::JsCast;
            let feature = ev
                .target()
                .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
                .and_then(|e| e.get_attribute("data-feature"))
                .and_then(|f| f.parse::<usize>().ok());
            if let Some(f) = feature {
                select_feature(f);
            }
        }
    };
    let select_from_input = {
        let select_feature = select_feature.clone();
        move |ev: leptos::ev::Event| match event_target_value(&ev).trim().parse::<usize>() {
            Ok(f) => select_feature(f),
            Err(_) => shown.update(|s| s.error = Some(format!("feature: '{}' is not a feature index", event_target_value(&ev)))),
        }
    };

    let source = {
        let (state_m, state_o, engine_o) = (state.clone(), state.clone(), engine.clone());
        super::lm_train::ModelSource {
            model: Box::new(move || state_m.borrow().model.clone()),
            open_sae: Box::new(move |cfg, weights| {
                let (state, engine) = (state_o.clone(), engine_o.clone());
                spawn_local(async move { install_sae(state, engine, shown, &cfg, &weights, " (trained here)").await });
            }),
        }
    };
    let train_panel = super::lm_train::TrainPanel(super::lm_train::TrainPanelProps { source: Rc::new(source) });
    view! {
        <section class="lm">
            <div class="panel lm-load" id="lm-drop" on:dragover=|ev: leptos::ev::DragEvent| ev.prevent_default() on:drop=on_drop>
                <h2>"Model " <span id="lm-model-name">{move || shown.with(|s| s.model_name.clone())}</span></h2>
                <div class="fields">
                    <label class="field"><span>"Hugging Face (or a mirror)"</span>
                        <input id="lm-base" prop:value=move || base.get() on:change=move |ev| base.set(event_target_value(&ev)) /></label>
                    <label class="field"><span>"repository"</span>
                        <input id="lm-repo" prop:value=move || repo.get() on:change=move |ev| repo.set(event_target_value(&ev)) /></label>
                </div>
                <div class="buttons"><button id="lm-download" on:click=download>"Download model"</button></div>
                <ul id="lm-progress" class="progress">
                    {move || shown.with(|s| s.progress.iter().map(|p| {
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
                <label>"the model's files (config.json, model.safetensors, tokenizer.json) "
                    <input id="lm-model-files" type="file" multiple accept=".json,.safetensors" on:change=on_model_files.clone() /></label>
                <label>"…or its folder "
                    <input id="lm-model-folder" type="file" node_ref=folder_input on:change=on_model_files /></label>
                <label>"SAE at one of its hooks (cfg.json, sae_weights.safetensors) "
                    <input id="lm-sae-files" type="file" multiple accept=".json,.safetensors" on:change=on_sae_files /></label>
                <label>"…or one bundled with the page "
                    <select id="lm-bundled-sae" on:change=on_bundled_sae>
                        {BUNDLED_SAES.iter().map(|n| view! { <option value=*n>{*n}</option> }).collect_view()}
                    </select></label>
                <p>"SAE: " <span id="lm-sae-name">{move || shown.with(|s| s.sae_name.clone())}</span></p>
                <p id="lm-status" class="status">{move || shown.with(|s| s.status.clone())}</p>
                <Show when=move || shown.with(|s| s.error.is_some())>
                    <p id="lm-error" class="error" role="alert">{move || shown.with(|s| s.error.clone().unwrap_or_default())}</p>
                </Show>
            </div>
            <div class="panel lm-text">
                <h2>"Text"</h2>
                <textarea id="lm-text" rows="3" prop:value=move || text.get() on:input=move |ev| text.set(event_target_value(&ev))></textarea>
                <div class="buttons"><button id="lm-run" on:click=run>"Run"</button></div>
                <p class="muted">"Tokens coloured by feature " <input id="lm-feature" class="narrow" prop:value=move || shown.with(|s| s.feature.to_string()) on:change=select_from_input />
                    " — click a token for its features."</p>
                <div id="lm-tokens" class="tokens">
                    {move || shown.with(|s| s.run.as_ref().map(|r| {
                        let max = r.selected_acts.iter().copied().fold(0.0f32, f32::max).max(1e-6);
                        r.texts.iter().enumerate().map(|(i, t)| {
                            let a = r.selected_acts.get(i).copied().unwrap_or(0.0);
                            let style = format!("background: rgba(214, 92, 38, {:.3})", (a / max).clamp(0.0, 1.0) * 0.85);
                            view! { <span class="token" data-index=i.to_string() data-act=format!("{a:.4}") style=style
                                on:click=move |_| shown.update(|s| s.clicked_token = Some(i))>{t.clone()}</span> }
                        }).collect_view()
                    }))}
                </div>
                // One handler for the feature buttons below (reactive children hold no callbacks).
                <div on:click=on_feature_click.clone()>
                {move || shown.with(|s| s.clicked_token.and_then(|i| s.run.as_ref().map(|r| (i, r.clone())))).map(|(i, r)| {
                    view! {
                        <div id="lm-token-features">
                            <h3>"Features on token " <q>{r.texts.get(i).cloned().unwrap_or_default()}</q></h3>
                            <ol>{r.features.get(i).cloned().unwrap_or_default().into_iter().map(|(f, a)| {
                                view! { <li><button class="link" data-feature=f.to_string()>{format!("#{f}")}</button>{format!(" {a:.3}")}</li> }
                            }).collect_view()}</ol>
                        </div>
                    }
                })}
                </div>
            </div>
            <div class="panel lm-feature">
                <h2>"Feature " <span id="lm-feature-index">{move || shown.with(|s| s.feature)}</span></h2>
                <p class="muted">"Logit lens: W_dec[f]·W_U, ln_final's scale folded in, centred over the vocabulary."</p>
                <LogitLens shown=shown />
                <h3>"Dashboard"</h3>
                <div class="fields">
                    <label class="field"><span>"sample tokens (of the bundled held-out text)"</span>
                        <input id="lm-sample-tokens" prop:value=move || shown.with(|s| s.sample_limit.clone()) on:change=move |ev| shown.update(|s| s.sample_limit = event_target_value(&ev)) /></label>
                </div>
                <div class="buttons"><button id="lm-dashboards" on:click=compute_dashboards>"Compute dashboards"</button>
                    <label>" match features with "
                        <select id="lm-compare" on:change=on_compare>
                            <option value="">"no other SAE"</option>
                            {BUNDLED_SAES.iter().map(|n| view! { <option value=*n>{*n}</option> }).collect_view()}
                        </select></label></div>
                {move || shown.with(|s| s.sample_progress).map(|(done, total)| view! {
                    <p><progress id="lm-sample-progress" max=total.to_string() value=done.to_string()></progress>{format!(" {done} / {total} contexts")}</p>
                })}
                <p id="lm-sample-status" class="status">{move || shown.with(|s| s.sample_status.clone())}</p>
                <div on:click=on_feature_click.clone()>
                {move || shown.with(|s| s.dash.clone()).map(dashboard_view)}
                </div>
                <div on:click=on_feature_click.clone()>
                {move || shown.with(|s| !s.feature_list.is_empty()).then(|| view! {
                    <h3>"Features by " <select id="lm-sort" on:change=move |ev| shown.update(|s| s.sort_by_max = event_target_value(&ev) == "max")>
                        <option value="density">"firing density"</option><option value="max">"max activation"</option></select></h3>
                    <table id="lm-feature-list" class="feature-list"><tr><th>"feature"</th><th>"density"</th><th>"max"</th></tr>
                    {move || shown.with(|s| {
                        let mut list = s.feature_list.clone();
                        if s.sort_by_max {
                            list.sort_by(|a, b| b.max_activation.total_cmp(&a.max_activation).then(a.feature.cmp(&b.feature)));
                        } else {
                            list.sort_by(|a, b| b.density.total_cmp(&a.density).then(a.feature.cmp(&b.feature)));
                        }
                        list.truncate(40);
                        list.into_iter().map(|f| view! {
                            <tr><td><button class="link" data-feature=f.feature.to_string()>{format!("#{}", f.feature)}</button></td>
                                <td>{format!("{:.2e}", f.density)}</td><td>{format!("{:.2}", f.max_activation)}</td></tr>
                        }).collect_view()
                    })}
                    </table>
                })}
                </div>
                <Steering state=state.clone() shown=shown text=text />
            </div>
            <SplicePanel shown=shown />
            {train_panel}
        </section>
    }
}

/// The selected feature's logit lens: the tokens it promotes and suppresses most.
#[component]
fn LogitLens(shown: RwSignal<Shown>) -> impl IntoView {
    view! {
                {move || shown.with(|s| s.lens.clone()).map(|(top, bottom)| view! {
                    <div class="lens">
                        <div><h3>"promotes"</h3><ol id="lm-lens-top">{top.into_iter().map(|(t, e)| view! { <li><code>{t}</code>{format!(" {e:+.3}")}</li> }).collect_view()}</ol></div>
                        <div><h3>"suppresses"</h3><ol id="lm-lens-bottom">{bottom.into_iter().map(|(t, e)| view! { <li><code>{t}</code>{format!(" {e:+.3}")}</li> }).collect_view()}</ol></div>
                    </div>
                })}
    }
}

/// Steering: generate from the text with and without the selected feature pushed or clamped.
#[component]
fn Steering(state: Rc<RefCell<LmState>>, shown: RwSignal<Shown>, text: RwSignal<String>) -> impl IntoView {
    let alpha = RwSignal::new("20".to_string());
    let new_tokens = RwSignal::new("12".to_string());
    // "add" (α·W_dec[f] at every position) or "clamp" (the feature set to α).
    let steer_mode = RwSignal::new("add".to_string());
    let temperature = RwSignal::new("0".to_string());
    let seed = RwSignal::new("0".to_string());
    let generate = {
        let state = state.clone();
        move |_| {
            let state = state.clone();
            let settings = SteerSettings {
                alpha: alpha.get_untracked(),
                new_tokens: new_tokens.get_untracked(),
                clamp: steer_mode.get_untracked() == "clamp",
                temperature: temperature.get_untracked(),
                seed: seed.get_untracked(),
            };
            spawn_local(async move { steer(state, shown, text.get_untracked(), settings).await });
        }
    };
    view! {
                <h3>"Steering"</h3>
                <div class="fields">
                    <label class="field"><span>"mode"</span>
                        <select id="lm-steer-mode" on:change=move |ev| steer_mode.set(event_target_value(&ev))>
                            <option value="add" selected=true>"add α·W_dec[f] at every token"</option>
                            <option value="clamp">"clamp the feature to α"</option>
                        </select></label>
                    <label class="field"><span>"α"</span><input id="lm-alpha" prop:value=move || alpha.get() on:change=move |ev| alpha.set(event_target_value(&ev)) /></label>
                    <label class="field"><span>"new tokens"</span><input id="lm-new-tokens" prop:value=move || new_tokens.get() on:change=move |ev| new_tokens.set(event_target_value(&ev)) /></label>
                    <label class="field"><span>"temperature (0: greedy)"</span><input id="lm-temperature" prop:value=move || temperature.get() on:change=move |ev| temperature.set(event_target_value(&ev)) /></label>
                    <label class="field"><span>"seed"</span><input id="lm-seed" prop:value=move || seed.get() on:change=move |ev| seed.set(event_target_value(&ev)) /></label>
                </div>
                <div class="buttons"><button id="lm-generate" on:click=generate>"Generate"</button></div>
                {move || shown.with(|s| s.generated.clone()).map(|(plain, steered)| view! {
                    <table class="generated">
                        <tr><th>"unsteered"</th><td id="lm-unsteered">{plain}</td></tr>
                        <tr><th>"steered"</th><td id="lm-steered">{steered}</td></tr>
                    </table>
                })}
    }
}

/// What the SAE's reconstruction error costs the model on the last run (the splice evaluation).
#[component]
fn SplicePanel(shown: RwSignal<Shown>) -> impl IntoView {
    view! {
            <div class="panel lm-splice">
                <h2>"What the SAE costs the model " <span class="muted">{move || shown.with(|s| s.run.as_ref().map(|r| r.device.clone()).unwrap_or_default())}</span></h2>
                {move || shown.with(|s| s.run.as_ref().and_then(|r| r.splice.clone())).map(|r| view! {
                    <table class="lab-figures" id="lm-splice">
                        <tr><th>"hook"</th><td>{r.hook.to_string()}</td></tr>
                        <tr><th>"CE clean"</th><td id="lm-ce-clean">{format!("{:.4}", r.ce_clean)}</td></tr>
                        <tr><th>"CE with SAE spliced in"</th><td id="lm-ce-spliced">{format!("{:.4}", r.ce_spliced)}</td></tr>
                        <tr><th>"CE zero-ablated"</th><td id="lm-ce-zero">{format!("{:.4}", r.ce_zero_ablation)}</td></tr>
                        <tr><th>"CE loss recovered"</th><td id="lm-ce-recovered">{format!("{:.4}", r.ce_recovered)}</td></tr>
                        <tr><th>"KL(clean ‖ spliced)"</th><td id="lm-kl">{format!("{:.4}", r.kl)}</td></tr>
                        <tr><th>"CE with a random error of the same norm"</th><td id="lm-ce-random">{format!("{:.4}", r.ce_random_error)}</td></tr>
                        <tr><th>"L0"</th><td id="lm-l0">{format!("{:.2}", r.l0)}</td></tr>
                    </table>
                })}
            </div>
    }
}

/// Installs a model from chosen or dropped files, found by name (other files are ignored).
async fn load_model_files(
    state: Rc<RefCell<LmState>>,
    engine: Rc<RefCell<Engine>>,
    shown: RwSignal<Shown>,
    origin: String,
    files: Vec<web_sys::File>,
) {
    let mut bytes = std::collections::HashMap::new();
    for f in &files {
        if ![CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE].contains(&f.name().as_str()) {
            continue;
        }
        match web::read_file(f).await {
            Ok(b) => {
                bytes.insert(f.name(), b);
            }
            Err(e) => return shown.update(|s| s.error = Some(format!("{}: {e}", f.name()))),
        }
    }
    let get = |name: &str| bytes.get(name).cloned().ok_or_else(|| format!("the model's {name} is missing ({origin})"));
    match (get(CONFIG_FILE), get(WEIGHTS_FILE), get(TOKENIZER_FILE)) {
        (Ok(c), Ok(w), Ok(t)) => install_model(state, engine, shown, origin, &c, &w, &t).await,
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => shown.update(|s| s.error = Some(e)),
    }
}

async fn download_model(state: Rc<RefCell<LmState>>, engine: Rc<RefCell<Engine>>, shown: RwSignal<Shown>, url: String) {
    shown.update(|s| {
        s.error = None;
        s.status = format!("Downloading {url} …");
        s.progress = [CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE]
            .iter()
            .map(|f| Progress { file: f.to_string(), loaded: 0.0, total: 0.0, cached: false })
            .collect();
    });
    let mut files = Vec::new();
    for name in [CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE] {
        let file = name.to_string();
        let progress = move |loaded: f64, total: f64, cached: bool| {
            shown.update(|s| {
                if let Some(p) = s.progress.iter_mut().find(|p| p.file == file) {
                    (p.loaded, p.total, p.cached) = (loaded, total, cached);
                }
            })
        };
        match web::fetch_cached(&format!("{url}/{name}"), CACHE, progress).await {
            Ok(bytes) => files.push(bytes),
            Err(e) => {
                // What was loaded before stays; the button can be pressed again.
                return shown.update(|s| {
                    s.error = Some(format!("{e} — nothing was kept of this file; press Download to retry"));
                    s.status = String::new();
                });
            }
        }
    }
    install_model(state, engine, shown, url, &files[0], &files[2], &files[1]).await;
}

async fn install_model(
    state: Rc<RefCell<LmState>>,
    engine: Rc<RefCell<Engine>>,
    shown: RwSignal<Shown>,
    name: String,
    config: &[u8],
    weights: &[u8],
    tokenizer: &[u8],
) {
    shown.update(|s| s.status = "Parsing the model …".into());
    web::yield_to_browser().await;
    let parsed = parse_gpt2(config, weights)
        .map_err(|e| e.to_string())
        .and_then(|m| TextTokenizer::parse(tokenizer).map(|t| (m, t)).map_err(|e| e.to_string()));
    let (model, tokenizer) = match parsed {
        Ok(x) => x,
        Err(e) => return shown.update(|s| s.error = Some(e)),
    };
    if tokenizer.vocab_size() > model.cfg.vocab_size {
        return shown.update(|s| {
            s.error =
                Some(format!("tokenizer.json has {} tokens but the model's vocabulary is {}", tokenizer.vocab_size(), model.cfg.vocab_size))
        });
    }
    let backend = engine.borrow().backend.clone();
    let model = match LoadedModel::new(Rc::new(model), &backend) {
        Ok(m) => m,
        Err(e) => return shown.update(|s| s.error = Some(e.to_string())),
    };
    let facts = format!(
        "{name} — {} layers, width {}, {} heads, vocab {}, context {}",
        model.cfg.n_layers, model.cfg.d_model, model.cfg.n_heads, model.cfg.vocab_size, model.cfg.n_positions
    );
    let mut st = state.borrow_mut();
    st.model = Some(Rc::new((model, tokenizer, name)));
    // An SAE loaded for another model may not fit this one; it is checked again on every run.
    shown.update(|s| {
        s.model_name = facts;
        s.status = "Model loaded.".into();
        s.error = None;
        s.run = None;
    });
}

async fn load_sae(state: Rc<RefCell<LmState>>, engine: Rc<RefCell<Engine>>, shown: RwSignal<Shown>, files: Vec<web_sys::File>) {
    let mut cfg = None;
    let mut weights = None;
    for f in &files {
        let bytes = match web::read_file(f).await {
            Ok(b) => b,
            Err(e) => return shown.update(|s| s.error = Some(format!("{}: {e}", f.name()))),
        };
        match f.name().as_str() {
            CFG_FILE => cfg = Some(bytes),
            SAE_WEIGHTS_FILE => weights = Some(bytes),
            _ => {}
        }
    }
    let (Some(cfg), Some(weights)) = (cfg, weights) else {
        return shown.update(|s| s.error = Some(format!("choose the SAE's {CFG_FILE} and {SAE_WEIGHTS_FILE} together")));
    };
    install_sae(state, engine, shown, &cfg, &weights, "").await;
}

/// The cfg.json and weights of a bundled SAE.
async fn bundled_sae_files(name: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
    let folder = format!("{BUNDLED_MODEL}/saes/{name}");
    Ok((web::fetch_bytes(&format!("{folder}/{CFG_FILE}")).await?, web::fetch_bytes(&format!("{folder}/{SAE_WEIGHTS_FILE}")).await?))
}

/// One of the SAEs bundled with the page, by name.
async fn load_bundled_sae(state: Rc<RefCell<LmState>>, engine: Rc<RefCell<Engine>>, shown: RwSignal<Shown>, name: &str) {
    shown.update(|s| s.status = format!("Loading the bundled SAE {name} …"));
    match bundled_sae_files(name).await {
        Ok((cfg, weights)) => install_sae(state, engine, shown, &cfg, &weights, &format!(" (bundled {name})")).await,
        Err(e) => shown.update(|s| s.error = Some(format!("the bundled SAE {name}: {e}"))),
    }
}

/// Parses an SAE, checks it fits the loaded model and puts it on the GPU; the SAE loaded before
/// stays when any of that fails.
async fn install_sae(
    state: Rc<RefCell<LmState>>,
    engine: Rc<RefCell<Engine>>,
    shown: RwSignal<Shown>,
    cfg: &[u8],
    weights: &[u8],
    origin: &str,
) {
    let sae = match parse_sae(SaeFileBytes { cfg, weights, sparsity: None }) {
        Ok(s) => s,
        Err(e) => return shown.update(|s| s.error = Some(e.to_string())),
    };
    if let Some(model) = state.borrow().model.clone() {
        if let Err(e) = lm::attach_point(&model.0, &sae) {
            return shown.update(|s| s.error = Some(e.to_string()));
        }
    }
    let backend = engine.borrow().backend.clone();
    let sae = match LoadedSae::new(Rc::new(sae), &backend) {
        Ok(x) => x,
        Err(e) => return shown.update(|s| s.error = Some(e.to_string())),
    };
    let name = format!(
        "{} {} × {} at {}{origin}",
        sae.cfg.architecture.name(),
        sae.d_in(),
        sae.d_sae(),
        sae.cfg.hook_name.clone().unwrap_or_default()
    );
    let mut st = state.borrow_mut();
    st.sae = Some(Rc::new((sae, name.clone())));
    st.sample = None;
    shown.update(|s| {
        s.feature_list.clear();
        s.dash = None;
        s.sample_progress = None;
        s.sample_status = String::new();
        s.sae_name = name;
        s.error = None;
        s.status = String::new();
        s.feature = 0;
        s.lens = None;
    });
    drop(st);
    // Dashboards this browser computed before for this SAE and sample open with it.
    spawn_local(async move { compute_sample(state, shown, Dashboards::IfSaved).await });
}

/// Where shown dashboards came from.
enum Origin {
    Saved,
    Computed { kept: bool },
}

/// Whether `compute_sample` computes dashboards, or only shows those saved before.
#[derive(Clone, Copy, PartialEq)]
enum Dashboards {
    Compute,
    IfSaved,
}

/// Everything a run needs, taken out of the state (so no borrow is held across an await).
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

fn loaded(state: &Rc<RefCell<LmState>>) -> Result<Loaded, String> {
    let st = state.borrow();
    let model = st.model.clone().ok_or("load a model first")?;
    let sae = st.sae.clone().ok_or("load an SAE for this model first")?;
    lm::attach_point(&model.0, &sae.0).map_err(|e| e.to_string())?;
    Ok(Loaded { model, sae })
}

async fn run_text(state: Rc<RefCell<LmState>>, shown: RwSignal<Shown>, text: String) {
    let l = match loaded(&state) {
        Ok(l) => l,
        Err(e) => return shown.update(|s| s.error = Some(e)),
    };
    let (model, tokenizer) = (&l.model.0, &l.model.1);
    let tokens = match tokenizer.encode(&text) {
        Ok(t) => t,
        Err(e) => return shown.update(|s| s.error = Some(e.to_string())),
    };
    if let Err(e) = crate::model::check_tokens(&model.cfg, &tokens) {
        return shown.update(|s| s.error = Some(e.to_string()));
    }
    shown.update(|s| {
        s.status = format!("Running {} tokens …", tokens.len());
        s.error = None;
    });
    web::yield_to_browser().await;
    let sae = &l.sae.0;
    // One clean pass serves the token colours, the feature lists and the splice evaluation.
    let started = web::now_ms();
    let run = match lm::run_text(model, sae, &tokens).await {
        Ok(r) => r,
        Err(e) => return shown.update(|s| s.error = Some(e.to_string())),
    };
    let ran = web::now_ms();
    let features = lm::top_features(&run.sae_acts, sae.d_sae(), 8);
    let splice = if tokens.len() >= 2 {
        match lm::splice_from(model, &tokens, &run, 0).await {
            Ok(r) => Some(r),
            Err(e) => return shown.update(|s| s.error = Some(e.to_string())),
        }
    } else {
        None
    };
    let spliced = web::now_ms();
    let acts = run.sae_acts;
    let feature = shown.with_untracked(|s| s.feature).min(sae.d_sae() - 1);
    // Colour by the strongest feature of the whole text when none was chosen yet.
    let feature = if shown.with_untracked(|s| s.run.is_none() && s.lens.is_none()) {
        features.iter().flatten().max_by(|a, b| a.1.total_cmp(&b.1)).map_or(feature, |&(f, _)| f)
    } else {
        feature
    };
    let view = RunView {
        texts: tokenizer.token_texts(&tokens),
        features,
        acts: std::sync::Arc::new(acts),
        d_sae: sae.d_sae(),
        selected_acts: Vec::new(),
        splice,
        device: l.device(),
    };
    shown.update(|s| {
        s.run = Some(view);
        s.clicked_token = None;
        s.status = format!(
            "Ran {} tokens on {}: model and SAE in {:.0} ms, splice evaluation (3 more passes) in {:.0} ms.",
            tokens.len(),
            l.device(),
            ran - started,
            spliced - ran
        );
    });
    select(state, shown, feature).await;
}

/// Selects a feature: its activation on each token of the last run and its logit lens.
async fn select(state: Rc<RefCell<LmState>>, shown: RwSignal<Shown>, feature: usize) {
    let l = match loaded(&state) {
        Ok(l) => l,
        Err(e) => return shown.update(|s| s.error = Some(e)),
    };
    let (model, tokenizer, sae) = (&l.model.0, &l.model.1, &l.sae.0);
    let lens = match lm::logit_lens(model, sae, feature, 8) {
        Ok(x) => x,
        Err(e) => return shown.update(|s| s.error = Some(e.to_string())),
    };
    let name = |list: Vec<(u32, f32)>| {
        list.into_iter().map(|(t, e)| (tokenizer.token_texts(&[t]).pop().unwrap_or_default(), e)).collect::<Vec<_>>()
    };
    let lens = (name(lens.0), name(lens.1));
    let sample = state.borrow().sample.clone();
    let compare = state.borrow().compare.clone();
    let dash = sample.map(|sample| dash_view(&sample, sae, tokenizer, feature, compare.as_deref()));
    shown.update(|s| {
        s.feature = feature;
        s.lens = Some(lens);
        if dash.is_some() {
            s.dash = dash;
        }
        s.error = None;
        if let Some(r) = s.run.as_mut() {
            r.selected_acts = r.acts.chunks_exact(r.d_sae).map(|row| row[feature]).collect();
        }
    });
}

/// The steering controls as typed.
struct SteerSettings {
    alpha: String,
    new_tokens: String,
    clamp: bool,
    temperature: String,
    seed: String,
}

async fn steer(state: Rc<RefCell<LmState>>, shown: RwSignal<Shown>, text: String, settings: SteerSettings) {
    let l = match loaded(&state) {
        Ok(l) => l,
        Err(e) => return shown.update(|s| s.error = Some(e)),
    };
    let parsed = (
        settings.alpha.trim().parse::<f32>(),
        settings.new_tokens.trim().parse::<usize>(),
        settings.temperature.trim().parse::<f32>(),
        settings.seed.trim().parse::<u64>(),
    );
    let (Ok(alpha), Ok(n), Ok(temperature), Ok(seed)) = parsed else {
        return shown.update(|s| s.error = Some("steering: α, new tokens, temperature and seed must be numbers".into()));
    };
    if !alpha.is_finite() || n == 0 || n > 64 || !(temperature >= 0.0 && temperature.is_finite()) {
        return shown.update(|s| s.error = Some("steering: α must be finite, new tokens between 1 and 64, temperature ≥ 0".into()));
    }
    let (model, tokenizer, sae) = (&l.model.0, &l.model.1, &l.sae.0);
    let prompt = match tokenizer.encode(&text) {
        Ok(t) if !t.is_empty() => t,
        Ok(_) => return shown.update(|s| s.error = Some("type a prompt first".into())),
        Err(e) => return shown.update(|s| s.error = Some(e.to_string())),
    };
    let feature = shown.with_untracked(|s| s.feature);
    shown.update(|s| s.status = format!("Generating {n} tokens twice …"));
    web::yield_to_browser().await;
    let sampling = Sampling { new_tokens: n, temperature, seed };
    let how = if settings.clamp { Steer::Clamp { feature, value: alpha } } else { Steer::Add { feature, alpha } };
    let plain = lm::generate(model, None, None, &prompt, sampling).await;
    let steered = lm::generate(model, Some(sae), Some(how), &prompt, sampling).await;
    match (plain, steered) {
        (Ok(p), Ok(st)) => {
            let text_of = |t: &[u32]| tokenizer.decode(&t[prompt.len()..]).unwrap_or_default();
            shown.update(|s| {
                s.generated = Some((text_of(&p), text_of(&st)));
                s.status = format!("Generated on {}.", l.device());
            });
        }
        (Err(e), _) | (_, Err(e)) => shown.update(|s| s.error = Some(e.to_string())),
    }
}

/// Runs the loaded SAE over (the first `sample_limit` tokens of) the bundled held-out text, with a
/// progress bar, for the dashboards; then shows the feature list and the selected feature's.
/// Dashboards this browser computed before for the same model, SAE and sample come back from
/// IndexedDB instead (one entry per SAE); with `Dashboards::IfSaved` nothing else happens.
async fn compute_sample(state: Rc<RefCell<LmState>>, shown: RwSignal<Shown>, mode: Dashboards) {
    let compute = mode == Dashboards::Compute;
    // Problems are reported only when the user asked for dashboards.
    let fail = |e: String| {
        if compute {
            shown.update(|s| {
                s.error = Some(e);
                s.sample_progress = None;
            })
        }
    };
    let limit = shown.with_untracked(|s| s.sample_limit.clone());
    let Ok(limit) = limit.trim().parse::<usize>() else {
        return fail(format!("sample tokens: '{limit}' is not a number"));
    };
    if !(SAMPLE_CONTEXT..=1 << 20).contains(&limit) {
        return fail(format!("sample tokens must be between {SAMPLE_CONTEXT} and {}", 1 << 20));
    }
    let l = match loaded(&state) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let (model, tokenizer, sae) = (&l.model.0, &l.model.1, &l.sae.0);
    let text = match web::fetch_bytes(BUNDLED_SAMPLE)
        .await
        .map_err(|e| e.to_string())
        .and_then(|b| crate::formats::corpus::parse_corpus(BUNDLED_SAMPLE, &b).map_err(|e| e.to_string()))
    {
        Ok(t) => t,
        Err(e) => return fail(format!("the dashboard sample: {e}")),
    };
    let mut tokens = match tokenizer.encode(&text) {
        Ok(t) => t,
        Err(e) => return fail(e.to_string()),
    };
    tokens.truncate(limit);
    let bos = tokenizer.special_id("<|endoftext|>");
    let context = SAMPLE_CONTEXT.min(model.cfg.n_positions);
    let started = web::now_ms();
    let stored_under = format!("dashboards/{:016x}", crate::fingerprint::sae(sae));
    let key = dashboard::sample_key(model, sae, &tokens, bos, context);
    // A saved entry for another sample, or one that cannot be read, is computed afresh.
    let stored = web::storage_get(&stored_under)
        .await
        .ok()
        .flatten()
        .and_then(|b| SampleActivations::from_bytes(&b, model, sae, &tokens, bos, context).ok().flatten());
    let (run, origin) = match stored {
        Some(run) => (run, Origin::Saved),
        None if !compute => return,
        None => {
            let mut run = match SampleActivations::new(model, sae, &tokens, bos, context) {
                Ok(r) => r,
                Err(e) => return fail(e.to_string()),
            };
            let total = run.contexts.len();
            shown.update(|s| {
                s.error = None;
                s.sample_progress = Some((0, total));
            });
            while run.done < total {
                if let Err(e) = run.run_next(model, sae).await {
                    return fail(e.to_string());
                }
                shown.update(|s| s.sample_progress = Some((run.done, total)));
                // Paint the progress (on the CPU reference nothing else would yield).
                web::yield_to_browser().await;
            }
            // Not keeping them (a full quota) costs only a recomputation next time.
            let kept = web::storage_put(&[(&stored_under, &run.to_bytes(key))]).await;
            (run, Origin::Computed { kept: kept.is_ok() })
        }
    };
    // Another SAE loaded meanwhile: these dashboards are not its.
    if !state.borrow().sae.as_ref().is_some_and(|now| Rc::ptr_eq(now, &l.sae)) {
        return;
    }
    let sample = Rc::new(run);
    let feature = shown.with_untracked(|s| s.feature);
    let compare = state.borrow().compare.clone();
    let dash = dash_view(&sample, sae, tokenizer, feature, compare.as_deref());
    let summaries = sample.summaries();
    let seconds = (web::now_ms() - started) / 1e3;
    state.borrow_mut().sample = Some(sample.clone());
    shown.update(|s| {
        s.sample_progress = Some((sample.done, sample.done));
        s.feature_list = summaries;
        s.dash = Some(dash);
        s.sample_status = match origin {
            Origin::Saved => {
                format!("Dashboards over {} sample tokens restored from this browser's storage (computed before).", sample.n_tokens)
            }
            Origin::Computed { kept } => format!(
                "Dashboards over {} sample tokens computed in {seconds:.1} s on {}{}",
                sample.n_tokens,
                l.device(),
                if kept { "." } else { " (not kept: the browser's storage refused them)." }
            ),
        };
    });
}

/// A feature's dashboard with its examples put into words: 8 tokens before, 3 after.
fn dash_view(
    sample: &SampleActivations,
    sae: &Sae,
    tokenizer: &TextTokenizer,
    feature: usize,
    compare: Option<&(Sae, String)>,
) -> DashView {
    let feature = feature.min(sae.d_sae() - 1);
    let d = sample.dashboard(feature, 10, 24, 5, 3);
    let words = |e: &dashboard::Example| {
        let context = &sample.contexts[e.context];
        let texts = tokenizer.token_texts(&context[e.position.saturating_sub(8)..(e.position + 4).min(context.len())]);
        let at = e.position - e.position.saturating_sub(8);
        // Line breaks shown as ↵, so each example stays on its line.
        let flat = |t: String| t.replace('\n', "↵");
        ExampleView {
            before: flat(texts[..at].concat()),
            token: flat(texts[at].clone()),
            after: flat(texts[at + 1..].concat()),
            activation: e.activation,
        }
    };
    DashView {
        feature,
        density: d.density,
        max_activation: d.max_activation,
        histogram: d.histogram.clone(),
        top: d.top.iter().map(words).collect(),
        intervals: d.intervals.iter().map(|(lo, hi, ex)| (*lo, *hi, ex.iter().map(words).collect())).collect(),
        nearest: dashboard::nearest_features(sae, feature, sae, 6).unwrap_or_default(),
        matched: compare.map(|(other, name)| (name.clone(), dashboard::nearest_features(sae, feature, other, 6))),
    }
}

fn examples_view(examples: Vec<ExampleView>) -> impl IntoView {
    view! {
        <ol class="examples">{examples.into_iter().map(|e| view! {
            <li><span class="act">{format!("{:.2}", e.activation)}</span>" "
                <span class="context">{e.before}<mark>{e.token}</mark>{e.after}</span></li>
        }).collect_view()}</ol>
    }
}

fn dashboard_view(d: DashView) -> impl IntoView {
    let peak = d.histogram.iter().copied().max().unwrap_or(1).max(1) as f64;
    let bar_w = 300.0 / d.histogram.len().max(1) as f64;
    let bars = d
        .histogram
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let h = 60.0 * c as f64 / peak;
            view! { <rect class="bar" x=i as f64 * bar_w y=62.0 - h width=(bar_w - 1.0).max(1.0) height=h><title>{format!("{c} tokens")}</title></rect> }
        })
        .collect_view();
    view! {
        <div id="lm-dashboard" data-feature=d.feature.to_string()>
            <p>"Fires on " <b id="lm-dash-density">{format!("{:.3}%", 100.0 * d.density)}</b>" of sample tokens; max activation "
                <b id="lm-dash-max">{format!("{:.3}", d.max_activation)}</b>"."</p>
            <svg id="lm-dash-histogram" viewBox="0 0 300 74" role="img" aria-label="activation histogram">{bars}
                <text x="0" y="73">"0"</text><text x="250" y="73">{format!("{:.2}", d.max_activation)}</text></svg>
            <h4>"Top activations"</h4>
            <div id="lm-dash-top">{examples_view(d.top)}</div>
            <h4>"By activation interval"</h4>
            <div id="lm-dash-intervals">{d.intervals.into_iter().rev().filter(|(_, _, ex)| !ex.is_empty()).map(|(lo, hi, ex)| view! {
                <div><p class="muted">{format!("{lo:.2} – {hi:.2}")}</p>{examples_view(ex)}</div>
            }).collect_view()}</div>
            {d.matched.map(|(name, list)| view! {
                <h4>"Matching features in " {name} " (decoder cosine)"</h4>
                {match list {
                    Ok(list) => view! { <ol id="lm-dash-matched">{list.into_iter().map(|(j, c)| view! { <li>{format!("#{j} {c:.3}")}</li> }).collect_view()}</ol> }.into_any(),
                    Err(e) => view! { <p id="lm-dash-matched" class="error">{e}</p> }.into_any(),
                }}
            })}
            <h4>"Nearest features (decoder cosine)"</h4>
            <ol id="lm-dash-nearest">{d.nearest.into_iter().map(|(j, c)| view! {
                <li><button class="link" data-feature=j.to_string()>{format!("#{j}")}</button>{format!(" {c:.3}")}</li>
            }).collect_view()}</ol>
        </div>
    }
}

/// Chooses the bundled SAE whose features are matched to the selected feature by decoder cosine
/// (feature splitting and absorption across dictionary sizes); "" for none. Kept on the CPU: only
/// its decoder is read.
async fn load_comparison(state: Rc<RefCell<LmState>>, shown: RwSignal<Shown>, name: String) {
    if name.is_empty() {
        state.borrow_mut().compare = None;
    } else {
        let sae = match bundled_sae_files(&name)
            .await
            .and_then(|(cfg, weights)| parse_sae(SaeFileBytes { cfg: &cfg, weights: &weights, sparsity: None }).map_err(|e| e.to_string()))
        {
            Ok(s) => s,
            Err(e) => return shown.update(|s| s.error = Some(format!("the bundled SAE {name}: {e}"))),
        };
        let label = format!("{name} ({} features)", sae.d_sae());
        state.borrow_mut().compare = Some(Rc::new((sae, label)));
    }
    let feature = shown.with_untracked(|s| s.feature);
    select(state, shown, feature).await;
}
