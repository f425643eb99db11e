//! `shaders/model.wgsl`: the transformer forward pass's own kernels (the linear layers run on
//! matmul.wgsl). CPU twins: `reference::model` (`gather_rows`, `add`, `gelu_new`, `layer_norm`,
//! `attention_z`), which `model::cpu` composes into the reference forward.

use bytemuck::{Pod, Zeroable};

use super::{index_size, launch, module, pipeline, REDUCE_WGSL};
use crate::gpu::{grid_1d, Gpu, GpuError};

/// The longest context the attention kernel takes (its score array is this long).
pub const MAX_CONTEXT: usize = 1024;

pub(crate) struct Pipelines {
    gather_rows: wgpu::ComputePipeline,
    add: wgpu::ComputePipeline,
    gelu_new: wgpu::ComputePipeline,
    layer_norm: wgpu::ComputePipeline,
    attention: wgpu::ComputePipeline,
}

impl Pipelines {
    pub(crate) fn new(device: &wgpu::Device) -> Pipelines {
        let m = module(device, "model.wgsl", &[REDUCE_WGSL, include_str!("../../../shaders/model.wgsl")].concat());
        let p = |entry: &str| pipeline(device, &m, entry, &[]);
        Pipelines {
            gather_rows: p("gather_rows"),
            add: p("add"),
            gelu_new: p("gelu_new"),
            layer_norm: p("layer_norm"),
            attention: p("attention"),
        }
    }
}

/// `model.wgsl`'s uniform.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    rows: u32,
    width: u32,
    n_heads: u32,
    d_head: u32,
    first: u32,
    count: u32,
    eps: f32,
    scale: f32,
}

const IN0: u32 = 1;
const IN1: u32 = 2;
const IN2: u32 = 3;
const OUT0: u32 = 4;
const TOKENS: u32 = 5;

fn per_row(rows: u32) -> (u32, u32, u32) {
    let (x, y) = grid_1d(rows);
    (x, y, 1)
}

fn per_element(n: u32) -> (u32, u32, u32) {
    let (x, y) = grid_1d(n.div_ceil(256));
    (x, y, 1)
}

/// One piece of an embedding table split over storage bindings: vocabulary rows
/// `[first, first + count)`, `width` wide.
pub struct TableChunk<'a> {
    pub first: usize,
    pub count: usize,
    pub width: usize,
    pub rows: &'a wgpu::Buffer,
}

/// `out[t] = table[tokens[t]]` for the tokens this chunk holds (others are left alone), one
/// workgroup a token; `tokens` is `[n]` u32, `out` `[n, width]`.
pub fn gather_rows(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    n: usize,
    chunk: TableChunk<'_>,
    tokens: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<(), GpuError> {
    const KERNEL: &str = "gather_rows";
    let params = Params {
        rows: index_size(KERNEL, "tokens", n)?,
        width: index_size(KERNEL, "tokens × width", n * chunk.width).map(|_| chunk.width as u32)?,
        first: index_size(KERNEL, "first", chunk.first)?,
        count: index_size(KERNEL, "count × width", chunk.count * chunk.width).map(|_| chunk.count as u32)?,
        ..Default::default()
    };
    let ops =
        [(IN0, "table chunk", chunk.rows, chunk.count * chunk.width), (OUT0, "out", out, n * chunk.width), (TOKENS, "tokens", tokens, n)];
    launch(gpu, enc, KERNEL, &gpu.kernels.model.gather_rows, &params, &ops, per_row(params.rows))
}

/// `out = a + b` over `n` elements.
pub fn add(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    n: usize,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<(), GpuError> {
    const KERNEL: &str = "add";
    let params = Params { rows: 1, width: index_size(KERNEL, "n", n)?, ..Default::default() };
    let ops = [(IN0, "a", a, n), (IN1, "b", b, n), (OUT0, "out", out, n)];
    launch(gpu, enc, KERNEL, &gpu.kernels.model.add, &params, &ops, per_element(params.width))
}

/// GPT-2's `gelu_new` in place over `n` elements (the tanh approximation).
pub fn gelu_new(gpu: &Gpu, enc: &mut wgpu::CommandEncoder, n: usize, x: &wgpu::Buffer) -> Result<(), GpuError> {
    const KERNEL: &str = "gelu_new";
    let params = Params { rows: 1, width: index_size(KERNEL, "n", n)?, ..Default::default() };
    launch(gpu, enc, KERNEL, &gpu.kernels.model.gelu_new, &params, &[(OUT0, "x", x, n)], per_element(params.width))
}

/// torch's LayerNorm per row (biased variance): `out = (x − mean) / √(var + eps) · weight + bias`,
/// `x` and `out` `[rows, width]`.
pub struct LayerNorm<'a> {
    pub rows: usize,
    pub width: usize,
    pub eps: f32,
    pub x: &'a wgpu::Buffer,
    pub weight: &'a wgpu::Buffer,
    pub bias: &'a wgpu::Buffer,
    pub out: &'a wgpu::Buffer,
}

pub fn layer_norm(gpu: &Gpu, enc: &mut wgpu::CommandEncoder, a: LayerNorm<'_>) -> Result<(), GpuError> {
    const KERNEL: &str = "layer_norm";
    let n = a.rows * a.width;
    let params = Params {
        rows: index_size(KERNEL, "rows", a.rows)?,
        width: index_size(KERNEL, "rows × width", n).map(|_| a.width as u32)?,
        eps: a.eps,
        ..Default::default()
    };
    let ops = [(IN0, "x", a.x, n), (IN1, "weight", a.weight, a.width), (IN2, "bias", a.bias, a.width), (OUT0, "out", a.out, n)];
    launch(gpu, enc, KERNEL, &gpu.kernels.model.layer_norm, &params, &ops, per_row(params.rows))
}

/// Causal multi-head attention over `rows` tokens: `qkv` is `[rows, 3·width]` (q | k | v, heads
/// contiguous within each), `z` gets `[rows, width]`, each head's softmax-weighted values
/// (scores scaled by `scale`, 1/√d_head for GPT-2). One workgroup a (token, head).
pub struct Attention<'a> {
    pub rows: usize,
    pub n_heads: usize,
    pub d_head: usize,
    pub scale: f32,
    pub qkv: &'a wgpu::Buffer,
    pub z: &'a wgpu::Buffer,
}

pub fn attention(gpu: &Gpu, enc: &mut wgpu::CommandEncoder, a: Attention<'_>) -> Result<(), GpuError> {
    const KERNEL: &str = "attention";
    if a.rows > MAX_CONTEXT {
        return Err(GpuError::TooLarge(format!("the GPU attention kernel takes at most {MAX_CONTEXT} tokens, got {}", a.rows)));
    }
    if a.n_heads > 65_535 {
        return Err(GpuError::TooLarge(format!("{KERNEL}: {} heads are more than one dispatch takes", a.n_heads)));
    }
    if a.rows == 0 || a.n_heads == 0 {
        return Ok(());
    }
    let width = a.n_heads * a.d_head;
    let params = Params {
        rows: a.rows as u32,
        width: index_size(KERNEL, "3 × rows × width", 3 * a.rows * width).map(|_| width as u32)?,
        n_heads: a.n_heads as u32,
        d_head: a.d_head as u32,
        scale: a.scale,
        ..Default::default()
    };
    let ops = [(IN0, "qkv", a.qkv, 3 * a.rows * width), (OUT0, "z", a.z, a.rows * width)];
    launch(gpu, enc, KERNEL, &gpu.kernels.model.attention, &params, &ops, (params.rows, params.n_heads, 1))
}
