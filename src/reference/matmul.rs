//! matmul.wgsl's twin: `C = epilogue(A·B)` with strides, offsets and transposes.

/// What the product does with each accumulated value (the GPU kernel's `EPILOGUE` constant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Epilogue {
    /// `(acc + bias) · scale`: TopK pre-activations (selected afterwards), or a biased linear
    /// layer with scale 1.
    TopKPre = 0,
    /// `relu(acc + bias)`
    Relu = 1,
    /// `relu(h) · (h > threshold)`, `h = acc + bias`
    JumpRelu = 2,
    /// `(acc + b_gate > 0) · relu(acc · exp(r_mag) + b_mag)`
    Gated = 3,
    /// `C += acc`
    Accumulate = 4,
    /// `C = acc`
    Store = 5,
}

impl Epilogue {
    /// The epilogue applied to one accumulated value `acc` of column `j`, with the per-column
    /// parameters `cols = [bias | scale_or_threshold | aux]` (each `n` long) and C's old value.
    pub fn apply(self, acc: f32, j: usize, n: usize, cols: &[f32], old: f32) -> f32 {
        let param = |i: usize| cols[i * n + j];
        match self {
            Epilogue::TopKPre => (acc + param(0)) * param(1),
            Epilogue::Relu => (acc + param(0)).max(0.0),
            Epilogue::JumpRelu => {
                let h = acc + param(0);
                if h > param(1) {
                    h.max(0.0)
                } else {
                    0.0
                }
            }
            Epilogue::Gated => {
                if acc + param(0) > 0.0 {
                    (acc * param(1) + param(2)).max(0.0)
                } else {
                    0.0
                }
            }
            Epilogue::Accumulate => old + acc,
            Epilogue::Store => acc,
        }
    }
}

/// Strides and offsets of a product, as the kernel reads them: `A[i, t] = a[i·lda + a_col + t]`
/// (or `a[t·lda + a_col + i]` when `trans_a`), `B[t, j] = b[t·ldb + j]` (or `b[j·ldb + t]` when
/// `trans_b`), and `C[i, j]` at `c[i·ldc + c_col + j]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub lda: usize,
    pub a_col: usize,
    pub ldb: usize,
    pub ldc: usize,
    pub c_col: usize,
    pub trans_a: bool,
    pub trans_b: bool,
}

/// `C[i, c_col + j] = epilogue(Σ_t A[i, t] · B[t, j])` for i < m, j < n; the rest of `c` untouched.
pub fn matmul(epilogue: Epilogue, l: Layout, a: &[f32], b: &[f32], cols: &[f32], c: &mut [f32]) {
    let get_a = |i: usize, t: usize| if l.trans_a { a[t * l.lda + l.a_col + i] } else { a[i * l.lda + l.a_col + t] };
    let get_b = |t: usize, j: usize| if l.trans_b { b[j * l.ldb + t] } else { b[t * l.ldb + j] };
    for i in 0..l.m {
        for j in 0..l.n {
            let acc = (0..l.k).map(|t| get_a(i, t) * get_b(t, j)).sum::<f32>();
            let o = i * l.ldc + l.c_col + j;
            c[o] = epilogue.apply(acc, j, l.n, cols, c[o]);
        }
    }
}
