//! `shaders/matmul.wgsl`: `C = epilogue(A·B)` with 64×64 shared tiles or 16×8 register blocks
//! (whichever this adapter runs faster, `Tiling`), or one thread per column for at most
//! `SKINNY_ROWS` rows; the epilogue fuses each SAE architecture's activation into encode.
//! CPU twin: `reference::matmul`.

use std::cell::{Cell, RefCell};
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

/// How products of more than `SKINNY_ROWS` rows are computed. Both add the same products in the
/// same order, so they give the same bits; only their speed differs, by adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tiling {
    /// 64×64 tiles of C per 256-thread workgroup, A and B staged in workgroup memory (`main`):
    /// what GPUs run fastest.
    Shared,
    /// 16×8 blocks of C per thread, read straight from memory with no barrier (`registers`):
    /// what software adapters (lavapipe, SwiftShader) run fastest.
    Registers,
}

impl Tiling {
    fn entry(self) -> &'static str {
        match self {
            Tiling::Shared => "main",
            Tiling::Registers => "registers",
        }
    }

    /// The workgroups of an `m × n` product: (along columns, along rows).
    fn workgroups(self, m: usize, n: usize) -> (usize, usize) {
        match self {
            Tiling::Shared => (n.div_ceil(64), m.div_ceil(64)),
            Tiling::Registers => (n.div_ceil(512), m.div_ceil(16)),
        }
    }

    /// The multiply-adds an `m × k × n` product costs in whole tiles (out-of-range rows and
    /// columns of the last tiles are computed too).
    fn padded_fmas(self, m: usize, k: usize, n: usize) -> f64 {
        let (x, y) = self.workgroups(m, n);
        let (rows, cols) = match self {
            Tiling::Shared => (64, 64),
            Tiling::Registers => (16, 512),
        };
        (x * cols) as f64 * (y * rows) as f64 * k as f64
    }

    pub fn name(self) -> &'static str {
        match self {
            Tiling::Shared => "64×64 shared tiles",
            Tiling::Registers => "16×8 register blocks",
        }
    }
}

/// Which tiling each product uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TilingPolicy {
    /// Always this one (before `choose_tiling` has measured: `Shared`; tests force each).
    Always(Tiling),
    /// Each tiling's measured time per multiply-add on this adapter, in nanoseconds: a product goes
    /// to the tiling whose whole tiles take less time (`Registers` computes 512 columns a tile, so
    /// a narrow product can waste most of it).
    Measured { shared_ns: f64, registers_ns: f64 },
    /// A software adapter (`choose_tiling`): every product in register blocks, whose speed was
    /// measured. The shared tiles are not timed and not used: they ran 4–6× slower per
    /// multiply-add on lavapipe and SwiftShader (BENCHMARKS.md, 2026-12-03), and compiling one
    /// of their specialisations costs SwiftShader about 3 s (the register blocks 0.5 s), more than
    /// a narrow product's padded columns cost there.
    Software { registers_ns: f64 },
}

impl TilingPolicy {
    pub fn for_product(self, m: usize, k: usize, n: usize) -> Tiling {
        match self {
            TilingPolicy::Always(t) => t,
            TilingPolicy::Software { .. } => Tiling::Registers,
            TilingPolicy::Measured { shared_ns, registers_ns } => {
                let shared = Tiling::Shared.padded_fmas(m, k, n) * shared_ns;
                let registers = Tiling::Registers.padded_fmas(m, k, n) * registers_ns;
                if registers < shared {
                    Tiling::Registers
                } else {
                    Tiling::Shared
                }
            }
        }
    }

    /// "matmul in 64×64 shared tiles" or, measured, which tiling wins at large sizes and both
    /// throughputs.
    pub fn describe(self) -> String {
        match self {
            TilingPolicy::Always(t) => format!("matmul in {}", t.name()),
            TilingPolicy::Measured { shared_ns, registers_ns } => {
                let (fast, fast_ns, slow, slow_ns) = if registers_ns < shared_ns {
                    (Tiling::Registers, registers_ns, Tiling::Shared, shared_ns)
                } else {
                    (Tiling::Shared, shared_ns, Tiling::Registers, registers_ns)
                };
                format!("matmul in {} ({} GFLOP/s; {} {})", fast.name(), gflops(fast_ns), slow.name(), gflops(slow_ns))
            }
            TilingPolicy::Software { registers_ns } => format!(
                "matmul in {} ({} GFLOP/s, a software adapter: {} not timed)",
                Tiling::Registers.name(),
                gflops(registers_ns),
                Tiling::Shared.name()
            ),
        }
    }
}

fn gflops(ns_per_fma: f64) -> String {
    format!("{:.1}", 2.0 / ns_per_fma)
}

/// A pipeline's specialisation: (entry, epilogue, transpose A, transpose B, B's storage).
type Specialisation = (&'static str, Epilogue, bool, bool, Storage);

/// The specialisations, compiled on first use, from the f32 module, the packed one or (f16 B on
/// a device with `shader-f16`) the native-f16 one.
pub(crate) struct Pipelines {
    module: wgpu::ShaderModule,
    packed: wgpu::ShaderModule,
    native_f16: Option<wgpu::ShaderModule>,
    compiled: RefCell<HashMap<Specialisation, wgpu::ComputePipeline>>,
    tiling: Cell<TilingPolicy>,
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
            tiling: Cell::new(TilingPolicy::Always(Tiling::Shared)),
        }
    }

    /// How products of more than `SKINNY_ROWS` rows pick their tiling (`choose_tiling` measures
    /// it when the device opens).
    pub fn tiling(&self) -> TilingPolicy {
        self.tiling.get()
    }

    /// Uses `policy` from now on (tests force each tiling).
    pub fn set_tiling(&self, policy: TilingPolicy) {
        self.tiling.set(policy);
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
    // Up to SKINNY_ROWS rows: one thread per column (`skinny`); else the adapter's tiling.
    let (entry, workgroups) = if args.m <= SKINNY_ROWS {
        let (x, y) = grid_1d(args.n.div_ceil(256) as u32);
        ("skinny", (x, y, 1))
    } else {
        let tiling = gpu.kernels.matmul.tiling().for_product(args.m, args.k, args.n);
        let (x, y) = tiling.workgroups(args.m, args.n);
        if y > 65_535 {
            return Err(GpuError::TooLarge(format!("{KERNEL}: {} rows need more than 65,535 row tiles; split the product", args.m)));
        }
        (tiling.entry(), (x as u32, y as u32, 1))
    };
    let pipeline = gpu.kernels.matmul.get(&gpu.device, (entry, epilogue, args.trans_a, args.trans_b, args.b_storage));
    dispatch(gpu, encoder, &pipeline, &[(0, &uniform), (1, args.a), (2, args.b), (3, args.c), (4, args.cols)], workgroups);
    Ok(())
}

/// Register blocks at least this slow per multiply-add (under 8 GFLOP/s: 2 ms for the first
/// probe's 8.4 million, which even a laptop GPU does in a tenth of that) mean a software adapter,
/// which then runs every product in register blocks (`TilingPolicy::Software`).
const SOFTWARE_REGISTERS_NS: f64 = 0.25;

/// Measures both tilings' throughput on this adapter (`TilingPolicy::Measured`) and keeps it.
/// Products whose sizes are multiples of both tiles are timed (`kernels::time_per_run`): a
/// 64 × 256 × 512 one first; where both take under 5 ms (a real GPU, which so small a product
/// leaves mostly idle) a 1024 × 512 × 2048 one. The register blocks are timed first; on a
/// software adapter (`SOFTWARE_REGISTERS_NS`) that is all.
pub async fn choose_tiling(gpu: &Gpu) -> Result<TilingPolicy, GpuError> {
    let mut policy = TilingPolicy::Always(Tiling::Shared);
    for (probe, (m, k, n)) in [(64, 256, 512), (1024, 512, 2048)].into_iter().enumerate() {
        let a = gpu.upload_f32("tiling probe A", &vec![0.5; m * k]);
        let b = gpu.upload_f32("tiling probe B", &vec![0.25; k * n]);
        let c = gpu.storage("tiling probe C", (m * n * 4) as u64);
        let time = |tiling: Tiling| {
            gpu.kernels.matmul.set_tiling(TilingPolicy::Always(tiling));
            // `Store` reads no per-column parameters; any buffer but C stands in for them.
            let product = |enc: &mut wgpu::CommandEncoder| {
                let args = Matmul {
                    m,
                    n,
                    k,
                    a: &a,
                    lda: k,
                    a_col: 0,
                    b: &b,
                    ldb: n,
                    c: &c,
                    ldc: n,
                    c_col: 0,
                    cols: &a,
                    trans_a: false,
                    trans_b: false,
                    b_storage: Storage::F32,
                };
                matmul(gpu, enc, Epilogue::Store, args)
            };
            super::time_per_run(gpu, product, &c)
        };
        let fmas = (m * k * n) as f64;
        let (registers_ms, registers_once) = time(Tiling::Registers).await?;
        let registers_ns = registers_ms * 1e6 / fmas;
        // A software adapter says so natively; in the browser only the small probe tells it apart
        // (a fast CPU's lavapipe can pass 8 GFLOP/s there); the large one runs on GPUs only.
        if probe == 0 && (gpu.cpu_adapter || registers_ns >= SOFTWARE_REGISTERS_NS) {
            policy = TilingPolicy::Software { registers_ns };
            break;
        }
        let (shared_ms, shared_once) = time(Tiling::Shared).await?;
        policy = TilingPolicy::Measured { shared_ns: shared_ms * 1e6 / fmas, registers_ns };
        if registers_once.max(shared_once) >= 5.0 {
            break;
        }
    }
    gpu.kernels.matmul.set_tiling(policy);
    Ok(policy)
}
