//! The GPU side: adapter and device set-up for both targets (Vulkan natively, the browser's
//! WebGPU on wasm), buffer helpers, one module per WGSL kernel family (`kernels`), and the runners
//! that keep an SAE (`sae_runner`) or a model (`model_runner`) resident and record their passes.

pub mod kernels;
pub mod model_runner;
pub mod model_stream;
pub mod sae_runner;

use wgpu::util::DeviceExt;

pub use sae_runner::{GpuSae, RunOutput, RunRequest};

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum GpuError {
    #[error("no GPU adapter found (natively: install Mesa's Vulkan drivers, e.g. `apt-get install mesa-vulkan-drivers`; in a browser: WebGPU is not available)")]
    NoAdapter,
    #[error("could not open the GPU device: {0}")]
    Device(String),
    #[error("reading a result back from the GPU failed: {0}")]
    ReadBack(String),
    #[error("{0}")]
    TooLarge(String),
    /// Input the kernels cannot run on (a token outside the vocabulary, an unknown hook).
    #[error("{0}")]
    Input(String),
    #[error("the GPU rejected a command (a bug in saelab; please report it): {0}")]
    Validation(String),
}

/// An open GPU: device, queue, the limits we were granted, and the compiled kernels.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub limits: wgpu::Limits,
    /// Human-readable adapter name ("llvmpipe (LLVM 15…)"; on the web, filled in by the page).
    pub adapter_name: String,
    pub backend: String,
    /// The adapter says it is the CPU (lavapipe, SwiftShader natively): its kernels' software
    /// forms are taken without timing. In the browser WebGPU does not say so, and the timing
    /// decides (`kernels::choose_variants`).
    pub cpu_adapter: bool,
    pub kernels: kernels::Kernels,
    /// Dispatches, buffers and bind groups recorded so far (see `kernels::Counters`).
    pub counters: kernels::Counters,
    /// Errors the device reported outside any error scope (invalid shaders, pipelines, bindings).
    /// wgpu's default natively is to panic and in the browser to log a warning and carry on with
    /// garbage; we collect them instead and fail the next read-back with the message.
    errors: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Uniform buffers by content, reused (see `uniform`).
    uniforms: std::sync::Mutex<UniformPool>,
    /// The bind-group cache dispatches use while an owner records with one (`record_with`).
    bind_groups: std::sync::Mutex<Option<std::sync::Arc<BindGroupCache>>>,
}

/// Bind groups kept by an owner whose dispatches repeat with the same buffers (a trainer's step:
/// its buffers live as long as it does, and pooled uniforms repeat), keyed by pipeline and bound
/// buffers. Each recording round keeps only the bind groups it used, so the cache holds one
/// round's worth and never keeps a buffer alive past the round after its last use.
#[derive(Default)]
pub struct BindGroupCache {
    entries: std::sync::Mutex<std::collections::HashMap<BindKey, (wgpu::BindGroup, bool)>>,
}

type BindKey = (wgpu::ComputePipeline, Vec<(u32, wgpu::Buffer)>);

impl BindGroupCache {
    /// The bind group of `pipeline` with `buffers` bound, made once; `made` says whether it was
    /// made now.
    pub(crate) fn get(
        &self,
        device: &wgpu::Device,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[(u32, &wgpu::Buffer)],
    ) -> (wgpu::BindGroup, bool) {
        let key: BindKey = (pipeline.clone(), buffers.iter().map(|(b, buffer)| (*b, (*buffer).clone())).collect());
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((group, used)) = entries.get_mut(&key) {
            *used = true;
            return (group.clone(), false);
        }
        let group = kernels::create_bind_group(device, pipeline, buffers);
        entries.insert(key, (group.clone(), true));
        (group, true)
    }

    /// Ends a recording round: drops what it did not use.
    fn sweep(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.retain(|_, (_, used)| std::mem::take(used));
    }
}

/// Uniform buffers keyed by their bytes. A uniform is never written after it is made, so one
/// with the same contents can serve any number of dispatches, in flight or not: a training step,
/// which launches the same kernels on the same shapes every step, creates new uniforms only for
/// what changes (Adam's learning rate and bias corrections). The least recently used are dropped
/// past `UNIFORM_POOL_SIZE`, so values that change every step do not accumulate.
#[derive(Default)]
struct UniformPool {
    buffers: std::collections::HashMap<Vec<u8>, (wgpu::Buffer, u64)>,
    clock: u64,
}

const UNIFORM_POOL_SIZE: usize = 4096;

impl Gpu {
    /// Opens the default adapter with its full limits (so large weights need fewer chunks) and
    /// `shader-f16` where it has it (f16 weights are then read as WGSL `f16`).
    pub async fn new() -> Result<Gpu, GpuError> {
        Gpu::with_options(true).await
    }

    /// As `new`, asking for `shader-f16` only when `shader_f16` (tests compare both paths).
    pub async fn with_options(shader_f16: bool) -> Result<Gpu, GpuError> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|_| GpuError::NoAdapter)?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("saelab"),
                required_features: if shader_f16 { adapter.features() & wgpu::Features::SHADER_F16 } else { wgpu::Features::empty() },
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::Device(e.to_string()))?;
        let errors: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        let sink = errors.clone();
        device.on_uncaptured_error(std::sync::Arc::new(move |e: wgpu::Error| {
            if let Ok(mut list) = sink.lock() {
                list.push(e.to_string().lines().take(6).collect::<Vec<_>>().join(" "));
            }
        }));
        let kernels = kernels::Kernels::new(&device);
        let adapter_name = if info.name.is_empty() { format!("{:?}", info.backend) } else { info.name.clone() };
        let backend = format!("{:?}", info.backend);
        let gpu = Gpu {
            device,
            queue,
            limits,
            adapter_name,
            backend,
            cpu_adapter: info.device_type == wgpu::DeviceType::Cpu,
            kernels,
            counters: Default::default(),
            errors,
            uniforms: Default::default(),
            bind_groups: Default::default(),
        };
        gpu.check_errors()?;
        kernels::choose_variants(&gpu, &format!("{} · {} {} · {:?}", info.name, info.driver, info.driver_info, info.backend)).await?;
        gpu.check_errors()?;
        Ok(gpu)
    }

    /// Runs `record` (which records dispatches, without awaiting) with `cache` serving their bind
    /// groups, then drops the cache's entries this round did not use.
    pub fn record_with<R>(&self, cache: &std::sync::Arc<BindGroupCache>, record: impl FnOnce() -> R) -> R {
        let slot = || self.bind_groups.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let previous = slot().replace(cache.clone());
        let out = record();
        *slot() = previous;
        cache.sweep();
        out
    }

    /// The cache dispatches record with now, if any.
    pub(crate) fn bind_group_cache(&self) -> Option<std::sync::Arc<BindGroupCache>> {
        self.bind_groups.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// The first error the device reported since the last check, if any.
    pub fn check_errors(&self) -> Result<(), GpuError> {
        let first = {
            let mut list = self.errors.lock().map_err(|_| GpuError::Validation("error list poisoned".into()))?;
            let first = list.first().cloned();
            list.clear();
            first
        };
        match first {
            Some(message) => Err(GpuError::Validation(message)),
            None => Ok(()),
        }
    }

    /// Whether f16 weights are read as WGSL `f16` (`shader-f16`) rather than unpacked from words.
    pub fn native_f16(&self) -> bool {
        self.kernels.matmul.native_f16()
    }

    /// How this device's matrix products pick their tiling (measured when it opened).
    pub fn matmul_tiling(&self) -> kernels::matmul::TilingPolicy {
        self.kernels.matmul.tiling()
    }

    /// Makes products use `policy` from now on (tests force each tiling; results are the same bits).
    pub fn set_matmul_tiling(&self, policy: kernels::matmul::TilingPolicy) {
        self.kernels.matmul.set_tiling(policy);
    }

    /// The attention entry this device runs (measured when it opened).
    pub fn attention_kernel(&self) -> kernels::model::AttentionKernel {
        self.kernels.model.attention_kernel()
    }

    /// Makes attention run `kernel` from now on (tests run both).
    pub fn set_attention_kernel(&self, kernel: kernels::model::AttentionKernel) {
        self.kernels.model.set_attention_kernel(kernel);
    }

    /// What the device measured when it opened and runs since, for a person: "matmul in 16×8
    /// register blocks (1.9 GFLOP/s, a software adapter: 64×64 shared tiles not timed); attention
    /// a thread per token and head".
    pub fn kernel_choices(&self) -> String {
        let matmul = self.matmul_tiling().describe();
        let attention = match self.attention_kernel() {
            kernels::model::AttentionKernel::Workgroup => "attention a workgroup per token and head",
            kernels::model::AttentionKernel::Serial => "attention a thread per token and head",
        };
        format!("{matmul}; {attention}")
    }

    /// The largest buffer one storage binding may see, in bytes.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size)
    }

    pub fn upload_f32(&self, label: &str, data: &[f32]) -> wgpu::Buffer {
        self.upload_bytes(label, bytemuck::cast_slice(data))
    }

    pub fn upload_bytes(&self, label: &str, bytes: &[u8]) -> wgpu::Buffer {
        // Zero-sized bindings are invalid; a 4-byte placeholder keeps every binding legal.
        let contents: &[u8] = if bytes.is_empty() { &[0; 4] } else { bytes };
        self.counters.count_buffer();
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        })
    }

    /// A uniform buffer holding `value`: the pooled one with these bytes, or a new one.
    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        let bytes = bytemuck::bytes_of(value);
        let mut pool = self.uniforms.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        pool.clock += 1;
        let now = pool.clock;
        if let Some((buffer, last_used)) = pool.buffers.get_mut(bytes) {
            *last_used = now;
            return buffer.clone();
        }
        if pool.buffers.len() >= UNIFORM_POOL_SIZE {
            // Keep the more recently used half.
            let mut ages: Vec<u64> = pool.buffers.values().map(|(_, t)| *t).collect();
            ages.sort_unstable();
            let cutoff = ages[ages.len() / 2];
            pool.buffers.retain(|_, (_, t)| *t >= cutoff);
        }
        self.counters.count_buffer();
        let buffer = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytes,
            usage: wgpu::BufferUsages::UNIFORM,
        });
        pool.buffers.insert(bytes.to_vec(), (buffer.clone(), now));
        buffer
    }

    /// A storage buffer of `bytes` bytes (at least 4), zero-initialised.
    pub fn storage(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.counters.count_buffer();
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4).next_multiple_of(4),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Copies `bytes` bytes of `buffer` back to the host. Awaits the map callback (on the web it
    /// fires only after yielding to the browser; natively we poll the device until it does).
    pub async fn read_bytes(&self, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>, GpuError> {
        self.read_range(buffer, 0, bytes).await
    }

    /// Copies `bytes` bytes of `buffer` from byte `offset` back to the host (both multiples of 4).
    pub async fn read_range(&self, buffer: &wgpu::Buffer, offset: u64, bytes: u64) -> Result<Vec<u8>, GpuError> {
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        let (sender, receiver) = futures_channel::oneshot::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |result| {
            let _ = sender.send(result);
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| GpuError::ReadBack(e.to_string()))?;
        receiver
            .await
            .map_err(|_| GpuError::ReadBack("the map callback was dropped".into()))?
            .map_err(|e| GpuError::ReadBack(e.to_string()))?;
        let data = staging.slice(..).get_mapped_range().map_err(|e| GpuError::ReadBack(e.to_string()))?.to_vec();
        staging.unmap();
        // Errors are reported asynchronously; by the time a read-back completes, those of the
        // commands it waited for have arrived.
        self.check_errors()?;
        Ok(data)
    }

    pub async fn read_f32(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<f32>, GpuError> {
        let bytes = self.read_bytes(buffer, (len * 4) as u64).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    pub async fn read_u32(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<u32>, GpuError> {
        let bytes = self.read_bytes(buffer, (len * 4) as u64).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}

/// Splits a count of workgroups over x and y so that neither exceeds WebGPU's 65,535 per
/// dimension. Kernels recover the index as `wg.x + wg.y * 65535`.
pub fn grid_1d(workgroups: u32) -> (u32, u32) {
    const MAX: u32 = 65_535;
    if workgroups <= MAX {
        (workgroups.max(1), 1)
    } else {
        (MAX, workgroups.div_ceil(MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_stays_within_limits() {
        assert_eq!(grid_1d(10), (10, 1));
        let (x, y) = grid_1d(200_000);
        assert!(x <= 65_535 && x * y >= 200_000);
    }
}
