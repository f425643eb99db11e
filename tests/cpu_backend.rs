//! The CPU backend's GEMM (`saelab::gemm`, matrixmultiply split over the cores) against its twin,
//! `reference::matmul`, on fresh random inputs (a new seed each run, printed on failure) at sizes
//! that are not multiples of its 8×8 (AVX) or 4×4 micro-tiles nor of the thread split, transposed
//! either way, stored and accumulated; and the batched CPU SAE forward against the row-by-row
//! definition it replaced. Tolerance: 1e-5 relative to (1 + Σ|a·b|) — one f32 sum in another order.

use saelab::gemm::{self, Matrix};
use saelab::random::Rng;
use saelab::reference::matmul::{self as twin, Epilogue, Layout};

fn fresh_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Checks `gemm` against the twin for one shape and pair of transposes.
fn check(rng: &mut Rng, seed: u64, (m, k, n): (usize, usize, usize), trans_a: bool, trans_b: bool, accumulate: bool) {
    let a: Vec<f32> = (0..m * k).map(|_| rng.normal()).collect();
    let b: Vec<f32> = (0..k * n).map(|_| rng.normal()).collect();
    let start: Vec<f32> = (0..m * n).map(|_| rng.normal()).collect();
    // The stored shapes: A is [m, k] or, transposed, [k, m]; B [k, n] or [n, k].
    let a_mat = if trans_a { Matrix::new(&a, k, m).t() } else { Matrix::new(&a, m, k) };
    let b_mat = if trans_b { Matrix::new(&b, n, k).t() } else { Matrix::new(&b, k, n) };
    let mut got = start.clone();
    gemm::matmul_into(a_mat, b_mat, &mut got, accumulate);
    let layout = Layout {
        m,
        n,
        k,
        lda: if trans_a { m } else { k },
        a_col: 0,
        ldb: if trans_b { k } else { n },
        ldc: n,
        c_col: 0,
        trans_a,
        trans_b,
    };
    let mut want = start.clone();
    let epilogue = if accumulate { Epilogue::Accumulate } else { Epilogue::Store };
    twin::matmul(epilogue, layout, &a, &b, &[], &mut want);
    // Σ|a·b| per element bounds the rounding of a reordered sum.
    let mut abs = vec![0.0f32; m * n];
    let abs_a: Vec<f32> = a.iter().map(|v| v.abs()).collect();
    let abs_b: Vec<f32> = b.iter().map(|v| v.abs()).collect();
    twin::matmul(Epilogue::Store, layout, &abs_a, &abs_b, &[], &mut abs);
    for (i, ((g, w), s)) in got.iter().zip(&want).zip(&abs).enumerate() {
        let bound = 1e-5 * (1.0 + s + if accumulate { start[i].abs() } else { 0.0 });
        assert!(
            (g - w).abs() <= bound,
            "seed {seed}: {m}×{k}×{n} (trans_a {trans_a}, trans_b {trans_b}, accumulate {accumulate}) C[{}, {}] = {g}, twin {w}",
            i / n,
            i % n
        );
    }
}

#[test]
fn gemm_matches_its_twin_in_every_layout_at_awkward_sizes() {
    let seed = fresh_seed();
    let mut rng = Rng::new(seed);
    // Small (one thread), a row split (m ≥ n, above the threading cut), a column split (m = 1:
    // one token's projection), and degenerate sizes.
    let shapes = [(37, 93, 101), (5, 3, 7), (1, 1, 1), (301, 257, 131), (1, 1003, 4099), (19, 0, 11), (0, 5, 3)];
    for shape in shapes {
        for (trans_a, trans_b) in [(false, false), (true, false), (false, true), (true, true)] {
            for accumulate in [false, true] {
                check(&mut rng, seed, shape, trans_a, trans_b, accumulate);
            }
        }
    }
}

#[test]
fn a_linear_layer_is_x_times_w_transposed_plus_bias() {
    let seed = fresh_seed();
    let mut rng = Rng::new(seed);
    let (n, d_in, d_out) = (13, 71, 29);
    let x: Vec<f32> = (0..n * d_in).map(|_| rng.normal()).collect();
    let w: Vec<f32> = (0..d_out * d_in).map(|_| rng.normal()).collect();
    let bias: Vec<f32> = (0..d_out).map(|_| rng.normal()).collect();
    for with_bias in [false, true] {
        let got = gemm::linear(&x, d_in, &w, d_out, with_bias.then_some(&bias[..]));
        for r in 0..n {
            for o in 0..d_out {
                let dot: f32 = (0..d_in).map(|t| x[r * d_in + t] * w[o * d_in + t]).sum();
                let want = dot + if with_bias { bias[o] } else { 0.0 };
                assert!(
                    (got[r * d_out + o] - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "seed {seed}: [{r}, {o}] {} vs {want}",
                    got[r * d_out + o]
                );
            }
        }
    }
}

#[test]
#[should_panic(expected = "inner sizes differ")]
fn mismatched_inner_sizes_are_refused() {
    let (a, b) = (vec![0.0; 6], vec![0.0; 6]);
    gemm::matmul(Matrix::new(&a, 2, 3), Matrix::new(&b, 2, 3));
}

#[test]
#[should_panic(expected = "needs 12 values")]
fn a_matrix_shorter_than_its_shape_is_refused() {
    Matrix::new(&[0.0; 11], 3, 4);
}

/// SAELens's forward written row by row, as the CPU backend ran it before products were batched:
/// `relu(x·W_enc + b_enc)` or TopK, then `acts·W_dec + b_dec`. Also whether each row's TopK choice
/// is clear: its k-th and (k+1)-th pre-activations further apart than rounding could move them.
fn forward_row_by_row(sae: &saelab::sae::Sae, x: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<bool>) {
    let (d_in, d_sae) = (sae.d_in(), sae.d_sae());
    let w = sae.weights();
    let b_enc = match &w.encoder {
        saelab::sae::EncoderTensors::Bias { b_enc } => b_enc.clone(),
        _ => unreachable!("standard and topk only"),
    };
    let (mut acts, mut recon, mut clear) = (Vec::new(), Vec::new(), Vec::new());
    for row in x.chunks_exact(d_in) {
        let sae_in: Vec<f32> = row.iter().zip(sae.b_dec()).map(|(v, b)| v - b).collect();
        let pre: Vec<f32> = (0..d_sae).map(|j| (0..d_in).map(|i| sae_in[i] * w.w_enc[i * d_sae + j]).sum::<f32>() + b_enc[j]).collect();
        let a: Vec<f32> = match sae.cfg.architecture.topk() {
            None => pre.iter().map(|p| p.max(0.0)).collect(),
            Some(k) => {
                let mut sorted = pre.clone();
                sorted.sort_by(|a, b| b.total_cmp(a));
                clear.push((sorted[k - 1] - sorted[k]).abs() > 1e-4 * (1.0 + sorted[k].abs()));
                let mut a = vec![0.0; d_sae];
                for j in saelab::sae::cpu::top_k_indices(&pre, k) {
                    a[j] = pre[j].max(0.0);
                }
                a
            }
        };
        recon.extend((0..d_in).map(|i| sae.b_dec()[i] + (0..d_sae).map(|j| a[j] * w.w_dec[j * d_in + i]).sum::<f32>()));
        acts.extend(a);
    }
    clear.resize(x.len() / d_in, true);
    (acts, recon, clear)
}

#[test]
fn the_batched_cpu_forward_equals_the_row_by_row_one() {
    let seed = fresh_seed();
    let mut rng = Rng::new(seed);
    let (n, d_in, d_sae, k) = (23, 45, 301, 7);
    let x: Vec<f32> = (0..n * d_in).map(|_| rng.normal()).collect();
    for arch in ["standard", "topk"] {
        let sae = saelab::sae::random::random_sae(arch, d_in, d_sae, k, seed);
        let (acts, recon) = saelab::sae::cpu::forward(&sae, &x);
        let (want_acts, want_recon, clear) = forward_row_by_row(&sae, &x);
        assert!(clear.iter().filter(|&&c| c).count() * 4 >= n * 3, "seed {seed}: most rows' TopK choices must be clear");
        let close = |a: f32, b: f32| (a - b).abs() <= 1e-4 * (1.0 + b.abs());
        for r in (0..n).filter(|&r| clear[r]) {
            for j in 0..d_sae {
                let (a, w) = (acts[r * d_sae + j], want_acts[r * d_sae + j]);
                assert!(close(a, w), "seed {seed}: {arch} acts[{r}, {j}] = {a}, row by row {w}");
            }
            for i in 0..d_in {
                let (a, w) = (recon[r * d_in + i], want_recon[r * d_in + i]);
                assert!(close(a, w), "seed {seed}: {arch} recon[{r}, {i}] = {a}, row by row {w}");
            }
        }
    }
}
