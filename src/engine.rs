//! An SAE on its backend: the one API the CLI, the page and the tests use to validate activations
//! against an SAE, run them where the SAE was placed (CPU reference or GPU) and get activations,
//! reconstructions and metrics back.

use std::rc::Rc;

use crate::backend::Backend;
use crate::formats::npy::NpyArray;
use crate::gpu::{Gpu, GpuError, GpuSae, RunRequest};
use crate::sae::metrics::{self, BatchMetrics};
use crate::sae::{cpu, Sae};

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum InputError {
    #[error("{file}: expected activations of shape [n, {d_in}] (the SAE's d_in), found shape {shape:?}")]
    WrongWidth { file: String, d_in: usize, shape: Vec<usize> },
    #[error("{file}: holds no rows")]
    Empty { file: String },
    #[error("{file}: {rows} of {n} rows contain NaN or Inf (first: row {first}); remove or fix them")]
    NonFinite { file: String, rows: usize, n: usize, first: usize },
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum EngineError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Gpu(#[from] GpuError),
}

/// Checks that `array` is `[n, d_in]` (a 1-D array counts as one row) with only finite values,
/// and returns n.
pub fn check_activations(file: &str, array: &NpyArray, d_in: usize) -> Result<usize, InputError> {
    let (n, d) = array.as_matrix();
    if d != d_in {
        return Err(InputError::WrongWidth { file: file.into(), d_in, shape: array.shape.clone() });
    }
    if n == 0 {
        return Err(InputError::Empty { file: file.into() });
    }
    let bad: Vec<usize> =
        array.data.chunks_exact(d).enumerate().filter(|(_, row)| row.iter().any(|v| !v.is_finite())).map(|(i, _)| i).collect();
    if let Some(&first) = bad.first() {
        return Err(InputError::NonFinite { file: file.into(), rows: bad.len(), n, first });
    }
    Ok(n)
}

/// An SAE placed on a backend: its host weights (what the CPU reference runs and every caller
/// reads the config from) and, on a GPU, their copy uploaded once. Cloning it shares both.
#[derive(Clone)]
pub struct LoadedSae {
    pub sae: Rc<Sae>,
    on_gpu: Option<(Rc<Gpu>, Rc<GpuSae>)>,
}

impl LoadedSae {
    /// Places `sae` on `backend` (uploads its weights to a GPU).
    pub fn new(sae: Rc<Sae>, backend: &Backend) -> Result<LoadedSae, GpuError> {
        let on_gpu = match backend {
            Backend::Cpu => None,
            Backend::Gpu(gpu) => Some((gpu.clone(), Rc::new(GpuSae::upload(gpu, &sae)?))),
        };
        Ok(LoadedSae { sae, on_gpu })
    }

    pub fn backend(&self) -> Backend {
        match &self.on_gpu {
            None => Backend::Cpu,
            Some((gpu, _)) => Backend::Gpu(gpu.clone()),
        }
    }
}

/// A placed SAE reads as its host weights (config, decoder rows), as an `Rc<Sae>` would.
impl std::ops::Deref for LoadedSae {
    type Target = Sae;
    fn deref(&self) -> &Sae {
        &self.sae
    }
}

#[derive(Debug, Clone)]
pub struct Analysis {
    /// Dense `[n, d_sae]` activations, if requested.
    pub acts: Option<Vec<f32>>,
    /// `sae(x)`, `[n, d_in]`, if requested.
    pub recon: Option<Vec<f32>>,
    pub metrics: BatchMetrics,
    pub device: String,
}

/// The CPU reference's analysis (synchronous: also usable between frames in the page). Metrics
/// compare `sae(x)` with `x`: an SAE's (a transcoder's need [`analyze_cpu_against`]).
pub fn analyze_cpu(sae: &Sae, x: &[f32], request: RunRequest) -> Analysis {
    analyze_cpu_against(sae, x, x, request)
}

/// As [`analyze_cpu`], with the metrics of `sae(x)` against `target` (`[n, d_in]`): a
/// transcoder's output hook's activations.
pub fn analyze_cpu_against(sae: &Sae, x: &[f32], target: &[f32], request: RunRequest) -> Analysis {
    let (acts, recon) = cpu::forward(sae, x);
    let (d_in, d_sae) = (sae.d_in(), sae.d_sae());
    let rows = target
        .chunks_exact(d_in)
        .zip(recon.chunks_exact(d_in))
        .zip(acts.chunks_exact(d_sae))
        .map(|((xr, rr), ar)| metrics::row_stats(xr, rr, ar))
        .collect();
    let metrics = BatchMetrics::finish(target, d_in, rows, metrics::fire_counts(&acts, d_sae));
    Analysis { acts: request.dense_acts.then_some(acts), recon: request.recon.then_some(recon), metrics, device: Backend::Cpu.name() }
}

/// Runs validated activations `x` (`[n, d_in]`) through `sae` where it was placed; the metrics
/// compare `sae(x)` with `x` (an SAE's; a transcoder's need [`analyze_against`]).
pub async fn analyze(sae: &LoadedSae, x: &[f32], request: RunRequest) -> Result<Analysis, EngineError> {
    run(sae, x, None, request).await
}

/// As [`analyze`], with the metrics of `sae(x)` against `target`: what a transcoder's output is
/// compared with (its output hook's activations).
pub async fn analyze_against(sae: &LoadedSae, x: &[f32], target: &[f32], request: RunRequest) -> Result<Analysis, EngineError> {
    run(sae, x, Some(target), request).await
}

async fn run(sae: &LoadedSae, x: &[f32], target: Option<&[f32]>, request: RunRequest) -> Result<Analysis, EngineError> {
    match &sae.on_gpu {
        None => Ok(analyze_cpu_against(&sae.sae, x, target.unwrap_or(x), request)),
        Some((gpu, gpu_sae)) => {
            let out = gpu.run_sae(gpu_sae, x, target, request).await?;
            Ok(Analysis { acts: out.acts, recon: out.recon, metrics: out.metrics, device: gpu.adapter_name.clone() })
        }
    }
}
