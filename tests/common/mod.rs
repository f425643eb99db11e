//! Shared helpers for integration tests.
#![allow(dead_code)]

use std::rc::Rc;

use saelab::backend::Backend;
use saelab::engine::LoadedSae;
use saelab::gpu::Gpu;
use saelab::lm::LoadedModel;
use saelab::model::Model;
use saelab::random::Rng;
use saelab::sae::Sae;

/// Opens the GPU. Panics — failing the test, never skipping it — when there is no adapter:
/// CI runs these on Mesa's lavapipe (`apt-get install mesa-vulkan-drivers`).
pub fn gpu() -> Gpu {
    match pollster::block_on(Gpu::new()) {
        Ok(gpu) => gpu,
        Err(e) => panic!("GPU tests need an adapter and none was found: {e}"),
    }
}

/// The GPU as a backend (see `gpu`).
pub fn gpu_backend() -> Backend {
    Backend::Gpu(Rc::new(gpu()))
}

/// A copy of `model` placed on `backend`.
pub fn model_on(model: &Model, backend: &Backend) -> LoadedModel {
    LoadedModel::new(Rc::new(model.clone()), backend).unwrap()
}

/// A copy of `sae` placed on `backend`.
pub fn sae_on(sae: &Sae, backend: &Backend) -> LoadedSae {
    LoadedSae::new(Rc::new(sae.clone()), backend).unwrap()
}

pub fn random_input(n: usize, d_in: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    // Activations with a common offset and per-row scale, like a residual stream.
    let offset: Vec<f32> = rng.normals(d_in, 0.5);
    (0..n)
        .flat_map(|_| {
            let scale = 0.5 + rng.uniform() * 2.0;
            let noise = rng.normals(d_in, scale);
            noise.into_iter().zip(offset.clone()).map(|(v, o)| v + o).collect::<Vec<_>>()
        })
        .collect()
}

/// Largest |a - b| / (1 + |b|) over paired elements.
pub fn max_rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs() / (1.0 + y.abs())).fold(0.0, f32::max)
}

/// A fresh empty folder under the system temp dir, unique to this test process and `name`.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("saelab-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sae")
}

pub fn read_npy(path: &std::path::Path) -> saelab::formats::npy::NpyArray {
    saelab::formats::npy::read_f32(&path.display().to_string(), &std::fs::read(path).unwrap()).unwrap()
}

/// Every fixture folder (each an SAELens SAE plus x/encode/recon .npy files), sorted.
pub fn fixture_cases() -> Vec<std::path::PathBuf> {
    let mut cases: Vec<_> =
        std::fs::read_dir(fixtures()).unwrap().map(|e| e.unwrap().path()).filter(|p| p.join("cfg.json").exists()).collect();
    cases.sort();
    cases
}
