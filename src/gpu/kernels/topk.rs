//! `shaders/topk.wgsl`: per-row top-k (radix select on order-preserving keys, then a bitonic sort
//! of the k kept), one workgroup per row. CPU twin: `sae::cpu::top_k_indices`, which breaks ties by
//! the same key. `topk_dense` writes the same selection as dense rows, for any k (twin:
//! `sae::cpu::top_k_dense`).

use bytemuck::{Pod, Zeroable};

use super::{dispatch, index_size, module, need, pipeline};
use crate::gpu::{grid_1d, Gpu, GpuError};

/// The largest k the kernel supports (its workgroup arrays are this long).
pub const MAX_TOPK: usize = 256;

pub(crate) struct Pipelines {
    main: wgpu::ComputePipeline,
    dense_rows: wgpu::ComputePipeline,
}

impl Pipelines {
    pub(crate) fn new(device: &wgpu::Device) -> Pipelines {
        let m = module(device, "topk.wgsl", include_str!("../../../shaders/topk.wgsl"));
        Pipelines { main: pipeline(device, &m, "main", &[]), dense_rows: pipeline(device, &m, "dense_rows", &[]) }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    d_sae: u32,
    k: u32,
    ld: u32,
    sort_n: u32,
    _pad: [u32; 3],
}

/// Where a row-wise top-k reads and writes: `pre` is `[rows, ld]` (the first `d_sae` columns
/// count), `index` and `value` get `[rows, k]`, largest first.
pub struct TopK<'a> {
    pub rows: usize,
    pub d_sae: usize,
    pub ld: usize,
    pub k: usize,
    pub pre: &'a wgpu::Buffer,
    pub index: &'a wgpu::Buffer,
    pub value: &'a wgpu::Buffer,
}

pub fn topk(gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, args: TopK<'_>) -> Result<(), GpuError> {
    const KERNEL: &str = "topk";
    let TopK { rows, d_sae, ld, k, pre, index, value } = args;
    if !(1..=MAX_TOPK).contains(&k) || k > d_sae {
        return Err(GpuError::Input(format!("{KERNEL}: k = {k} must be in 1..={MAX_TOPK} and at most d_sae = {d_sae}")));
    }
    if ld < d_sae {
        return Err(GpuError::Input(format!("{KERNEL}: rows of {ld} values cannot hold d_sae = {d_sae}")));
    }
    if rows == 0 {
        return Ok(());
    }
    need(KERNEL, "pre", pre, (rows - 1) * ld + d_sae)?;
    need(KERNEL, "index", index, rows * k)?;
    need(KERNEL, "value", value, rows * k)?;
    let params = Params {
        rows: index_size(KERNEL, "rows", rows)?,
        d_sae: index_size(KERNEL, "d_sae", d_sae)?,
        k: k as u32,
        ld: index_size(KERNEL, "ld", ld)?,
        sort_n: k.next_power_of_two() as u32,
        _pad: [0; 3],
    };
    let uniform = gpu.uniform("topk params", &params);
    let (x, y) = grid_1d(rows as u32);
    dispatch(gpu, encoder, &gpu.kernels.topk.main, &[(0, &uniform), (1, pre), (2, index), (3, value)], (x, y, 1));
    Ok(())
}

/// Row-wise top-k written densely: `dense` (`[rows, ld]`, like `pre`) gets relu(pre) at the `k`
/// largest of each row's first `d_sae` values (ties to the lower index, as `topk`) and 0 at the
/// rest of them; columns from `d_sae` to `ld` are not written. Any `k` from 1 to `d_sae`.
pub struct TopKDense<'a> {
    pub rows: usize,
    pub d_sae: usize,
    pub ld: usize,
    pub k: usize,
    pub pre: &'a wgpu::Buffer,
    pub dense: &'a wgpu::Buffer,
}

pub fn topk_dense(gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, args: TopKDense<'_>) -> Result<(), GpuError> {
    const KERNEL: &str = "topk_dense";
    let TopKDense { rows, d_sae, ld, k, pre, dense } = args;
    if k == 0 || k > d_sae {
        return Err(GpuError::Input(format!("{KERNEL}: k = {k} must be between 1 and d_sae = {d_sae}")));
    }
    if ld < d_sae {
        return Err(GpuError::Input(format!("{KERNEL}: rows of {ld} values cannot hold d_sae = {d_sae}")));
    }
    if rows == 0 {
        return Ok(());
    }
    need(KERNEL, "pre", pre, (rows - 1) * ld + d_sae)?;
    need(KERNEL, "dense", dense, (rows - 1) * ld + d_sae)?;
    let params = Params {
        rows: index_size(KERNEL, "rows", rows)?,
        d_sae: index_size(KERNEL, "d_sae", d_sae)?,
        k: k as u32,
        ld: index_size(KERNEL, "rows × ld", rows * ld).map(|_| ld as u32)?,
        sort_n: 0,
        _pad: [0; 3],
    };
    let uniform = gpu.uniform("topk params", &params);
    let (x, y) = grid_1d(rows as u32);
    dispatch(gpu, encoder, &gpu.kernels.topk.dense_rows, &[(0, &uniform), (1, pre), (4, dense)], (x, y, 1));
    Ok(())
}
