//! `shaders/sparse_decode.wgsl`: decode from per-row (index, value) lists, one W_dec chunk at a
//! time, without a dense `[rows, d_sae]` matrix. CPU twin: `reference::sparse_decode`.

use bytemuck::{Pod, Zeroable};

use super::topk::MAX_TOPK;
use super::{dispatch, index_size, module, need, pipeline};
use crate::gpu::{grid_1d, Gpu, GpuError};

pub(crate) struct Pipelines {
    main: wgpu::ComputePipeline,
}

impl Pipelines {
    pub(crate) fn new(device: &wgpu::Device) -> Pipelines {
        let m = module(device, "sparse_decode.wgsl", include_str!("../../../shaders/sparse_decode.wgsl"));
        Pipelines { main: pipeline(device, &m, "main", &[]) }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    d_in: u32,
    k: u32,
    f0: u32,
    width: u32,
    _pad: [u32; 3],
}

/// Adds the contributions of list entries whose feature lies in `[f0, f0 + width)` (one W_dec
/// chunk): `out[r] += Σ value · scale[idx − f0] · w_dec_chunk[idx − f0]`.
pub struct SparseDecode<'a> {
    pub rows: usize,
    pub d_in: usize,
    pub k: usize,
    pub f0: usize,
    pub width: usize,
    pub index: &'a wgpu::Buffer,
    pub value: &'a wgpu::Buffer,
    /// `[width, d_in]`
    pub w_dec_chunk: &'a wgpu::Buffer,
    /// Per chunk-local feature: multiplier applied to its value (1, or 1/‖W_dec‖).
    pub scale: &'a wgpu::Buffer,
    /// `[rows, d_in]`, accumulated into.
    pub out: &'a wgpu::Buffer,
}

pub fn sparse_decode(gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, args: SparseDecode<'_>) -> Result<(), GpuError> {
    const KERNEL: &str = "sparse_decode";
    if args.k > MAX_TOPK {
        return Err(GpuError::Input(format!("{KERNEL}: lists of {} entries are longer than {MAX_TOPK}", args.k)));
    }
    need(KERNEL, "index", args.index, args.rows * args.k)?;
    need(KERNEL, "value", args.value, args.rows * args.k)?;
    need(KERNEL, "the W_dec chunk", args.w_dec_chunk, args.width * args.d_in)?;
    need(KERNEL, "scale", args.scale, args.width)?;
    need(KERNEL, "out", args.out, args.rows * args.d_in)?;
    let params = Params {
        rows: index_size(KERNEL, "rows", args.rows)?,
        d_in: index_size(KERNEL, "rows × d_in", args.rows * args.d_in).map(|_| args.d_in as u32)?,
        k: args.k as u32,
        f0: index_size(KERNEL, "f0", args.f0)?,
        width: index_size(KERNEL, "width × d_in", args.width * args.d_in).map(|_| args.width as u32)?,
        _pad: [0; 3],
    };
    let uniform = gpu.uniform("sparse decode params", &params);
    let (x, y) = grid_1d(args.rows as u32);
    dispatch(
        gpu,
        encoder,
        &gpu.kernels.sparse_decode.main,
        &[(0, &uniform), (1, args.index), (2, args.value), (3, args.w_dec_chunk), (4, args.scale), (5, args.out)],
        (x, y, 1),
    );
    Ok(())
}
