//! `shaders/rows.wgsl`: the row-wise steps around the encoder and decoder (SAELens
//! `process_sae_in` and the end of `decode`). CPU twins: `sae::cpu::row_norm`, `process_input`
//! and the end of `decode_row`.

use bytemuck::{Pod, Zeroable};

use super::{dispatch, index_size, module, need, pipeline, REDUCE_WGSL};
use crate::gpu::{grid_1d, Gpu, GpuError};
use crate::sae::{Normalization, SaeConfig};

pub(crate) struct Pipelines {
    normalize_rows: wgpu::ComputePipeline,
    fill_bias: wgpu::ComputePipeline,
    denormalize_rows: wgpu::ComputePipeline,
}

impl Pipelines {
    pub(crate) fn new(device: &wgpu::Device) -> Pipelines {
        let m = module(device, "rows.wgsl", &[REDUCE_WGSL, include_str!("../../../shaders/rows.wgsl")].concat());
        Pipelines {
            normalize_rows: pipeline(device, &m, "normalize_rows", &[]),
            fill_bias: pipeline(device, &m, "fill_bias", &[]),
            denormalize_rows: pipeline(device, &m, "denormalize_rows", &[]),
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    d_in: u32,
    mode: u32,
    apply_b_dec: u32,
    eps: f32,
    _pad: [u32; 3],
}

/// How input rows are normalised (the GPU encoding of `sae::Normalization`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowNormalization {
    /// 0 identity, 1 layer_norm, 2 constant_norm_rescale
    pub mode: u32,
    pub apply_b_dec: bool,
}

impl RowNormalization {
    /// No normalisation, no b_dec: what decode's bias steps use.
    pub const IDENTITY: RowNormalization = RowNormalization { mode: 0, apply_b_dec: false };

    pub fn of(cfg: &SaeConfig) -> RowNormalization {
        let mode = match cfg.normalization {
            Normalization::None | Normalization::ExpectedAverageOnlyIn => 0,
            Normalization::LayerNorm => 1,
            Normalization::ConstantNormRescale => 2,
        };
        RowNormalization { mode, apply_b_dec: cfg.apply_b_dec_to_input }
    }
}

fn params(gpu: &Gpu, kernel: &str, rows: usize, d_in: usize, norm: RowNormalization) -> Result<wgpu::Buffer, GpuError> {
    let p = Params {
        rows: index_size(kernel, "rows", rows)?,
        d_in: index_size(kernel, "rows × d_in", rows * d_in).map(|_| d_in as u32)?,
        mode: norm.mode,
        apply_b_dec: norm.apply_b_dec as u32,
        eps: crate::sae::cpu::LAYER_NORM_EPS,
        _pad: [0; 3],
    };
    Ok(gpu.uniform("rows params", &p))
}

fn elementwise_grid(rows: usize, d_in: usize) -> (u32, u32, u32) {
    let (y, z) = grid_1d(rows as u32);
    ((d_in.div_ceil(64)) as u32, y, z)
}

/// The buffers of `normalize_rows`: `x` and `sae_in` are `[rows, d_in]`, `norms` `[rows, 3]`.
pub struct NormalizeRows<'a> {
    pub rows: usize,
    pub d_in: usize,
    pub norm: RowNormalization,
    pub b_dec: &'a wgpu::Buffer,
    pub x: &'a wgpu::Buffer,
    pub sae_in: &'a wgpu::Buffer,
    pub norms: &'a wgpu::Buffer,
}

/// `sae_in = (x − shift) · in_scale − b_dec · apply_b_dec` per row, and `norms[r] = (shift, in, out)`.
pub fn normalize_rows(gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, args: NormalizeRows<'_>) -> Result<(), GpuError> {
    const KERNEL: &str = "normalize_rows";
    let NormalizeRows { rows, d_in, norm, b_dec, x, sae_in, norms } = args;
    need(KERNEL, "b_dec", b_dec, d_in)?;
    need(KERNEL, "x", x, rows * d_in)?;
    need(KERNEL, "sae_in", sae_in, rows * d_in)?;
    need(KERNEL, "norms", norms, rows * 3)?;
    let uniform = params(gpu, KERNEL, rows, d_in, norm)?;
    let (gx, gy) = grid_1d(rows as u32);
    dispatch(gpu, encoder, &gpu.kernels.rows.normalize_rows, &[(0, &uniform), (1, b_dec), (2, x), (3, sae_in), (4, norms)], (gx, gy, 1));
    Ok(())
}

/// `out[r] = b_dec` for every row of `out` (`[rows, d_in]`): the start of decode.
pub fn fill_bias(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    rows: usize,
    d_in: usize,
    b_dec: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<(), GpuError> {
    const KERNEL: &str = "fill_bias";
    need(KERNEL, "b_dec", b_dec, d_in)?;
    need(KERNEL, "out", out, rows * d_in)?;
    let uniform = params(gpu, KERNEL, rows, d_in, RowNormalization::IDENTITY)?;
    dispatch(gpu, encoder, &gpu.kernels.rows.fill_bias, &[(0, &uniform), (1, b_dec), (5, out)], elementwise_grid(rows, d_in));
    Ok(())
}

/// `out[r] = out[r] · out_scale + shift` with `norms[r] = (shift, in_scale, out_scale)` from
/// `normalize_rows`: undoes the input normalisation at the end of decode.
pub fn denormalize_rows(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    rows: usize,
    d_in: usize,
    norms: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<(), GpuError> {
    const KERNEL: &str = "denormalize_rows";
    need(KERNEL, "norms", norms, rows * 3)?;
    need(KERNEL, "out", out, rows * d_in)?;
    let uniform = params(gpu, KERNEL, rows, d_in, RowNormalization::IDENTITY)?;
    dispatch(gpu, encoder, &gpu.kernels.rows.denormalize_rows, &[(0, &uniform), (4, norms), (5, out)], elementwise_grid(rows, d_in));
    Ok(())
}
