//! Natively, the `saelab` command-line tool; on wasm32, the web page.

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    std::process::exit(saelab::cli::run(std::env::args().skip(1).collect()));
}

#[cfg(target_arch = "wasm32")]
fn main() {
    saelab::ui::mount();
}
