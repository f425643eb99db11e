//! `shaders/ceiling.wgsl`: the adapter's multiply-add throughput and copy bandwidth, which the
//! benchmark harness reads each figure against. CPU twins: `reference::fma_rounds` and the
//! identity.

use bytemuck::{Pod, Zeroable};

use super::{dispatch, index_size, module, need, pipeline, time_per_run};
use crate::gpu::{grid_1d, Gpu, GpuError};

pub(crate) struct Pipelines {
    fma_rounds: wgpu::ComputePipeline,
    copy: wgpu::ComputePipeline,
}

impl Pipelines {
    pub(crate) fn new(device: &wgpu::Device) -> Pipelines {
        let m = module(device, "ceiling.wgsl", include_str!("../../../shaders/ceiling.wgsl"));
        Pipelines { fma_rounds: pipeline(device, &m, "fma_rounds", &[]), copy: pipeline(device, &m, "copy", &[]) }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    count: u32,
    rounds: u32,
    a: f32,
    b: f32,
}

const WG: usize = 256;
/// Multiply-adds of one thread's round: 8 vec4 FMAs, 2 flops a lane.
pub const FLOPS_PER_ROUND: f64 = 8.0 * 4.0 * 2.0;

/// `threads` threads of `rounds` rounds each; `out` gets each thread's vec4 (`[threads, 4]` f32).
pub struct FmaRounds<'a> {
    pub threads: usize,
    pub rounds: u32,
    pub a: f32,
    pub b: f32,
    pub out: &'a wgpu::Buffer,
}

pub fn fma_rounds(gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, args: FmaRounds<'_>) -> Result<(), GpuError> {
    const KERNEL: &str = "fma_rounds";
    need(KERNEL, "out", args.out, 4 * args.threads)?;
    let params = Params {
        count: index_size(KERNEL, "threads × 4", 4 * args.threads).map(|_| args.threads as u32)?,
        rounds: args.rounds,
        a: args.a,
        b: args.b,
    };
    let uniform = gpu.uniform("ceiling params", &params);
    let (x, y) = grid_1d(args.threads.div_ceil(WG) as u32);
    dispatch(gpu, encoder, &gpu.kernels.ceiling.fma_rounds, &[(0, &uniform), (2, args.out)], (x, y, 1));
    Ok(())
}

/// `dst[i] = src[i]` for the first `vec4s` vec4s.
pub struct Copy<'a> {
    pub vec4s: usize,
    pub src: &'a wgpu::Buffer,
    pub dst: &'a wgpu::Buffer,
}

pub fn copy(gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, args: Copy<'_>) -> Result<(), GpuError> {
    const KERNEL: &str = "copy";
    need(KERNEL, "src", args.src, 4 * args.vec4s)?;
    need(KERNEL, "dst", args.dst, 4 * args.vec4s)?;
    let params = Params { count: index_size(KERNEL, "vec4s × 4", 4 * args.vec4s).map(|_| args.vec4s as u32)?, rounds: 0, a: 0.0, b: 0.0 };
    let uniform = gpu.uniform("ceiling params", &params);
    let (x, y) = grid_1d(args.vec4s.div_ceil(WG) as u32);
    dispatch(gpu, encoder, &gpu.kernels.ceiling.copy, &[(0, &uniform), (1, args.src), (2, args.dst)], (x, y, 1));
    Ok(())
}

/// The adapter's multiply-add throughput in GFLOP/s: a million threads of independent chains,
/// with rounds raised until one run takes at least 5 ms (so launch latency does not decide).
pub async fn fma_ceiling(gpu: &Gpu) -> Result<f64, GpuError> {
    let threads = 1 << 20;
    let out = gpu.storage("fma ceiling out", 16 * threads as u64);
    let mut rounds = 16u32;
    loop {
        let launch = |enc: &mut wgpu::CommandEncoder| fma_rounds(gpu, enc, FmaRounds { threads, rounds, a: 0.999_9, b: 1e-4, out: &out });
        let (ms, _) = time_per_run(gpu, launch, &out).await?;
        if ms >= 5.0 || rounds >= 1 << 20 {
            return Ok(FLOPS_PER_ROUND * threads as f64 * rounds as f64 / (ms * 1e-3) / 1e9);
        }
        rounds *= 8;
    }
}

/// The adapter's memory bandwidth in GB/s (read + write bytes): a copy between two buffers of up
/// to 128 MiB each (smaller where one binding may not hold that much), larger than the caches of
/// the GPUs we know.
pub async fn copy_ceiling(gpu: &Gpu) -> Result<(f64, u64), GpuError> {
    let bytes = (128u64 << 20).min(gpu.max_binding_bytes() / 16 * 16);
    let (src, dst) = (gpu.storage("copy ceiling src", bytes), gpu.storage("copy ceiling dst", bytes));
    let vec4s = (bytes / 16) as usize;
    let (ms, _) = time_per_run(gpu, |enc| copy(gpu, enc, Copy { vec4s, src: &src, dst: &dst }), &dst).await?;
    Ok((2.0 * bytes as f64 / (ms * 1e-3) / 1e9, bytes))
}
