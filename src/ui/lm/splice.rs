//! What the SAE's reconstruction error costs the model on the last run: cross-entropy clean,
//! spliced, zero-ablated and with a random error of the same norm; KL; L0.

use leptos::prelude::*;

use super::Lm;

/// What the SAE's reconstruction error costs the model on the last run (the splice evaluation).
#[component]
pub(super) fn SplicePanel() -> impl IntoView {
    let lm = expect_context::<Lm>();
    view! {
            <div class="panel lm-splice">
                <h2>"What the SAE costs the model " <span class="muted">{move || lm.run.with(|r| r.as_ref().map(|r| r.device.clone()).unwrap_or_default())}</span></h2>
                {move || lm.run.with(|r| r.as_ref().and_then(|r| r.splice.clone())).map(|r| view! {
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
