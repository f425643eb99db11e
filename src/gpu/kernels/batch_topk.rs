//! `shaders/batch_topk.wgsl`: BatchTopK's batch-wide selection (Bussmann et al. 2024) as a radix
//! select on bit patterns. CPU twin: `train::sae_train::batch_topk_threshold` and the keep rule
//! `v > 0 && v ≥ threshold`.

use bytemuck::{Pod, Zeroable};

use super::{dispatch, index_size, module, need, pipeline};
use crate::gpu::{grid_1d, Gpu, GpuError};

pub(crate) struct Pipelines {
    histogram: wgpu::ComputePipeline,
    pick: wgpu::ComputePipeline,
    apply: wgpu::ComputePipeline,
}

impl Pipelines {
    pub(crate) fn new(device: &wgpu::Device) -> Pipelines {
        let m = module(device, "batch_topk.wgsl", include_str!("../../../shaders/batch_topk.wgsl"));
        Pipelines {
            histogram: pipeline(device, &m, "batch_histogram", &[]),
            pick: pipeline(device, &m, "batch_pick", &[]),
            apply: pipeline(device, &m, "batch_apply", &[]),
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    count: u32,
    shift: u32,
    _pad: u32,
}

/// The buffers of a batch-wide top-k over `n` values.
pub struct BatchTopK<'a> {
    pub n: usize,
    /// How many of the largest positive values to keep.
    pub count: usize,
    pub values: &'a wgpu::Buffer,
    /// `[n]`: the kept values, zeros elsewhere.
    pub kept: &'a wgpu::Buffer,
    /// 256 u32, zero on entry and left zero.
    pub histogram: &'a wgpu::Buffer,
    /// 4 u32, zero on entry: `[0]` ends as the threshold's f32 bits (all ones when nothing is
    /// kept), `[2]` as the number of positive values.
    pub state: &'a wgpu::Buffer,
}

/// Keeps the `count` largest positive values (ties at the threshold all kept).
pub fn batch_topk(gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, args: BatchTopK<'_>) -> Result<(), GpuError> {
    const KERNEL: &str = "batch_topk";
    let BatchTopK { n, count, values, kept, histogram, state } = args;
    need(KERNEL, "values", values, n)?;
    need(KERNEL, "kept", kept, n)?;
    need(KERNEL, "histogram", histogram, 256)?;
    need(KERNEL, "state", state, 4)?;
    let (n32, count32) = (index_size(KERNEL, "n", n)?, index_size(KERNEL, "count", count)?);
    // Enough workgroups to fill a GPU; each walks the values with a grid stride.
    let histogram_groups = (n.div_ceil(256) as u32).clamp(1, 1024);
    let k = &gpu.kernels.batch_topk;
    for shift in [24u32, 16, 8, 0] {
        let uniform = gpu.uniform("batch topk params", &Params { n: n32, count: count32, shift, _pad: 0 });
        dispatch(gpu, encoder, &k.histogram, &[(0, &uniform), (1, values), (2, histogram), (3, state)], (histogram_groups, 1, 1));
        dispatch(gpu, encoder, &k.pick, &[(0, &uniform), (2, histogram), (3, state)], (1, 1, 1));
    }
    let uniform = gpu.uniform("batch topk params", &Params { n: n32, count: count32, shift: 0, _pad: 0 });
    let (gx, gy) = grid_1d(n.div_ceil(256) as u32);
    dispatch(gpu, encoder, &k.apply, &[(0, &uniform), (1, values), (3, state), (4, kept)], (gx, gy, 1));
    Ok(())
}
