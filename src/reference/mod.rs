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
