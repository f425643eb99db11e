//! The selected feature: its logit lens, its dashboard over the bundled held-out sample (density,
//! activation histogram, top and interval examples, nearest features, matches in another SAE), and
//! steering with it. Dashboards computed before for the same model, SAE and sample come back from
//! IndexedDB.

use std::rc::Rc;

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::super::bundled::{BUNDLED_SAES, BUNDLED_SAMPLE};
use super::super::web;
use super::{on_feature_click, steering, Lm};
use crate::dashboard::{self, FeatureSummary, SampleActivations};
use crate::formats::tokenizer::TextTokenizer;
use crate::sae::files::{parse_sae, SaeFileBytes};
use crate::sae::Sae;

/// Tokens per dashboard context (BOS included), as the bundled SAEs were trained.
const SAMPLE_CONTEXT: usize = 128;

/// Features of another SAE nearest a feature, by decoder cosine, or why there are none.
type Matches = Result<Vec<(usize, f32)>, String>;

/// The dashboards as shown: the sample's size as typed; (contexts done, total) while computing;
/// what the last computation said; the feature list and its order; the selected feature's.
#[derive(Clone, Copy)]
pub(super) struct DashSignals {
    sample_limit: RwSignal<String>,
    progress: RwSignal<Option<(usize, usize)>>,
    status: RwSignal<String>,
    list: RwSignal<Vec<FeatureSummary>>,
    sort_by_max: RwSignal<bool>,
    pub(super) view: RwSignal<Option<DashView>>,
}

impl DashSignals {
    pub(super) fn new() -> DashSignals {
        DashSignals {
            sample_limit: RwSignal::new("4096".into()),
            progress: RwSignal::new(None),
            status: RwSignal::new(String::new()),
            list: RwSignal::new(Vec::new()),
            sort_by_max: RwSignal::new(false),
            view: RwSignal::new(None),
        }
    }

    /// Another SAE was loaded: nothing shown is its.
    fn clear(&self) {
        self.list.set(Vec::new());
        self.view.set(None);
        self.progress.set(None);
        self.status.set(String::new());
    }
}

/// An example in a dashboard as shown: a few tokens before, the firing token, a few after.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct ExampleView {
    before: String,
    token: String,
    after: String,
    activation: f32,
}

/// One feature's dashboard as shown.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct DashView {
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

/// The feature panel: logit lens, dashboard, steering.
#[component]
pub(super) fn FeatureView() -> impl IntoView {
    let lm = expect_context::<Lm>();
    view! {
            <div class="panel lm-feature">
                <h2>"Feature " <span id="lm-feature-index">{move || lm.feature.get()}</span></h2>
                {move || lm.named.with(|n| n.as_ref().and_then(|n| n.neuronpedia_url(lm.feature.get()))).map(|url| view! {
                    <p><a id="lm-neuronpedia" href=url target="_blank" rel="noopener noreferrer">"This feature on Neuronpedia ↗"</a></p>
                })}
                <p class="muted">"Logit lens: W_dec[f]·W_U, the final norm's scale folded in, centred over the vocabulary."</p>
                <LogitLens />
                <Dashboard />
                <steering::Steering />
            </div>
    }
}

/// The selected feature's logit lens: the tokens it promotes and suppresses most.
#[component]
fn LogitLens() -> impl IntoView {
    let lm = expect_context::<Lm>();
    view! {
                {move || lm.lens.get().map(|(top, bottom)| view! {
                    <div class="lens">
                        <div><h3>"promotes"</h3><ol id="lm-lens-top">{top.into_iter().map(|(t, e)| view! { <li><code>{t}</code>{format!(" {e:+.3}")}</li> }).collect_view()}</ol></div>
                        <div><h3>"suppresses"</h3><ol id="lm-lens-bottom">{bottom.into_iter().map(|(t, e)| view! { <li><code>{t}</code>{format!(" {e:+.3}")}</li> }).collect_view()}</ol></div>
                    </div>
                })}
    }
}

/// The dashboards: computed on demand over the sample, the selected feature's, and the features
/// by density or max activation.
#[component]
fn Dashboard() -> impl IntoView {
    let lm = expect_context::<Lm>();
    let dash = lm.dash;
    // Another SAE: nothing shown is its; dashboards this browser computed before for it and the
    // sample open with it.
    Effect::new(move |_| {
        lm.sae_name.track();
        dash.clear();
        if lm.loaded.with_value(|st| st.sae.is_some()) {
            spawn_local(compute_sample(lm, Dashboards::IfSaved));
        }
    });
    // The selected feature's dashboard, once the sample has been run.
    Effect::new(move |_| {
        let feature = lm.feature.get();
        let (sample, compare) = lm.loaded.with_value(|st| (st.sample.clone(), st.compare.clone()));
        if let (Some(sample), Ok(l)) = (sample, lm.loaded()) {
            dash.view.set(Some(dash_view(&sample, &l.sae.0, &l.model.1, feature, compare.as_deref())));
        }
    });
    let compute = move |_| spawn_local(compute_sample(lm, Dashboards::Compute));
    let on_compare = move |ev: leptos::ev::Event| spawn_local(load_comparison(lm, event_target_value(&ev)));
    view! {
                <h3>"Dashboard"</h3>
                <div class="fields">
                    <label class="field"><span>"sample tokens (of the bundled held-out text)"</span>
                        <input id="lm-sample-tokens" prop:value=move || dash.sample_limit.get() on:change=move |ev| dash.sample_limit.set(event_target_value(&ev)) /></label>
                </div>
                <div class="buttons"><button id="lm-dashboards" on:click=compute>"Compute dashboards"</button>
                    <label>" match features with "
                        <select id="lm-compare" on:change=on_compare>
                            <option value="">"no other SAE"</option>
                            {BUNDLED_SAES.iter().map(|n| view! { <option value=*n>{*n}</option> }).collect_view()}
                        </select></label></div>
                {move || dash.progress.get().map(|(done, total)| view! {
                    <p><progress id="lm-sample-progress" max=total.to_string() value=done.to_string()></progress>{format!(" {done} / {total} contexts")}</p>
                })}
                <p id="lm-sample-status" class="status">{move || dash.status.get()}</p>
                <div on:click=on_feature_click(lm)>
                {move || dash.view.get().map(dashboard_view)}
                </div>
                <div on:click=on_feature_click(lm)>
                {move || dash.list.with(|l| !l.is_empty()).then(|| view! {
                    <h3>"Features by " <select id="lm-sort" on:change=move |ev| dash.sort_by_max.set(event_target_value(&ev) == "max")>
                        <option value="density">"firing density"</option><option value="max">"max activation"</option></select></h3>
                    <table id="lm-feature-list" class="feature-list"><tr><th>"feature"</th><th>"density"</th><th>"max"</th></tr>
                    {move || {
                        let mut list = dash.list.get();
                        if dash.sort_by_max.get() {
                            list.sort_by(|a, b| b.max_activation.total_cmp(&a.max_activation).then(a.feature.cmp(&b.feature)));
                        } else {
                            list.sort_by(|a, b| b.density.total_cmp(&a.density).then(a.feature.cmp(&b.feature)));
                        }
                        list.truncate(40);
                        list.into_iter().map(|f| view! {
                            <tr><td><button class="link" data-feature=f.feature.to_string()>{format!("#{}", f.feature)}</button></td>
                                <td>{format!("{:.2e}", f.density)}</td><td>{format!("{:.2}", f.max_activation)}</td></tr>
                        }).collect_view()
                    }}
                    </table>
                })}
                </div>
    }
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

/// Runs the loaded SAE over (the first `sample_limit` tokens of) the bundled held-out text, with a
/// progress bar, for the dashboards; then shows the feature list and the selected feature's.
/// Dashboards this browser computed before for the same model, SAE and sample come back from
/// IndexedDB instead (one entry per SAE); with `Dashboards::IfSaved` nothing else happens.
async fn compute_sample(lm: Lm, mode: Dashboards) {
    let dash = lm.dash;
    let compute = mode == Dashboards::Compute;
    // Problems are reported only when the user asked for dashboards.
    let fail = |e: String| {
        if compute {
            lm.fail(e);
            dash.progress.set(None);
        }
    };
    let limit = dash.sample_limit.get_untracked();
    let Ok(limit) = limit.trim().parse::<usize>() else {
        return fail(format!("sample tokens: '{limit}' is not a number"));
    };
    if !(SAMPLE_CONTEXT..=1 << 20).contains(&limit) {
        return fail(format!("sample tokens must be between {SAMPLE_CONTEXT} and {}", 1 << 20));
    }
    let l = match lm.loaded() {
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
    let bos = if sae.cfg.prepend_bos { model.cfg.special_tokens.bos_or_eos() } else { None };
    let context = SAMPLE_CONTEXT.min(model.cfg.max_positions);
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
            lm.error.set(None);
            dash.progress.set(Some((0, total)));
            while run.done < total {
                if let Err(e) = run.run_next(model, sae).await {
                    return fail(e.to_string());
                }
                dash.progress.set(Some((run.done, total)));
                // Paint the progress (on the CPU reference nothing else would yield).
                web::yield_to_browser().await;
            }
            // Not keeping them (a full quota) costs only a recomputation next time.
            let kept = web::storage_put(&[(&stored_under, &run.to_bytes(key))]).await;
            (run, Origin::Computed { kept: kept.is_ok() })
        }
    };
    // Another SAE loaded meanwhile: these dashboards are not its.
    if !lm.loaded.with_value(|st| st.sae.as_ref().is_some_and(|now| Rc::ptr_eq(now, &l.sae))) {
        return;
    }
    let sample = Rc::new(run);
    let feature = lm.feature.get_untracked();
    let compare = lm.loaded.with_value(|st| st.compare.clone());
    let view = dash_view(&sample, sae, tokenizer, feature, compare.as_deref());
    let summaries = sample.summaries();
    let seconds = (web::now_ms() - started) / 1e3;
    lm.loaded.update_value(|st| st.sample = Some(sample.clone()));
    dash.progress.set(Some((sample.done, sample.done)));
    dash.list.set(summaries);
    dash.view.set(Some(view));
    dash.status.set(match origin {
        Origin::Saved => {
            format!("Dashboards over {} sample tokens restored from this browser's storage (computed before).", sample.n_tokens)
        }
        Origin::Computed { kept } => format!(
            "Dashboards over {} sample tokens computed in {seconds:.1} s on {}{}",
            sample.n_tokens,
            l.device(),
            if kept { "." } else { " (not kept: the browser's storage refused them)." }
        ),
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
async fn load_comparison(lm: Lm, name: String) {
    if name.is_empty() {
        lm.loaded.update_value(|st| st.compare = None);
    } else {
        let sae = match super::bundled_sae_files(&name)
            .await
            .and_then(|(cfg, weights)| parse_sae(SaeFileBytes { cfg: &cfg, weights: &weights, sparsity: None }).map_err(|e| e.to_string()))
        {
            Ok(s) => s,
            Err(e) => return lm.fail(format!("the bundled SAE {name}: {e}")),
        };
        let label = format!("{name} ({} features)", sae.d_sae());
        lm.loaded.update_value(|st| st.compare = Some(Rc::new((sae, label))));
    }
    lm.select(lm.feature.get_untracked());
}
