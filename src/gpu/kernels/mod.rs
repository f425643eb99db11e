//! One module per WGSL kernel family (`shaders/<family>.wgsl`). Each owns its pipelines, its
//! uniform struct, its bind-group contract and its dispatch math, and has one typed function per
//! entry point; sizes a caller can get wrong come back as `GpuError`s, never panics. Every entry's
//! CPU twin is a plain function in `crate::reference`, and `tests/kernels.rs` runs each entry
//! against its twin on random inputs of awkward sizes.
//!
//! Pipelines are compiled once, when the device opens (`Kernels::new`); matmul's specialisations
//! (epilogue, transposes) on first use, then kept.

pub mod batch_topk;
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
        }
    }
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
