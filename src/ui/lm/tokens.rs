//! The text and its tokens: a run of the model and SAE over the text (one clean pass for the
//! colours, the feature lists and the splice evaluation), tokens coloured by the selected
//! feature, and a clicked token's strongest features.

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::super::web;
use super::{on_feature_click, Lm, RunView};
use crate::lm;

#[component]
pub(super) fn TokenView() -> impl IntoView {
    let lm = expect_context::<Lm>();
    let text = lm.text;
    let run = move |_| spawn_local(run_text(lm, text.get_untracked()));
    let select_from_input = move |ev: leptos::ev::Event| match event_target_value(&ev).trim().parse::<usize>() {
        Ok(f) => lm.select(f),
        Err(_) => lm.fail(format!("feature: '{}' is not a feature index", event_target_value(&ev))),
    };
    view! {
            <div class="panel lm-text">
                <h2>"Text"</h2>
                <textarea id="lm-text" rows="3" prop:value=move || text.get() on:input=move |ev| text.set(event_target_value(&ev))></textarea>
                <div class="buttons"><button id="lm-run" on:click=run>"Run"</button>
                    <label title="SAELens puts the model's BOS token first when the SAE's prepend_bos says so (its default), and leaves it out of L0, CE and KL">
                        <input type="checkbox" id="lm-bos" prop:checked=move || lm.prepend_bos.get() on:change=move |ev| lm.prepend_bos.set(event_target_checked(&ev)) />
                        " BOS first, as the SAE was trained"</label></div>
                <p class="muted">"Tokens coloured by feature " <input id="lm-feature" class="narrow" prop:value=move || lm.feature.get().to_string() on:change=select_from_input />
                    " — click a token for its features."</p>
                <div id="lm-tokens" class="tokens" data-feature=move || lm.run.with(|r| r.as_ref().and_then(|r| r.selected).map(|f| f.to_string()))>
                    {move || lm.run.with(|r| r.as_ref().map(|r| {
                        let max = r.selected_acts.iter().copied().fold(0.0f32, f32::max).max(1e-6);
                        r.texts.iter().enumerate().map(|(i, t)| {
                            let a = r.selected_acts.get(i).copied().unwrap_or(0.0);
                            // Special tokens (the BOS put first) are shown apart: not part of the text, not evaluated.
                            let special = !r.evaluated.get(i).copied().unwrap_or(true);
                            let style = format!("background: rgba(214, 92, 38, {:.3})", (a / max).clamp(0.0, 1.0) * 0.85);
                            let class = if special { "token special" } else { "token" };
                            let shown = if special { format!("{} ", t.trim()) } else { t.clone() };
                            view! { <span class=class data-index=i.to_string() data-act=format!("{a:.4}") style=style
                                title=special.then_some("a special token (BOS): left out of L0, CE and KL")
                                on:click=move |_| lm.clicked_token.set(Some(i))>{shown}</span> }
                        }).collect_view()
                    }))}
                </div>
                <div on:click=on_feature_click(lm)>
                {move || lm.clicked_token.get().and_then(|i| lm.run.with(|r| r.as_ref().map(|r| (r.texts.get(i).cloned(), r.features.get(i).cloned())))).map(|(text, features)| {
                    view! {
                        <div id="lm-token-features">
                            <h3>"Features on token " <q>{text.unwrap_or_default()}</q></h3>
                            <ol>{features.unwrap_or_default().into_iter().map(|(f, a)| {
                                view! { <li><button class="link" data-feature=f.to_string()>{format!("#{f}")}</button>{format!(" {a:.3}")}</li> }
                            }).collect_view()}</ol>
                        </div>
                    }
                })}
                </div>
            </div>
    }
}

pub(super) async fn run_text(lm: Lm, text: String) {
    let l = match lm.loaded() {
        Ok(l) => l,
        Err(e) => return lm.fail(e),
    };
    let (model, tokenizer) = (&l.model.0, &l.model.1);
    let tokens = match tokenizer
        .encode(&text)
        .map_err(|e| e.to_string())
        .and_then(|t| lm::tokens_for(model, &t, lm.prepend_bos.get_untracked()).map_err(|e| e.to_string()))
    {
        Ok(t) => t,
        Err(e) => return lm.fail(e),
    };
    if let Err(e) = model.cfg.check_tokens(&tokens) {
        return lm.fail(e.to_string());
    }
    lm.status.set(format!("Running {} tokens …", tokens.len()));
    lm.error.set(None);
    web::yield_to_browser().await;
    let sae = &l.sae.0;
    // One clean pass serves the token colours, the feature lists and the splice evaluation.
    let started = web::now_ms();
    let run = match lm::run_text(model, sae, &tokens).await {
        Ok(r) => r,
        Err(e) => return lm.fail(e.to_string()),
    };
    let ran = web::now_ms();
    let features = lm::top_features(&run.sae_acts, sae.d_sae(), 8);
    // The splice needs a position to predict from that is not special.
    let splice = if run.evaluated[..tokens.len() - 1].contains(&true) {
        match lm::splice_from(model, &tokens, &run, 0).await {
            Ok(r) => Some(r),
            Err(e) => return lm.fail(e.to_string()),
        }
    } else {
        None
    };
    let spliced = web::now_ms();
    let feature = lm.feature.get_untracked().min(sae.d_sae() - 1);
    // Colour by the strongest feature of the whole text when none was chosen yet.
    let feature = if lm.run.with_untracked(Option::is_none) && lm.lens.with_untracked(Option::is_none) {
        features.iter().flatten().max_by(|a, b| a.1.total_cmp(&b.1)).map_or(feature, |&(f, _)| f)
    } else {
        feature
    };
    let view = RunView {
        texts: tokenizer.token_texts(&tokens),
        evaluated: run.evaluated.clone(),
        features,
        acts: std::sync::Arc::new(run.sae_acts),
        d_sae: sae.d_sae(),
        selected_acts: Vec::new(),
        selected: None,
        splice,
        device: l.device(),
    };
    lm.run.set(Some(view));
    lm.clicked_token.set(None);
    lm.status.set(format!(
        "Ran {} tokens on {}: model and SAE in {:.0} ms, splice evaluation (3 more passes) in {:.0} ms.",
        tokens.len(),
        l.device(),
        ran - started,
        spliced - ran
    ));
    select(lm, feature).await;
}

/// Selects a feature: its activation on each token of the last run and its logit lens (the
/// dashboard follows `lm.feature`).
pub(super) async fn select(lm: Lm, feature: usize) {
    let l = match lm.loaded() {
        Ok(l) => l,
        Err(e) => return lm.fail(e),
    };
    let (model, tokenizer, sae) = (&l.model.0, &l.model.1, &l.sae.0);
    let lens = match model.logit_lens(sae, feature, 8).await {
        Ok(x) => x,
        Err(e) => return lm.fail(e.to_string()),
    };
    let name = |list: Vec<(u32, f32)>| {
        list.into_iter().map(|(t, e)| (tokenizer.token_texts(&[t]).pop().unwrap_or_default(), e)).collect::<Vec<_>>()
    };
    let lens = (name(lens.0), name(lens.1));
    lm.feature.set(feature);
    lm.lens.set(Some(lens));
    lm.error.set(None);
    lm.run.update(|r| {
        if let Some(r) = r.as_mut() {
            r.selected_acts = r.acts.chunks_exact(r.d_sae).map(|row| row[feature]).collect();
            r.selected = Some(feature);
        }
    });
}
