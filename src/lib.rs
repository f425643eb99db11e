//! saelab: sparse autoencoders on your own GPU. SAELens-format SAEs are parsed (`formats`), run by
//! a plain-Rust reference (`sae`) or by WGSL kernels through wgpu (`gpu`), natively (the `saelab`
//! CLI) or in the browser (`ui`, on WebGPU). `engine` is the API all of them share.
//!
//! Data flows one way: bytes → `formats` → `sae::Sae` → `gpu` → results → CLI output or the page.

pub mod backend;
pub mod bench;
pub mod clock;
pub mod dashboard;
pub mod engine;
pub mod fingerprint;
pub mod formats;
pub mod gemm;
pub mod gpu;
pub mod lm;
pub mod model;
pub mod page;
pub mod random;
pub mod reference;
pub mod sae;
pub mod train;

#[cfg(not(target_arch = "wasm32"))]
pub mod cli;
#[cfg(target_arch = "wasm32")]
pub mod ui;
