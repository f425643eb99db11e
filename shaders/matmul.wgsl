// Tiled matrix product with a per-architecture epilogue: the SAE encoder (x·W_enc + bias, then the
// activation, fused), the dense decoder (acts·W_dec accumulated into the output), and the
// products of SAE training's backward pass (with A or B read transposed).
//
//   C[m, c_col + j]  =  epilogue( Σ_k A[m, k] · B[k, j] )      m < M, j < N, k < K
//   A[m, k] = a[m * lda + a_col + k]   (TRANS_A = 0)   or   a[k * lda + a_col + m]   (TRANS_A = 1)
//   B[k, j] = b[k * ldb + j]           (TRANS_B = 0)   or   b[j * ldb + k]           (TRANS_B = 1)
//
// Two ways to compute the same sums, chosen per adapter by timing both (gpu/kernels/matmul.rs
// `Tiling`); each adds the products k = 0, 1, … in order with one fma each, so both give the same
// bits:
// - `main` (shared tiles): each 16×16 workgroup computes a 64×64 tile of C, each thread a 4×4
//   block of it, strided by 16 so that shared-memory reads are conflict-free and global writes
//   coalesce. A and B tiles of depth 32 are staged in workgroup memory. What GPUs want.
// - `registers`: each thread of a 64-thread workgroup keeps a 16-row × 8-column block of C in
//   registers and reads A and B straight from memory: no workgroup memory, no barriers. Software
//   adapters (Mesa's lavapipe, Chromium's SwiftShader) run a workgroup's threads as loops on a CPU
//   core, where each barrier and each shared-memory access is costly and loads are what limits
//   throughput: 128 fmas per 24 loads is 4× faster there (BENCHMARKS.md).
// Every load and store is bounds-checked: M, N, K are arbitrary.

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

// Writes one output row's 4 values (columns col_base + stride·j) through the epilogue.
fn store_row(grow: u32, col_base: u32, stride: u32, values: vec4<f32>) {
    if (grow >= p.m) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let gcol = col_base + stride * j;
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
    store_row(row0 + lid.y, col_base, 16u, acc0);
    store_row(row0 + lid.y + 16u, col_base, 16u, acc1);
    store_row(row0 + lid.y + 32u, col_base, 16u, acc2);
    store_row(row0 + lid.y + 48u, col_base, 16u, acc3);
}

// The register-tiled product (see the top of the file). Thread li of workgroup (x, y) computes rows
// 16y … 16y + 15 and columns 512x + li + 64·j, j < 8 (consecutive threads, consecutive columns, so
// B's loads and C's stores coalesce where that matters). Out-of-range rows and columns read the
// last valid one (no branch in the loop) and are not stored. Unrolled by hand: naga does not
// unroll loops, and an indexed accumulator array would live in memory, not registers.
const REG_ROWS: u32 = 16u;
const REG_COLS: u32 = 512u;

@compute @workgroup_size(64)
fn registers(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row0 = wg.y * REG_ROWS;
    let col0 = wg.x * REG_COLS + li;
    let last_row = p.m - 1u;
    let last_col = p.n - 1u;
    let r0 = min(row0 + 0u, last_row);
    let r1 = min(row0 + 1u, last_row);
    let r2 = min(row0 + 2u, last_row);
    let r3 = min(row0 + 3u, last_row);
    let r4 = min(row0 + 4u, last_row);
    let r5 = min(row0 + 5u, last_row);
    let r6 = min(row0 + 6u, last_row);
    let r7 = min(row0 + 7u, last_row);
    let r8 = min(row0 + 8u, last_row);
    let r9 = min(row0 + 9u, last_row);
    let r10 = min(row0 + 10u, last_row);
    let r11 = min(row0 + 11u, last_row);
    let r12 = min(row0 + 12u, last_row);
    let r13 = min(row0 + 13u, last_row);
    let r14 = min(row0 + 14u, last_row);
    let r15 = min(row0 + 15u, last_row);
    let c0 = min(col0 + 0u, last_col);
    let c1 = min(col0 + 64u, last_col);
    let c2 = min(col0 + 128u, last_col);
    let c3 = min(col0 + 192u, last_col);
    let c4 = min(col0 + 256u, last_col);
    let c5 = min(col0 + 320u, last_col);
    let c6 = min(col0 + 384u, last_col);
    let c7 = min(col0 + 448u, last_col);
    var acc0_0 = vec4<f32>(0.0);
    var acc0_1 = vec4<f32>(0.0);
    var acc1_0 = vec4<f32>(0.0);
    var acc1_1 = vec4<f32>(0.0);
    var acc2_0 = vec4<f32>(0.0);
    var acc2_1 = vec4<f32>(0.0);
    var acc3_0 = vec4<f32>(0.0);
    var acc3_1 = vec4<f32>(0.0);
    var acc4_0 = vec4<f32>(0.0);
    var acc4_1 = vec4<f32>(0.0);
    var acc5_0 = vec4<f32>(0.0);
    var acc5_1 = vec4<f32>(0.0);
    var acc6_0 = vec4<f32>(0.0);
    var acc6_1 = vec4<f32>(0.0);
    var acc7_0 = vec4<f32>(0.0);
    var acc7_1 = vec4<f32>(0.0);
    var acc8_0 = vec4<f32>(0.0);
    var acc8_1 = vec4<f32>(0.0);
    var acc9_0 = vec4<f32>(0.0);
    var acc9_1 = vec4<f32>(0.0);
    var acc10_0 = vec4<f32>(0.0);
    var acc10_1 = vec4<f32>(0.0);
    var acc11_0 = vec4<f32>(0.0);
    var acc11_1 = vec4<f32>(0.0);
    var acc12_0 = vec4<f32>(0.0);
    var acc12_1 = vec4<f32>(0.0);
    var acc13_0 = vec4<f32>(0.0);
    var acc13_1 = vec4<f32>(0.0);
    var acc14_0 = vec4<f32>(0.0);
    var acc14_1 = vec4<f32>(0.0);
    var acc15_0 = vec4<f32>(0.0);
    var acc15_1 = vec4<f32>(0.0);
    for (var k = 0u; k < p.k; k++) {
        let b0 = vec4<f32>(load_b(k, c0), load_b(k, c1), load_b(k, c2), load_b(k, c3));
        let b1 = vec4<f32>(load_b(k, c4), load_b(k, c5), load_b(k, c6), load_b(k, c7));
        let a0 = vec4<f32>(load_a(r0, k));
        acc0_0 = fma(a0, b0, acc0_0);
        acc0_1 = fma(a0, b1, acc0_1);
        let a1 = vec4<f32>(load_a(r1, k));
        acc1_0 = fma(a1, b0, acc1_0);
        acc1_1 = fma(a1, b1, acc1_1);
        let a2 = vec4<f32>(load_a(r2, k));
        acc2_0 = fma(a2, b0, acc2_0);
        acc2_1 = fma(a2, b1, acc2_1);
        let a3 = vec4<f32>(load_a(r3, k));
        acc3_0 = fma(a3, b0, acc3_0);
        acc3_1 = fma(a3, b1, acc3_1);
        let a4 = vec4<f32>(load_a(r4, k));
        acc4_0 = fma(a4, b0, acc4_0);
        acc4_1 = fma(a4, b1, acc4_1);
        let a5 = vec4<f32>(load_a(r5, k));
        acc5_0 = fma(a5, b0, acc5_0);
        acc5_1 = fma(a5, b1, acc5_1);
        let a6 = vec4<f32>(load_a(r6, k));
        acc6_0 = fma(a6, b0, acc6_0);
        acc6_1 = fma(a6, b1, acc6_1);
        let a7 = vec4<f32>(load_a(r7, k));
        acc7_0 = fma(a7, b0, acc7_0);
        acc7_1 = fma(a7, b1, acc7_1);
        let a8 = vec4<f32>(load_a(r8, k));
        acc8_0 = fma(a8, b0, acc8_0);
        acc8_1 = fma(a8, b1, acc8_1);
        let a9 = vec4<f32>(load_a(r9, k));
        acc9_0 = fma(a9, b0, acc9_0);
        acc9_1 = fma(a9, b1, acc9_1);
        let a10 = vec4<f32>(load_a(r10, k));
        acc10_0 = fma(a10, b0, acc10_0);
        acc10_1 = fma(a10, b1, acc10_1);
        let a11 = vec4<f32>(load_a(r11, k));
        acc11_0 = fma(a11, b0, acc11_0);
        acc11_1 = fma(a11, b1, acc11_1);
        let a12 = vec4<f32>(load_a(r12, k));
        acc12_0 = fma(a12, b0, acc12_0);
        acc12_1 = fma(a12, b1, acc12_1);
        let a13 = vec4<f32>(load_a(r13, k));
        acc13_0 = fma(a13, b0, acc13_0);
        acc13_1 = fma(a13, b1, acc13_1);
        let a14 = vec4<f32>(load_a(r14, k));
        acc14_0 = fma(a14, b0, acc14_0);
        acc14_1 = fma(a14, b1, acc14_1);
        let a15 = vec4<f32>(load_a(r15, k));
        acc15_0 = fma(a15, b0, acc15_0);
        acc15_1 = fma(a15, b1, acc15_1);
    }
    store_row(row0 + 0u, col0, 64u, acc0_0);
    store_row(row0 + 0u, col0 + 256u, 64u, acc0_1);
    store_row(row0 + 1u, col0, 64u, acc1_0);
    store_row(row0 + 1u, col0 + 256u, 64u, acc1_1);
    store_row(row0 + 2u, col0, 64u, acc2_0);
    store_row(row0 + 2u, col0 + 256u, 64u, acc2_1);
    store_row(row0 + 3u, col0, 64u, acc3_0);
    store_row(row0 + 3u, col0 + 256u, 64u, acc3_1);
    store_row(row0 + 4u, col0, 64u, acc4_0);
    store_row(row0 + 4u, col0 + 256u, 64u, acc4_1);
    store_row(row0 + 5u, col0, 64u, acc5_0);
    store_row(row0 + 5u, col0 + 256u, 64u, acc5_1);
    store_row(row0 + 6u, col0, 64u, acc6_0);
    store_row(row0 + 6u, col0 + 256u, 64u, acc6_1);
    store_row(row0 + 7u, col0, 64u, acc7_0);
    store_row(row0 + 7u, col0 + 256u, 64u, acc7_1);
    store_row(row0 + 8u, col0, 64u, acc8_0);
    store_row(row0 + 8u, col0 + 256u, 64u, acc8_1);
    store_row(row0 + 9u, col0, 64u, acc9_0);
    store_row(row0 + 9u, col0 + 256u, 64u, acc9_1);
    store_row(row0 + 10u, col0, 64u, acc10_0);
    store_row(row0 + 10u, col0 + 256u, 64u, acc10_1);
    store_row(row0 + 11u, col0, 64u, acc11_0);
    store_row(row0 + 11u, col0 + 256u, 64u, acc11_1);
    store_row(row0 + 12u, col0, 64u, acc12_0);
    store_row(row0 + 12u, col0 + 256u, 64u, acc12_1);
    store_row(row0 + 13u, col0, 64u, acc13_0);
    store_row(row0 + 13u, col0 + 256u, 64u, acc13_1);
    store_row(row0 + 14u, col0, 64u, acc14_0);
    store_row(row0 + 14u, col0 + 256u, 64u, acc14_1);
    store_row(row0 + 15u, col0, 64u, acc15_0);
    store_row(row0 + 15u, col0 + 256u, 64u, acc15_1);
}
