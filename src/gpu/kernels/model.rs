//! `shaders/model.wgsl`: the decoder forward pass's own kernels, for every family (the linear
//! layers run on matmul.wgsl). CPU twins: `reference::model` (`gather_rows`, `add`, `norm`,
//! `scale_shift`, `rope`, `attention`, `Activation::apply`, `gated_activation`, `softcap`), which
//! `model::cpu` composes into the reference forward.

use std::cell::Cell;

use bytemuck::{Pod, Zeroable};

use super::{index_size, launch, module, pipeline, REDUCE_WGSL};
use crate::gpu::{grid_1d, Gpu, GpuError};
use crate::reference::matmul::Storage;
use crate::reference::model::{Activation, AttentionSpec, NormSpec};

/// Keys the attention kernel scores at a time (model.wgsl's `KEY_TILE`): longer contexts go
/// through several tiles, with the online softmax.
pub const KEY_TILE: usize = 1024;
/// The largest head the attention kernel takes (128 threads, `MAX_HEAD_PER_THREAD` = 4 values each).
pub const MAX_HEAD: usize = 512;
/// The largest head `AttentionKernel::Serial` takes (model.wgsl's `SERIAL_HEAD`); wider heads run
/// the workgroup kernel whichever was chosen.
pub const SERIAL_HEAD: usize = 128;

pub(crate) struct Pipelines {
    gather_rows: wgpu::ComputePipeline,
    gather_rows_packed: wgpu::ComputePipeline,
    add: wgpu::ComputePipeline,
    norm: wgpu::ComputePipeline,
    scale_shift: wgpu::ComputePipeline,
    rope: wgpu::ComputePipeline,
    attention: wgpu::ComputePipeline,
    attention_serial: wgpu::ComputePipeline,
    attention_kernel: Cell<AttentionKernel>,
    activation: wgpu::ComputePipeline,
    gated_activation: wgpu::ComputePipeline,
    softcap: wgpu::ComputePipeline,
}

/// Which of model.wgsl's two attention entries runs (`choose_attention` measures both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionKernel {
    /// `attention`: a 128-thread workgroup per (token, head), scores and sums shared through
    /// workgroup memory. What GPUs run fastest.
    Workgroup,
    /// `attention_serial`: one thread per (token, head), no workgroup memory or barrier. What
    /// software adapters run fastest.
    Serial,
}

impl Pipelines {
    /// The attention entry this device runs.
    pub fn attention_kernel(&self) -> AttentionKernel {
        self.attention_kernel.get()
    }

    /// Runs `kernel` from now on (tests run both).
    pub fn set_attention_kernel(&self, kernel: AttentionKernel) {
        self.attention_kernel.set(kernel);
    }

    pub(crate) fn new(device: &wgpu::Device) -> Pipelines {
        let m = module(device, "model.wgsl", &[REDUCE_WGSL, include_str!("../../../shaders/model.wgsl")].concat());
        let p = |entry: &str| pipeline(device, &m, entry, &[]);
        Pipelines {
            gather_rows: p("gather_rows"),
            gather_rows_packed: p("gather_rows_packed"),
            add: p("add"),
            norm: p("norm"),
            scale_shift: p("scale_shift"),
            rope: p("rope"),
            attention: p("attention"),
            attention_serial: p("attention_serial"),
            attention_kernel: Cell::new(AttentionKernel::Workgroup),
            activation: p("activation"),
            gated_activation: p("gated_activation"),
            softcap: p("softcap"),
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
    n_kv_heads: u32,
    window: u32,
    softcap: f32,
    flags: u32,
}

const NORM_CENTER: u32 = 1;
const NORM_AFFINE: u32 = 2;
const NORM_BIAS: u32 = 4;
const NORM_UNIT_OFFSET: u32 = 8;

const IN0: u32 = 1;
const IN1: u32 = 2;
const IN2: u32 = 3;
const OUT0: u32 = 4;
const TOKENS: u32 = 5;
const PACKED: u32 = 6;

fn per_row(rows: u32) -> (u32, u32, u32) {
    let (x, y) = grid_1d(rows);
    (x, y, 1)
}

fn per_element(n: u32) -> (u32, u32, u32) {
    let (x, y) = grid_1d(n.div_ceil(256));
    (x, y, 1)
}

/// One piece of an embedding table split over storage bindings: vocabulary rows
/// `[first, first + count)`, `width` wide, stored as `storage` says (f32, or packed halves).
pub struct TableChunk<'a> {
    pub first: usize,
    pub count: usize,
    pub width: usize,
    pub rows: &'a wgpu::Buffer,
    pub storage: Storage,
}

/// `out[t] = scale · table[tokens[t]]` for the tokens this chunk holds (others are left alone),
/// one workgroup a token; `tokens` is `[n]` u32, `out` `[n, width]`.
pub fn gather_rows(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    n: usize,
    chunk: TableChunk<'_>,
    scale: f32,
    tokens: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<(), GpuError> {
    const KERNEL: &str = "gather_rows";
    let params = Params {
        rows: index_size(KERNEL, "tokens", n)?,
        width: index_size(KERNEL, "tokens × width", n * chunk.width).map(|_| chunk.width as u32)?,
        first: index_size(KERNEL, "first", chunk.first)?,
        count: index_size(KERNEL, "count × width", chunk.count * chunk.width).map(|_| chunk.count as u32)?,
        scale,
        ..Default::default()
    };
    let values = chunk.count * chunk.width;
    let (table, pipeline, flags) = match chunk.storage {
        Storage::F32 => (IN0, &gpu.kernels.model.gather_rows, 0),
        Storage::F16 => (PACKED, &gpu.kernels.model.gather_rows_packed, 1),
        Storage::Bf16 => (PACKED, &gpu.kernels.model.gather_rows_packed, 2),
    };
    let params = Params { flags, ..params };
    let ops = [
        (table, "table chunk", chunk.rows, chunk.storage.words(values)),
        (OUT0, "out", out, n * chunk.width),
        (TOKENS, "tokens", tokens, n),
    ];
    launch(gpu, enc, KERNEL, pipeline, &params, &ops, per_row(params.rows))
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

/// A norm's weight and optional bias on the GPU, `[width]` each.
#[derive(Clone, Copy)]
pub struct GpuAffine<'a> {
    pub weight: &'a wgpu::Buffer,
    pub bias: Option<&'a wgpu::Buffer>,
}

/// A norm per row of `x` `[rows, width]` into `out`: normalised as `spec` says, then `affine`
/// when given (without it, TransformerLens's `hook_normalized`). One workgroup a row.
pub struct Norm<'a> {
    pub rows: usize,
    pub width: usize,
    pub spec: NormSpec,
    pub x: &'a wgpu::Buffer,
    pub affine: Option<GpuAffine<'a>>,
    pub out: &'a wgpu::Buffer,
}

pub fn norm(gpu: &Gpu, enc: &mut wgpu::CommandEncoder, a: Norm<'_>) -> Result<(), GpuError> {
    const KERNEL: &str = "norm";
    if a.rows == 0 || a.width == 0 {
        return Ok(());
    }
    let n = a.rows * a.width;
    let mut flags = if a.spec.center { NORM_CENTER } else { 0 };
    if let Some(affine) = a.affine {
        flags |= NORM_AFFINE | if a.spec.unit_offset { NORM_UNIT_OFFSET } else { 0 };
        flags |= if affine.bias.is_some() { NORM_BIAS } else { 0 };
    }
    let params = Params {
        rows: index_size(KERNEL, "rows", a.rows)?,
        width: index_size(KERNEL, "rows × width", n).map(|_| a.width as u32)?,
        eps: a.spec.eps,
        flags,
        ..Default::default()
    };
    // Bindings the flags leave unread are bound to x (every entry's binding must be bound).
    let weight = a.affine.map_or(a.x, |f| f.weight);
    let bias = a.affine.and_then(|f| f.bias).unwrap_or(a.x);
    let ops = [(IN0, "x", a.x, n), (IN1, "weight", weight, a.width), (IN2, "bias", bias, a.width), (OUT0, "out", a.out, n)];
    launch(gpu, enc, KERNEL, &gpu.kernels.model.norm, &params, &ops, per_row(params.rows))
}

/// `out = x · w (+ b)` over rows of `width`, `n` elements (`· (1 + w)` when `unit_offset`): a
/// norm's second half on an already normalised `x`.
pub struct ScaleShift<'a> {
    pub n: usize,
    pub width: usize,
    pub unit_offset: bool,
    pub x: &'a wgpu::Buffer,
    pub affine: GpuAffine<'a>,
    pub out: &'a wgpu::Buffer,
}

pub fn scale_shift(gpu: &Gpu, enc: &mut wgpu::CommandEncoder, a: ScaleShift<'_>) -> Result<(), GpuError> {
    const KERNEL: &str = "scale_shift";
    let ScaleShift { n, width, unit_offset, x, affine, out } = a;
    if width == 0 {
        return Err(GpuError::Input(format!("{KERNEL}: width is 0")));
    }
    let flags = if unit_offset { NORM_UNIT_OFFSET } else { 0 } | if affine.bias.is_some() { NORM_BIAS } else { 0 };
    let params = Params { width: width as u32, count: index_size(KERNEL, "n", n)?, flags, ..Default::default() };
    let bias = affine.bias.unwrap_or(affine.weight);
    let ops = [(IN0, "x", x, n), (IN1, "weight", affine.weight, width), (IN2, "bias", bias, width), (OUT0, "out", out, n)];
    launch(gpu, enc, KERNEL, &gpu.kernels.model.scale_shift, &params, &ops, per_element(params.count))
}

/// Rotary embeddings in place on `x` `[rows, n_heads·d_head]`: the first `2·half` dimensions of
/// each head turned by the angles whose `cos` and `sin` are `[rows, half]`.
pub struct Rope<'a> {
    pub rows: usize,
    pub n_heads: usize,
    pub d_head: usize,
    pub half: usize,
    pub cos: &'a wgpu::Buffer,
    pub sin: &'a wgpu::Buffer,
    pub x: &'a wgpu::Buffer,
}

pub fn rope(gpu: &Gpu, enc: &mut wgpu::CommandEncoder, a: Rope<'_>) -> Result<(), GpuError> {
    const KERNEL: &str = "rope";
    if 2 * a.half > a.d_head {
        return Err(GpuError::Input(format!("{KERNEL}: {} rotated pairs do not fit a head of {}", a.half, a.d_head)));
    }
    let threads = index_size(KERNEL, "rows × heads × pairs", a.rows * a.n_heads * a.half)?;
    let params = Params {
        rows: a.rows as u32,
        n_heads: a.n_heads as u32,
        d_head: a.d_head as u32,
        count: a.half as u32,
        width: index_size(KERNEL, "rows × heads × d_head", a.rows * a.n_heads * a.d_head)?,
        ..Default::default()
    };
    let table = a.rows * a.half;
    let ops = [(IN0, "cos", a.cos, table), (IN1, "sin", a.sin, table), (OUT0, "x", a.x, a.rows * a.n_heads * a.d_head)];
    launch(gpu, enc, KERNEL, &gpu.kernels.model.rope, &params, &ops, per_element(threads))
}

/// Grouped-query causal attention over `rows` tokens as `spec` says: `q` `[rows,
/// n_heads·d_head]`, `k` and `v` `[rows, n_kv_heads·d_head]`, `z` gets `[rows, n_heads·d_head]`.
/// One workgroup a (token, head), or one thread (`AttentionKernel`).
pub struct Attention<'a> {
    pub rows: usize,
    pub spec: AttentionSpec,
    pub q: &'a wgpu::Buffer,
    pub k: &'a wgpu::Buffer,
    pub v: &'a wgpu::Buffer,
    pub z: &'a wgpu::Buffer,
}

pub fn attention(gpu: &Gpu, enc: &mut wgpu::CommandEncoder, a: Attention<'_>) -> Result<(), GpuError> {
    const KERNEL: &str = "attention";
    let s = a.spec;
    if a.rows > 65_535 || s.n_heads > 65_535 {
        return Err(GpuError::TooLarge(format!("{KERNEL}: {} tokens × {} heads are more than one dispatch takes", a.rows, s.n_heads)));
    }
    if s.d_head > MAX_HEAD {
        return Err(GpuError::TooLarge(format!("{KERNEL}: heads of {} values; the kernel takes at most {MAX_HEAD}", s.d_head)));
    }
    if s.n_kv_heads == 0 || !s.n_heads.is_multiple_of(s.n_kv_heads) {
        return Err(GpuError::Input(format!("{KERNEL}: {} key/value heads do not divide {} heads", s.n_kv_heads, s.n_heads)));
    }
    if a.rows == 0 || s.n_heads == 0 {
        return Ok(());
    }
    let (q_len, kv_len) = (a.rows * s.n_heads * s.d_head, a.rows * s.n_kv_heads * s.d_head);
    let params = Params {
        rows: a.rows as u32,
        width: index_size(KERNEL, "rows × heads × d_head", q_len)?,
        n_heads: s.n_heads as u32,
        n_kv_heads: s.n_kv_heads as u32,
        d_head: s.d_head as u32,
        scale: s.scale,
        window: s.window.map_or(0, |w| w.min(u32::MAX as usize) as u32),
        softcap: s.softcap.unwrap_or(0.0),
        ..Default::default()
    };
    let ops = [(IN0, "q", a.q, q_len), (IN1, "k", a.k, kv_len), (IN2, "v", a.v, kv_len), (OUT0, "z", a.z, q_len)];
    let kernels = &gpu.kernels.model;
    if kernels.attention_kernel() == AttentionKernel::Serial && s.d_head <= SERIAL_HEAD {
        let (x, y) = grid_1d((a.rows * s.n_heads).div_ceil(64) as u32);
        launch(gpu, enc, KERNEL, &kernels.attention_serial, &params, &ops, (x, y, 1))
    } else {
        launch(gpu, enc, KERNEL, &kernels.attention, &params, &ops, (params.rows, params.n_heads, 1))
    }
}

/// Times both attention entries on this adapter (`kernels::time_per_run`) and keeps the faster:
/// 16 tokens of 4 heads of 64 first, and where both take under 5 ms (a real GPU, which so little
/// work leaves idle) 512 tokens. The serial kernel is timed first: where it needs a millisecond
/// or more for the first (a software adapter, on which a GPU would take microseconds) it is
/// kept without timing the workgroup kernel, which takes SwiftShader seconds for 128 tokens.
pub async fn choose_attention(gpu: &Gpu) -> Result<AttentionKernel, GpuError> {
    if gpu.cpu_adapter {
        // What software adapters run fastest (BENCHMARKS.md, 2026-12-03), without timing.
        gpu.kernels.model.set_attention_kernel(AttentionKernel::Serial);
        return Ok(AttentionKernel::Serial);
    }
    let mut chosen = AttentionKernel::Workgroup;
    for rows in [16, 512] {
        let (heads, d_head) = (4, 64);
        let spec = AttentionSpec { n_heads: heads, n_kv_heads: heads, d_head, scale: 0.125, window: None, softcap: None };
        let values: Vec<f32> = (0..rows * heads * d_head).map(|i| ((i % 97) as f32 - 48.0) / 64.0).collect();
        let qkv = gpu.upload_f32("attention probe q, k, v", &values);
        let z = gpu.storage("attention probe z", (values.len() * 4) as u64);
        let time = |kernel: AttentionKernel| {
            gpu.kernels.model.set_attention_kernel(kernel);
            let record = |enc: &mut wgpu::CommandEncoder| attention(gpu, enc, Attention { rows, spec, q: &qkv, k: &qkv, v: &qkv, z: &z });
            super::time_per_run(gpu, record, &z)
        };
        let (serial_ms, serial_once) = time(AttentionKernel::Serial).await?;
        if rows == 16 && serial_ms >= 1.0 {
            chosen = AttentionKernel::Serial;
            break;
        }
        let (workgroup_ms, workgroup_once) = time(AttentionKernel::Workgroup).await?;
        chosen = if serial_ms < workgroup_ms { AttentionKernel::Serial } else { AttentionKernel::Workgroup };
        if serial_once.max(workgroup_once) >= 5.0 {
            break;
        }
    }
    gpu.kernels.model.set_attention_kernel(chosen);
    Ok(chosen)
}

/// `act` in place over `n` elements of `x`.
pub fn activation(gpu: &Gpu, enc: &mut wgpu::CommandEncoder, act: Activation, n: usize, x: &wgpu::Buffer) -> Result<(), GpuError> {
    const KERNEL: &str = "activation";
    let params = Params { width: index_size(KERNEL, "n", n)?, flags: act.code(), ..Default::default() };
    launch(gpu, enc, KERNEL, &gpu.kernels.model.activation, &params, &[(OUT0, "x", x, n)], per_element(params.width))
}

/// `up = act(gate) · up` over `n` elements (a gated MLP's hidden layer).
pub fn gated_activation(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    act: Activation,
    n: usize,
    gate: &wgpu::Buffer,
    up: &wgpu::Buffer,
) -> Result<(), GpuError> {
    const KERNEL: &str = "gated_activation";
    let params = Params { width: index_size(KERNEL, "n", n)?, flags: act.code(), ..Default::default() };
    let ops = [(IN0, "gate", gate, n), (OUT0, "up", up, n)];
    launch(gpu, enc, KERNEL, &gpu.kernels.model.gated_activation, &params, &ops, per_element(params.width))
}

/// `cap · tanh(x / cap)` in place over `n` elements of `x`.
pub fn softcap(gpu: &Gpu, enc: &mut wgpu::CommandEncoder, cap: f32, n: usize, x: &wgpu::Buffer) -> Result<(), GpuError> {
    const KERNEL: &str = "softcap";
    if !(cap > 0.0 && cap.is_finite()) {
        return Err(GpuError::Input(format!("{KERNEL}: the cap must be a positive number, not {cap}")));
    }
    let params = Params { width: index_size(KERNEL, "n", n)?, softcap: cap, ..Default::default() };
    launch(gpu, enc, KERNEL, &gpu.kernels.model.softcap, &params, &[(OUT0, "x", x, n)], per_element(params.width))
}
