//! Steering: generate from the text with and without the selected feature pushed (α·W_dec[f] at
//! every position) or clamped, side by side.

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::super::web;
use super::Lm;
use crate::lm::{self, Sampling, Steer};

/// Steering: generate from the text with and without the selected feature pushed or clamped.
#[component]
pub(super) fn Steering() -> impl IntoView {
    let lm = expect_context::<Lm>();
    let generated = RwSignal::new(None::<(String, String)>);
    let alpha = RwSignal::new("20".to_string());
    let new_tokens = RwSignal::new("12".to_string());
    // "add" (α·W_dec[f] at every position) or "clamp" (the feature set to α).
    let steer_mode = RwSignal::new("add".to_string());
    let temperature = RwSignal::new("0".to_string());
    let seed = RwSignal::new("0".to_string());
    let generate = {
        move |_| {
            let settings = SteerSettings {
                alpha: alpha.get_untracked(),
                new_tokens: new_tokens.get_untracked(),
                clamp: steer_mode.get_untracked() == "clamp",
                temperature: temperature.get_untracked(),
                seed: seed.get_untracked(),
            };
            spawn_local(steer(lm, generated, lm.text.get_untracked(), settings));
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
                {move || generated.get().map(|(plain, steered)| view! {
                    <table class="generated">
                        <tr><th>"unsteered"</th><td id="lm-unsteered">{plain}</td></tr>
                        <tr><th>"steered"</th><td id="lm-steered">{steered}</td></tr>
                    </table>
                })}
    }
}

/// The steering controls as typed.
struct SteerSettings {
    alpha: String,
    new_tokens: String,
    clamp: bool,
    temperature: String,
    seed: String,
}

async fn steer(lm: Lm, generated: RwSignal<Option<(String, String)>>, text: String, settings: SteerSettings) {
    let l = match lm.loaded() {
        Ok(l) => l,
        Err(e) => return lm.fail(e),
    };
    let parsed = (
        settings.alpha.trim().parse::<f32>(),
        settings.new_tokens.trim().parse::<usize>(),
        settings.temperature.trim().parse::<f32>(),
        settings.seed.trim().parse::<u64>(),
    );
    let (Ok(alpha), Ok(n), Ok(temperature), Ok(seed)) = parsed else {
        return lm.fail("steering: α, new tokens, temperature and seed must be numbers");
    };
    if !alpha.is_finite() || n == 0 || n > 64 || !(temperature >= 0.0 && temperature.is_finite()) {
        return lm.fail("steering: α must be finite, new tokens between 1 and 64, temperature ≥ 0");
    }
    let (model, tokenizer, sae) = (&l.model.0, &l.model.1, &l.sae.0);
    let prompt = match tokenizer.encode(&text) {
        Ok(t) if !t.is_empty() => t,
        Ok(_) => return lm.fail("type a prompt first"),
        Err(e) => return lm.fail(e.to_string()),
    };
    // The prompt as the SAE reads text (the BOS first when the box says so), as `saelab generate`.
    let prompt = match lm::tokens_for(model, &prompt, lm.prepend_bos.get_untracked()) {
        Ok(t) => t,
        Err(e) => return lm.fail(e.to_string()),
    };
    let feature = lm.feature.get_untracked();
    lm.status.set(format!("Generating {n} tokens twice …"));
    web::yield_to_browser().await;
    let sampling = Sampling { new_tokens: n, temperature, seed };
    let how = if settings.clamp { Steer::Clamp { feature, value: alpha } } else { Steer::Add { feature, alpha } };
    let plain = lm::generate(model, None, None, &prompt, sampling).await;
    let steered = lm::generate(model, Some(sae), Some(how), &prompt, sampling).await;
    match (plain, steered) {
        (Ok(p), Ok(st)) => {
            let text_of = |t: &[u32]| tokenizer.decode(&t[prompt.len()..]).unwrap_or_default();
            generated.set(Some((text_of(&p), text_of(&st))));
            lm.status.set(format!("Generated on {}.", l.device()));
        }
        (Err(e), _) | (_, Err(e)) => lm.fail(e.to_string()),
    }
}
