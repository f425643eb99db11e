//! Small SVG plots, drawn from plain numbers.

use leptos::prelude::*;

use crate::sae::metrics::DensityHistogram;

const W: f64 = 520.0;
const H: f64 = 200.0;
const PAD: f64 = 34.0;

/// Bars of log10(firing density), plus a separate bar for features that never fired.
pub fn density_histogram(h: &DensityHistogram) -> impl IntoView {
    let bins = h.counts.len();
    let slots = bins + 2; // one gap, then the dead bar
    let max = h.counts.iter().copied().chain([h.dead]).max().unwrap_or(1).max(1) as f64;
    let bar_w = (W - 2.0 * PAD) / slots as f64;
    let bar = |slot: usize, count: usize, class: &'static str, title: String| {
        let height = (H - 2.0 * PAD) * count as f64 / max;
        view! {
            <rect class=class x=PAD + slot as f64 * bar_w y=H - PAD - height width=(bar_w - 1.0).max(1.0) height=height>
                <title>{title}</title>
            </rect>
        }
    };
    let bars = h
        .counts
        .iter()
        .enumerate()
        .map(|(i, &c)| bar(i, c, "bar", format!("10^{:.2} … 10^{:.2}: {c} features", h.edges[i], h.edges[i + 1])))
        .collect_view();
    let dead = bar(bins + 1, h.dead, "bar dead", format!("never fired: {} features", h.dead));
    let lo = h.edges.first().copied().unwrap_or(-1.0);
    view! {
        <svg id="density-plot" viewBox=format!("0 0 {W} {H}") role="img" aria-label="feature density histogram">
            {bars}
            {dead}
            <line class="axis" x1=PAD y1=H - PAD x2=W - PAD y2=H - PAD />
            <text x=PAD y=H - 12.0>{format!("10^{lo:.0}")}</text>
            <text x=PAD + bins as f64 * bar_w - 12.0 y=H - 12.0>"1"</text>
            <text x=PAD + (bins + 1) as f64 * bar_w y=H - 12.0>"dead"</text>
            <text x=4.0 y=PAD - 8.0>{format!("max {max:.0}")}</text>
        </svg>
    }
}

/// One bar per row (a polyline when there are many rows).
pub fn row_errors(errors: &[f64]) -> impl IntoView {
    let max = errors.iter().copied().fold(0.0f64, f64::max).max(1e-12);
    let n = errors.len();
    let x = |i: usize| PAD + (W - 2.0 * PAD) * (i as f64 + 0.5) / n as f64;
    let y = |e: f64| H - PAD - (H - 2.0 * PAD) * (e / max);
    let points: String = errors.iter().enumerate().map(|(i, &e)| format!("{:.1},{:.1} ", x(i), y(e))).collect();
    let mean = errors.iter().sum::<f64>() / n.max(1) as f64;
    view! {
        <svg id="row-error-plot" viewBox=format!("0 0 {W} {H}") role="img" aria-label="per-row reconstruction error">
            <polyline class="series" points=points />
            <line class="mean" x1=PAD y1=y(mean) x2=W - PAD y2=y(mean) />
            <line class="axis" x1=PAD y1=H - PAD x2=W - PAD y2=H - PAD />
            <text x=4.0 y=PAD - 8.0>{format!("max {max:.3}")}</text>
            <text class="mean-label" x=W - PAD - 90.0 y=PAD - 8.0>{format!("mean {mean:.3}")}</text>
            <text x=PAD y=H - 12.0>"row 0"</text>
            <text x=W - PAD - 50.0 y=H - 12.0>{format!("row {}", n - 1)}</text>
        </svg>
    }
}
