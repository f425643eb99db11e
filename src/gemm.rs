//! The host's matrix product, what the CPU backend's products run on: `C = A·B` (or `C += A·B`)
//! in f32, either operand transposed without a copy, through `matrixmultiply`'s packed SIMD
//! micro-kernels (AVX2/FMA, AVX, SSE2 or NEON, picked at run time; in the page wasm `simd128`,
//! which `.cargo/config.toml` turns on), on every core natively: C is split into blocks of rows
//! (or columns), one scoped thread each.
//!
//! `reference::matmul` is its twin (tests/cpu_backend.rs). Why `matrixmultiply` and not `gemm`
//! (faer's, the fastest pure-Rust GEMM): one small crate with one dependency instead of about a
//! dozen (`gemm-common`, `pulp`, `dyn-stack`, `raw-cpuid`, rayon…), which matters for a cold CI
//! build on two cores and for the page's wasm size; it builds for wasm32 with a `simd128` kernel;
//! and splitting C, never the sum over k, keeps every result the same whatever the thread count.
//! `gemm` would be faster with AVX-512 (matrixmultiply stops at AVX2 + FMA); BENCHMARKS.md holds
//! what this one reaches.
//!
//! Each output value is one f32 sum in blocks of k, a different order from the reference's
//! sequential sum and the GPU's: results agree to rounding (about 1e-6 relative), not bit for bit.

/// A row-major `rows × cols` matrix of `values`, read as itself or as its transpose.
#[derive(Debug, Clone, Copy)]
pub struct Matrix<'a> {
    values: &'a [f32],
    rows: usize,
    cols: usize,
    transposed: bool,
}

impl<'a> Matrix<'a> {
    /// `values` as a row-major `rows × cols` matrix; panics when they are fewer than that (a
    /// caller's shape bug, not a user's input: shapes are checked where files are read).
    pub fn new(values: &'a [f32], rows: usize, cols: usize) -> Matrix<'a> {
        assert!(values.len() >= rows * cols, "a {rows} × {cols} matrix needs {} values, not {}", rows * cols, values.len());
        Matrix { values, rows, cols, transposed: false }
    }

    /// The transpose, reading the same values.
    pub fn t(self) -> Matrix<'a> {
        Matrix { transposed: !self.transposed, ..self }
    }

    /// Rows and columns as the product sees them.
    pub fn shape(&self) -> (usize, usize) {
        if self.transposed {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }

    /// (row stride, column stride) of the matrix as the product sees it.
    fn strides(&self) -> (isize, isize) {
        if self.transposed {
            (1, self.cols as isize)
        } else {
            (self.cols as isize, 1)
        }
    }
}

/// `c = a·b` (`accumulate`: `c += a·b`), `c` row-major `[m, n]`.
pub fn matmul_into(a: Matrix<'_>, b: Matrix<'_>, c: &mut [f32], accumulate: bool) {
    let ((m, k), (kb, n)) = (a.shape(), b.shape());
    assert_eq!(k, kb, "inner sizes differ: {m} × {k} by {kb} × {n}");
    assert!(c.len() >= m * n, "C needs {} values, not {}", m * n, c.len());
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    let ((rsa, csa), (rsb, csb)) = (a.strides(), b.strides());
    let beta = if accumulate { 1.0 } else { 0.0 };
    let (a_ptr, b_ptr, c_ptr) =
        (SharedPtr(a.values.as_ptr() as *mut f32), SharedPtr(b.values.as_ptr() as *mut f32), SharedPtr(c.as_mut_ptr()));
    // One block of C: rows `rows` and columns `cols`, from the matching rows of A and columns of B.
    let block = move |rows: std::ops::Range<usize>, cols: std::ops::Range<usize>| {
        // SAFETY: `Matrix::new` checked that each operand holds rows × cols values, so every index
        // the strides reach (i·rs + j·cs inside its shape) is in bounds; the offsets move to the
        // block's first row of A, first column of B and first element of C, all inside. C holds
        // m × n values (checked above), blocks of different threads never overlap, and with beta =
        // 0 matrixmultiply writes C without reading it.
        unsafe {
            matrixmultiply::sgemm(
                rows.len(),
                k,
                cols.len(),
                1.0,
                a_ptr.get().offset(rows.start as isize * rsa),
                rsa,
                csa,
                b_ptr.get().offset(cols.start as isize * csb),
                rsb,
                csb,
                beta,
                c_ptr.get().add(rows.start * n + cols.start),
                n as isize,
                1,
            );
        }
    };
    let parts = parallel_parts(m, n, k);
    if parts <= 1 {
        return block(0..m, 0..n);
    }
    // Split the longer side of C: each thread packs its own copy of the other operand's panels,
    // which costs O(k·n) (or O(m·k)) against its O(m·n·k / parts) of multiply-adds.
    let split = |len: usize, p: usize| len * p / parts..len * (p + 1) / parts;
    std::thread::scope(|scope| {
        for p in 1..parts {
            let (rows, cols) = if m >= n { (split(m, p), 0..n) } else { (0..m, split(n, p)) };
            scope.spawn(move || block(rows, cols));
        }
        if m >= n {
            block(split(m, 0), 0..n)
        } else {
            block(0..m, split(n, 0))
        }
    });
}

/// How many threads a product is split over: one below about 4 million multiply-adds (a thread
/// costs some tens of microseconds to start, a product that size a fraction of a millisecond), and
/// never so many that a part gets fewer than 16 rows or columns of C. Always one in wasm32.
fn parallel_parts(m: usize, n: usize, k: usize) -> usize {
    const MIN_FMAS: usize = 1 << 22;
    if m * n * k < MIN_FMAS {
        return 1;
    }
    threads().min(m.max(n) / 16).max(1)
}

/// The threads a large product is split over: every core natively, one in wasm32 (a page without
/// cross-origin isolation has no shared memory for threads).
pub fn threads() -> usize {
    if cfg!(target_arch = "wasm32") {
        return 1;
    }
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |c| c.get()))
}

/// A pointer the threads of one product share; each writes only its own block of C.
#[derive(Clone, Copy)]
struct SharedPtr(*mut f32);
// SAFETY: the pointers outlive the scoped threads (they borrow the caller's slices for the whole
// `thread::scope`) and the blocks written through them are disjoint.
unsafe impl Send for SharedPtr {}
unsafe impl Sync for SharedPtr {}

impl SharedPtr {
    /// Through a method, so closures capture the whole `Send` wrapper, not its raw field.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `a·b` as a new row-major `[m, n]`.
pub fn matmul(a: Matrix<'_>, b: Matrix<'_>) -> Vec<f32> {
    let (m, n) = (a.shape().0, b.shape().1);
    let mut c = vec![0.0; m * n];
    matmul_into(a, b, &mut c, false);
    c
}

/// A linear layer on `[n, d_in]` rows: `x·Wᵀ (+ bias)` with `w` stored `[d_out, d_in]`, as
/// PyTorch's `nn.Linear` and Hugging Face checkpoints keep it.
pub fn linear(x: &[f32], d_in: usize, w: &[f32], d_out: usize, bias: Option<&[f32]>) -> Vec<f32> {
    let n = x.len() / d_in.max(1);
    let mut out = match bias {
        // Start from the bias and accumulate: one pass over the output.
        Some(bias) => bias[..d_out].repeat(n),
        None => vec![0.0; n * d_out],
    };
    matmul_into(Matrix::new(x, n, d_in), Matrix::new(w, d_out, d_in).t(), &mut out, bias.is_some());
    out
}
