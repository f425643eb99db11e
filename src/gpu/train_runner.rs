//! SAE training on the GPU: the same step as `train::sae_train` (forward, losses, backward, Adam,
//! decoder constraint), recorded as matmul.wgsl products, topk.wgsl selections and train.wgsl
//! element-wise kernels, with parameters, gradients and Adam moments resident on the GPU.
//! Per step only the fire counts come back (for dead-latent tracking).

use super::kernels::{self, Epilogue, Matmul, RowNormalization, TrainIo, TrainOp, TrainParams, MAX_TOPK};
use super::{Gpu, GpuError};
use crate::train::sae_train::{Params, TrainArch, AUXK_COEFFICIENT};

/// One set of the four parameter tensors on the GPU.
struct TensorSet {
    w_enc: wgpu::Buffer,
    b_enc: wgpu::Buffer,
    w_dec: wgpu::Buffer,
    b_dec: wgpu::Buffer,
}

impl TensorSet {
    fn upload(gpu: &Gpu, p: &Params) -> TensorSet {
        TensorSet {
            w_enc: gpu.upload_f32("W_enc", &p.w_enc),
            b_enc: gpu.upload_f32("b_enc", &p.b_enc),
            w_dec: gpu.upload_f32("W_dec", &p.w_dec),
            b_dec: gpu.upload_f32("b_dec", &p.b_dec),
        }
    }
    fn all(&self) -> [&wgpu::Buffer; 4] {
        [&self.w_enc, &self.b_enc, &self.w_dec, &self.b_dec]
    }
    async fn read(&self, gpu: &Gpu, d_in: usize, d_sae: usize) -> Result<Params, GpuError> {
        Ok(Params {
            d_in,
            d_sae,
            w_enc: gpu.read_f32(&self.w_enc, d_in * d_sae).await?,
            b_enc: gpu.read_f32(&self.b_enc, d_sae).await?,
            w_dec: gpu.read_f32(&self.w_dec, d_sae * d_in).await?,
            b_dec: gpu.read_f32(&self.b_dec, d_in).await?,
        })
    }
}

/// Work buffers for one batch size.
struct Work {
    x: wgpu::Buffer,
    sae_in: wgpu::Buffer,
    row_norms: wgpu::Buffer,
    cols: wgpu::Buffer,
    pre: wgpu::Buffer,
    acts: wgpu::Buffer,
    list_index: wgpu::Buffer,
    list_value: wgpu::Buffer,
    recon: wgpu::Buffer,
    g_recon: wgpu::Buffer,
    residual: wgpu::Buffer,
    g_pre: wgpu::Buffer,
    g_sae_in: wgpu::Buffer,
    dec_norms: wgpu::Buffer,
    col_sums: wgpu::Buffer,
    dead: wgpu::Buffer,
    masked: wgpu::Buffer,
    aux_index: wgpu::Buffer,
    aux_value: wgpu::Buffer,
    aux_acts: wgpu::Buffer,
    aux_recon: wgpu::Buffer,
    g_aux: wgpu::Buffer,
    g_aux_acts: wgpu::Buffer,
    counts: wgpu::Buffer,
}

pub struct GpuTrainer {
    pub d_in: usize,
    pub d_sae: usize,
    pub batch: usize,
    pub arch: TrainArch,
    params: TensorSet,
    grads: TensorSet,
    adam_m: TensorSet,
    adam_v: TensorSet,
    work: Work,
    /// β₁ᵗ, β₂ᵗ as running products, exactly as `train::sae_train::Adam`.
    adam_beta_t: (f32, f32),
}

impl GpuTrainer {
    pub fn new(gpu: &Gpu, p: &Params, arch: TrainArch, batch: usize) -> Result<GpuTrainer, GpuError> {
        let (d, m) = (p.d_in, p.d_sae);
        if let TrainArch::TopK { k } = arch {
            if k > MAX_TOPK || (d / 2).max(1) > MAX_TOPK {
                return Err(GpuError::TooLarge(format!(
                    "GPU TopK training needs k ≤ {MAX_TOPK} and d_in/2 ≤ {MAX_TOPK} (AuxK), got k={k}, d_in={d}"
                )));
            }
        }
        let widest = (batch * m.max(d)) as u64 * 4;
        if widest > gpu.max_binding_bytes() || (d * m) as u64 * 4 > gpu.max_binding_bytes() {
            return Err(GpuError::TooLarge(format!(
                "batch {batch} × dict {m} × d_in {d} does not fit one GPU binding of {} bytes; use a smaller batch",
                gpu.max_binding_bytes()
            )));
        }
        let zeros = Params::zeros(d, m);
        let f = |n: usize| (n * 4) as u64;
        let k = match arch {
            TrainArch::TopK { k } => k,
            TrainArch::Standard { .. } => 1,
        };
        let k_aux = (d / 2).max(1);
        let mut cols = vec![0.0f32; 3 * m];
        cols[m..2 * m].iter_mut().for_each(|v| *v = 1.0);
        let work = Work {
            x: gpu.storage("x", f(batch * d)),
            sae_in: gpu.storage("sae_in", f(batch * d)),
            row_norms: gpu.storage("row norms", f(batch * 3)),
            cols: gpu.upload_f32("encoder columns", &cols),
            pre: gpu.storage("pre", f(batch * m)),
            acts: gpu.storage("acts", f(batch * m)),
            list_index: gpu.storage("topk index", f(batch * k)),
            list_value: gpu.storage("topk value", f(batch * k)),
            recon: gpu.storage("recon", f(batch * d)),
            g_recon: gpu.storage("g_recon", f(batch * d)),
            residual: gpu.storage("residual", f(batch * d)),
            g_pre: gpu.storage("g_pre", f(batch * m)),
            g_sae_in: gpu.storage("g_sae_in", f(batch * d)),
            dec_norms: gpu.storage("decoder norms", f(m)),
            col_sums: gpu.storage("column sums", f(m)),
            dead: gpu.storage("dead mask", f(m)),
            masked: gpu.storage("masked pre", f(batch * m)),
            aux_index: gpu.storage("aux index", f(batch * k_aux)),
            aux_value: gpu.storage("aux value", f(batch * k_aux)),
            aux_acts: gpu.storage("aux acts", f(batch * m)),
            aux_recon: gpu.storage("aux recon", f(batch * d)),
            g_aux: gpu.storage("g_aux", f(batch * d)),
            g_aux_acts: gpu.storage("g_aux_acts", f(batch * m)),
            counts: gpu.storage("fire counts", f(m)),
        };
        Ok(GpuTrainer {
            d_in: d,
            d_sae: m,
            batch,
            arch,
            params: TensorSet::upload(gpu, p),
            grads: TensorSet::upload(gpu, &zeros),
            adam_m: TensorSet::upload(gpu, &zeros),
            adam_v: TensorSet::upload(gpu, &zeros),
            work,
            adam_beta_t: (1.0, 1.0),
        })
    }

    fn matmul(&self, gpu: &Gpu, enc: &mut wgpu::CommandEncoder, epilogue: Epilogue, shape: (usize, usize, usize), a: (&wgpu::Buffer, usize, bool), b: (&wgpu::Buffer, usize, bool), c: (&wgpu::Buffer, usize)) {
        let (m, n, k) = shape;
        kernels::matmul(
            gpu,
            enc,
            epilogue,
            Matmul { m, n, k, a: a.0, lda: a.1, a_col: 0, b: b.0, ldb: b.1, c: c.0, ldc: c.1, c_col: 0, cols: &self.work.cols, trans_a: a.2, trans_b: b.2 },
        );
    }

    /// Records the forward and backward pass for the batch in `work.x`; gradients land in `grads`.
    fn record_gradients(&self, gpu: &Gpu, enc: &mut wgpu::CommandEncoder, dead: &[bool], l1_scale: f32) {
        let (d, m, bsz) = (self.d_in, self.d_sae, self.batch);
        let (p, g, w) = (&self.params, &self.grads, &self.work);
        let tp = |rows: usize, cols: usize| TrainParams { rows: rows as u32, cols: cols as u32, ..Default::default() };

        // Forward: sae_in = x − b_dec; pre = sae_in·W_enc + b_enc; acts; recon = acts·W_dec + b_dec.
        kernels::normalize_rows(gpu, enc, bsz, d, RowNormalization { mode: 0, apply_b_dec: true }, &p.b_dec, &w.x, &w.sae_in, &w.row_norms);
        enc.copy_buffer_to_buffer(&p.b_enc, 0, &w.cols, 0, (m * 4) as u64);
        self.matmul(gpu, enc, Epilogue::TopKPre, (bsz, m, d), (&w.sae_in, d, false), (&p.w_enc, m, false), (&w.pre, m));
        match self.arch {
            TrainArch::Standard { .. } => {
                kernels::train_op(gpu, enc, TrainOp::ReluActs, tp(bsz, m), TrainIo { in0: Some(&w.pre), out0: Some(&w.acts), ..Default::default() }, bsz * m)
            }
            TrainArch::TopK { k } => {
                kernels::topk(gpu, enc, bsz, m, m, k, &w.pre, &w.list_index, &w.list_value);
                enc.clear_buffer(&w.acts, 0, None);
                let params = TrainParams { k: k as u32, ..tp(bsz, m) };
                let io = TrainIo { in0: Some(&w.list_index), in1: Some(&w.list_value), out0: Some(&w.acts), ..Default::default() };
                kernels::train_op(gpu, enc, TrainOp::ScatterLists, params, io, bsz * k);
            }
        }
        kernels::fill_bias(gpu, enc, bsz, d, &p.b_dec, &w.recon);
        self.matmul(gpu, enc, Epilogue::Accumulate, (bsz, d, m), (&w.acts, m, false), (&p.w_dec, d, false), (&w.recon, d));

        // Backward through the reconstruction.
        let io = TrainIo { in0: Some(&w.recon), in1: Some(&w.x), out0: Some(&w.g_recon), out1: Some(&w.residual), ..Default::default() };
        kernels::train_op(gpu, enc, TrainOp::ReconGrad, TrainParams { scale: 2.0 / bsz as f32, ..tp(bsz, d) }, io, bsz * d);
        kernels::train_op(gpu, enc, TrainOp::DecoderNorms, tp(m, d), TrainIo { in0: Some(&p.w_dec), out0: Some(&w.dec_norms), ..Default::default() }, m);
        // g_acts = g_recon·W_decᵀ, then through the activation (plus the L1 term) into g_pre.
        self.matmul(gpu, enc, Epilogue::Store, (bsz, m, d), (&w.g_recon, d, false), (&p.w_dec, d, true), (&w.g_pre, m));
        let l1 = match self.arch {
            TrainArch::Standard { l1 } => l1 * l1_scale / bsz as f32,
            TrainArch::TopK { .. } => 0.0,
        };
        let io = TrainIo { in0: Some(&w.acts), in1: Some(&w.dec_norms), out0: Some(&w.g_pre), ..Default::default() };
        kernels::train_op(gpu, enc, TrainOp::ActGrad, TrainParams { scale: l1, ..tp(bsz, m) }, io, bsz * m);
        // g_W_dec = actsᵀ·g_recon (+ the L1 term's share).
        self.matmul(gpu, enc, Epilogue::Store, (m, d, bsz), (&w.acts, m, true), (&w.g_recon, d, false), (&g.w_dec, d));
        if l1 != 0.0 {
            let io = TrainIo { in0: Some(&w.acts), out0: Some(&w.col_sums), ..Default::default() };
            kernels::train_op(gpu, enc, TrainOp::ColumnSums, TrainParams { scale: 1.0, ..tp(bsz, m) }, io, m);
            let io = TrainIo { in0: Some(&w.col_sums), in1: Some(&w.dec_norms), in2: Some(&p.w_dec), out0: Some(&g.w_dec), ..Default::default() };
            kernels::train_op(gpu, enc, TrainOp::L1DecoderGrad, TrainParams { scale: l1, ..tp(m, d) }, io, m * d);
        }

        // AuxK (Gao et al. 2024): dead latents reconstruct the residual.
        let num_dead = dead.iter().filter(|&&x| x).count();
        if let (TrainArch::TopK { .. }, true) = (self.arch, num_dead > 0) {
            let k_aux_full = (d / 2).max(1);
            let aux_scale = (num_dead as f32 / k_aux_full as f32).min(1.0);
            let k_aux = k_aux_full.min(num_dead);
            let mask: Vec<f32> = dead.iter().map(|&x| if x { 1.0 } else { 0.0 }).collect();
            gpu.queue.write_buffer(&w.dead, 0, bytemuck::cast_slice(&mask));
            let io = TrainIo { in0: Some(&w.pre), in1: Some(&w.dead), out0: Some(&w.masked), ..Default::default() };
            kernels::train_op(gpu, enc, TrainOp::MaskDead, tp(bsz, m), io, bsz * m);
            kernels::topk(gpu, enc, bsz, m, m, k_aux, &w.masked, &w.aux_index, &w.aux_value);
            enc.clear_buffer(&w.aux_acts, 0, None);
            let io = TrainIo { in0: Some(&w.aux_index), in1: Some(&w.aux_value), out0: Some(&w.aux_acts), ..Default::default() };
            kernels::train_op(gpu, enc, TrainOp::ScatterLists, TrainParams { k: k_aux as u32, ..tp(bsz, m) }, io, bsz * k_aux);
            self.matmul(gpu, enc, Epilogue::Store, (bsz, d, m), (&w.aux_acts, m, false), (&p.w_dec, d, false), (&w.aux_recon, d));
            let scale = 2.0 * AUXK_COEFFICIENT * aux_scale / bsz as f32;
            let io = TrainIo { in0: Some(&w.aux_recon), in1: Some(&w.residual), out0: Some(&w.g_aux), ..Default::default() };
            kernels::train_op(gpu, enc, TrainOp::AuxGrad, TrainParams { scale, ..tp(bsz, d) }, io, bsz * d);
            self.matmul(gpu, enc, Epilogue::Store, (bsz, m, d), (&w.g_aux, d, false), (&p.w_dec, d, true), (&w.g_aux_acts, m));
            let io = TrainIo { in0: Some(&w.aux_acts), in2: Some(&w.g_aux_acts), out0: Some(&w.g_pre), ..Default::default() };
            kernels::train_op(gpu, enc, TrainOp::AuxActGrad, tp(bsz, m), io, bsz * m);
            self.matmul(gpu, enc, Epilogue::Accumulate, (m, d, bsz), (&w.aux_acts, m, true), (&w.g_aux, d, false), (&g.w_dec, d));
        }

        // Encoder and biases: g_W_enc = sae_inᵀ·g_pre, g_b_enc = Σ_b g_pre,
        // g_b_dec = Σ_b g_recon − Σ_b g_pre·W_encᵀ (b_dec enters both recon and sae_in).
        self.matmul(gpu, enc, Epilogue::Store, (d, m, bsz), (&w.sae_in, d, true), (&w.g_pre, m, false), (&g.w_enc, m));
        let io = TrainIo { in0: Some(&w.g_pre), out0: Some(&g.b_enc), ..Default::default() };
        kernels::train_op(gpu, enc, TrainOp::ColumnSums, TrainParams { scale: 1.0, ..tp(bsz, m) }, io, m);
        self.matmul(gpu, enc, Epilogue::Store, (bsz, d, m), (&w.g_pre, m, false), (&p.w_enc, m, true), (&w.g_sae_in, d));
        let io = TrainIo { in0: Some(&w.g_recon), out0: Some(&g.b_dec), ..Default::default() };
        kernels::train_op(gpu, enc, TrainOp::ColumnSums, TrainParams { scale: 1.0, ..tp(bsz, d) }, io, d);
        let io = TrainIo { in0: Some(&w.g_sae_in), out0: Some(&g.b_dec), ..Default::default() };
        kernels::train_op(gpu, enc, TrainOp::ColumnSums, TrainParams { scale: -1.0, mode: 1, ..tp(bsz, d) }, io, d);
    }

    /// Gradients of one batch without updating (for tests against the CPU reference).
    pub async fn gradients(&self, gpu: &Gpu, x: &[f32], dead: &[bool], l1_scale: f32) -> Result<Params, GpuError> {
        gpu.queue.write_buffer(&self.work.x, 0, bytemuck::cast_slice(x));
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        self.record_gradients(gpu, &mut enc, dead, l1_scale);
        gpu.queue.submit([enc.finish()]);
        self.grads.read(gpu, self.d_in, self.d_sae).await
    }

    /// One training step on `x` (`[batch, d_in]`); returns each latent's fire count on the batch.
    pub async fn step(&mut self, gpu: &Gpu, x: &[f32], dead: &[bool], l1_scale: f32, lr: f32) -> Result<Vec<u32>, GpuError> {
        let (d, m, bsz) = (self.d_in, self.d_sae, self.batch);
        assert_eq!(x.len(), bsz * d, "a batch is [batch, d_in]");
        gpu.queue.write_buffer(&self.work.x, 0, bytemuck::cast_slice(x));
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        self.record_gradients(gpu, &mut enc, dead, l1_scale);
        let unit_decoder = matches!(self.arch, TrainArch::TopK { .. });
        let rows = |rows: usize, cols: usize| TrainParams { rows: rows as u32, cols: cols as u32, ..Default::default() };
        if unit_decoder {
            let io = TrainIo { in0: Some(&self.params.w_dec), out0: Some(&self.grads.w_dec), ..Default::default() };
            kernels::train_op(gpu, &mut enc, TrainOp::RemoveParallelGrad, rows(m, d), io, m);
        }
        let (beta1, beta2) = (0.9f32, 0.999f32);
        self.adam_beta_t = (self.adam_beta_t.0 * beta1, self.adam_beta_t.1 * beta2);
        let (c1, c2) = (1.0 - self.adam_beta_t.0, 1.0 - self.adam_beta_t.1);
        let adam = |n: usize| TrainParams {
            rows: n as u32,
            lr,
            beta1,
            beta2,
            eps: 1e-8,
            c1,
            c2,
            ..Default::default()
        };
        let sizes = [d * m, m, m * d, d];
        for (i, n) in sizes.into_iter().enumerate() {
            let io = TrainIo {
                in0: Some(self.grads.all()[i]),
                out0: Some(self.params.all()[i]),
                out1: Some(self.adam_m.all()[i]),
                out2: Some(self.adam_v.all()[i]),
                ..Default::default()
            };
            kernels::train_op(gpu, &mut enc, TrainOp::Adam, adam(n), io, n);
        }
        if unit_decoder {
            let io = TrainIo { out0: Some(&self.params.w_dec), ..Default::default() };
            kernels::train_op(gpu, &mut enc, TrainOp::NormalizeDecoder, rows(m, d), io, m);
        }
        enc.clear_buffer(&self.work.counts, 0, None);
        kernels::fire_counts(gpu, &mut enc, bsz, m, kernels::Activations::Dense { acts: &self.work.acts, ld: m }, &self.work.counts);
        gpu.queue.submit([enc.finish()]);
        gpu.read_u32(&self.work.counts, m).await
    }

    pub async fn params(&self, gpu: &Gpu) -> Result<Params, GpuError> {
        self.params.read(gpu, self.d_in, self.d_sae).await
    }

    /// Parameters and Adam moments `(params, m, v)`, for host-side surgery such as resampling.
    pub async fn state(&self, gpu: &Gpu) -> Result<(Params, Params, Params), GpuError> {
        let (d, m) = (self.d_in, self.d_sae);
        Ok((self.params.read(gpu, d, m).await?, self.adam_m.read(gpu, d, m).await?, self.adam_v.read(gpu, d, m).await?))
    }

    /// Writes back parameters and Adam moments.
    pub fn set_state(&self, gpu: &Gpu, params: &Params, m: &Params, v: &Params) {
        for (set, values) in [(&self.params, params), (&self.adam_m, m), (&self.adam_v, v)] {
            for (buffer, data) in set.all().into_iter().zip(values.tensors()) {
                gpu.queue.write_buffer(buffer, 0, bytemuck::cast_slice(data));
            }
        }
    }
}
