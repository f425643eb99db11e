// Tiled matrix product with a per-architecture epilogue: the SAE encoder (x·W_enc + bias, then the
// activation, fused), the dense decoder (acts·W_dec accumulated into the output), and the
// products of SAE training's backward pass (with A or B read transposed).
//
//   C[m, c_col + j]  =  epilogue( Σ_k A[m, k] · B[k, j] )      m < M, j < N, k < K
//   A[m, k] = a[m * lda + a_col + k]   (TRANS_A = 0)   or   a[k * lda + a_col + m]   (TRANS_A = 1)
//   B[k, j] = b[k * ldb + j]           (TRANS_B = 0)   or   b[j * ldb + k]           (TRANS_B = 1)
//
// Each 16×16 workgroup computes a 64×64 tile of C, each thread a 4×4 block of it, strided by 16 so
// that shared-memory reads are conflict-free and global writes coalesce. A and B tiles of depth 32
// are staged in workgroup memory. Every load and store is bounds-checked: M, N, K are arbitrary.

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

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
// B's storage. gpu/kernels/matmul.rs also compiles this file with these two lines swapped for
// packed half precision (two f16 or bf16 per u32, `B_HALF`), for a model's weights.
@group(0) @binding(2) var<storage, read> b: array<f32>;
fn b_at(i: u32) -> f32 { return b[i]; }
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
// Per output column j (chunk-local): [bias | scale_or_threshold | aux], each N long.
@group(0) @binding(4) var<storage, read> cols: array<f32>;

// What to do with each accumulated value (see gpu/matmul.rs `Epilogue`).
const EPI_TOPK_PRE: u32 = 0u;   // (acc + bias) * scale        -> pre-activation for TopK selection
const EPI_RELU: u32 = 1u;       // relu(acc + bias)            -> StandardSAE
const EPI_JUMPRELU: u32 = 2u;   // relu(h) * (h > threshold)   -> JumpReLUSAE
const EPI_GATED: u32 = 3u;      // (acc + b_gate > 0) * relu(acc * exp(r_mag) + b_mag) -> GatedSAE
const EPI_ACCUMULATE: u32 = 4u; // C += acc                    -> dense decode, chunk by chunk
const EPI_STORE: u32 = 5u;      // C = acc                     -> training products
override EPILOGUE: u32 = 1u;
override TRANS_A: u32 = 0u;
override TRANS_B: u32 = 0u;

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 32u;
const LOADS: u32 = 8u; // (BM * BK) / 256 = (BK * BN) / 256 elements per thread per tile

// 2 × 32 × 64 floats = 16 KiB, the WebGPU default limit for workgroup storage.
var<workgroup> a_tile: array<f32, 2048>; // [BK][BM]
var<workgroup> b_tile: array<f32, 2048>; // [BK][BN]

fn epilogue(acc: f32, j: u32) -> f32 {
    let bias = cols[j];
    let second = cols[p.n + j];
    switch EPILOGUE {
        case 0u: { return (acc + bias) * second; }
        case 2u: {
            let h = acc + bias;
            return select(0.0, max(h, 0.0), h > second);
        }
        case 3u: {
            let magnitude = max(acc * second + cols[2u * p.n + j], 0.0);
            return select(0.0, magnitude, acc + bias > 0.0);
        }
        default: { return max(acc + bias, 0.0); }
    }
}

// Writes one accumulated value of C through the epilogue.
fn store_one(grow: u32, gcol: u32, value: f32) {
    let out = grow * p.ldc + p.c_col + gcol;
    if (EPILOGUE == EPI_ACCUMULATE) {
        c[out] = c[out] + value;
    } else if (EPILOGUE == EPI_STORE) {
        c[out] = value;
    } else {
        c[out] = epilogue(value, gcol);
    }
}

// Writes one output row's 4 values (columns lid.x + 16·j) through the epilogue.
fn store_row(grow: u32, col_base: u32, values: vec4<f32>) {
    if (grow >= p.m) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let gcol = col_base + 16u * j;
        if (gcol < p.n) {
            store_one(grow, gcol, values[j]);
        }
    }
}

fn load_a(row: u32, k: u32) -> f32 {
    if (TRANS_A == 1u) {
        return a[k * p.lda + p.a_col + row];
    }
    return a[row * p.lda + p.a_col + k];
}

fn load_b(k: u32, col: u32) -> f32 {
    if (TRANS_B == 1u) {
        return b_at(col * p.ldb + k);
    }
    return b_at(k * p.ldb + col);
}

// The same product for at most SKINNY_ROWS rows (a language model's one-token steps): one thread
// per output column computes every row, so B is read once and no 64-row tile works for nothing.
// 1-D grid of 256-thread workgroups folded into x and y.
const SKINNY_ROWS: u32 = 4u;

@compute @workgroup_size(256)
fn skinny(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let j = (wg.x + wg.y * 65535u) * 256u + li;
    if (j >= p.n) {
        return;
    }
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < p.k; k++) {
        var av = vec4<f32>(0.0);
        for (var r = 0u; r < min(p.m, SKINNY_ROWS); r++) {
            av[r] = load_a(r, k);
        }
        acc = fma(av, vec4<f32>(load_b(k, j)), acc);
    }
    for (var r = 0u; r < min(p.m, SKINNY_ROWS); r++) {
        store_one(r, j, acc[r]);
    }
}

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row0 = wg.y * BM;
    let col0 = wg.x * BN;
    // Four rows (lid.y + 16·i) × four columns (lid.x + 16·j) per thread, one vec4 per row:
    // named registers, not an indexed array, so nothing spills to private memory.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    for (var t = 0u; t < p.k; t += BK) {
        for (var s = 0u; s < LOADS; s++) {
            let e = li + s * 256u;
            // A tile: 64 rows × 32 depth; consecutive threads walk whichever index is contiguous
            // in memory (depth, or rows when A is read transposed).
            var ar = e / BK;
            var ak = e % BK;
            if (TRANS_A == 1u) {
                ar = e % BM;
                ak = e / BM;
            }
            let grow = row0 + ar;
            let gk = t + ak;
            var av = 0.0;
            if (grow < p.m && gk < p.k) {
                if (TRANS_A == 1u) {
                    av = a[gk * p.lda + p.a_col + grow];
                } else {
                    av = a[grow * p.lda + p.a_col + gk];
                }
            }
            a_tile[ak * BM + ar] = av;
            // B tile: 32 depth × 64 columns; consecutive threads along columns (or depth).
            var bk = e / BN;
            var bc = e % BN;
            if (TRANS_B == 1u) {
                bk = e % BK;
                bc = e / BK;
            }
            let gbk = t + bk;
            let gcol = col0 + bc;
            var bv = 0.0;
            if (gbk < p.k && gcol < p.n) {
                if (TRANS_B == 1u) {
                    bv = b_at(gcol * p.ldb + gbk);
                } else {
                    bv = b_at(gbk * p.ldb + gcol);
                }
            }
            b_tile[bk * BN + bc] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let ai = kk * BM + lid.y;
            let bi = kk * BN + lid.x;
            let bv = vec4<f32>(b_tile[bi], b_tile[bi + 16u], b_tile[bi + 32u], b_tile[bi + 48u]);
            acc0 = fma(vec4<f32>(a_tile[ai]), bv, acc0);
            acc1 = fma(vec4<f32>(a_tile[ai + 16u]), bv, acc1);
            acc2 = fma(vec4<f32>(a_tile[ai + 32u]), bv, acc2);
            acc3 = fma(vec4<f32>(a_tile[ai + 48u]), bv, acc3);
        }
        workgroupBarrier();
    }

    let col_base = col0 + lid.x;
    store_row(row0 + lid.y, col_base, acc0);
    store_row(row0 + lid.y + 16u, col_base, acc1);
    store_row(row0 + lid.y + 32u, col_base, acc2);
    store_row(row0 + lid.y + 48u, col_base, acc3);
}
