//! `shaders/train.wgsl`: the element-wise, per-row and per-column steps of SAE training (the
//! products run on matmul.wgsl). One typed function per entry point; each says which of the
//! shader's bindings (`in0..in3` read, `out0..out2` written) its operands go to. CPU twins: one
//! function each in `reference::train`, composed the same way by `train::sae_train`.

use bytemuck::{Pod, Zeroable};

use super::{index_size, module, need, pipeline, Operand};
use crate::gpu::{grid_1d, Gpu, GpuError};

/// One pipeline per entry point, by name.
pub(crate) struct Pipelines {
    relu_acts: wgpu::ComputePipeline,
    scatter_lists: wgpu::ComputePipeline,
    recon_grad: wgpu::ComputePipeline,
    act_grad: wgpu::ComputePipeline,
    aux_act_grad: wgpu::ComputePipeline,
    mask_dead: wgpu::ComputePipeline,
    aux_grad: wgpu::ComputePipeline,
    column_sums: wgpu::ComputePipeline,
    l1_decoder_grad: wgpu::ComputePipeline,
    decoder_norms: wgpu::ComputePipeline,
    remove_parallel_grad: wgpu::ComputePipeline,
    normalize_decoder: wgpu::ComputePipeline,
    adam: wgpu::ComputePipeline,
    jumprelu_acts: wgpu::ComputePipeline,
    jumprelu_threshold_grad: wgpu::ComputePipeline,
    gated_acts: wgpu::ComputePipeline,
    gated_backward: wgpu::ComputePipeline,
}

impl Pipelines {
    pub(crate) fn new(device: &wgpu::Device) -> Pipelines {
        let m = module(device, "train.wgsl", include_str!("../../../shaders/train.wgsl"));
        let p = |entry: &str| pipeline(device, &m, entry, &[]);
        Pipelines {
            relu_acts: p("relu_acts"),
            scatter_lists: p("scatter_lists"),
            recon_grad: p("recon_grad"),
            act_grad: p("act_grad"),
            aux_act_grad: p("aux_act_grad"),
            mask_dead: p("mask_dead"),
            aux_grad: p("aux_grad"),
            column_sums: p("column_sums"),
            l1_decoder_grad: p("l1_decoder_grad"),
            decoder_norms: p("decoder_norms"),
            remove_parallel_grad: p("remove_parallel_grad"),
            normalize_decoder: p("normalize_decoder"),
            adam: p("adam"),
            jumprelu_acts: p("jumprelu_acts"),
            jumprelu_threshold_grad: p("jumprelu_threshold_grad"),
            gated_acts: p("gated_acts"),
            gated_backward: p("gated_backward"),
        }
    }
}

/// `train.wgsl`'s uniform: sizes, a mode, a scale, and Adam's hyper-parameters.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    rows: u32,
    cols: u32,
    k: u32,
    mode: u32,
    scale: f32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    c1: f32,
    c2: f32,
    width: f32,
}

/// The `[rows, cols]` shape an entry runs over (a batch of activations: rows = batch, cols =
/// d_sae or d_in; a decoder: rows = d_sae, cols = d_in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub rows: usize,
    pub cols: usize,
}

impl Shape {
    pub fn new(rows: usize, cols: usize) -> Shape {
        Shape { rows, cols }
    }

    fn len(self) -> usize {
        self.rows * self.cols
    }

    fn params(self, kernel: &str) -> Result<Params, GpuError> {
        index_size(kernel, "rows × cols", self.len())?;
        Ok(Params { rows: self.rows as u32, cols: self.cols as u32, ..Default::default() })
    }
}

/// Binding numbers of the shader's operands.
const IN0: u32 = 1;
const IN1: u32 = 2;
const IN2: u32 = 3;
const IN3: u32 = 7;
const OUT0: u32 = 4;
const OUT1: u32 = 5;
const OUT2: u32 = 6;

/// `kernels::launch` over `threads` threads (256 a workgroup); no dispatch for none.
fn launch(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    kernel: &str,
    pipeline: &wgpu::ComputePipeline,
    params: Params,
    operands: &[Operand<'_>],
    threads: usize,
) -> Result<(), GpuError> {
    if threads == 0 {
        // Still refuses operands shorter than the shape.
        return operands.iter().try_for_each(|(_, name, buffer, values)| need(kernel, name, buffer, *values));
    }
    let (x, y) = grid_1d(threads.div_ceil(256) as u32);
    super::launch(gpu, encoder, kernel, pipeline, &params, operands, (x, y, 1))
}

/// `acts = relu(pre)` over `shape`.
pub fn relu_acts(gpu: &Gpu, enc: &mut wgpu::CommandEncoder, shape: Shape, pre: &wgpu::Buffer, acts: &wgpu::Buffer) -> Result<(), GpuError> {
    let n = shape.len();
    let ops = [(IN0, "pre", pre, n), (OUT0, "acts", acts, n)];
    launch(gpu, enc, "relu_acts", &gpu.kernels.train.relu_acts, shape.params("relu_acts")?, &ops, n)
}

/// Dense rows from TopK lists: `dense[r, index[r, s]] = value[r, s]` (`dense`, `shape`, cleared
/// before; `index` holds u32 feature numbers, `[rows, k]`).
pub fn scatter_lists(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    shape: Shape,
    k: usize,
    index: &wgpu::Buffer,
    value: &wgpu::Buffer,
    dense: &wgpu::Buffer,
) -> Result<(), GpuError> {
    const KERNEL: &str = "scatter_lists";
    let entries = shape.rows * k;
    index_size(KERNEL, "rows × k", entries)?;
    let params = Params { k: k as u32, ..shape.params(KERNEL)? };
    let ops = [(IN0, "index", index, entries), (IN1, "value", value, entries), (OUT0, "dense", dense, shape.len())];
    launch(gpu, enc, KERNEL, &gpu.kernels.train.scatter_lists, params, &ops, entries)
}

/// The reconstruction's gradient `g_recon = scale · (recon − x)` (scale = 2/B for the batch-mean
/// MSE summed over d_in) and `residual = x − recon`.
pub struct ReconGrad<'a> {
    pub shape: Shape,
    pub scale: f32,
    pub recon: &'a wgpu::Buffer,
    pub x: &'a wgpu::Buffer,
    pub g_recon: &'a wgpu::Buffer,
    pub residual: &'a wgpu::Buffer,
}

pub fn recon_grad(gpu: &Gpu, enc: &mut wgpu::CommandEncoder, a: ReconGrad<'_>) -> Result<(), GpuError> {
    const KERNEL: &str = "recon_grad";
    let n = a.shape.len();
    let params = Params { scale: a.scale, ..a.shape.params(KERNEL)? };
    let ops = [(IN0, "recon", a.recon, n), (IN1, "x", a.x, n), (OUT0, "g_recon", a.g_recon, n), (OUT1, "residual", a.residual, n)];
    launch(gpu, enc, KERNEL, &gpu.kernels.train.recon_grad, params, &ops, n)
}

/// Through the activation, in place: `g[i] = acts[i] > 0 ? g[i] + l1_scale · norms[i % cols] : 0`
/// (`l1_scale` = λ·s/B for the standard SAE's decoder-norm-weighted L1, 0 otherwise).
pub fn act_grad(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    shape: Shape,
    l1_scale: f32,
    acts: &wgpu::Buffer,
    decoder_norms: &wgpu::Buffer,
    g: &wgpu::Buffer,
) -> Result<(), GpuError> {
    const KERNEL: &str = "act_grad";
    let n = shape.len();
    let params = Params { scale: l1_scale, ..shape.params(KERNEL)? };
    let ops = [(IN0, "acts", acts, n), (IN1, "decoder norms", decoder_norms, shape.cols), (OUT0, "g", g, n)];
    launch(gpu, enc, KERNEL, &gpu.kernels.train.act_grad, params, &ops, n)
}

/// AuxK's share of the pre-activation gradient: `g_pre[i] += aux_acts[i] > 0 ? g_aux_acts[i] : 0`.
pub fn aux_act_grad(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    shape: Shape,
    aux_acts: &wgpu::Buffer,
    g_aux_acts: &wgpu::Buffer,
    g_pre: &wgpu::Buffer,
) -> Result<(), GpuError> {
    const KERNEL: &str = "aux_act_grad";
    let n = shape.len();
    let ops = [(IN0, "aux_acts", aux_acts, n), (IN2, "g_aux_acts", g_aux_acts, n), (OUT0, "g_pre", g_pre, n)];
    launch(gpu, enc, KERNEL, &gpu.kernels.train.aux_act_grad, shape.params(KERNEL)?, &ops, n)
}

/// The pre-activations of dead latents only, −f32::MAX elsewhere (AuxK's selection):
/// `masked[i] = dead[i % cols] > 0.5 ? pre[i] : −f32::MAX`.
pub fn mask_dead(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    shape: Shape,
    pre: &wgpu::Buffer,
    dead: &wgpu::Buffer,
    masked: &wgpu::Buffer,
) -> Result<(), GpuError> {
    const KERNEL: &str = "mask_dead";
    let n = shape.len();
    let ops = [(IN0, "pre", pre, n), (IN1, "dead mask", dead, shape.cols), (OUT0, "masked", masked, n)];
    launch(gpu, enc, KERNEL, &gpu.kernels.train.mask_dead, shape.params(KERNEL)?, &ops, n)
}

/// `g_aux = scale · (aux_recon − target)` (AuxK: target = the residual, scale = 2·α·aux_scale/B;
/// the gate: target = x, scale = 2/B).
pub fn aux_grad(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    shape: Shape,
    scale: f32,
    aux_recon: &wgpu::Buffer,
    target: &wgpu::Buffer,
    g_aux: &wgpu::Buffer,
) -> Result<(), GpuError> {
    const KERNEL: &str = "aux_grad";
    let n = shape.len();
    let params = Params { scale, ..shape.params(KERNEL)? };
    let ops = [(IN0, "aux_recon", aux_recon, n), (IN1, "target", target, n), (OUT0, "g_aux", g_aux, n)];
    launch(gpu, enc, KERNEL, &gpu.kernels.train.aux_grad, params, &ops, n)
}

/// Whether a column sum replaces or adds to what `out` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sum {
    Set,
    Add,
}

/// `out[j] = scale · Σ_r input[r, j]` (or `+=` with `Sum::Add`), one thread a column.
pub fn column_sums(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    shape: Shape,
    scale: f32,
    sum: Sum,
    input: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<(), GpuError> {
    const KERNEL: &str = "column_sums";
    let params = Params { scale, mode: u32::from(sum == Sum::Add), ..shape.params(KERNEL)? };
    let ops = [(IN0, "input", input, shape.len()), (OUT0, "out", out, shape.cols)];
    launch(gpu, enc, KERNEL, &gpu.kernels.train.column_sums, params, &ops, shape.cols)
}

/// The L1 term's decoder gradient over the decoder's shape (`[d_sae, d_in]`):
/// `g_w_dec[j] += scale · act_sums[j] · w_dec[j] / ‖w_dec[j]‖` (norms floored at 1e-12).
pub struct L1DecoderGrad<'a> {
    pub decoder: Shape,
    pub scale: f32,
    pub act_sums: &'a wgpu::Buffer,
    pub decoder_norms: &'a wgpu::Buffer,
    pub w_dec: &'a wgpu::Buffer,
    pub g_w_dec: &'a wgpu::Buffer,
}

pub fn l1_decoder_grad(gpu: &Gpu, enc: &mut wgpu::CommandEncoder, a: L1DecoderGrad<'_>) -> Result<(), GpuError> {
    const KERNEL: &str = "l1_decoder_grad";
    let (m, n) = (a.decoder.rows, a.decoder.len());
    let params = Params { scale: a.scale, ..a.decoder.params(KERNEL)? };
    let ops = [
        (IN0, "act_sums", a.act_sums, m),
        (IN1, "decoder norms", a.decoder_norms, m),
        (IN2, "w_dec", a.w_dec, n),
        (OUT0, "g_w_dec", a.g_w_dec, n),
    ];
    launch(gpu, enc, KERNEL, &gpu.kernels.train.l1_decoder_grad, params, &ops, n)
}

/// `norms[j] = ‖w_dec[j]‖` per decoder row (`decoder` = `[d_sae, d_in]`).
pub fn decoder_norms(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    decoder: Shape,
    w_dec: &wgpu::Buffer,
    norms: &wgpu::Buffer,
) -> Result<(), GpuError> {
    const KERNEL: &str = "decoder_norms";
    let ops = [(IN0, "w_dec", w_dec, decoder.len()), (OUT0, "norms", norms, decoder.rows)];
    launch(gpu, enc, KERNEL, &gpu.kernels.train.decoder_norms, decoder.params(KERNEL)?, &ops, decoder.rows)
}

/// Removes each decoder row's gradient component along the row (unit-norm decoders, Gao et al.
/// 2024): `g[j] −= (w[j]·g[j] / ‖w[j]‖²) w[j]`.
pub fn remove_parallel_grad(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    decoder: Shape,
    w_dec: &wgpu::Buffer,
    g_w_dec: &wgpu::Buffer,
) -> Result<(), GpuError> {
    const KERNEL: &str = "remove_parallel_grad";
    let ops = [(IN0, "w_dec", w_dec, decoder.len()), (OUT0, "g_w_dec", g_w_dec, decoder.len())];
    launch(gpu, enc, KERNEL, &gpu.kernels.train.remove_parallel_grad, decoder.params(KERNEL)?, &ops, decoder.rows)
}

/// `w[j] /= ‖w[j]‖` per decoder row, in place.
pub fn normalize_decoder(gpu: &Gpu, enc: &mut wgpu::CommandEncoder, decoder: Shape, w_dec: &wgpu::Buffer) -> Result<(), GpuError> {
    const KERNEL: &str = "normalize_decoder";
    let ops = [(OUT0, "w_dec", w_dec, decoder.len())];
    launch(gpu, enc, KERNEL, &gpu.kernels.train.normalize_decoder, decoder.params(KERNEL)?, &ops, decoder.rows)
}

/// One Adam update with bias correction (torch.optim.Adam): `c1 = 1 − β₁ᵗ`, `c2 = 1 − β₂ᵗ`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub c1: f32,
    pub c2: f32,
    /// Clamp the parameter at 0 after the update (JumpReLU thresholds).
    pub clamp_at_zero: bool,
}

/// Adam over `n` parameters: reads `grad`, updates `param`, `m` and `v` in place.
pub struct Adam<'a> {
    pub n: usize,
    pub step: AdamStep,
    pub grad: &'a wgpu::Buffer,
    pub param: &'a wgpu::Buffer,
    pub m: &'a wgpu::Buffer,
    pub v: &'a wgpu::Buffer,
}

pub fn adam(gpu: &Gpu, enc: &mut wgpu::CommandEncoder, a: Adam<'_>) -> Result<(), GpuError> {
    const KERNEL: &str = "adam";
    let s = a.step;
    let params = Params {
        rows: index_size(KERNEL, "n", a.n)?,
        mode: u32::from(s.clamp_at_zero),
        lr: s.lr,
        beta1: s.beta1,
        beta2: s.beta2,
        eps: s.eps,
        c1: s.c1,
        c2: s.c2,
        ..Default::default()
    };
    let ops = [(IN0, "grad", a.grad, a.n), (OUT0, "param", a.param, a.n), (OUT1, "m", a.m, a.n), (OUT2, "v", a.v, a.n)];
    launch(gpu, enc, KERNEL, &gpu.kernels.train.adam, params, &ops, a.n)
}

/// JumpReLU: `acts[i] = pre[i] > threshold[i % cols] ? pre[i] : 0`.
pub fn jumprelu_acts(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    shape: Shape,
    pre: &wgpu::Buffer,
    threshold: &wgpu::Buffer,
    acts: &wgpu::Buffer,
) -> Result<(), GpuError> {
    const KERNEL: &str = "jumprelu_acts";
    let n = shape.len();
    let ops = [(IN0, "pre", pre, n), (IN1, "threshold", threshold, shape.cols), (OUT0, "acts", acts, n)];
    launch(gpu, enc, KERNEL, &gpu.kernels.train.jumprelu_acts, shape.params(KERNEL)?, &ops, n)
}

/// JumpReLU's threshold gradient, one thread a column (SAELens `JumpReLU.backward` and
/// `Step.backward`, rectangle kernel of width ε = `bandwidth`):
/// `g_θ[j] = −Σ_b K((pre − θ)/ε) · (θ/ε · g_acts + l0_scale/ε)`, `l0_scale` = λ₀·s/B.
pub struct JumpReluThresholdGrad<'a> {
    pub shape: Shape,
    pub l0_scale: f32,
    pub bandwidth: f32,
    pub pre: &'a wgpu::Buffer,
    pub threshold: &'a wgpu::Buffer,
    pub g_acts: &'a wgpu::Buffer,
    pub g_threshold: &'a wgpu::Buffer,
}

pub fn jumprelu_threshold_grad(gpu: &Gpu, enc: &mut wgpu::CommandEncoder, a: JumpReluThresholdGrad<'_>) -> Result<(), GpuError> {
    const KERNEL: &str = "jumprelu_threshold_grad";
    let (n, m) = (a.shape.len(), a.shape.cols);
    let params = Params { scale: a.l0_scale, width: a.bandwidth, ..a.shape.params(KERNEL)? };
    let ops =
        [(IN0, "pre", a.pre, n), (IN1, "threshold", a.threshold, m), (IN2, "g_acts", a.g_acts, n), (OUT0, "g_threshold", a.g_threshold, m)];
    launch(gpu, enc, KERNEL, &gpu.kernels.train.jumprelu_threshold_grad, params, &ops, m)
}

/// The gated SAE's forward from `projected = sae_in·W_enc`: `gate_acts = relu(projected + b_gate)`,
/// `acts = (projected + b_gate > 0) · relu(projected · exp(r_mag) + b_mag)`.
pub struct GatedActs<'a> {
    pub shape: Shape,
    pub projected: &'a wgpu::Buffer,
    pub b_gate: &'a wgpu::Buffer,
    pub r_mag: &'a wgpu::Buffer,
    pub b_mag: &'a wgpu::Buffer,
    pub acts: &'a wgpu::Buffer,
    pub gate_acts: &'a wgpu::Buffer,
}

pub fn gated_acts(gpu: &Gpu, enc: &mut wgpu::CommandEncoder, a: GatedActs<'_>) -> Result<(), GpuError> {
    const KERNEL: &str = "gated_acts";
    let (n, m) = (a.shape.len(), a.shape.cols);
    let ops = [
        (IN0, "projected", a.projected, n),
        (IN1, "b_gate", a.b_gate, m),
        (IN2, "r_mag", a.r_mag, m),
        (IN3, "b_mag", a.b_mag, m),
        (OUT0, "acts", a.acts, n),
        (OUT1, "gate_acts", a.gate_acts, n),
    ];
    launch(gpu, enc, KERNEL, &gpu.kernels.train.gated_acts, a.shape.params(KERNEL)?, &ops, n)
}

/// The gated SAE's backward, one thread a column: `g_projected = g_mag_pre·exp(r_mag) + g_gate_pre`
/// (in place over `g_mag_pre`), `g_r_mag[j] = Σ_b g_mag_pre·projected·exp(r_mag)`,
/// `g_b_mag[j] = Σ_b g_mag_pre`.
pub struct GatedBackward<'a> {
    pub shape: Shape,
    pub projected: &'a wgpu::Buffer,
    pub r_mag: &'a wgpu::Buffer,
    pub g_gate_pre: &'a wgpu::Buffer,
    /// In: the magnitude path's gradient; out: the gradient of `projected`.
    pub g_mag_pre: &'a wgpu::Buffer,
    pub g_r_mag: &'a wgpu::Buffer,
    pub g_b_mag: &'a wgpu::Buffer,
}

pub fn gated_backward(gpu: &Gpu, enc: &mut wgpu::CommandEncoder, a: GatedBackward<'_>) -> Result<(), GpuError> {
    const KERNEL: &str = "gated_backward";
    let (n, m) = (a.shape.len(), a.shape.cols);
    let ops = [
        (IN1, "projected", a.projected, n),
        (IN2, "r_mag", a.r_mag, m),
        (IN3, "g_gate_pre", a.g_gate_pre, n),
        (OUT0, "g_mag_pre", a.g_mag_pre, n),
        (OUT1, "g_r_mag", a.g_r_mag, m),
        (OUT2, "g_b_mag", a.g_b_mag, m),
    ];
    launch(gpu, enc, KERNEL, &gpu.kernels.train.gated_backward, a.shape.params(KERNEL)?, &ops, m)
}
