//! Every entry point of every WGSL kernel family against its CPU twin (`saelab::reference`, or the
//! SAE reference where SAELens defines the kernel), run directly — not through a whole training
//! step or forward pass — on fresh random inputs at sizes that are no multiple of any workgroup
//! (a batch of 37 rows, 1001 latents, width 93, k = 7). Each launcher also refuses operands too
//! short for the shape it is given. On whatever adapter wgpu finds (Mesa's lavapipe in CI); no
//! adapter is a failure, not a skip.
//!
//! Tolerance: 1e-5 relative to (1 + |x|) for element-wise entries (the same f32 operations, up to
//! the GPU's exp/sqrt/division rounding), 1e-4 for sums over rows or columns (another order).

mod common;

use saelab::gpu::kernels::{ceiling, metrics, model, rows, sparse_decode, train};
use saelab::gpu::{Gpu, GpuError};
use saelab::random::Rng;
use saelab::reference;
use saelab::sae::cpu::row_norm;
use saelab::sae::Normalization;

const ELEMENTWISE: f32 = 1e-5;
const SUMS: f32 = 1e-4;

/// A batch of activations (rows = batch, cols = latents) and a decoder (rows = latents, cols =
/// width), at awkward sizes.
const ROWS: usize = 37;
const LATENTS: usize = 1001;
const WIDTH: usize = 93;
const K: usize = 7;

struct Bench {
    gpu: Gpu,
    rng: Rng,
}

impl Bench {
    fn new(seed: u64) -> Bench {
        Bench { gpu: common::gpu(), rng: Rng::new(seed) }
    }

    fn normals(&mut self, n: usize, scale: f32) -> Vec<f32> {
        self.rng.normals(n, scale)
    }

    fn upload(&self, data: &[f32]) -> wgpu::Buffer {
        self.gpu.upload_f32("operand", data)
    }

    /// Records one launch, submits it, and fails the test on a launch or device error.
    fn run(&self, launch: impl FnOnce(&Gpu, &mut wgpu::CommandEncoder) -> Result<(), GpuError>) {
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        launch(&self.gpu, &mut enc).expect("the launch is accepted");
        self.gpu.queue.submit([enc.finish()]);
        self.gpu.check_errors().expect("the device accepted the command");
    }

    /// The launch's error (nothing is submitted).
    fn refused(&self, launch: impl FnOnce(&Gpu, &mut wgpu::CommandEncoder) -> Result<(), GpuError>) -> String {
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        launch(&self.gpu, &mut enc).expect_err("the launch is refused").to_string()
    }

    fn read(&self, buffer: &wgpu::Buffer, n: usize) -> Vec<f32> {
        pollster::block_on(self.gpu.read_f32(buffer, n)).unwrap()
    }
}

/// Asserts `got` equals `want` within `tol` relative to (1 + |want|).
fn close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let (i, worst) = got.iter().zip(want).map(|(a, b)| (a - b).abs() / (1.0 + b.abs())).enumerate().fold((0, 0.0f32), |best, (i, e)| {
        if e > best.1 || e.is_nan() {
            (i, e)
        } else {
            best
        }
    });
    assert!(worst <= tol, "{what}: element {i} is {} on the GPU, {} on the CPU (relative error {worst})", got[i], want[i]);
}

fn acts_shape() -> train::Shape {
    train::Shape::new(ROWS, LATENTS)
}

fn decoder_shape() -> train::Shape {
    train::Shape::new(LATENTS, WIDTH)
}

// ------------------------------------------------------------------------------------------
// train.wgsl

#[test]
fn relu_acts() {
    let mut b = Bench::new(1);
    let n = ROWS * LATENTS;
    let pre = b.normals(n, 1.0);
    let (pre_buf, acts) = (b.upload(&pre), b.gpu.storage("acts", (n * 4) as u64));
    b.run(|g, e| train::relu_acts(g, e, acts_shape(), &pre_buf, &acts));
    close("relu_acts", &b.read(&acts, n), &reference::train::relu_acts(&pre), ELEMENTWISE);
    let short = b.gpu.storage("short", 8);
    assert!(b.refused(|g, e| train::relu_acts(g, e, acts_shape(), &pre_buf, &short)).contains("relu_acts: acts holds 2 values"));
}

#[test]
fn scatter_lists() {
    let mut b = Bench::new(2);
    // Per row, K distinct latents.
    let mut index = Vec::new();
    for r in 0..ROWS {
        index.extend((0..K).map(|s| ((r * 131 + s * 97) % LATENTS) as u32));
    }
    let value = b.normals(ROWS * K, 1.0);
    let index_buf = b.gpu.upload_bytes("index", bytemuck::cast_slice(&index));
    let (value_buf, dense) = (b.upload(&value), b.gpu.storage("dense", (ROWS * LATENTS * 4) as u64));
    b.run(|g, e| train::scatter_lists(g, e, acts_shape(), K, &index_buf, &value_buf, &dense));
    let mut want = vec![0.0; ROWS * LATENTS];
    reference::train::scatter_lists(LATENTS, K, &index, &value, &mut want);
    close("scatter_lists", &b.read(&dense, ROWS * LATENTS), &want, 0.0);
}

#[test]
fn recon_grad() {
    let mut b = Bench::new(3);
    let n = ROWS * WIDTH;
    let (recon, x) = (b.normals(n, 1.0), b.normals(n, 1.0));
    let (recon_buf, x_buf) = (b.upload(&recon), b.upload(&x));
    let (g_recon, residual) = (b.gpu.storage("g", (n * 4) as u64), b.gpu.storage("r", (n * 4) as u64));
    let scale = 2.0 / ROWS as f32;
    let shape = train::Shape::new(ROWS, WIDTH);
    b.run(|g, e| {
        train::recon_grad(g, e, train::ReconGrad { shape, scale, recon: &recon_buf, x: &x_buf, g_recon: &g_recon, residual: &residual })
    });
    let (want_g, want_r) = reference::train::recon_grad(scale, &recon, &x);
    close("recon_grad g_recon", &b.read(&g_recon, n), &want_g, ELEMENTWISE);
    close("recon_grad residual", &b.read(&residual, n), &want_r, ELEMENTWISE);
}

#[test]
fn act_grad() {
    let mut b = Bench::new(4);
    let n = ROWS * LATENTS;
    let (acts, norms, g0) = (b.normals(n, 1.0), b.normals(LATENTS, 1.0), b.normals(n, 1.0));
    let (acts_buf, norms_buf, g_buf) = (b.upload(&acts), b.upload(&norms), b.upload(&g0));
    b.run(|g, e| train::act_grad(g, e, acts_shape(), 0.37, &acts_buf, &norms_buf, &g_buf));
    let mut want = g0.clone();
    reference::train::act_grad(LATENTS, 0.37, &acts, &norms, &mut want);
    close("act_grad", &b.read(&g_buf, n), &want, ELEMENTWISE);
}

#[test]
fn aux_act_grad() {
    let mut b = Bench::new(5);
    let n = ROWS * LATENTS;
    let (aux_acts, g_aux, g0) = (b.normals(n, 1.0), b.normals(n, 1.0), b.normals(n, 1.0));
    let (aux_buf, g_aux_buf, g_buf) = (b.upload(&aux_acts), b.upload(&g_aux), b.upload(&g0));
    b.run(|g, e| train::aux_act_grad(g, e, acts_shape(), &aux_buf, &g_aux_buf, &g_buf));
    let mut want = g0.clone();
    reference::train::aux_act_grad(&aux_acts, &g_aux, &mut want);
    close("aux_act_grad", &b.read(&g_buf, n), &want, ELEMENTWISE);
}

#[test]
fn mask_dead() {
    let mut b = Bench::new(6);
    let n = ROWS * LATENTS;
    let pre = b.normals(n, 1.0);
    let dead: Vec<f32> = (0..LATENTS).map(|j| if j % 3 == 0 { 1.0 } else { 0.0 }).collect();
    let (pre_buf, dead_buf, masked) = (b.upload(&pre), b.upload(&dead), b.gpu.storage("masked", (n * 4) as u64));
    b.run(|g, e| train::mask_dead(g, e, acts_shape(), &pre_buf, &dead_buf, &masked));
    assert_eq!(b.read(&masked, n), reference::train::mask_dead(LATENTS, &pre, &dead));
}

#[test]
fn aux_grad() {
    let mut b = Bench::new(7);
    let n = ROWS * WIDTH;
    let (aux_recon, target) = (b.normals(n, 1.0), b.normals(n, 1.0));
    let (a_buf, t_buf, out) = (b.upload(&aux_recon), b.upload(&target), b.gpu.storage("g_aux", (n * 4) as u64));
    b.run(|g, e| train::aux_grad(g, e, train::Shape::new(ROWS, WIDTH), 0.05, &a_buf, &t_buf, &out));
    close("aux_grad", &b.read(&out, n), &reference::train::aux_grad(0.05, &aux_recon, &target), ELEMENTWISE);
}

#[test]
fn column_sums_set_and_add() {
    let mut b = Bench::new(8);
    let input = b.normals(ROWS * LATENTS, 1.0);
    let start = b.normals(LATENTS, 1.0);
    let input_buf = b.upload(&input);
    for (sum, add) in [(train::Sum::Set, false), (train::Sum::Add, true)] {
        let out = b.upload(&start);
        b.run(|g, e| train::column_sums(g, e, acts_shape(), -0.5, sum, &input_buf, &out));
        let mut want = start.clone();
        reference::train::column_sums(LATENTS, -0.5, add, &input, &mut want);
        close(&format!("column_sums {sum:?}"), &b.read(&out, LATENTS), &want, SUMS);
    }
}

#[test]
fn l1_decoder_grad() {
    let mut b = Bench::new(9);
    let n = LATENTS * WIDTH;
    let (sums, w_dec, g0) = (b.normals(LATENTS, 1.0), b.normals(n, 0.3), b.normals(n, 1.0));
    let norms = reference::train::decoder_norms(WIDTH, &w_dec);
    let (sums_buf, norms_buf, w_buf, g_buf) = (b.upload(&sums), b.upload(&norms), b.upload(&w_dec), b.upload(&g0));
    b.run(|g, e| {
        let args = train::L1DecoderGrad {
            decoder: decoder_shape(),
            scale: 0.2,
            act_sums: &sums_buf,
            decoder_norms: &norms_buf,
            w_dec: &w_buf,
            g_w_dec: &g_buf,
        };
        train::l1_decoder_grad(g, e, args)
    });
    let mut want = g0.clone();
    reference::train::l1_decoder_grad(WIDTH, 0.2, &sums, &norms, &w_dec, &mut want);
    close("l1_decoder_grad", &b.read(&g_buf, n), &want, ELEMENTWISE);
}

#[test]
fn decoder_norms() {
    let mut b = Bench::new(10);
    let w_dec = b.normals(LATENTS * WIDTH, 0.3);
    let (w_buf, out) = (b.upload(&w_dec), b.gpu.storage("norms", (LATENTS * 4) as u64));
    b.run(|g, e| train::decoder_norms(g, e, decoder_shape(), &w_buf, &out));
    close("decoder_norms", &b.read(&out, LATENTS), &reference::train::decoder_norms(WIDTH, &w_dec), SUMS);
}

#[test]
fn remove_parallel_grad() {
    let mut b = Bench::new(11);
    let n = LATENTS * WIDTH;
    let (w_dec, g0) = (b.normals(n, 0.3), b.normals(n, 1.0));
    let (w_buf, g_buf) = (b.upload(&w_dec), b.upload(&g0));
    b.run(|g, e| train::remove_parallel_grad(g, e, decoder_shape(), &w_buf, &g_buf));
    let mut want = g0.clone();
    reference::train::remove_parallel_grad(WIDTH, &w_dec, &mut want);
    close("remove_parallel_grad", &b.read(&g_buf, n), &want, SUMS);
}

#[test]
fn normalize_decoder() {
    let mut b = Bench::new(12);
    let w_dec = b.normals(LATENTS * WIDTH, 0.3);
    let w_buf = b.upload(&w_dec);
    b.run(|g, e| train::normalize_decoder(g, e, decoder_shape(), &w_buf));
    let mut want = w_dec.clone();
    reference::train::normalize_decoder(WIDTH, &mut want);
    close("normalize_decoder", &b.read(&w_buf, LATENTS * WIDTH), &want, SUMS);
}

#[test]
fn adam_with_and_without_the_clamp() {
    let mut b = Bench::new(13);
    let n = 12_345;
    let (grad, param, m0) = (b.normals(n, 1.0), b.normals(n, 1.0), b.normals(n, 0.1));
    let v0: Vec<f32> = b.normals(n, 0.1).iter().map(|v| v * v).collect();
    for clamp_at_zero in [false, true] {
        let step = train::AdamStep {
            lr: 3e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            c1: 1.0 - 0.9f32.powi(3),
            c2: 1.0 - 0.999f32.powi(3),
            clamp_at_zero,
        };
        let (g_buf, p_buf, m_buf, v_buf) = (b.upload(&grad), b.upload(&param), b.upload(&m0), b.upload(&v0));
        b.run(|g, e| train::adam(g, e, train::Adam { n, step, grad: &g_buf, param: &p_buf, m: &m_buf, v: &v_buf }));
        let (mut p, mut m, mut v) = (param.clone(), m0.clone(), v0.clone());
        reference::train::adam(step.lr, step.beta1, step.beta2, step.eps, step.c1, step.c2, clamp_at_zero, &grad, &mut p, &mut m, &mut v);
        close(&format!("adam param (clamp {clamp_at_zero})"), &b.read(&p_buf, n), &p, ELEMENTWISE);
        close("adam m", &b.read(&m_buf, n), &m, ELEMENTWISE);
        close("adam v", &b.read(&v_buf, n), &v, ELEMENTWISE);
        if clamp_at_zero {
            assert!(b.read(&p_buf, n).iter().all(|&x| x >= 0.0) && p.contains(&0.0), "the clamp took effect");
        }
    }
}

#[test]
fn jumprelu_acts() {
    let mut b = Bench::new(14);
    let n = ROWS * LATENTS;
    let pre = b.normals(n, 1.0);
    let threshold: Vec<f32> = b.normals(LATENTS, 0.5).iter().map(|t| t.abs()).collect();
    let (pre_buf, t_buf, acts) = (b.upload(&pre), b.upload(&threshold), b.gpu.storage("acts", (n * 4) as u64));
    b.run(|g, e| train::jumprelu_acts(g, e, acts_shape(), &pre_buf, &t_buf, &acts));
    assert_eq!(b.read(&acts, n), reference::train::jumprelu_acts(LATENTS, &pre, &threshold));
}

#[test]
fn jumprelu_threshold_grad() {
    let mut b = Bench::new(15);
    let n = ROWS * LATENTS;
    let width = 0.25f32;
    let threshold: Vec<f32> = b.normals(LATENTS, 0.3).iter().map(|t| t.abs()).collect();
    // Pre-activations near the thresholds, none within rounding of the kernel's window edges
    // (a division the GPU rounds differently could move those in or out).
    let mut pre = b.normals(n, 0.15);
    for (i, h) in pre.iter_mut().enumerate() {
        let t = threshold[i % LATENTS];
        *h += t;
        if (((*h - t) / width).abs() - 0.5).abs() < 1e-3 {
            *h += 0.01;
        }
    }
    let g_acts = b.normals(n, 1.0);
    let (pre_buf, t_buf, ga_buf, out) =
        (b.upload(&pre), b.upload(&threshold), b.upload(&g_acts), b.gpu.storage("g_t", (LATENTS * 4) as u64));
    b.run(|g, e| {
        let args = train::JumpReluThresholdGrad {
            shape: acts_shape(),
            l0_scale: 0.01,
            bandwidth: width,
            pre: &pre_buf,
            threshold: &t_buf,
            g_acts: &ga_buf,
            g_threshold: &out,
        };
        train::jumprelu_threshold_grad(g, e, args)
    });
    let want = reference::train::jumprelu_threshold_grad(LATENTS, 0.01, width, &pre, &threshold, &g_acts);
    assert!(want.iter().filter(|&&v| v != 0.0).count() > LATENTS / 2, "most thresholds see pre-activations in their window");
    close("jumprelu_threshold_grad", &b.read(&out, LATENTS), &want, SUMS);
}

#[test]
fn gated_acts() {
    let mut b = Bench::new(16);
    let n = ROWS * LATENTS;
    let (projected, b_gate, r_mag, b_mag) = (b.normals(n, 1.0), b.normals(LATENTS, 0.5), b.normals(LATENTS, 0.3), b.normals(LATENTS, 0.5));
    let bufs = [&projected, &b_gate, &r_mag, &b_mag].map(|v| b.upload(v));
    let (acts, gate_acts) = (b.gpu.storage("acts", (n * 4) as u64), b.gpu.storage("gate", (n * 4) as u64));
    b.run(|g, e| {
        let args = train::GatedActs {
            shape: acts_shape(),
            projected: &bufs[0],
            b_gate: &bufs[1],
            r_mag: &bufs[2],
            b_mag: &bufs[3],
            acts: &acts,
            gate_acts: &gate_acts,
        };
        train::gated_acts(g, e, args)
    });
    let (want_acts, want_gate) = reference::train::gated_acts(LATENTS, &projected, &b_gate, &r_mag, &b_mag);
    close("gated_acts acts", &b.read(&acts, n), &want_acts, ELEMENTWISE);
    close("gated_acts gate_acts", &b.read(&gate_acts, n), &want_gate, ELEMENTWISE);
}

#[test]
fn gated_backward() {
    let mut b = Bench::new(17);
    let n = ROWS * LATENTS;
    let (projected, r_mag, g_gate, g_mag) = (b.normals(n, 1.0), b.normals(LATENTS, 0.3), b.normals(n, 1.0), b.normals(n, 1.0));
    let (p_buf, r_buf, gg_buf, gm_buf) = (b.upload(&projected), b.upload(&r_mag), b.upload(&g_gate), b.upload(&g_mag));
    let (g_r, g_b) = (b.gpu.storage("g_r", (LATENTS * 4) as u64), b.gpu.storage("g_b", (LATENTS * 4) as u64));
    b.run(|g, e| {
        let args = train::GatedBackward {
            shape: acts_shape(),
            projected: &p_buf,
            r_mag: &r_buf,
            g_gate_pre: &gg_buf,
            g_mag_pre: &gm_buf,
            g_r_mag: &g_r,
            g_b_mag: &g_b,
        };
        train::gated_backward(g, e, args)
    });
    let mut want_projected = g_mag.clone();
    let (want_r, want_b) = reference::train::gated_backward(LATENTS, &projected, &r_mag, &g_gate, &mut want_projected);
    close("gated_backward g_projected", &b.read(&gm_buf, n), &want_projected, ELEMENTWISE);
    close("gated_backward g_r_mag", &b.read(&g_r, LATENTS), &want_r, SUMS);
    close("gated_backward g_b_mag", &b.read(&g_b, LATENTS), &want_b, SUMS);
}

// ------------------------------------------------------------------------------------------
// model.wgsl

#[test]
fn gather_rows_from_one_chunk_of_the_table() {
    let mut b = Bench::new(20);
    let (vocab, first, count) = (211, 50, 100);
    let table = b.normals(vocab * WIDTH, 1.0);
    let tokens: Vec<u32> = (0..ROWS as u32).map(|t| (t * 37 + 11) % vocab as u32).collect();
    let chunk = &table[first * WIDTH..(first + count) * WIDTH];
    let start = b.normals(ROWS * WIDTH, 1.0);
    let tokens_buf = b.gpu.upload_bytes("tokens", bytemuck::cast_slice(&tokens));
    // Scaled as Gemma scales its embeddings, and not; from an f32 table and from packed halves
    // (WIDTH × count is odd, so a row starts in the middle of a word).
    use reference::matmul::Storage;
    for storage in [Storage::F32, Storage::F16, Storage::Bf16] {
        let words = reference::matmul::pack(chunk, storage);
        let held = if storage == Storage::F32 { chunk.to_vec() } else { reference::matmul::unpack(&words, storage, chunk.len()) };
        for scale in [1.0, 48f32.sqrt()] {
            let (chunk_buf, out) = (b.gpu.upload_bytes("table", bytemuck::cast_slice(&words)), b.upload(&start));
            let table_chunk = model::TableChunk { first, count, width: WIDTH, rows: &chunk_buf, storage };
            b.run(|g, e| model::gather_rows(g, e, ROWS, table_chunk, scale, &tokens_buf, &out));
            let mut want = start.clone();
            reference::model::gather_rows(&held, first, WIDTH, &tokens, scale, &mut want);
            close(&format!("gather_rows {storage:?} × {scale}"), &b.read(&out, ROWS * WIDTH), &want, ELEMENTWISE);
        }
    }
    assert!(
        tokens.iter().any(|&t| (t as usize) < first) && tokens.iter().any(|&t| (t as usize) >= first + count),
        "tokens outside the chunk"
    );
}

#[test]
fn add_activations_and_softcap() {
    use reference::model::Activation;
    let mut b = Bench::new(21);
    let n = ROWS * LATENTS;
    let (x, y) = (b.normals(n, 3.0), b.normals(n, 3.0));
    let (x_buf, y_buf, out) = (b.upload(&x), b.upload(&y), b.gpu.storage("sum", (n * 4) as u64));
    b.run(|g, e| model::add(g, e, n, &x_buf, &y_buf, &out));
    close("add", &b.read(&out, n), &reference::model::add(&x, &y), ELEMENTWISE);
    // Every activation over a wide range, large |x| included (where a naive tanh overflows).
    let mut wide = x.clone();
    wide[..6].copy_from_slice(&[-60.0, -12.0, -1e-7, 0.0, 12.0, 60.0]);
    for act in [Activation::GeluTanh, Activation::GeluErf, Activation::Silu, Activation::Relu] {
        let buf = b.upload(&wide);
        b.run(|g, e| model::activation(g, e, act, n, &buf));
        let want: Vec<f32> = wide.iter().map(|&v| act.apply(v)).collect();
        close(&format!("activation {act:?}"), &b.read(&buf, n), &want, ELEMENTWISE);
        let (gate, up) = (b.upload(&wide), b.upload(&y));
        b.run(|g, e| model::gated_activation(g, e, act, n, &gate, &up));
        close(&format!("gated_activation {act:?}"), &b.read(&up, n), &reference::model::gated_activation(act, &wide, &y), ELEMENTWISE);
    }
    let buf = b.upload(&wide);
    b.run(|g, e| model::softcap(g, e, 30.0, n, &buf));
    let mut want = wide.clone();
    reference::model::softcap(&mut want, 30.0);
    close("softcap", &b.read(&buf, n), &want, ELEMENTWISE);
    assert!(b.refused(|g, e| model::softcap(g, e, 0.0, n, &buf)).contains("positive"));
}

/// Every norm a family uses: LayerNorm with and without its bias, RMSNorm, Gemma's `(1 + w)`,
/// and the bare normalisation TransformerLens hooks; then the weight on its own (scale_shift).
#[test]
fn norms_of_every_family() {
    use reference::model::{Affine, NormSpec};
    let mut b = Bench::new(22);
    let (x, weight, bias) = (b.normals(ROWS * WIDTH, 2.0), b.normals(WIDTH, 1.0), b.normals(WIDTH, 1.0));
    let n = ROWS * WIDTH;
    let (x_buf, w_buf, b_buf, out) = (b.upload(&x), b.upload(&weight), b.upload(&bias), b.gpu.storage("y", (n * 4) as u64));
    for center in [true, false] {
        for unit_offset in [false, true] {
            for (affine, with_bias) in [(false, false), (true, false), (true, true)] {
                let spec = NormSpec { center, unit_offset, eps: 1e-5 };
                let gpu_affine = affine.then_some(model::GpuAffine { weight: &w_buf, bias: with_bias.then_some(&b_buf) });
                b.run(|g, e| model::norm(g, e, model::Norm { rows: ROWS, width: WIDTH, spec, x: &x_buf, affine: gpu_affine, out: &out }));
                let cpu_affine = affine.then_some(Affine { weight: &weight, bias: with_bias.then_some(&bias[..]) });
                let what = format!("norm center {center} (1+w) {unit_offset} affine {affine} bias {with_bias}");
                close(&what, &b.read(&out, n), &reference::model::norm(&x, WIDTH, spec, cpu_affine), SUMS);
            }
            let gpu_affine = model::GpuAffine { weight: &w_buf, bias: center.then_some(&b_buf) };
            let args = model::ScaleShift { n, width: WIDTH, unit_offset, x: &x_buf, affine: gpu_affine, out: &out };
            b.run(|g, e| model::scale_shift(g, e, args));
            let want = reference::model::scale_shift(&x, Affine { weight: &weight, bias: center.then_some(&bias[..]) }, unit_offset);
            close(&format!("scale_shift (1+w) {unit_offset} bias {center}"), &b.read(&out, n), &want, ELEMENTWISE);
        }
    }
}

/// RoPE on q and k of odd head sizes, all of each head or (GPT-NeoX's partial rotary) part of it.
#[test]
fn rope_turns_pairs_of_each_head() {
    let mut b = Bench::new(24);
    let (heads, d_head) = (3, 22);
    for half in [11, 3] {
        let inv: Vec<f64> = (0..half).map(|i| 1.0 / 10_000f64.powf(2.0 * i as f64 / (2 * half) as f64)).collect();
        let (cos, sin) = reference::model::rope_tables(&inv, ROWS);
        let x = b.normals(ROWS * heads * d_head, 1.0);
        let (x_buf, cos_buf, sin_buf) = (b.upload(&x), b.upload(&cos), b.upload(&sin));
        let args = model::Rope { rows: ROWS, n_heads: heads, d_head, half, cos: &cos_buf, sin: &sin_buf, x: &x_buf };
        b.run(|g, e| model::rope(g, e, args));
        let mut want = x.clone();
        reference::model::rope(&mut want, heads, d_head, &cos, &sin);
        close(&format!("rope, {half} pairs"), &b.read(&x_buf, ROWS * heads * d_head), &want, ELEMENTWISE);
    }
}

/// Causal attention as GPT-2 has it, grouped-query (4 query heads per key/value head), within a
/// sliding window shorter than the sequence, and soft-capped: both kernels (`AttentionKernel`).
#[test]
fn causal_attention_with_groups_windows_and_caps() {
    use model::AttentionKernel;
    use reference::model::AttentionSpec;
    let mut b = Bench::new(23);
    let d_head = 31;
    for kernel in [AttentionKernel::Workgroup, AttentionKernel::Serial] {
        b.gpu.set_attention_kernel(kernel);
        for (n_heads, n_kv_heads, window, softcap) in
            [(3, 3, None, None), (8, 2, None, None), (4, 1, Some(5), Some(2.0)), (6, 3, Some(1), None)]
        {
            let spec = AttentionSpec { n_heads, n_kv_heads, d_head, scale: 1.0 / (d_head as f32).sqrt(), window, softcap };
            let (q, k, v) = (
                b.normals(ROWS * n_heads * d_head, 1.5),
                b.normals(ROWS * n_kv_heads * d_head, 1.5),
                b.normals(ROWS * n_kv_heads * d_head, 1.0),
            );
            let (q_buf, k_buf, v_buf) = (b.upload(&q), b.upload(&k), b.upload(&v));
            let z = b.gpu.storage("z", (ROWS * n_heads * d_head * 4) as u64);
            b.run(|g, e| model::attention(g, e, model::Attention { rows: ROWS, spec, q: &q_buf, k: &k_buf, v: &v_buf, z: &z }));
            let want = reference::model::attention(spec, &q, &k, &v, ROWS);
            close(&format!("{kernel:?} attention {spec:?}"), &b.read(&z, ROWS * n_heads * d_head), &want, SUMS);
        }
        // Long contexts: for the workgroup kernel longer than its key tile (several tiles, the
        // online softmax) with a window longer than a tile and heads wider than its 128 threads
        // (3 values a thread); for the serial one, whose every thread walks all its keys (slow on
        // a software adapter), 300 tokens with a new maximum at many keys, and the widest head it
        // takes (wider ones run the workgroup kernel).
        let (long, cases) = match kernel {
            AttentionKernel::Workgroup => (2 * model::KEY_TILE + 77, [(31, None), (300, Some(model::KEY_TILE + 200)), (7, Some(3))]),
            AttentionKernel::Serial => (300, [(31, None), (model::SERIAL_HEAD, Some(200)), (7, Some(3))]),
        };
        for (d_head, window) in cases {
            let spec = AttentionSpec { n_heads: 2, n_kv_heads: 1, d_head, scale: 1.0 / (d_head as f32).sqrt(), window, softcap: Some(8.0) };
            let (q, k, v) = (b.normals(long * 2 * d_head, 1.5), b.normals(long * d_head, 1.5), b.normals(long * d_head, 1.0));
            let (q_buf, k_buf, v_buf) = (b.upload(&q), b.upload(&k), b.upload(&v));
            let z = b.gpu.storage("z", (long * 2 * d_head * 4) as u64);
            b.run(|g, e| model::attention(g, e, model::Attention { rows: long, spec, q: &q_buf, k: &k_buf, v: &v_buf, z: &z }));
            let want = reference::model::attention(spec, &q, &k, &v, long);
            close(&format!("{kernel:?} attention over {long} tokens, {spec:?}"), &b.read(&z, long * 2 * d_head), &want, SUMS);
        }
    }
    let spec = AttentionSpec { n_heads: 3, n_kv_heads: 3, d_head, scale: 1.0, window: None, softcap: None };
    let big = b.gpu.storage("big", (4 * 3 * 513 * 4) as u64);
    let wide = AttentionSpec { d_head: model::MAX_HEAD + 1, ..spec };
    let err = b.refused(|g, e| model::attention(g, e, model::Attention { rows: 1, spec: wide, q: &big, k: &big, v: &big, z: &big }));
    assert!(err.contains("at most 512"), "{err}");
    let uneven = AttentionSpec { n_kv_heads: 2, ..spec };
    let err = b.refused(|g, e| model::attention(g, e, model::Attention { rows: 2, spec: uneven, q: &big, k: &big, v: &big, z: &big }));
    assert!(err.contains("do not divide"), "{err}");
}

// ------------------------------------------------------------------------------------------
// rows.wgsl, sparse_decode.wgsl, metrics.wgsl

#[test]
fn normalize_fill_and_denormalize_rows() {
    let mut b = Bench::new(30);
    let n = ROWS * WIDTH;
    let x: Vec<f32> = b.normals(n, 2.0).iter().map(|v| v + 0.7).collect();
    let b_dec = b.normals(WIDTH, 0.5);
    let (x_buf, b_dec_buf) = (b.upload(&x), b.upload(&b_dec));
    for (mode, normalization) in [(0, Normalization::None), (1, Normalization::LayerNorm), (2, Normalization::ConstantNormRescale)] {
        for apply_b_dec in [false, true] {
            let what = format!("{normalization:?}, apply_b_dec {apply_b_dec}");
            let (sae_in, norms) = (b.gpu.storage("sae_in", (n * 4) as u64), b.gpu.storage("norms", (ROWS * 12) as u64));
            let norm = rows::RowNormalization { mode, apply_b_dec };
            b.run(|g, e| {
                rows::normalize_rows(
                    g,
                    e,
                    rows::NormalizeRows { rows: ROWS, d_in: WIDTH, norm, b_dec: &b_dec_buf, x: &x_buf, sae_in: &sae_in, norms: &norms },
                )
            });
            let (mut want_in, mut want_norms) = (Vec::new(), Vec::new());
            for row in x.chunks_exact(WIDTH) {
                let r = row_norm(normalization, row);
                want_norms.extend([r.shift, r.in_scale, r.out_scale]);
                let b_dec_weight = if apply_b_dec { 1.0 } else { 0.0 };
                want_in.extend(row.iter().zip(&b_dec).map(|(v, bd)| (v - r.shift) * r.in_scale - bd * b_dec_weight));
            }
            close(&format!("normalize_rows norms, {what}"), &b.read(&norms, ROWS * 3), &want_norms, SUMS);
            close(&format!("normalize_rows sae_in, {what}"), &b.read(&sae_in, n), &want_in, SUMS);
            // Decode's ends: out = b_dec, then out · out_scale + shift.
            let out = b.gpu.storage("out", (n * 4) as u64);
            b.run(|g, e| rows::fill_bias(g, e, ROWS, WIDTH, &b_dec_buf, &out));
            assert_eq!(b.read(&out, n), b_dec.repeat(ROWS), "fill_bias");
            b.run(|g, e| rows::denormalize_rows(g, e, ROWS, WIDTH, &norms, &out));
            let want_out: Vec<f32> =
                (0..n).map(|i| b_dec[i % WIDTH] * want_norms[(i / WIDTH) * 3 + 2] + want_norms[(i / WIDTH) * 3]).collect();
            close(&format!("denormalize_rows, {what}"), &b.read(&out, n), &want_out, SUMS);
        }
    }
}

#[test]
fn sparse_decode_from_lists_one_chunk_at_a_time() {
    let mut b = Bench::new(31);
    let (f0, width) = (300, 400);
    let index: Vec<u32> = (0..ROWS * K).map(|e| ((e * 389 + e / K) % LATENTS) as u32).collect();
    let value = b.normals(ROWS * K, 1.0);
    let chunk = b.normals(width * WIDTH, 0.3);
    let scale: Vec<f32> = b.normals(width, 0.2).iter().map(|v| 1.0 + v).collect();
    let start = b.normals(ROWS * WIDTH, 1.0);
    let index_buf = b.gpu.upload_bytes("index", bytemuck::cast_slice(&index));
    let (value_buf, chunk_buf, scale_buf, out) = (b.upload(&value), b.upload(&chunk), b.upload(&scale), b.upload(&start));
    b.run(|g, e| {
        let args = sparse_decode::SparseDecode {
            rows: ROWS,
            d_in: WIDTH,
            k: K,
            f0,
            width,
            index: &index_buf,
            value: &value_buf,
            w_dec_chunk: &chunk_buf,
            scale: &scale_buf,
            out: &out,
        };
        sparse_decode::sparse_decode(g, e, args)
    });
    let mut want = start.clone();
    reference::sparse_decode(WIDTH, K, f0, width, &index, &value, &chunk, &scale, &mut want);
    assert!(index.iter().any(|&f| (f as usize) < f0) && index.iter().any(|&f| (f as usize) >= f0 && (f as usize) < f0 + width));
    close("sparse_decode", &b.read(&out, ROWS * WIDTH), &want, SUMS);
}

#[test]
fn row_metrics_and_fire_counts_dense_and_from_lists() {
    let mut b = Bench::new(32);
    let (x, recon) = (b.normals(ROWS * WIDTH, 1.0), b.normals(ROWS * WIDTH, 1.0));
    // Dense activations about half zero, and the same as lists of K entries per row.
    let mut dense = vec![0.0f32; ROWS * LATENTS];
    let (mut index, mut value) = (Vec::new(), Vec::new());
    for r in 0..ROWS {
        for s in 0..K {
            let f = (r * 53 + s * 211) % LATENTS;
            let v = if s % 2 == 0 { 0.5 + s as f32 } else { 0.0 };
            dense[r * LATENTS + f] = v;
            index.push(f as u32);
            value.push(v);
        }
    }
    let (x_buf, recon_buf, dense_buf, value_buf) = (b.upload(&x), b.upload(&recon), b.upload(&dense), b.upload(&value));
    let index_buf = b.gpu.upload_bytes("index", bytemuck::cast_slice(&index));
    let want_stats: Vec<f32> = (0..ROWS)
        .flat_map(|r| {
            let s = saelab::sae::metrics::row_stats(
                &x[r * WIDTH..(r + 1) * WIDTH],
                &recon[r * WIDTH..(r + 1) * WIDTH],
                &dense[r * LATENTS..(r + 1) * LATENTS],
            );
            [s.sse, s.cosine, s.l0]
        })
        .collect();
    let want_counts = saelab::sae::metrics::fire_counts(&dense, LATENTS);
    for lists in [false, true] {
        let acts = || {
            if lists {
                metrics::Activations::Lists { index: &index_buf, value: &value_buf, k: K }
            } else {
                metrics::Activations::Dense { acts: &dense_buf, ld: LATENTS }
            }
        };
        let (stats, counts) = (b.gpu.storage("stats", (ROWS * 12) as u64), b.gpu.storage("counts", (LATENTS * 4) as u64));
        b.run(|g, e| {
            metrics::row_metrics(
                g,
                e,
                metrics::RowMetrics { rows: ROWS, d_in: WIDTH, d_sae: LATENTS, x: &x_buf, recon: &recon_buf, acts: acts(), stats: &stats },
            )
        });
        b.run(|g, e| metrics::fire_counts(g, e, ROWS, LATENTS, acts(), &counts));
        close(&format!("row_metrics (lists {lists})"), &b.read(&stats, ROWS * 3), &want_stats, SUMS);
        assert_eq!(pollster::block_on(b.gpu.read_u32(&counts, LATENTS)).unwrap(), want_counts, "fire_counts (lists {lists})");
    }
}

// ------------------------------------------------------------------------------------------
// A training step's recorded work

#[test]
fn a_training_step_records_the_same_work_every_time() {
    use saelab::train::gpu_trainer::GpuTrainer;
    use saelab::train::sae_train::{init_weights, TrainArch};
    for arch in [TrainArch::TopK { k: K }, TrainArch::BatchTopK { k: K }, TrainArch::Standard { l1: 1.0 }] {
        // A device of its own: the uniform pool is per device.
        let mut b = Bench::new(40);
        let p = init_weights(arch, WIDTH, LATENTS, 3);
        // Adam's uniform differs by tensor size only (W_enc and W_dec share theirs).
        let adam_uniforms = p.tensors().iter().map(|(_, t)| t.len()).collect::<std::collections::BTreeSet<_>>().len() as u64;
        let mut trainer = GpuTrainer::new(&b.gpu, &p, arch, ROWS).unwrap();
        let x = b.normals(ROWS * WIDTH, 1.0);
        let dead = vec![false; LATENTS];
        let mut per_step = Vec::new();
        for _ in 0..4 {
            let before = b.gpu.counters.snapshot();
            pollster::block_on(trainer.step(&b.gpu, &x, &dead, 1.0, 1e-3)).unwrap();
            per_step.push(b.gpu.counters.snapshot() - before);
        }
        // The first step makes the uniforms and bind groups; later steps reuse all but Adam's
        // (its bias corrections change every step: one new bind group per tensor) and launch
        // exactly the same work.
        let steady = &per_step[1..];
        assert!(steady.windows(2).all(|w| w[0] == w[1]), "{arch:?}: {per_step:?}");
        let c = steady[0];
        assert!(c.dispatches >= 15, "{arch:?}: {c:?}");
        assert_eq!(c.buffers, adam_uniforms, "{arch:?}: new uniforms per step, after the first ({per_step:?})");
        assert_eq!(c.bind_groups, p.tensors().len() as u64, "{arch:?}: new bind groups per step, after the first ({per_step:?})");
        assert!(per_step[0].buffers > c.buffers, "{arch:?}: the first step made the uniforms the others reuse");
        assert_eq!(per_step[0].bind_groups, per_step[0].dispatches, "{arch:?}: the first step made a bind group per dispatch");
        println!("{arch:?} step, batch {ROWS}, {WIDTH} × {LATENTS}: first {:?}, then {c:?}", per_step[0]);
    }
}

#[test]
fn fma_rounds_and_copy() {
    let mut b = Bench::new(51);
    // Threads that fill no whole workgroup of 256; rounds long enough for the chains to move.
    let (threads, rounds) = (1001, 37);
    let out = b.gpu.storage("out", 16 * threads as u64);
    b.run(|gpu, enc| ceiling::fma_rounds(gpu, enc, ceiling::FmaRounds { threads, rounds, a: 0.97, b: 0.013, out: &out }));
    let got = pollster::block_on(b.gpu.read_f32(&out, 4 * threads)).unwrap();
    close("fma_rounds", &got, &reference::fma_rounds(threads, rounds, 0.97, 0.013), ELEMENTWISE);

    let vec4s = 1237;
    let src_values = b.normals(4 * vec4s + 8, 1.0);
    let src = b.upload(&src_values);
    let dst = b.upload(&vec![7.0; 4 * vec4s + 8]);
    b.run(|gpu, enc| ceiling::copy(gpu, enc, ceiling::Copy { vec4s, src: &src, dst: &dst }));
    let got = pollster::block_on(b.gpu.read_f32(&dst, 4 * vec4s + 8)).unwrap();
    assert_eq!(got[..4 * vec4s], src_values[..4 * vec4s], "the copy is exact");
    assert_eq!(got[4 * vec4s..], [7.0; 8], "nothing past the count is written");

    let short = b.gpu.storage("short", 16);
    assert!(b.refused(|gpu, enc| ceiling::copy(gpu, enc, ceiling::Copy { vec4s: 2, src: &src, dst: &short })).contains("dst"));
    assert!(b
        .refused(|gpu, enc| ceiling::fma_rounds(gpu, enc, ceiling::FmaRounds { threads: 2, rounds: 1, a: 1.0, b: 0.0, out: &short }))
        .contains("out"));
}
