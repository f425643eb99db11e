//! One launcher per WGSL kernel. Each owns its pipeline(s), uniform layout and dispatch math;
//! callers record launches into a command encoder and keep data on the GPU between them.

use bytemuck::{Pod, Zeroable};

use super::{grid_1d, Gpu};

/// What the matmul kernel does with each accumulated value (`shaders/matmul.wgsl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Epilogue {
    /// `(acc + bias) * scale`: TopK pre-activations, selected by the TopK kernel afterwards.
    TopKPre = 0,
    /// `relu(acc + bias)`
    Relu = 1,
    /// `relu(h) * (h > threshold)`, `h = acc + bias`
    JumpRelu = 2,
    /// `(acc + b_gate > 0) * relu(acc * exp(r_mag) + b_mag)`
    Gated = 3,
    /// `C += acc`
    Accumulate = 4,
    /// `C = acc`
    Store = 5,
}

/// Products with at most this many rows run on matmul.wgsl's `skinny` entry.
pub const SKINNY_ROWS: usize = 4;

/// The largest k the TopK kernel supports (its workgroup arrays are this long).
pub const MAX_TOPK: usize = 256;

pub struct Kernels {
    matmul_module: wgpu::ShaderModule,
    /// Matmul pipelines by (entry, epilogue, transpose A, transpose B), compiled on first use.
    matmul: std::cell::RefCell<std::collections::HashMap<(&'static str, Epilogue, bool, bool), wgpu::ComputePipeline>>,
    topk: wgpu::ComputePipeline,
    normalize_rows: wgpu::ComputePipeline,
    fill_bias: wgpu::ComputePipeline,
    denormalize_rows: wgpu::ComputePipeline,
    sparse_decode: wgpu::ComputePipeline,
    row_metrics_dense: wgpu::ComputePipeline,
    row_metrics_sparse: wgpu::ComputePipeline,
    fire_counts_dense: wgpu::ComputePipeline,
    fire_counts_sparse: wgpu::ComputePipeline,
    /// shaders/train.wgsl, one pipeline per entry of TRAIN_ENTRIES.
    train: Vec<wgpu::ComputePipeline>,
    /// shaders/model.wgsl, one pipeline per entry of MODEL_ENTRIES.
    model: Vec<wgpu::ComputePipeline>,
    batch_histogram: wgpu::ComputePipeline,
    batch_pick: wgpu::ComputePipeline,
    batch_apply: wgpu::ComputePipeline,
}

fn pipeline(device: &wgpu::Device, module: &wgpu::ShaderModule, entry: &str, constants: &[(&str, f64)]) -> wgpu::ComputePipeline {
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: None,
        module,
        entry_point: Some(entry),
        compilation_options: wgpu::PipelineCompilationOptions { constants, ..Default::default() },
        cache: None,
    })
}

fn module(device: &wgpu::Device, name: &str, source: &str) -> wgpu::ShaderModule {
    device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some(name), source: wgpu::ShaderSource::Wgsl(source.into()) })
}

impl Kernels {
    pub fn new(device: &wgpu::Device) -> Kernels {
        let matmul_module = module(device, "matmul.wgsl", include_str!("../../shaders/matmul.wgsl"));
        let train_module = module(device, "train.wgsl", include_str!("../../shaders/train.wgsl"));
        let topk_module = module(device, "topk.wgsl", include_str!("../../shaders/topk.wgsl"));
        // WGSL has no includes: the shared reduction is prepended to the modules that use it.
        let reduce = include_str!("../../shaders/reduce.wgsl");
        let rows_module = module(device, "rows.wgsl", &[reduce, include_str!("../../shaders/rows.wgsl")].concat());
        let decode_module = module(device, "sparse_decode.wgsl", include_str!("../../shaders/sparse_decode.wgsl"));
        let metrics_module = module(device, "metrics.wgsl", &[reduce, include_str!("../../shaders/metrics.wgsl")].concat());
        let model_module = module(device, "model.wgsl", &[reduce, include_str!("../../shaders/model.wgsl")].concat());
        let batch_topk_module = module(device, "batch_topk.wgsl", include_str!("../../shaders/batch_topk.wgsl"));
        Kernels {
            matmul_module,
            matmul: Default::default(),
            topk: pipeline(device, &topk_module, "main", &[]),
            normalize_rows: pipeline(device, &rows_module, "normalize_rows", &[]),
            fill_bias: pipeline(device, &rows_module, "fill_bias", &[]),
            denormalize_rows: pipeline(device, &rows_module, "denormalize_rows", &[]),
            sparse_decode: pipeline(device, &decode_module, "main", &[]),
            row_metrics_dense: pipeline(device, &metrics_module, "row_metrics", &[("SPARSE", 0.0)]),
            row_metrics_sparse: pipeline(device, &metrics_module, "row_metrics", &[("SPARSE", 1.0)]),
            fire_counts_dense: pipeline(device, &metrics_module, "fire_counts_dense", &[]),
            fire_counts_sparse: pipeline(device, &metrics_module, "fire_counts_sparse", &[]),
            train: TRAIN_ENTRIES.iter().map(|&e| pipeline(device, &train_module, e, &[])).collect(),
            model: MODEL_ENTRIES.iter().map(|&e| pipeline(device, &model_module, e, &[])).collect(),
            batch_histogram: pipeline(device, &batch_topk_module, "batch_histogram", &[]),
            batch_pick: pipeline(device, &batch_topk_module, "batch_pick", &[]),
            batch_apply: pipeline(device, &batch_topk_module, "batch_apply", &[]),
        }
    }

    fn matmul_pipeline(
        &self,
        device: &wgpu::Device,
        entry: &'static str,
        epilogue: Epilogue,
        trans_a: bool,
        trans_b: bool,
    ) -> wgpu::ComputePipeline {
        self.matmul
            .borrow_mut()
            .entry((entry, epilogue, trans_a, trans_b))
            .or_insert_with(|| {
                let constants =
                    [("EPILOGUE", epilogue as u32 as f64), ("TRANS_A", trans_a as u32 as f64), ("TRANS_B", trans_b as u32 as f64)];
                pipeline(device, &self.matmul_module, entry, &constants)
            })
            .clone()
    }
}

/// The bindings of a multi-entry shader module's op: its uniform at binding 0, then the buffers
/// the op uses (an entry point's layout holds only the bindings it reads or writes, so the rest are
/// left out).
fn bound<'a, const N: usize>(uniform: &'a wgpu::Buffer, optional: [(u32, Option<&'a wgpu::Buffer>); N]) -> Vec<(u32, &'a wgpu::Buffer)> {
    std::iter::once((0, uniform)).chain(optional.into_iter().filter_map(|(binding, buffer)| buffer.map(|b| (binding, b)))).collect()
}

/// Binds `buffers` (binding number, buffer) to group 0 of `pipeline` and dispatches.
fn dispatch(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    pipeline: &wgpu::ComputePipeline,
    buffers: &[(u32, &wgpu::Buffer)],
    workgroups: (u32, u32, u32),
) {
    let entries: Vec<wgpu::BindGroupEntry<'_>> =
        buffers.iter().map(|(binding, buffer)| wgpu::BindGroupEntry { binding: *binding, resource: buffer.as_entire_binding() }).collect();
    let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    });
    let mut pass = encoder.begin_compute_pass(&Default::default());
    pass.set_pipeline(pipeline);
    pass.set_bind_group(0, &bind_group, &[]);
    pass.dispatch_workgroups(workgroups.0, workgroups.1, workgroups.2);
}

// ---------------------------------------------------------------------------------------------
// matmul.wgsl

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    a_col: u32,
    ldb: u32,
    ldc: u32,
    c_col: u32,
}

/// `C[m, c_col + j] = epilogue(Σ_k A[m, k] · B[k, j])` for m < M, j < N, with
/// `A[m, k] = a[m·lda + a_col + k]` (or `a[k·lda + a_col + m]` when `trans_a`) and
/// `B[k, j] = b[k·ldb + j]` (or `b[j·ldb + k]` when `trans_b`).
pub struct Matmul<'a> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: &'a wgpu::Buffer,
    pub lda: usize,
    pub a_col: usize,
    pub b: &'a wgpu::Buffer,
    pub ldb: usize,
    pub c: &'a wgpu::Buffer,
    pub ldc: usize,
    pub c_col: usize,
    /// `[bias | scale_or_threshold | aux]`, each `n` long (any buffer for `Accumulate`/`Store`).
    pub cols: &'a wgpu::Buffer,
    pub trans_a: bool,
    pub trans_b: bool,
}

pub fn matmul(gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, epilogue: Epilogue, args: Matmul<'_>) {
    let u = |v: usize| v as u32;
    let params = gpu.uniform(
        "matmul params",
        &MatmulParams {
            m: u(args.m),
            n: u(args.n),
            k: u(args.k),
            lda: u(args.lda),
            a_col: u(args.a_col),
            ldb: u(args.ldb),
            ldc: u(args.ldc),
            c_col: u(args.c_col),
        },
    );
    // Up to SKINNY_ROWS rows: one thread per column (matmul.wgsl `skinny`); else 64×64 tiles.
    let (entry, workgroups) = if args.m <= SKINNY_ROWS {
        let (x, y) = grid_1d(u(args.n.div_ceil(256)));
        ("skinny", (x, y, 1))
    } else {
        ("main", (u(args.n.div_ceil(64)), u(args.m.div_ceil(64)), 1))
    };
    let pipeline = gpu.kernels.matmul_pipeline(&gpu.device, entry, epilogue, args.trans_a, args.trans_b);
    dispatch(gpu, encoder, &pipeline, &[(0, &params), (1, args.a), (2, args.b), (3, args.c), (4, args.cols)], workgroups);
}

// ---------------------------------------------------------------------------------------------
// topk.wgsl

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct TopKParams {
    rows: u32,
    d_sae: u32,
    k: u32,
    ld: u32,
    sort_n: u32,
    _pad: [u32; 3],
}

/// Per-row top-k of `pre` (`[rows, ld]`, first `d_sae` columns) into `index`/`value` (`[rows, k]`).
#[allow(clippy::too_many_arguments)]
pub fn topk(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    rows: usize,
    d_sae: usize,
    ld: usize,
    k: usize,
    pre: &wgpu::Buffer,
    index: &wgpu::Buffer,
    value: &wgpu::Buffer,
) {
    assert!(k >= 1 && k <= MAX_TOPK && k <= d_sae, "k={k} must be in 1..={MAX_TOPK} and at most d_sae={d_sae}");
    let params = gpu.uniform(
        "topk params",
        &TopKParams {
            rows: rows as u32,
            d_sae: d_sae as u32,
            k: k as u32,
            ld: ld as u32,
            sort_n: k.next_power_of_two() as u32,
            _pad: [0; 3],
        },
    );
    let (x, y) = grid_1d(rows as u32);
    dispatch(gpu, encoder, &gpu.kernels.topk, &[(0, &params), (1, pre), (2, index), (3, value)], (x, y, 1));
}

// ---------------------------------------------------------------------------------------------
// rows.wgsl

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RowsParams {
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
    pub fn of(cfg: &crate::sae::SaeConfig) -> RowNormalization {
        use crate::sae::Normalization as N;
        let mode = match cfg.normalization {
            N::None | N::ExpectedAverageOnlyIn => 0,
            N::LayerNorm => 1,
            N::ConstantNormRescale => 2,
        };
        RowNormalization { mode, apply_b_dec: cfg.apply_b_dec_to_input }
    }
}

fn rows_params(gpu: &Gpu, rows: usize, d_in: usize, norm: RowNormalization) -> wgpu::Buffer {
    gpu.uniform(
        "rows params",
        &RowsParams {
            rows: rows as u32,
            d_in: d_in as u32,
            mode: norm.mode,
            apply_b_dec: norm.apply_b_dec as u32,
            eps: crate::sae::cpu::LAYER_NORM_EPS,
            _pad: [0; 3],
        },
    )
}

fn elementwise_grid(rows: usize, d_in: usize) -> (u32, u32, u32) {
    let (y, z) = grid_1d(rows as u32);
    ((d_in.div_ceil(64)) as u32, y, z)
}

/// `sae_in = (x - shift) * in_scale - b_dec * apply_b_dec` per row, and `norms[r] = (shift, in, out)`.
#[allow(clippy::too_many_arguments)]
pub fn normalize_rows(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    rows: usize,
    d_in: usize,
    norm: RowNormalization,
    b_dec: &wgpu::Buffer,
    x: &wgpu::Buffer,
    sae_in: &wgpu::Buffer,
    norms: &wgpu::Buffer,
) {
    let params = rows_params(gpu, rows, d_in, norm);
    let (gx, gy) = grid_1d(rows as u32);
    dispatch(gpu, encoder, &gpu.kernels.normalize_rows, &[(0, &params), (1, b_dec), (2, x), (3, sae_in), (4, norms)], (gx, gy, 1));
}

/// `out[r] = b_dec` for every row: the start of decode.
pub fn fill_bias(gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, rows: usize, d_in: usize, b_dec: &wgpu::Buffer, out: &wgpu::Buffer) {
    let params = rows_params(gpu, rows, d_in, RowNormalization { mode: 0, apply_b_dec: false });
    dispatch(gpu, encoder, &gpu.kernels.fill_bias, &[(0, &params), (1, b_dec), (5, out)], elementwise_grid(rows, d_in));
}

/// `out[r] = out[r] * out_scale + shift`: undoes the input normalisation at the end of decode.
pub fn denormalize_rows(gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, rows: usize, d_in: usize, norms: &wgpu::Buffer, out: &wgpu::Buffer) {
    let params = rows_params(gpu, rows, d_in, RowNormalization { mode: 0, apply_b_dec: false });
    dispatch(gpu, encoder, &gpu.kernels.denormalize_rows, &[(0, &params), (4, norms), (5, out)], elementwise_grid(rows, d_in));
}

// ---------------------------------------------------------------------------------------------
// sparse_decode.wgsl

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct SparseDecodeParams {
    rows: u32,
    d_in: u32,
    k: u32,
    f0: u32,
    width: u32,
    _pad: [u32; 3],
}

/// Adds the contributions of list entries whose feature lies in `[f0, f0 + width)` (one W_dec chunk).
pub struct SparseDecode<'a> {
    pub rows: usize,
    pub d_in: usize,
    pub k: usize,
    pub f0: usize,
    pub width: usize,
    pub index: &'a wgpu::Buffer,
    pub value: &'a wgpu::Buffer,
    pub w_dec_chunk: &'a wgpu::Buffer,
    /// Per chunk-local feature: multiplier applied to its value (1, or 1/‖W_dec‖).
    pub scale: &'a wgpu::Buffer,
    pub out: &'a wgpu::Buffer,
}

pub fn sparse_decode(gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, args: SparseDecode<'_>) {
    assert!(args.k <= MAX_TOPK);
    let params = gpu.uniform(
        "sparse decode params",
        &SparseDecodeParams {
            rows: args.rows as u32,
            d_in: args.d_in as u32,
            k: args.k as u32,
            f0: args.f0 as u32,
            width: args.width as u32,
            _pad: [0; 3],
        },
    );
    let (x, y) = grid_1d(args.rows as u32);
    dispatch(
        gpu,
        encoder,
        &gpu.kernels.sparse_decode,
        &[(0, &params), (1, args.index), (2, args.value), (3, args.w_dec_chunk), (4, args.scale), (5, args.out)],
        (x, y, 1),
    );
}

// ---------------------------------------------------------------------------------------------
// metrics.wgsl

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MetricsParams {
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

fn metrics_params(gpu: &Gpu, rows: usize, d_in: usize, d_sae: usize, acts: &Activations<'_>) -> wgpu::Buffer {
    let (k, ld) = match acts {
        Activations::Dense { ld, .. } => (0, *ld),
        Activations::Lists { k, .. } => (*k, 0),
    };
    gpu.uniform(
        "metrics params",
        &MetricsParams {
            rows: rows as u32,
            d_in: d_in as u32,
            d_sae: d_sae as u32,
            k: k as u32,
            ld: ld as u32,
            eps: crate::sae::metrics::COSINE_EPS,
            _pad: [0; 2],
        },
    )
}

/// `stats[r] = (Σ(x - recon)², cos(x, recon), L0)` for each row.
#[allow(clippy::too_many_arguments)]
pub fn row_metrics(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    rows: usize,
    d_in: usize,
    d_sae: usize,
    x: &wgpu::Buffer,
    recon: &wgpu::Buffer,
    acts: Activations<'_>,
    stats: &wgpu::Buffer,
) {
    let params = metrics_params(gpu, rows, d_in, d_sae, &acts);
    let (gx, gy) = grid_1d(rows as u32);
    let (pipeline, values) = match acts {
        Activations::Dense { acts, .. } => (&gpu.kernels.row_metrics_dense, acts),
        Activations::Lists { value, .. } => (&gpu.kernels.row_metrics_sparse, value),
    };
    dispatch(gpu, encoder, pipeline, &[(0, &params), (1, x), (2, recon), (3, values), (5, stats)], (gx, gy, 1));
}

/// `counts[f] +=` the number of rows on which feature `f` is active.
pub fn fire_counts(gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, rows: usize, d_sae: usize, acts: Activations<'_>, counts: &wgpu::Buffer) {
    let params = metrics_params(gpu, rows, 0, d_sae, &acts);
    match acts {
        Activations::Dense { acts, .. } => {
            let groups = (d_sae.div_ceil(256)) as u32;
            dispatch(gpu, encoder, &gpu.kernels.fire_counts_dense, &[(0, &params), (3, acts), (6, counts)], (groups, 1, 1));
        }
        Activations::Lists { index, value, k } => {
            let groups = ((rows * k).div_ceil(256)) as u32;
            let (gx, gy) = grid_1d(groups);
            // fire_counts_sparse indexes by global id x only; keep it within one dimension.
            assert_eq!(gy, 1, "too many list entries for one dispatch; use smaller row blocks");
            dispatch(gpu, encoder, &gpu.kernels.fire_counts_sparse, &[(0, &params), (3, value), (4, index), (6, counts)], (gx, 1, 1));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// train.wgsl

/// The entries of `shaders/train.wgsl`, in `TRAIN_ENTRIES` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainOp {
    ReluActs,
    ScatterLists,
    ReconGrad,
    ActGrad,
    AuxActGrad,
    MaskDead,
    AuxGrad,
    ColumnSums,
    L1DecoderGrad,
    DecoderNorms,
    RemoveParallelGrad,
    NormalizeDecoder,
    Adam,
    JumpReluActs,
    JumpReluThresholdGrad,
    GatedActs,
    GatedBackward,
}

const TRAIN_ENTRIES: [&str; 17] = [
    "relu_acts",
    "scatter_lists",
    "recon_grad",
    "act_grad",
    "aux_act_grad",
    "mask_dead",
    "aux_grad",
    "column_sums",
    "l1_decoder_grad",
    "decoder_norms",
    "remove_parallel_grad",
    "normalize_decoder",
    "adam",
    "jumprelu_acts",
    "jumprelu_threshold_grad",
    "gated_acts",
    "gated_backward",
];

/// `train.wgsl`'s uniform: sizes, a mode, a scale, and Adam's hyper-parameters.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
pub struct TrainParams {
    pub rows: u32,
    pub cols: u32,
    pub k: u32,
    pub mode: u32,
    pub scale: f32,
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub c1: f32,
    pub c2: f32,
    /// JumpReLU's bandwidth ε.
    pub width: f32,
}

/// The buffers an entry reads (`in0..in3`, bindings 1–3 and 7) and writes (`out0..out2`, bindings
/// 4–6); each entry's comment in train.wgsl says which it uses.
#[derive(Default)]
pub struct TrainIo<'a> {
    pub in0: Option<&'a wgpu::Buffer>,
    pub in1: Option<&'a wgpu::Buffer>,
    pub in2: Option<&'a wgpu::Buffer>,
    pub in3: Option<&'a wgpu::Buffer>,
    pub out0: Option<&'a wgpu::Buffer>,
    pub out1: Option<&'a wgpu::Buffer>,
    pub out2: Option<&'a wgpu::Buffer>,
}

/// Runs one train.wgsl entry over `threads` threads (elements, rows or columns as the entry says).
pub fn train_op(gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, op: TrainOp, params: TrainParams, io: TrainIo<'_>, threads: usize) {
    let uniform = gpu.uniform("train params", &params);
    let bindings = bound(&uniform, [(1, io.in0), (2, io.in1), (3, io.in2), (4, io.out0), (5, io.out1), (6, io.out2), (7, io.in3)]);
    let (x, y) = grid_1d(threads.div_ceil(256) as u32);
    dispatch(gpu, encoder, &gpu.kernels.train[op as usize], &bindings, (x, y, 1));
}

// ---------------------------------------------------------------------------------------------
// batch_topk.wgsl

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct BatchTopKParams {
    n: u32,
    count: u32,
    shift: u32,
    _pad: u32,
}

/// BatchTopK over `n` values: `kept` gets the `count` largest positive values (ties at the
/// threshold all kept), zeros elsewhere; `state[0]` ends as the threshold's f32 bits (all ones when
/// nothing is kept) and `state[2]` as the number of positive values. `histogram` (256 u32) must be
/// zero on entry and is left zero; `state` holds 4 u32.
#[allow(clippy::too_many_arguments)]
pub fn batch_topk(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    n: usize,
    count: usize,
    values: &wgpu::Buffer,
    kept: &wgpu::Buffer,
    histogram: &wgpu::Buffer,
    state: &wgpu::Buffer,
) {
    // Enough workgroups to fill a GPU; each walks the values with a grid stride.
    let histogram_groups = (n.div_ceil(256) as u32).clamp(1, 1024);
    for shift in [24u32, 16, 8, 0] {
        let params = gpu.uniform("batch topk params", &BatchTopKParams { n: n as u32, count: count as u32, shift, _pad: 0 });
        dispatch(
            gpu,
            encoder,
            &gpu.kernels.batch_histogram,
            &[(0, &params), (1, values), (2, histogram), (3, state)],
            (histogram_groups, 1, 1),
        );
        dispatch(gpu, encoder, &gpu.kernels.batch_pick, &[(0, &params), (2, histogram), (3, state)], (1, 1, 1));
    }
    let params = gpu.uniform("batch topk params", &BatchTopKParams { n: n as u32, count: count as u32, shift: 0, _pad: 0 });
    let (gx, gy) = grid_1d(n.div_ceil(256) as u32);
    dispatch(gpu, encoder, &gpu.kernels.batch_apply, &[(0, &params), (1, values), (3, state), (4, kept)], (gx, gy, 1));
}

// ---------------------------------------------------------------------------------------------
// model.wgsl

/// The entries of `shaders/model.wgsl`, in `MODEL_ENTRIES` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelOp {
    GatherRows,
    Add,
    GeluNew,
    LayerNorm,
    Attention,
}

const MODEL_ENTRIES: [&str; 5] = ["gather_rows", "add", "gelu_new", "layer_norm", "attention"];

/// The longest context the attention kernel takes (its score array is this long).
pub const MAX_CONTEXT: usize = 1024;

/// `model.wgsl`'s uniform.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
pub struct ModelParams {
    pub rows: u32,
    pub width: u32,
    pub n_heads: u32,
    pub d_head: u32,
    pub first: u32,
    pub count: u32,
    pub eps: f32,
    pub scale: f32,
}

/// The buffers a model.wgsl entry uses (its comment says which).
#[derive(Default)]
pub struct ModelIo<'a> {
    pub in0: Option<&'a wgpu::Buffer>,
    pub in1: Option<&'a wgpu::Buffer>,
    pub in2: Option<&'a wgpu::Buffer>,
    pub out0: Option<&'a wgpu::Buffer>,
    pub tokens: Option<&'a wgpu::Buffer>,
}

/// Runs one model.wgsl entry: per token (gather_rows, layer_norm), per (token, head)
/// (attention) or per element (add, gelu_new).
pub fn model_op(gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, op: ModelOp, params: ModelParams, io: ModelIo<'_>) {
    let uniform = gpu.uniform("model params", &params);
    let bindings = bound(&uniform, [(1, io.in0), (2, io.in1), (3, io.in2), (4, io.out0), (5, io.tokens)]);
    let workgroups = match op {
        ModelOp::GatherRows | ModelOp::LayerNorm => {
            let (x, y) = grid_1d(params.rows);
            (x, y, 1)
        }
        ModelOp::Attention => (params.rows, params.n_heads, 1),
        ModelOp::Add | ModelOp::GeluNew => {
            let (x, y) = grid_1d(params.width.div_ceil(256));
            (x, y, 1)
        }
    };
    dispatch(gpu, encoder, &gpu.kernels.model[op as usize], &bindings, workgroups);
}
