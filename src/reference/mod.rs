//! The CPU twins of the GPU kernels: plain Rust, one function per WGSL entry point, the spec each
//! kernel is tested against (`tests/kernels.rs`, on random inputs of awkward sizes). Nothing here
//! knows the GPU, an SAE file or a model file: slices in, slices out.
//!
//! Where SAELens's semantics define a kernel, its twin is the SAE reference itself and lives with
//! it: `sae::cpu` (`top_k_indices` for topk.wgsl, `row_norm`/`process_input`/`decode_row` for
//! rows.wgsl), `sae::metrics` (`row_stats`, `fire_counts` for metrics.wgsl) and
//! `train::sae_train::batch_topk_threshold` for batch_topk.wgsl. The rest are here:
//! - `matmul` — matmul.wgsl with each epilogue;
//! - `sparse_decode` — sparse_decode.wgsl;
//! - `model` — model.wgsl's entries, which `model::cpu` composes into the reference forward;
//! - `train` — train.wgsl's entries. (`train::sae_train` is the whole-step reference, written
//!   from SAELens's losses; the GPU step composes these entries, and both are tested.)

pub mod matmul;
pub mod model;
pub mod train;

/// sparse_decode.wgsl: for each row `r` and list entry `s` whose feature `f = index[r, s]` lies
/// in `[f0, f0 + width)`, `out[r] += value[r, s] · scale[f − f0] · w_dec_chunk[f − f0]`.
/// `index`/`value` are `[rows, k]`, `w_dec_chunk` `[width, d_in]`, `out` `[rows, d_in]`.
#[allow(clippy::too_many_arguments)]
pub fn sparse_decode(
    d_in: usize,
    k: usize,
    f0: usize,
    width: usize,
    index: &[u32],
    value: &[f32],
    w_dec_chunk: &[f32],
    scale: &[f32],
    out: &mut [f32],
) {
    for ((row_index, row_value), out_row) in index.chunks_exact(k).zip(value.chunks_exact(k)).zip(out.chunks_exact_mut(d_in)) {
        for (&f, &v) in row_index.iter().zip(row_value) {
            let f = f as usize;
            if f < f0 || f >= f0 + width {
                continue;
            }
            let j = f - f0;
            let a = v * scale[j];
            for (o, w) in out_row.iter_mut().zip(&w_dec_chunk[j * d_in..(j + 1) * d_in]) {
                *o += a * w;
            }
        }
    }
}

/// ceiling.wgsl `fma_rounds`: per thread `t < threads`, 8 vec4 accumulators starting at
/// `(t mod 1024)·10⁻³ + 0.01·(4c + lane)`, `rounds` rounds of `acc·a + b` each, and the four lanes
/// of their sum (summed in the kernel's pairs) — `[threads, 4]`.
pub fn fma_rounds(threads: usize, rounds: u32, a: f32, b: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(threads * 4);
    for t in 0..threads {
        let base = (t % 1024) as f32 * 1e-3;
        let mut acc = [[0.0f32; 4]; 8];
        for (c, chain) in acc.iter_mut().enumerate() {
            for (lane, v) in chain.iter_mut().enumerate() {
                *v = base + 0.01 * (4 * c + lane) as f32;
            }
        }
        for _ in 0..rounds {
            acc.iter_mut().flatten().for_each(|v| *v = v.mul_add(a, b));
        }
        out.extend((0..4).map(|lane| {
            let v = |c: usize| acc[c][lane];
            ((v(0) + v(1)) + (v(2) + v(3))) + ((v(4) + v(5)) + (v(6) + v(7)))
        }));
    }
    out
}
