//! Every WGSL kernel against its CPU twin, on fresh random inputs with sizes that are not
//! multiples of any workgroup, on whatever adapter wgpu finds (Mesa's lavapipe in CI).
//! No adapter is a failure, not a skip.

mod common;

use common::{gpu, max_rel_err, random_input};
use saelab::gpu::kernels::batch_topk::{batch_topk, BatchTopK};
use saelab::gpu::kernels::matmul::{matmul, Epilogue, Matmul, Storage, Tiling, TilingPolicy};
use saelab::gpu::kernels::topk::{topk, topk_dense, TopK, TopKDense};
use saelab::gpu::{GpuSae, RunRequest};
use saelab::random::Rng;
use saelab::reference;
use saelab::sae::metrics::{self, BatchMetrics};
use saelab::sae::random::{random_sae, random_sae_with};
use saelab::sae::{cpu, Architecture, Sae};

/// f32 products over a few hundred terms, summed in another order: 1e-4 relative to (1 + |x|).
const TOL: f32 = 1e-4;

#[test]
fn matmul_epilogues_and_transposes_match_reference_with_strides_and_offsets() {
    // 37 rows on each tiling (parts of one and three row tiles, parts of one and two column
    // tiles: n = 1001); 1, 3 and 4 rows on the skinny entry (kernels::SKINNY_ROWS).
    let gpu = gpu();
    for tiling in [Tiling::Shared, Tiling::Registers] {
        gpu.set_matmul_tiling(TilingPolicy::Always(tiling));
        matmul_case(&gpu, 37);
    }
    for m in [1, 3, 4] {
        matmul_case(&gpu, m);
    }
}

/// Both tilings add the same products in the same order (one fma each, k ascending), so which
/// one an adapter picks never changes a result: the same bits, for every epilogue and storage.
#[test]
fn both_matmul_tilings_give_the_same_bits() {
    let gpu = gpu();
    let mut rng = Rng::new(40);
    let (m, k, n) = (83, 301, 1100);
    for (epilogue, trans_a, trans_b, storage) in [
        (Epilogue::Store, false, false, Storage::F32),
        (Epilogue::Relu, true, true, Storage::Bf16),
        (Epilogue::Accumulate, false, true, Storage::F16),
    ] {
        let a = rng.normals(m * k, 1.0);
        let words = reference::matmul::pack(&rng.normals(k * n, 0.3), storage);
        let cols = rng.normals(3 * n, 0.5);
        let c_init = rng.normals(m * n, 1.0);
        let (a_buf, b_buf, cols_buf) =
            (gpu.upload_f32("a", &a), gpu.upload_bytes("b", bytemuck::cast_slice(&words)), gpu.upload_f32("cols", &cols));
        let product = |tiling: Tiling| {
            gpu.set_matmul_tiling(TilingPolicy::Always(tiling));
            let c = gpu.upload_f32("c", &c_init);
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            let (lda, ldb) = (if trans_a { m } else { k }, if trans_b { k } else { n });
            let args = Matmul {
                m,
                n,
                k,
                a: &a_buf,
                lda,
                a_col: 0,
                b: &b_buf,
                ldb,
                c: &c,
                ldc: n,
                c_col: 0,
                cols: &cols_buf,
                trans_a,
                trans_b,
                b_storage: storage,
            };
            matmul(&gpu, &mut enc, epilogue, args).unwrap();
            gpu.queue.submit([enc.finish()]);
            pollster::block_on(gpu.read_f32(&c, m * n)).unwrap()
        };
        let (shared, registers) = (product(Tiling::Shared), product(Tiling::Registers));
        let differing = shared.iter().zip(&registers).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
        assert_eq!(differing, 0, "{epilogue:?} trans_a={trans_a} trans_b={trans_b} {storage:?}: {differing} of {} values differ", m * n);
    }
}

/// The device measured the tilings when it opened (on a software adapter only the register
/// blocks, which it then always uses); each product goes to the one whose whole tiles cost less.
#[test]
fn the_device_measures_both_tilings_and_sends_each_product_to_the_cheaper() {
    let gpu = gpu();
    let measured = match gpu.matmul_tiling() {
        TilingPolicy::Measured { shared_ns, registers_ns } => vec![shared_ns, registers_ns],
        TilingPolicy::Software { registers_ns } => vec![registers_ns],
        other => panic!("the tilings were not measured: {other:?}"),
    };
    assert!(measured.iter().all(|ns| *ns > 0.0 && ns.is_finite()), "{measured:?}");
    if gpu.adapter_name.contains("llvmpipe") {
        assert!(matches!(gpu.matmul_tiling(), TilingPolicy::Software { .. }), "lavapipe is a software adapter: {:?}", gpu.matmul_tiling());
        assert_eq!(gpu.attention_kernel(), saelab::gpu::kernels::model::AttentionKernel::Serial);
    }
    // Equal speeds: a 16-row product pads less in 16-row register tiles, a 64-column one less in
    // 64×64 shared tiles (a register tile spans 512 columns).
    let even = TilingPolicy::Measured { shared_ns: 1.0, registers_ns: 1.0 };
    assert_eq!(even.for_product(16, 64, 512), Tiling::Registers);
    assert_eq!(even.for_product(64, 64, 64), Tiling::Shared);
    // Registers 4× as fast per multiply-add wins unless it wastes more than 4× the work.
    let registers_four_times_faster = TilingPolicy::Measured { shared_ns: 4.0, registers_ns: 1.0 };
    assert_eq!(registers_four_times_faster.for_product(128, 256, 768), Tiling::Registers);
    assert_eq!(registers_four_times_faster.for_product(64, 256, 64), Tiling::Shared, "8× the columns padded");
    // A software adapter compiles and runs register blocks only, narrow products included.
    for (m, k, n) in [(128, 256, 768), (64, 256, 64), (5, 7, 9)] {
        assert_eq!(TilingPolicy::Software { registers_ns: 1.0 }.for_product(m, k, n), Tiling::Registers);
    }
}

/// f16 weights are read as WGSL `f16` where the device has `shader-f16` (lavapipe has it) and
/// unpacked from words where it does not: both paths against the twin.
#[test]
fn f16_weights_are_read_natively_where_the_device_has_shader_f16_and_unpacked_where_not() {
    let native = gpu();
    if native.adapter_name.contains("llvmpipe") {
        assert!(native.native_f16(), "lavapipe offers shader-f16, so the native path must be exercised");
    }
    let unpacked = pollster::block_on(saelab::gpu::Gpu::with_options(false)).unwrap();
    assert!(!unpacked.native_f16());
    for m in [37, 1] {
        matmul_case(&unpacked, m);
    }
}

fn matmul_case(gpu: &saelab::gpu::Gpu, m: usize) {
    let (k, n) = (93, 1001);
    let (a_col, ldc, c_col) = (5, 1010, 7);
    let mut rng = Rng::new(1 + m as u64);
    let cols: Vec<f32> = (0..3 * n).map(|i| if i >= n && i < 2 * n { rng.uniform() + 0.2 } else { rng.normal() }).collect();
    let c_init = rng.normals(m * ldc, 1.0);
    // B stored in f32, or packed two halves a word (a model's f16/bf16 weights, read transposed as
    // a linear layer reads them, and not).
    let cases = [
        (Epilogue::TopKPre, false, false, Storage::F32),
        (Epilogue::Relu, false, false, Storage::F32),
        (Epilogue::JumpRelu, false, false, Storage::F32),
        (Epilogue::Gated, false, false, Storage::F32),
        (Epilogue::Accumulate, false, false, Storage::F32),
        (Epilogue::Store, false, false, Storage::F32),
        (Epilogue::Store, true, false, Storage::F32),
        (Epilogue::Store, false, true, Storage::F32),
        (Epilogue::Accumulate, true, true, Storage::F32),
        (Epilogue::TopKPre, false, true, Storage::Bf16),
        (Epilogue::TopKPre, false, true, Storage::F16),
        (Epilogue::Store, false, false, Storage::Bf16),
        (Epilogue::Accumulate, true, true, Storage::F16),
    ];
    for (epilogue, trans_a, trans_b, b_storage) in cases {
        // Stored A is [m, lda] (or [k, lda] when read transposed); stored B is [k, n] (or [n, ldb]).
        let lda = if trans_a { m + a_col + 3 } else { k + a_col + 2 };
        let a = rng.normals(if trans_a { k * lda } else { m * lda }, 1.0);
        let ldb = if trans_b { k + 4 } else { n };
        let b = rng.normals(if trans_b { n * ldb } else { k * ldb }, 0.2);
        // The values the buffer holds (rounded to the storage's precision), as the twin sees them.
        let words = reference::matmul::pack(&b, b_storage);
        let b = if b_storage == Storage::F32 { b } else { reference::matmul::unpack(&words, b_storage, b.len()) };
        let get_a = |i: usize, t: usize| if trans_a { a[t * lda + a_col + i] } else { a[i * lda + a_col + t] };
        let get_b = |t: usize, j: usize| if trans_b { b[j * ldb + t] } else { b[t * ldb + j] };
        let product = |i: usize, j: usize| (0..k).map(|t| get_a(i, t) * get_b(t, j)).sum::<f32>();
        // The CPU twin, on the same layout.
        let layout = reference::matmul::Layout { m, n, k, lda, a_col, ldb, ldc, c_col, trans_a, trans_b };
        let mut twin = c_init.clone();
        reference::matmul::matmul(epilogue, layout, &a, &b, &cols, &mut twin);

        let a_buf = gpu.upload_f32("a", &a);
        let b_buf = gpu.upload_bytes("b", bytemuck::cast_slice(&words));
        let c_buf = gpu.upload_f32("c", &c_init);
        let cols_buf = gpu.upload_f32("cols", &cols);
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        matmul(
            gpu,
            &mut enc,
            epilogue,
            Matmul { m, n, k, a: &a_buf, lda, a_col, b: &b_buf, ldb, c: &c_buf, ldc, c_col, cols: &cols_buf, trans_a, trans_b, b_storage },
        )
        .unwrap();
        gpu.queue.submit([enc.finish()]);
        let got = pollster::block_on(gpu.read_f32(&c_buf, m * ldc)).unwrap();
        let label = format!("m={m} {epilogue:?} trans_a={trans_a} trans_b={trans_b} B {b_storage:?}");
        let mut worst = 0.0f32;
        for i in 0..m {
            for j in 0..n {
                let acc = product(i, j);
                let (bias, second, aux) = (cols[j], cols[n + j], cols[2 * n + j]);
                let h = acc + bias;
                let o = i * ldc + c_col + j;
                let expected = match epilogue {
                    Epilogue::TopKPre => h * second,
                    Epilogue::Relu => h.max(0.0),
                    Epilogue::JumpRelu => {
                        if h > second {
                            h.max(0.0)
                        } else {
                            0.0
                        }
                    }
                    Epilogue::Gated => {
                        if h > 0.0 {
                            (acc * second + aux).max(0.0)
                        } else {
                            0.0
                        }
                    }
                    Epilogue::Accumulate => c_init[o] + acc,
                    Epilogue::Store => acc,
                };
                // Threshold decisions within rounding of the boundary may go either way: skip those.
                let near = match epilogue {
                    Epilogue::JumpRelu => (h - second).abs() < 1e-4,
                    Epilogue::Gated => h.abs() < 1e-4,
                    _ => false,
                };
                if !near {
                    worst = worst.max((got[o] - expected).abs() / (1.0 + expected.abs()));
                    assert!((twin[o] - expected).abs() <= 1e-6 * (1.0 + expected.abs()), "{label}: the twin disagrees with the formula");
                }
            }
            // Columns outside [c_col, c_col + n) are untouched.
            for j in (0..c_col).chain(c_col + n..ldc) {
                assert_eq!(got[i * ldc + j], c_init[i * ldc + j], "{label} wrote outside its columns");
            }
        }
        assert!(worst < TOL, "{label}: max relative error {worst}");
    }
}

fn run_topk(gpu: &saelab::gpu::Gpu, pre: &[f32], rows: usize, d_sae: usize, k: usize) -> (Vec<u32>, Vec<f32>) {
    let pre_buf = gpu.upload_f32("pre", pre);
    let index = gpu.storage("index", (rows * k * 4) as u64);
    let value = gpu.storage("value", (rows * k * 4) as u64);
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    topk(gpu, &mut enc, TopK { rows, d_sae, ld: d_sae, k, pre: &pre_buf, index: &index, value: &value }).unwrap();
    gpu.queue.submit([enc.finish()]);
    (pollster::block_on(gpu.read_u32(&index, rows * k)).unwrap(), pollster::block_on(gpu.read_f32(&value, rows * k)).unwrap())
}

fn check_topk(pre: &[f32], rows: usize, d_sae: usize, k: usize, index: &[u32], value: &[f32]) {
    for r in 0..rows {
        let row = &pre[r * d_sae..(r + 1) * d_sae];
        let expected = cpu::top_k_indices(row, k);
        let got: Vec<usize> = index[r * k..(r + 1) * k].iter().map(|&i| i as usize).collect();
        assert_eq!(got, expected, "row {r}: indices differ (d_sae={d_sae}, k={k})");
        for (s, &j) in expected.iter().enumerate() {
            assert_eq!(value[r * k + s], row[j].max(0.0), "row {r} slot {s}: value differs");
        }
    }
}

#[test]
fn topk_selects_exactly_what_the_reference_selects() {
    let gpu = gpu();
    let mut rng = Rng::new(2);
    for &(rows, d_sae, k) in &[(37, 1001, 7), (3, 131_072, 256), (5, 24_576, 32), (4, 300, 1), (2, 255, 255)] {
        let pre = rng.normals(rows * d_sae, 1.0);
        let (index, value) = run_topk(&gpu, &pre, rows, d_sae, k);
        check_topk(&pre, rows, d_sae, k, &index, &value);
    }
}

#[test]
fn topk_breaks_ties_by_lowest_index() {
    let gpu = gpu();
    let (rows, d_sae, k) = (3, 777, 20);
    let mut pre = vec![0.0f32; rows * d_sae]; // row 0: all equal
    for j in 0..d_sae {
        pre[d_sae + j] = (j % 5) as f32; // row 1: many duplicates of each value
        pre[2 * d_sae + j] = -((j % 3) as f32) - 1.0; // row 2: all negative -> relu gives 0
    }
    let (index, value) = run_topk(&gpu, &pre, rows, d_sae, k);
    check_topk(&pre, rows, d_sae, k, &index, &value);
    assert_eq!(&index[..k], &(0..k as u32).collect::<Vec<_>>()[..]);
}

/// The dense form against `cpu::top_k_dense` row by row (exact: a selection, no arithmetic), with
/// k past the lists' 256, ties, negative rows, and a stride wider than the row whose extra
/// columns must stay untouched.
#[test]
fn topk_dense_selects_what_the_reference_selects_for_any_k() {
    let gpu = gpu();
    // A fresh seed each run, named in every failure.
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut rng = Rng::new(seed);
    for &(rows, d_sae, ld, k) in
        &[(37, 1001, 1001, 7), (3, 24_576, 24_581, 384), (5, 777, 780, 777), (4, 300, 300, 1), (2, 2049, 2049, 1152)]
    {
        let mut pre = rng.normals(rows * ld, 1.0);
        // Ties: a run of equal values across the k-th place, and a row of only negatives.
        pre[..d_sae / 2].fill(0.5);
        for (j, v) in pre[ld..ld + d_sae].iter_mut().enumerate() {
            *v = -1.0 - (j % 3) as f32;
        }
        let pre_buf = gpu.upload_f32("pre", &pre);
        let dense = gpu.upload_f32("dense", &vec![9.0; rows * ld]);
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        topk_dense(&gpu, &mut enc, TopKDense { rows, d_sae, ld, k, pre: &pre_buf, dense: &dense }).unwrap();
        gpu.queue.submit([enc.finish()]);
        let got = pollster::block_on(gpu.read_f32(&dense, rows * ld)).unwrap();
        for r in 0..rows {
            let want = cpu::top_k_dense(&pre[r * ld..r * ld + d_sae], k);
            assert_eq!(got[r * ld..r * ld + d_sae], want[..], "seed {seed}, row {r} (d_sae={d_sae}, k={k})");
            assert!(got[r * ld + d_sae..(r + 1) * ld].iter().all(|&v| v == 9.0), "row {r}: columns past d_sae were written");
        }
    }
    let small = gpu.storage("small", 40);
    let refused = |rows, k, ld| {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        topk_dense(&gpu, &mut enc, TopKDense { rows, d_sae: 10, ld, k, pre: &small, dense: &small }).unwrap_err().to_string()
    };
    assert!(refused(1, 0, 10).contains("between 1 and d_sae"));
    assert!(refused(1, 11, 10).contains("between 1 and d_sae"));
    assert!(refused(1, 3, 9).contains("cannot hold"));
    assert!(refused(2, 3, 10).contains("pre"), "two rows of 10 do not fit 10 values");
}

#[test]
fn batch_topk_keeps_what_the_reference_keeps() {
    use saelab::train::sae_train::batch_topk_threshold;
    let gpu = gpu();
    let mut rng = Rng::new(21);
    // 37 × 1001 values, about half negative; counts from 1 to more than the positives; plus an
    // input with exact ties and one with nothing positive.
    let n = 37 * 1001;
    let normal = rng.normals(n, 1.0);
    let mut ties: Vec<f32> = (0..n).map(|i| ((i % 7) as f32) * 0.25 - 0.5).collect();
    ties[123] = 9.0;
    let negative: Vec<f32> = (0..n).map(|i| -((i % 5) as f32)).collect();
    for (values, count) in
        [(&normal, 1), (&normal, 5 * 37), (&normal, 4321), (&normal, n), (&ties, 1), (&ties, 2), (&ties, 5000), (&negative, 3)]
    {
        let input = gpu.upload_f32("values", values);
        let kept = gpu.storage("kept", (n * 4) as u64);
        let histogram = gpu.storage("histogram", 256 * 4);
        let state = gpu.storage("state", 16);
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        batch_topk(&gpu, &mut enc, BatchTopK { n, count, values: &input, kept: &kept, histogram: &histogram, state: &state }).unwrap();
        gpu.queue.submit([enc.finish()]);
        let got = pollster::block_on(gpu.read_f32(&kept, n)).unwrap();
        let got_state = pollster::block_on(gpu.read_u32(&state, 4)).unwrap();
        let t = batch_topk_threshold(values, count);
        let want: Vec<f32> = values.iter().map(|&v| if v > 0.0 && v >= t { v } else { 0.0 }).collect();
        assert_eq!(got, want, "count {count}");
        let positives = values.iter().filter(|&&v| v > 0.0).count();
        assert_eq!(got_state[2] as usize, positives, "count {count}: positives");
        if positives > 0 {
            assert_eq!(f32::from_bits(got_state[0]), t, "count {count}: threshold");
            let kept_count = got.iter().filter(|&&v| v > 0.0).count();
            assert!(kept_count >= count.min(positives), "count {count}: kept {kept_count}");
        } else {
            assert_eq!(got_state[0], u32::MAX, "nothing positive: nothing passes");
        }
        let left = pollster::block_on(gpu.read_u32(&histogram, 256)).unwrap();
        assert!(left.iter().all(|&c| c == 0), "the histogram is left zero for the next use");
    }
}

/// Distance of each (row, feature) pre-activation from the architecture's decision boundary, so
/// that decisions rounding could flip are left out of exact comparisons.
fn near_boundary(sae: &Sae, x: &[f32], margin: f32) -> Vec<bool> {
    let (d_in, d_sae) = (sae.d_in(), sae.d_sae());
    let cols = sae.encoder_columns();
    let mut near = Vec::with_capacity(x.len() / d_in * d_sae);
    for row in x.chunks_exact(d_in) {
        let (sae_in, _) = cpu::process_input(sae, row);
        let acc = cpu::project(sae.weights(), &sae_in);
        match sae.cfg.architecture {
            Architecture::JumpRelu | Architecture::BatchTopK { .. } => {
                near.extend((0..d_sae).map(|j| (acc[j] + cols.bias[j] - cols.scale_or_threshold[j]).abs() < margin))
            }
            Architecture::Gated => near.extend((0..d_sae).map(|j| (acc[j] + cols.bias[j]).abs() < margin)),
            Architecture::TopK { k } => {
                let sel: Vec<f32> = (0..d_sae).map(|j| (acc[j] + cols.bias[j]) * cols.scale_or_threshold[j]).collect();
                let order = cpu::top_k_indices(&sel, k + 1);
                let gap = sel[order[k - 1]] - sel[order[k]];
                near.extend(std::iter::repeat_n(gap < margin, d_sae));
            }
            Architecture::Standard => near.extend(std::iter::repeat_n(false, d_sae)),
        }
    }
    near
}

/// The whole GPU path (normalise, encode, TopK, decode, metrics) against the CPU reference.
fn compare_end_to_end(sae: &Sae, x: &[f32], gpu: &saelab::gpu::Gpu, binding_limit: Option<u64>) {
    let (d_in, d_sae) = (sae.d_in(), sae.d_sae());
    let n = x.len() / d_in;
    let label = format!("{} norm={} b_dec_in={}", sae.cfg.architecture.name(), sae.cfg.normalization.name(), sae.cfg.apply_b_dec_to_input);
    let gpu_sae = match binding_limit {
        Some(limit) => GpuSae::upload_with_binding_limit(gpu, sae, limit).unwrap(),
        None => GpuSae::upload(gpu, sae).unwrap(),
    };
    if binding_limit.is_some() {
        assert!(gpu_sae.chunk_count() >= 3, "{label}: expected the weights split into chunks");
    }
    let out = pollster::block_on(gpu.run_sae(&gpu_sae, x, None, RunRequest { dense_acts: true, recon: true })).unwrap();
    let (acts_gpu, recon_gpu) = (out.acts.unwrap(), out.recon.unwrap());
    let (acts_cpu, recon_cpu) = cpu::forward(sae, x);
    // f32 sums of ~100 terms in another order differ by ~1e-6; 3e-5 leaves a wide safety factor.
    let near = near_boundary(sae, x, 3e-5);

    let mut compared_rows = 0;
    for r in 0..n {
        let row_near = near[r * d_sae..(r + 1) * d_sae].iter().any(|&b| b);
        for j in 0..d_sae {
            let o = r * d_sae + j;
            if !near[o] {
                let err = (acts_gpu[o] - acts_cpu[o]).abs() / (1.0 + acts_cpu[o].abs());
                assert!(err < TOL, "{label}: act [{r}, {j}] gpu {} cpu {}", acts_gpu[o], acts_cpu[o]);
            }
        }
        if !row_near {
            let err = max_rel_err(&recon_gpu[r * d_in..(r + 1) * d_in], &recon_cpu[r * d_in..(r + 1) * d_in]);
            assert!(err < TOL, "{label}: reconstruction of row {r} differs by {err}");
            compared_rows += 1;
        }
    }
    assert!(compared_rows * 4 >= n * 3, "{label}: only {compared_rows} of {n} rows were far enough from a boundary to compare");

    // The metric kernels against their CPU twins on the GPU's own outputs (exact inputs).
    let rows: Vec<_> = (0..n)
        .map(|r| {
            metrics::row_stats(&x[r * d_in..(r + 1) * d_in], &recon_gpu[r * d_in..(r + 1) * d_in], &acts_gpu[r * d_sae..(r + 1) * d_sae])
        })
        .collect();
    let expected = BatchMetrics::finish(x, d_in, rows, metrics::fire_counts(&acts_gpu, d_sae));
    assert_eq!(out.metrics.fire_counts, expected.fire_counts, "{label}: fire counts");
    assert_eq!(out.metrics.l0, expected.l0, "{label}: L0");
    for (name, got, want) in
        [("mse", out.metrics.mse, expected.mse), ("fvu", out.metrics.fvu, expected.fvu), ("cosine", out.metrics.cosine, expected.cosine)]
    {
        assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()), "{label}: {name} gpu {got} cpu {want}");
    }
    assert_eq!(out.metrics.dead_fraction, expected.dead_fraction);
}

fn cfg(pairs: &[(&str, serde_json::Value)]) -> serde_json::Map<String, serde_json::Value> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

#[test]
fn every_architecture_and_normalisation_matches_the_reference_at_awkward_sizes() {
    let gpu = gpu();
    let (n, d_in, d_sae, k) = (37, 93, 1001, 7);
    let x = random_input(n, d_in, 3);
    let mut seed = 10;
    for arch in ["standard", "topk", "jumprelu", "gated", "batchtopk"] {
        for norm in ["none", "layer_norm", "constant_norm_rescale", "expected_average_only_in"] {
            for apply_b_dec in [true, false] {
                seed += 1;
                let extra = cfg(&[("normalize_activations", norm.into()), ("apply_b_dec_to_input", apply_b_dec.into())]);
                let sae = random_sae_with(arch, d_in, d_sae, k, seed, extra);
                // Every other case with the weights split into 4 chunks of 256 features.
                let limit = (seed % 2 == 0).then_some((d_in * 4 * 256) as u64);
                compare_end_to_end(&sae, &x, &gpu, limit);
            }
        }
    }
    let rescaled = random_sae_with("topk", d_in, d_sae, k, 99, cfg(&[("rescale_acts_by_decoder_norm", true.into())]));
    // Uneven decoder norms so that the rescaling changes which features win.
    let rescaled = rescaled
        .with_weights(|w| {
            for (j, row) in w.w_dec.chunks_exact_mut(d_in).enumerate() {
                row.iter_mut().for_each(|v| *v *= 0.5 + (j % 7) as f32 * 0.3);
            }
        })
        .unwrap();
    compare_end_to_end(&rescaled, &x, &gpu, None);
}

/// Transcoders (SAELens `Transcoder`, `SkipTranscoder`, `JumpReLU*`): the same encoder, the skip
/// connection `x W_skipᵀ` added on the GPU, and the metrics of the output against another hook's
/// values (the target), on awkward sizes and with the weights in chunks.
#[test]
fn transcoders_match_the_reference_and_are_measured_against_their_target() {
    let gpu = gpu();
    let backend = common::gpu_backend();
    let (n, d_in, d_sae) = (29, 71, 333);
    let x = random_input(n, d_in, 8);
    let target = random_input(n, d_in, 9);
    for (i, arch) in ["transcoder", "skip_transcoder", "jumprelu_transcoder", "jumprelu_skip_transcoder"].into_iter().enumerate() {
        let sae = random_sae(arch, d_in, d_sae, 0, 40 + i as u64);
        assert_eq!(sae.w_skip().is_some(), arch.contains("skip"), "{arch}");
        compare_end_to_end(&sae, &x, &gpu, if i % 2 == 0 { Some(16 * 1024) } else { None });
        let placed = saelab::engine::LoadedSae::new(std::rc::Rc::new(sae.clone()), &backend).unwrap();
        let on_gpu =
            pollster::block_on(saelab::engine::analyze_against(&placed, &x, &target, RunRequest { recon: true, ..Default::default() }))
                .unwrap();
        let on_cpu = saelab::engine::analyze_cpu_against(&sae, &x, &target, RunRequest { recon: true, ..Default::default() });
        for (name, got, want) in [("mse", on_gpu.metrics.mse, on_cpu.metrics.mse), ("fvu", on_gpu.metrics.fvu, on_cpu.metrics.fvu)] {
            assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()), "{arch}: {name} against the target, gpu {got} cpu {want}");
        }
        // Against the target, not the input: the two differ.
        let against_x = saelab::engine::analyze_cpu(&sae, &x, RunRequest::default());
        assert!((against_x.metrics.mse - on_cpu.metrics.mse).abs() > 1e-3, "{arch}");
        // The skip connection is what the CPU adds: without it, the outputs differ by x W_skipᵀ.
        if let Some(w_skip) = sae.w_skip() {
            let plain = sae.clone().with_weights(|w| w.w_skip = None);
            assert!(plain.is_err(), "{arch}: a skip transcoder without W_skip is refused");
            let recon = on_cpu.recon.unwrap();
            let acts = saelab::sae::cpu::encode(&sae, &x);
            for r in 0..n {
                let mut want = saelab::sae::cpu::decode_row(&sae, &acts[r * d_sae..(r + 1) * d_sae], saelab::sae::cpu::RowNorm::IDENTITY);
                for (o, w_row) in want.iter_mut().zip(w_skip.chunks_exact(d_in)) {
                    *o += x[r * d_in..(r + 1) * d_in].iter().zip(w_row).map(|(a, b)| a * b).sum::<f32>();
                }
                assert!(max_rel_err(&recon[r * d_in..(r + 1) * d_in], &want) < 1e-5, "{arch}: row {r}");
            }
        }
    }
}

#[test]
fn realistic_size_matches_the_reference() {
    let gpu = gpu();
    let (n, d_in, d_sae, k) = (256, 768, 24_576, 32);
    let x = random_input(n, d_in, 4);
    for arch in ["topk", "standard"] {
        let sae = random_sae(arch, d_in, d_sae, k, 5);
        compare_end_to_end(&sae, &x, &gpu, None);
    }
}

#[test]
fn weights_larger_than_one_binding_are_split() {
    let gpu = gpu();
    let sae = random_sae("topk", 64, 5000, 16, 6);
    // A 100 KiB limit: 400 features per chunk, 13 chunks, the last one partial.
    let gpu_sae = GpuSae::upload_with_binding_limit(&gpu, &sae, 100 * 1024).unwrap();
    assert_eq!(gpu_sae.chunk_count(), 13);
    compare_end_to_end(&sae, &random_input(19, 64, 7), &gpu, Some(100 * 1024));
}

#[test]
fn a_rejected_gpu_command_is_an_error_not_a_panic_or_garbage() {
    use saelab::gpu::kernels::train::{relu_acts, Shape};
    let gpu = gpu();
    let input = gpu.upload_f32("input", &[1.0, -2.0, 3.0]);
    // A uniform buffer cannot be bound as writable storage: the device rejects the bind group.
    let wrong = gpu.uniform("not storage", &[0.0f32; 4]);
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    relu_acts(&gpu, &mut enc, Shape::new(1, 3), &input, &wrong).unwrap();
    gpu.queue.submit([enc.finish()]);
    let err = pollster::block_on(gpu.read_f32(&input, 3)).expect_err("the invalid dispatch must surface");
    assert!(err.to_string().contains("the GPU rejected a command"), "{err}");
    // The error is reported once; the device keeps working.
    assert_eq!(pollster::block_on(gpu.read_f32(&input, 3)).unwrap(), vec![1.0, -2.0, 3.0]);
}
