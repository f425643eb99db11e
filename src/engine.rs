//! The one API the CLI, the page and the tests use: validate activations against an SAE, then run
//! them on the CPU reference or the GPU and get activations, reconstructions and metrics back.

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

/// Where to run: the plain-Rust reference, or an SAE already uploaded to a GPU.
pub enum Backend<'a> {
    Cpu,
    Gpu { gpu: &'a Gpu, sae: &'a GpuSae },
}

impl Backend<'_> {
    pub fn name(&self) -> String {
        match self {
            Backend::Cpu => "cpu (reference)".to_string(),
            Backend::Gpu { gpu, .. } => gpu.adapter_name.clone(),
        }
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

/// The CPU reference's analysis (synchronous: also usable between frames in the page).
pub fn analyze_cpu(sae: &Sae, x: &[f32], request: RunRequest) -> Analysis {
    let (acts, recon) = cpu::forward(sae, x);
    let (d_in, d_sae) = (sae.d_in(), sae.d_sae());
    let rows = x
        .chunks_exact(d_in)
        .zip(recon.chunks_exact(d_in))
        .zip(acts.chunks_exact(d_sae))
        .map(|((xr, rr), ar)| metrics::row_stats(xr, rr, ar))
        .collect();
    let metrics = BatchMetrics::finish(x, d_in, rows, metrics::fire_counts(&acts, d_sae));
    Analysis { acts: request.dense_acts.then_some(acts), recon: request.recon.then_some(recon), metrics, device: Backend::Cpu.name() }
}

/// Runs validated activations `x` (`[n, d_in]`) through `sae` on `backend`.
pub async fn analyze(sae: &Sae, backend: &Backend<'_>, x: &[f32], request: RunRequest) -> Result<Analysis, EngineError> {
    match backend {
        Backend::Cpu => Ok(analyze_cpu(sae, x, request)),
        Backend::Gpu { gpu, sae: gpu_sae } => {
            let out = gpu.run_sae(gpu_sae, x, request).await?;
            Ok(Analysis { acts: out.acts, recon: out.recon, metrics: out.metrics, device: backend.name() })
        }
    }
}
