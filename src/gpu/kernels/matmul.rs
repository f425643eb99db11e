//! `shaders/matmul.wgsl`: `C = epilogue(A·B)` with 64×64 tiles, or one thread per column for at
//! most `SKINNY_ROWS` rows; the epilogue fuses each SAE architecture's activation into encode.
//! CPU twin: `reference::matmul`.

use std::cell::RefCell;
use std::collections::HashMap;

use bytemuck::{Pod, Zeroable};

use super::{dispatch, index_size, module, need, pipeline};
use crate::gpu::{grid_1d, Gpu, GpuError};

/// The epilogue's and B's storage definitions are the CPU twin's.
pub use crate::reference::matmul::{Epilogue, Storage};

/// matmul.wgsl's f32 declaration of B, and the packed half-precision one the second module has.
const B_F32: &str = "@group(0) @binding(2) var<storage, read> b: array<f32>;\nfn b_at(i: u32) -> f32 { return b[i]; }";
const B_PACKED: &str = "@group(0) @binding(2) var<storage, read> b: array<u32>;
override B_HALF: u32 = 1u; // 1: f16, 2: bf16
fn b_at(i: u32) -> f32 {
    let word = b[i >> 1u];
    let bits = select(word & 0xffffu, word >> 16u, (i & 1u) == 1u);
    if (B_HALF == 1u) {
        return unpack2x16float(bits).x;
    }
    return bitcast<f32>(bits << 16u);
}";
/// B as WGSL's own `f16` (the same bytes as the packed f16 words), where the device has
/// `shader-f16`: loaded as halves and widened, no unpacking.
const B_F16: &str = "@group(0) @binding(2) var<storage, read> b: array<f16>;
fn b_at(i: u32) -> f32 { return f32(b[i]); }";

/// Products with at most this many rows run on the `skinny` entry.
pub const SKINNY_ROWS: usize = 4;

/// A pipeline's specialisation: (entry, epilogue, transpose A, transpose B, B's storage).
type Specialisation = (&'static str, Epilogue, bool, bool, Storage);

/// The specialisations, compiled on first use, from the f32 module, the packed one or (f16 B on
/// a device with `shader-f16`) the native-f16 one.
pub(crate) struct Pipelines {
    module: wgpu::ShaderModule,
    packed: wgpu::ShaderModule,
    native_f16: Option<wgpu::ShaderModule>,
    compiled: RefCell<HashMap<Specialisation, wgpu::ComputePipeline>>,
}

impl Pipelines {
    pub(crate) fn new(device: &wgpu::Device) -> Pipelines {
        let source = include_str!("../../../shaders/matmul.wgsl");
        assert!(source.contains(B_F32), "matmul.wgsl declares B as the packed module's substitution expects");
        let native_f16 = device
            .features()
            .contains(wgpu::Features::SHADER_F16)
            .then(|| module(device, "matmul.wgsl (f16 B)", &format!("enable f16;\n{}", source.replace(B_F32, B_F16))));
        Pipelines {
            module: module(device, "matmul.wgsl", source),
            packed: module(device, "matmul.wgsl (packed B)", &source.replace(B_F32, B_PACKED)),
            native_f16,
            compiled: Default::default(),
        }
    }

    /// Whether f16 weights are read as WGSL `f16` (the device has `shader-f16`).
    pub(crate) fn native_f16(&self) -> bool {
        self.native_f16.is_some()
    }

    fn get(&self, device: &wgpu::Device, key: Specialisation) -> wgpu::ComputePipeline {
        let (entry, epilogue, trans_a, trans_b, storage) = key;
        self.compiled
            .borrow_mut()
            .entry(key)
            .or_insert_with(|| {
                let mut constants =
                    vec![("EPILOGUE", epilogue as u32 as f64), ("TRANS_A", trans_a as u32 as f64), ("TRANS_B", trans_b as u32 as f64)];
                let module = match (storage, &self.native_f16) {
                    (Storage::F32, _) => &self.module,
                    (Storage::F16, Some(native)) => native,
                    (Storage::F16 | Storage::Bf16, _) => {
                        constants.push(("B_HALF", if storage == Storage::F16 { 1.0 } else { 2.0 }));
                        &self.packed
                    }
                };
                pipeline(device, module, entry, &constants)
            })
            .clone()
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
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
    /// How B's buffer holds its values (f32, or packed f16/bf16 model weights).
    pub b_storage: Storage,
}

pub fn matmul(gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, epilogue: Epilogue, args: Matmul<'_>) -> Result<(), GpuError> {
    const KERNEL: &str = "matmul";
    if args.m == 0 || args.n == 0 {
        return Ok(());
    }
    // The last element each operand is read or written at.
    let a_end =
        if args.trans_a { (args.k.max(1) - 1) * args.lda + args.a_col + args.m } else { (args.m - 1) * args.lda + args.a_col + args.k };
    let b_end = if args.trans_b { (args.n - 1) * args.ldb + args.k } else { args.k.max(1).saturating_sub(1) * args.ldb + args.n };
    need(KERNEL, "A", args.a, a_end)?;
    need(KERNEL, "B", args.b, args.b_storage.words(b_end))?;
    need(KERNEL, "C", args.c, (args.m - 1) * args.ldc + args.c_col + args.n)?;
    if !matches!(epilogue, Epilogue::Accumulate | Epilogue::Store) {
        need(KERNEL, "the per-column parameters", args.cols, 3 * args.n)?;
    }
    let u = |what: &str, v: usize| index_size(KERNEL, what, v);
    let params = Params {
        m: u("m", args.m)?,
        n: u("n", args.n)?,
        k: u("k", args.k)?,
        lda: u("lda", args.lda)?,
        a_col: u("a_col", args.a_col)?,
        ldb: u("ldb", args.ldb)?,
        ldc: u("ldc", args.ldc)?,
        c_col: u("c_col", args.c_col)?,
    };
    let uniform = gpu.uniform("matmul params", &params);
    // Up to SKINNY_ROWS rows: one thread per column (`skinny`); else 64×64 tiles.
    let (entry, workgroups) = if args.m <= SKINNY_ROWS {
        let (x, y) = grid_1d(args.n.div_ceil(256) as u32);
        ("skinny", (x, y, 1))
    } else {
        ("main", (args.n.div_ceil(64) as u32, args.m.div_ceil(64) as u32, 1))
    };
    if workgroups.1 > 65_535 {
        return Err(GpuError::TooLarge(format!("{KERNEL}: {} rows need more than 65,535 row tiles; split the product", args.m)));
    }
    let pipeline = gpu.kernels.matmul.get(&gpu.device, (entry, epilogue, args.trans_a, args.trans_b, args.b_storage));
    dispatch(gpu, encoder, &pipeline, &[(0, &uniform), (1, args.a), (2, args.b), (3, args.c), (4, args.cols)], workgroups);
    Ok(())
}
