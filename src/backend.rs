//! Where the work runs: the plain-Rust CPU reference or a GPU through wgpu. The choice is made
//! once, as a `Backend` value; what is placed on it (`engine::LoadedSae`, `lm::LoadedModel`,
//! `train::trainer::SaeTrainer`) remembers it, so no caller passes a device beside its data.
//!
//! An enum, not a trait: there are exactly two implementations and both must live side by side
//! in one process (tests and benchmarks compare them; the page falls back to the CPU when WebGPU
//! is missing). Each operation matches on it once, the compiler checks that every operation
//! covers both, and async methods need no boxing (async trait methods are not dyn-compatible).

use std::rc::Rc;

use crate::gpu::{Gpu, GpuError};

/// A place to run SAEs, models and training steps. Cloning it shares the device.
#[derive(Clone)]
pub enum Backend {
    /// The host: SAELens's and the models' semantics in plain Rust (the definition every kernel
    /// is tested against), with their matrix products on `gemm` (SIMD, every core).
    Cpu,
    Gpu(Rc<Gpu>),
}

impl Backend {
    /// The default GPU adapter (Vulkan natively, the browser's WebGPU on wasm).
    pub async fn open_gpu() -> Result<Backend, GpuError> {
        Ok(Backend::Gpu(Rc::new(Gpu::new().await?)))
    }

    /// What to show a person: "cpu (16 threads)", "cpu (wasm SIMD, 1 thread)", or the adapter's name.
    pub fn name(&self) -> String {
        match self {
            Backend::Cpu if cfg!(target_arch = "wasm32") => "cpu (wasm SIMD, 1 thread)".to_string(),
            Backend::Cpu => format!("cpu ({} threads)", crate::gemm::threads()),
            Backend::Gpu(gpu) => gpu.adapter_name.clone(),
        }
    }

    /// Which kernel forms the GPU picked when it opened (`Gpu::kernel_choices`); None on the CPU.
    pub fn kernel_choices(&self) -> Option<String> {
        self.gpu().map(|gpu| gpu.kernel_choices())
    }

    /// The GPU, when this backend is one.
    pub fn gpu(&self) -> Option<&Rc<Gpu>> {
        match self {
            Backend::Cpu => None,
            Backend::Gpu(gpu) => Some(gpu),
        }
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Backend({})", self.name())
    }
}
