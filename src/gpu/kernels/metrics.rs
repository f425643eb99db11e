//! `shaders/metrics.wgsl`: per-row reconstruction statistics and per-feature fire counts, from
//! dense activations or TopK lists. CPU twins: `sae::metrics::row_stats` and `fire_counts`.

use bytemuck::{Pod, Zeroable};

use super::{dispatch, index_size, module, need, pipeline, REDUCE_WGSL};
use crate::gpu::{grid_1d, Gpu, GpuError};

pub(crate) struct Pipelines {
    row_metrics_dense: wgpu::ComputePipeline,
    row_metrics_sparse: wgpu::ComputePipeline,
    fire_counts_dense: wgpu::ComputePipeline,
    fire_counts_sparse: wgpu::ComputePipeline,
}

impl Pipelines {
    pub(crate) fn new(device: &wgpu::Device) -> Pipelines {
        let m = module(device, "metrics.wgsl", &[REDUCE_WGSL, include_str!("../../../shaders/metrics.wgsl")].concat());
        Pipelines {
            row_metrics_dense: pipeline(device, &m, "row_metrics", &[("SPARSE", 0.0)]),
            row_metrics_sparse: pipeline(device, &m, "row_metrics", &[("SPARSE", 1.0)]),
            fire_counts_dense: pipeline(device, &m, "fire_counts_dense", &[]),
            fire_counts_sparse: pipeline(device, &m, "fire_counts_sparse", &[]),
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    d_in: u32,
    d_sae: u32,
    k: u32,
    ld: u32,
    eps: f32,
    _pad: [u32; 2],
}

/// The feature activations a metric kernel reads: dense rows, or TopK lists.
pub enum Activations<'a> {
    Dense { acts: &'a wgpu::Buffer, ld: usize },
    Lists { index: &'a wgpu::Buffer, value: &'a wgpu::Buffer, k: usize },
}

impl Activations<'_> {
    fn check(&self, kernel: &str, rows: usize, d_sae: usize) -> Result<(), GpuError> {
        match self {
            Activations::Dense { acts, ld } if rows > 0 => {
                if *ld < d_sae {
                    return Err(GpuError::Input(format!("{kernel}: rows of {ld} activations cannot hold d_sae = {d_sae}")));
                }
                need(kernel, "acts", acts, (rows - 1) * ld + d_sae)
            }
            Activations::Lists { index, value, k } => {
                need(kernel, "index", index, rows * k)?;
                need(kernel, "value", value, rows * k)
            }
            _ => Ok(()),
        }
    }
}

fn params(gpu: &Gpu, kernel: &str, rows: usize, d_in: usize, d_sae: usize, acts: &Activations<'_>) -> Result<wgpu::Buffer, GpuError> {
    let (k, ld) = match acts {
        Activations::Dense { ld, .. } => (0, *ld),
        Activations::Lists { k, .. } => (*k, 0),
    };
    let p = Params {
        rows: index_size(kernel, "rows", rows)?,
        d_in: index_size(kernel, "rows × d_in", rows * d_in).map(|_| d_in as u32)?,
        d_sae: index_size(kernel, "d_sae", d_sae)?,
        k: index_size(kernel, "rows × k", rows * k).map(|_| k as u32)?,
        ld: index_size(kernel, "rows × ld", rows * ld).map(|_| ld as u32)?,
        eps: crate::sae::metrics::COSINE_EPS,
        _pad: [0; 2],
    };
    Ok(gpu.uniform("metrics params", &p))
}

/// The buffers of `row_metrics`: `x` and `recon` `[rows, d_in]`, `stats` `[rows, 3]`.
pub struct RowMetrics<'a> {
    pub rows: usize,
    pub d_in: usize,
    pub d_sae: usize,
    pub x: &'a wgpu::Buffer,
    pub recon: &'a wgpu::Buffer,
    pub acts: Activations<'a>,
    pub stats: &'a wgpu::Buffer,
}

/// `stats[r] = (Σ(x − recon)², cos(x, recon), L0)` for each row.
pub fn row_metrics(gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, args: RowMetrics<'_>) -> Result<(), GpuError> {
    const KERNEL: &str = "row_metrics";
    let RowMetrics { rows, d_in, d_sae, x, recon, acts, stats } = args;
    need(KERNEL, "x", x, rows * d_in)?;
    need(KERNEL, "recon", recon, rows * d_in)?;
    need(KERNEL, "stats", stats, rows * 3)?;
    acts.check(KERNEL, rows, d_sae)?;
    let uniform = params(gpu, KERNEL, rows, d_in, d_sae, &acts)?;
    let (gx, gy) = grid_1d(rows as u32);
    let (pipeline, values) = match acts {
        Activations::Dense { acts, .. } => (&gpu.kernels.metrics.row_metrics_dense, acts),
        Activations::Lists { value, .. } => (&gpu.kernels.metrics.row_metrics_sparse, value),
    };
    // L0 from lists counts their nonzero values; the indices are not read (nor bound).
    dispatch(gpu, encoder, pipeline, &[(0, &uniform), (1, x), (2, recon), (3, values), (5, stats)], (gx, gy, 1));
    Ok(())
}

/// `counts[f] +=` the number of rows on which feature `f` is active (`counts`: `d_sae` u32).
pub fn fire_counts(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    rows: usize,
    d_sae: usize,
    acts: Activations<'_>,
    counts: &wgpu::Buffer,
) -> Result<(), GpuError> {
    const KERNEL: &str = "fire_counts";
    need(KERNEL, "counts", counts, d_sae)?;
    acts.check(KERNEL, rows, d_sae)?;
    let uniform = params(gpu, KERNEL, rows, 0, d_sae, &acts)?;
    match acts {
        Activations::Dense { acts, .. } => {
            let groups = (d_sae.div_ceil(256)) as u32;
            dispatch(gpu, encoder, &gpu.kernels.metrics.fire_counts_dense, &[(0, &uniform), (3, acts), (6, counts)], (groups, 1, 1));
        }
        Activations::Lists { index, value, k } => {
            let groups = (rows * k).div_ceil(256);
            // fire_counts_sparse indexes by global id x only: one dimension of workgroups.
            if groups > 65_535 {
                return Err(GpuError::TooLarge(format!(
                    "{KERNEL}: {} list entries are more than one dispatch takes; use smaller row blocks",
                    rows * k
                )));
            }
            dispatch(
                gpu,
                encoder,
                &gpu.kernels.metrics.fire_counts_sparse,
                &[(0, &uniform), (3, value), (4, index), (6, counts)],
                (groups.max(1) as u32, 1, 1),
            );
        }
    }
    Ok(())
}
