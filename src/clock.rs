//! Wall-clock milliseconds on both targets, for measuring (never for results): `Instant` natively,
//! `performance.now()` in the browser, where `Instant` panics.

/// Milliseconds since an arbitrary start, monotonic.
#[cfg(not(target_arch = "wasm32"))]
pub fn now_ms() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3
}

/// Milliseconds since the page opened (0 where there is no window's performance clock).
#[cfg(target_arch = "wasm32")]
pub fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map(|p| p.now()).unwrap_or(0.0)
}
