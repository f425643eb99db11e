//! One module per WGSL kernel family (`shaders/<family>.wgsl`). Each owns its pipelines, its
//! uniform struct, its bind-group contract and its dispatch math, and has one typed function per
//! entry point; sizes a caller can get wrong come back as `GpuError`s, never panics. Every entry's
//! CPU twin is a plain function in `crate::reference`, and `tests/kernels.rs` runs each entry
//! against its twin on random inputs of awkward sizes.
//!
//! Pipelines are compiled once, when the device opens (`Kernels::new`); matmul's specialisations
//! (epilogue, transposes) on first use, then kept.

pub mod batch_topk;
pub mod ceiling;
pub mod matmul;
pub mod metrics;
pub mod model;
pub mod rows;
pub mod sparse_decode;
pub mod topk;
pub mod train;

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Gpu, GpuError};

/// Every family's pipelines for one device.
pub struct Kernels {
    pub(crate) matmul: matmul::Pipelines,
    pub(crate) topk: topk::Pipelines,
    pub(crate) rows: rows::Pipelines,
    pub(crate) sparse_decode: sparse_decode::Pipelines,
    pub(crate) metrics: metrics::Pipelines,
    pub(crate) train: train::Pipelines,
    pub(crate) batch_topk: batch_topk::Pipelines,
    pub(crate) model: model::Pipelines,
    pub(crate) ceiling: ceiling::Pipelines,
}

impl Kernels {
    pub fn new(device: &wgpu::Device) -> Kernels {
        Kernels {
            matmul: matmul::Pipelines::new(device),
            topk: topk::Pipelines::new(device),
            rows: rows::Pipelines::new(device),
            sparse_decode: sparse_decode::Pipelines::new(device),
            metrics: metrics::Pipelines::new(device),
            train: train::Pipelines::new(device),
            batch_topk: batch_topk::Pipelines::new(device),
            model: model::Pipelines::new(device),
            ceiling: ceiling::Pipelines::new(device),
        }
    }
}

/// Times the kernels whose speed differs most between GPUs and software adapters in each of
/// their forms, and keeps the faster (matmul's tiling, attention's kernel). Results do not depend
/// on the choice beyond rounding (matmul's tilings give the same bits). Runs when a device opens;
/// a second device on the same adapter in the same process reuses the first one's measurement
/// (`adapter` names it: name, driver, backend), so a test binary measures once.
pub async fn choose_variants(gpu: &Gpu, adapter: &str) -> Result<(), GpuError> {
    type Chosen = (matmul::TilingPolicy, model::AttentionKernel);
    static MEASURED: std::sync::Mutex<Vec<(String, Chosen)>> = std::sync::Mutex::new(Vec::new());
    let known = MEASURED.lock().unwrap_or_else(|p| p.into_inner()).iter().find(|(a, _)| a == adapter).map(|(_, c)| *c);
    let (tiling, attention) = match known {
        Some(chosen) => chosen,
        None => {
            let chosen = (matmul::choose_tiling(gpu).await?, model::choose_attention(gpu).await?);
            MEASURED.lock().unwrap_or_else(|p| p.into_inner()).push((adapter.to_string(), chosen));
            chosen
        }
    };
    gpu.kernels.matmul.set_tiling(tiling);
    gpu.kernels.model.set_attention_kernel(attention);
    Ok(())
}

/// How long what `record` records takes on this adapter, in milliseconds per recording: one run
/// that compiles its pipelines, one timed run, and (when that took under 20 ms) as many repeats
/// in one submission as make about 20 ms, so a fast GPU's submission latency does not decide.
/// Timed to the read-back of 4 bytes of `done`, which the recording writes. Also returns the
/// single run's time.
pub(crate) async fn time_per_run(
    gpu: &Gpu,
    record: impl Fn(&mut wgpu::CommandEncoder) -> Result<(), GpuError>,
    done: &wgpu::Buffer,
) -> Result<(f64, f64), GpuError> {
    let run = |repeats: usize| {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        let recorded = (0..repeats).try_for_each(|_| record(&mut enc));
        async move {
            recorded?;
            let start = crate::clock::now_ms();
            gpu.queue.submit([enc.finish()]);
            gpu.read_range(done, 0, 4).await?;
            Ok::<f64, GpuError>(crate::clock::now_ms() - start)
        }
    };
    run(1).await?;
    let once = run(1).await?;
    let repeats = (20.0 / once.max(0.01)).clamp(1.0, 256.0) as usize;
    let per_run = if repeats == 1 { once } else { run(repeats).await? / repeats as f64 };
    Ok((per_run, once))
}

/// The shared workgroup reduction (`shaders/reduce.wgsl`): WGSL has no includes, so it is
/// prepended to the families that use it.
pub(crate) const REDUCE_WGSL: &str = include_str!("../../../shaders/reduce.wgsl");

pub(crate) fn module(device: &wgpu::Device, name: &str, source: &str) -> wgpu::ShaderModule {
    device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some(name), source: wgpu::ShaderSource::Wgsl(source.into()) })
}

pub(crate) fn pipeline(
    device: &wgpu::Device,
    module: &wgpu::ShaderModule,
    entry: &str,
    constants: &[(&str, f64)],
) -> wgpu::ComputePipeline {
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: None,
        module,
        entry_point: Some(entry),
        compilation_options: wgpu::PipelineCompilationOptions { constants, ..Default::default() },
        cache: None,
    })
}

/// How much GPU work was recorded: dispatches, and the buffers and bind groups created for them
/// (the per-dispatch overhead a training step pays). Read by benchmarks and the dispatch-count
/// test; never reset by the library.
#[derive(Debug, Default)]
pub struct Counters {
    pub dispatches: AtomicU64,
    pub buffers: AtomicU64,
    pub bind_groups: AtomicU64,
}

/// A snapshot of `Counters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub dispatches: u64,
    pub buffers: u64,
    pub bind_groups: u64,
}

impl Counters {
    pub fn snapshot(&self) -> Counts {
        Counts {
            dispatches: self.dispatches.load(Ordering::Relaxed),
            buffers: self.buffers.load(Ordering::Relaxed),
            bind_groups: self.bind_groups.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn count_buffer(&self) {
        self.buffers.fetch_add(1, Ordering::Relaxed);
    }
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, before: Counts) -> Counts {
        Counts {
            dispatches: self.dispatches - before.dispatches,
            buffers: self.buffers - before.buffers,
            bind_groups: self.bind_groups - before.bind_groups,
        }
    }
}

/// The bind group of `buffers` (binding number, buffer) at group 0 of `pipeline`.
pub(crate) fn create_bind_group(
    device: &wgpu::Device,
    pipeline: &wgpu::ComputePipeline,
    buffers: &[(u32, &wgpu::Buffer)],
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry<'_>> =
        buffers.iter().map(|(binding, buffer)| wgpu::BindGroupEntry { binding: *binding, resource: buffer.as_entire_binding() }).collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &pipeline.get_bind_group_layout(0), entries: &entries })
}

/// Binds `buffers` (binding number, buffer) to group 0 of `pipeline` and dispatches. The bind
/// group comes from the cache the caller records with (`Gpu::record_with`), else is made for this
/// dispatch.
pub(crate) fn dispatch(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    pipeline: &wgpu::ComputePipeline,
    buffers: &[(u32, &wgpu::Buffer)],
    workgroups: (u32, u32, u32),
) {
    let (bind_group, made) = match gpu.bind_group_cache() {
        Some(cache) => cache.get(&gpu.device, pipeline, buffers),
        None => (create_bind_group(&gpu.device, pipeline, buffers), true),
    };
    if made {
        gpu.counters.bind_groups.fetch_add(1, Ordering::Relaxed);
    }
    gpu.counters.dispatches.fetch_add(1, Ordering::Relaxed);
    let mut pass = encoder.begin_compute_pass(&Default::default());
    pass.set_pipeline(pipeline);
    pass.set_bind_group(0, &bind_group, &[]);
    pass.dispatch_workgroups(workgroups.0, workgroups.1, workgroups.2);
}

/// One operand of a launch: its binding number, its name (for errors), the buffer, and how many
/// 4-byte values the launch's shape needs it to hold.
pub(crate) type Operand<'a> = (u32, &'a str, &'a wgpu::Buffer, usize);

/// Checks that every operand holds what the shape needs, then binds `params` as the uniform at
/// binding 0 and the operands at theirs, and dispatches (the entries whose bindings follow the
/// `in0..`/`out0..` convention of train.wgsl and model.wgsl).
pub(crate) fn launch<P: bytemuck::Pod>(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    kernel: &str,
    pipeline: &wgpu::ComputePipeline,
    params: &P,
    operands: &[Operand<'_>],
    workgroups: (u32, u32, u32),
) -> Result<(), GpuError> {
    for (_, name, buffer, values) in operands {
        need(kernel, name, buffer, *values)?;
    }
    let uniform = gpu.uniform(kernel, params);
    let bindings: Vec<(u32, &wgpu::Buffer)> =
        std::iter::once((0, &uniform)).chain(operands.iter().map(|(binding, _, buffer, _)| (*binding, *buffer))).collect();
    dispatch(gpu, encoder, pipeline, &bindings, workgroups);
    Ok(())
}

/// `Ok` when `buffer` holds at least `values` 4-byte values, else an error naming the kernel and
/// the operand (a binding shorter than the shape says would read or write out of range).
pub(crate) fn need(kernel: &str, operand: &str, buffer: &wgpu::Buffer, values: usize) -> Result<(), GpuError> {
    let bytes = values as u64 * 4;
    if buffer.size() < bytes {
        return Err(GpuError::Input(format!("{kernel}: {operand} holds {} values, the shape needs {values}", buffer.size() / 4)));
    }
    Ok(())
}

/// A size as the kernels' u32 indices see it, or an error when it does not fit.
pub(crate) fn index_size(kernel: &str, what: &str, n: usize) -> Result<u32, GpuError> {
    u32::try_from(n).map_err(|_| GpuError::TooLarge(format!("{kernel}: {what} = {n} exceeds the kernels' 32-bit indices")))
}
