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

/// A line through `(x, y)` points; `y_range` fixes the axis, else it spans the data.
pub fn line_chart(id: &'static str, x_label: &'static str, points: &[(f64, f64)], y_range: Option<(f64, f64)>) -> impl IntoView {
    let (w, h) = (360.0, 160.0);
    let finite: Vec<(f64, f64)> = points.iter().copied().filter(|(_, y)| y.is_finite()).collect();
    let x_max = finite.iter().map(|p| p.0).fold(1.0, f64::max);
    let (lo, hi) = y_range.unwrap_or_else(|| {
        let lo = finite.iter().map(|p| p.1).fold(f64::INFINITY, f64::min).min(0.0);
        let hi = finite.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        (lo, if hi > lo { hi } else { lo + 1.0 })
    });
    let sx = |x: f64| PAD + (w - 2.0 * PAD) * x / x_max;
    let sy = |y: f64| h - PAD - (h - 2.0 * PAD) * ((y - lo) / (hi - lo)).clamp(0.0, 1.0);
    let path: String = finite.iter().map(|&(x, y)| format!("{:.1},{:.1} ", sx(x), sy(y))).collect();
    let last = finite.last().map(|p| p.1).unwrap_or(f64::NAN);
    view! {
        <svg id=id viewBox=format!("0 0 {w} {h}") role="img">
            <polyline class="series" points=path />
            <line class="axis" x1=PAD y1=h - PAD x2=w - PAD y2=h - PAD />
            <text x=4.0 y=PAD - 8.0>{format!("{hi:.3}")}</text>
            <text x=4.0 y=h - PAD>{format!("{lo:.2}")}</text>
            <text x=w - PAD - 70.0 y=PAD - 8.0 class="mean-label">{format!("now {last:.4}")}</text>
            <text x=w - PAD - 70.0 y=h - 12.0>{format!("{x_label} {x_max:.0}")}</text>
        </svg>
    }
}

/// Cells coloured by cosine: blue for +1, white for 0, red for −1.
pub fn heatmap(id: &'static str, rows: &[Vec<f32>]) -> impl IntoView {
    let n_rows = rows.len().max(1);
    let n_cols = rows.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let cell = (300.0 / n_cols.max(n_rows) as f64).clamp(4.0, 24.0);
    let (w, h) = (cell * n_cols as f64, cell * n_rows as f64);
    let cells = rows
        .iter()
        .enumerate()
        .flat_map(|(i, row)| {
            row.iter().enumerate().map(move |(j, &c)| {
                let t = c.clamp(-1.0, 1.0);
                let (r, g, b) = if t >= 0.0 {
                    (255.0 * (1.0 - t), 255.0 * (1.0 - 0.65 * t), 255.0)
                } else {
                    (255.0, 255.0 * (1.0 + t), 255.0 * (1.0 + t))
                };
                view! {
                    <rect x=j as f64 * cell y=i as f64 * cell width=cell height=cell fill=format!("rgb({r:.0},{g:.0},{b:.0})")>
                        <title>{format!("true {i} · latent: cos {c:.3}")}</title>
                    </rect>
                }
            })
        })
        .collect_view();
    view! { <svg id=id class="heatmap" viewBox=format!("0 0 {w} {h}") role="img">{cells}</svg> }
}

/// 2-D feature directions from the origin: true (grey) and learned (blue), all scaled to unit length.
pub fn arrows(id: &'static str, truth: &[[f32; 2]], learned: &[[f32; 2]]) -> impl IntoView {
    let (size, r) = (240.0, 100.0);
    let c = size / 2.0;
    let line = |v: &[f32; 2], class: &'static str| {
        let n = ((v[0] * v[0] + v[1] * v[1]) as f64).sqrt().max(1e-9);
        let (x, y) = (c + r * v[0] as f64 / n, c - r * v[1] as f64 / n);
        view! { <line class=class x1=c y1=c x2=x y2=y /> }
    };
    let t = truth.iter().map(|v| line(v, "arrow-true")).collect_view();
    let l = learned.iter().map(|v| line(v, "arrow-learned")).collect_view();
    view! {
        <svg id=id viewBox=format!("0 0 {size} {size}") role="img">
            <circle class="axis-circle" cx=c cy=c r=r />
            {t}
            {l}
        </svg>
    }
}
