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

/// How B's values are stored in its GPU buffer (matmul.wgsl's packed module, `B_HALF`): f32, or two
/// half-precision values per `u32` (low half first), widened in the shader (f16 by
/// `unpack2x16float`, bf16 by a 16-bit shift). Accumulation is f32 either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Storage {
    #[default]
    F32,
    F16,
    Bf16,
}

impl Storage {
    /// GPU bytes per stored value.
    pub fn bytes_per_value(self) -> f64 {
        match self {
            Storage::F32 => 4.0,
            Storage::F16 | Storage::Bf16 => 2.0,
        }
    }

    /// The words a buffer of `values` values takes.
    pub fn words(self, values: usize) -> usize {
        match self {
            Storage::F32 => values,
            Storage::F16 | Storage::Bf16 => values.div_ceil(2),
        }
    }
}

/// The host half of the packed path: `values` rounded to `storage` (round to nearest even) as the
/// buffer's `u32` words (f32: their bits). Values already of that precision pack exactly.
pub fn pack(values: &[f32], storage: Storage) -> Vec<u32> {
    let half = |v: f32| -> u32 {
        match storage {
            Storage::F16 => half::f16::from_f32(v).to_bits() as u32,
            Storage::Bf16 => half::bf16::from_f32(v).to_bits() as u32,
            Storage::F32 => unreachable!("f32 is not packed"),
        }
    };
    match storage {
        Storage::F32 => values.iter().map(|v| v.to_bits()).collect(),
        Storage::F16 | Storage::Bf16 => values.chunks(2).map(|p| half(p[0]) | p.get(1).map_or(0, |&v| half(v)) << 16).collect(),
    }
}

/// What the shader reads back from packed words: value `i` widened to f32.
pub fn unpack(words: &[u32], storage: Storage, count: usize) -> Vec<f32> {
    (0..count)
        .map(|i| match storage {
            Storage::F32 => f32::from_bits(words[i]),
            Storage::F16 | Storage::Bf16 => {
                let bits = (words[i / 2] >> (16 * (i % 2))) as u16;
                match storage {
                    Storage::F16 => half::f16::from_bits(bits).to_f32(),
                    _ => half::bf16::from_bits(bits).to_f32(),
                }
            }
        })
        .collect()
}
