//! SAE training on the GPU: the same step as `train::sae_train` (forward, losses, backward, Adam,
//! decoder constraint), recorded as matmul.wgsl products, topk.wgsl selections and train.wgsl
//! element-wise kernels, with parameters, gradients and Adam moments resident on the GPU.
//! Per step only the fire counts come back (for dead-latent tracking).

use super::sae_train::{Params, TrainArch, AUXK_COEFFICIENT, TENSOR_NAMES};
use crate::gpu::kernels::{self, Epilogue, Matmul, RowNormalization, TrainIo, TrainOp, TrainParams, MAX_TOPK};
use crate::gpu::{Gpu, GpuError};

/// One set of the parameter tensors on the GPU (in `Params::tensors` order; an absent tensor is a
/// 4-byte placeholder).
struct TensorSet {
    buffers: [wgpu::Buffer; 7],
}

impl TensorSet {
    fn upload(gpu: &Gpu, p: &Params) -> TensorSet {
        let t = p.tensors();
        TensorSet { buffers: std::array::from_fn(|i| gpu.upload_f32(TENSOR_NAMES[i], t[i])) }
    }
    fn w_enc(&self) -> &wgpu::Buffer {
        &self.buffers[0]
    }
    fn b_enc(&self) -> &wgpu::Buffer {
        &self.buffers[1]
    }
    fn w_dec(&self) -> &wgpu::Buffer {
        &self.buffers[2]
    }
    fn b_dec(&self) -> &wgpu::Buffer {
        &self.buffers[3]
    }
    fn threshold(&self) -> &wgpu::Buffer {
        &self.buffers[4]
    }
    fn r_mag(&self) -> &wgpu::Buffer {
        &self.buffers[5]
    }
    fn b_mag(&self) -> &wgpu::Buffer {
        &self.buffers[6]
    }
    /// Reads back tensors shaped like `shape`.
    async fn read(&self, gpu: &Gpu, shape: &Params) -> Result<Params, GpuError> {
        let mut p = shape.clone();
        for (buffer, tensor) in self.buffers.iter().zip(p.tensors_mut()) {
            let len = tensor.len();
            *tensor = gpu.read_f32(buffer, len).await?;
        }
        Ok(p)
    }
}

/// What one GPU step reports.
pub struct StepResult {
    /// Per latent, the rows of the batch it fired on.
    pub fire_counts: Vec<u32>,
    /// BatchTopK: the smallest kept activation, as `StepStats::batch_min_act`.
    pub batch_min_act: Option<f32>,
}

/// Work buffers for one batch size.
struct Work {
    x: wgpu::Buffer,
    sae_in: wgpu::Buffer,
    row_norms: wgpu::Buffer,
    /// The matmul epilogue's per-column bias (b_enc copied in).
    cols: wgpu::Buffer,
    /// Pre-activations `sae_in·W_enc + b_enc`; for gated, `sae_in·W_enc` alone.
    pre: wgpu::Buffer,
    acts: wgpu::Buffer,
    list_index: wgpu::Buffer,
    list_value: wgpu::Buffer,
    recon: wgpu::Buffer,
    g_recon: wgpu::Buffer,
    residual: wgpu::Buffer,
    /// The gradient at the pre-activations (for gated, at `sae_in·W_enc`).
    g_pre: wgpu::Buffer,
    g_sae_in: wgpu::Buffer,
    dec_norms: wgpu::Buffer,
    col_sums: wgpu::Buffer,
    dead: wgpu::Buffer,
    masked: wgpu::Buffer,
    aux_index: wgpu::Buffer,
    aux_value: wgpu::Buffer,
    /// The auxiliary path, as `train::sae_train::Forward`: AuxK's activations (topk, batchtopk)
    /// or the gate's relu(π_gate) (gated), their reconstruction, and the gradients there.
    aux_acts: wgpu::Buffer,
    aux_recon: wgpu::Buffer,
    g_aux: wgpu::Buffer,
    g_aux_acts: wgpu::Buffer,
    /// BatchTopK's radix-select histogram and state.
    histogram: wgpu::Buffer,
    select_state: wgpu::Buffer,
    /// Fire counts per latent, then BatchTopK's 4-word select state: one read-back per step.
    report: wgpu::Buffer,
}

pub struct GpuTrainer {
    pub d_in: usize,
    pub d_sae: usize,
    pub batch: usize,
    pub arch: TrainArch,
    /// Zeros shaped like the parameters (which tensors exist, and their lengths).
    shape: Params,
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
            if k > MAX_TOPK {
                return Err(GpuError::TooLarge(format!("GPU TopK training needs k ≤ {MAX_TOPK}, got k={k}")));
            }
        }
        if arch.uses_auxk() && (d / 2).max(1) > MAX_TOPK {
            return Err(GpuError::TooLarge(format!("GPU AuxK needs d_in/2 ≤ {MAX_TOPK}, got d_in={d}")));
        }
        // Each of [batch, max(d_sae, d_in)] and [d_in, d_sae] must fit one storage binding; say
        // what would fit on this adapter.
        let limit = gpu.max_binding_bytes() / 4;
        let widest = (batch * m.max(d)) as u64;
        if widest > limit || (d * m) as u64 > limit {
            let max_batch = limit / m.max(d) as u64;
            let max_dict = (limit / d as u64).min(limit / batch.max(1) as u64);
            return Err(GpuError::TooLarge(format!(
                "batch {batch} × dict {m} × d_in {d} does not fit this adapter (one GPU binding holds {} MiB): with dict {m} the batch can be at most {max_batch}; with batch {batch} the dict can be at most {max_dict}",
                gpu.max_binding_bytes() >> 20
            )));
        }
        let shape = p.zeros_like();
        let f = |n: usize| (n * 4) as u64;
        let k = match arch {
            TrainArch::TopK { k } => k,
            _ => 1,
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
            histogram: gpu.storage("batch topk histogram", f(256)),
            select_state: gpu.storage("batch topk state", f(4)),
            report: gpu.storage("fire counts + select state", f(m + 4)),
        };
        Ok(GpuTrainer {
            d_in: d,
            d_sae: m,
            batch,
            arch,
            params: TensorSet::upload(gpu, p),
            grads: TensorSet::upload(gpu, &shape),
            adam_m: TensorSet::upload(gpu, &shape),
            adam_v: TensorSet::upload(gpu, &shape),
            shape,
            work,
            adam_beta_t: (1.0, 1.0),
        })
    }

    fn matmul(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        epilogue: Epilogue,
        shape: (usize, usize, usize),
        a: (&wgpu::Buffer, usize, bool),
        b: (&wgpu::Buffer, usize, bool),
        c: (&wgpu::Buffer, usize),
    ) {
        let (m, n, k) = shape;
        kernels::matmul(
            gpu,
            enc,
            epilogue,
            Matmul {
                m,
                n,
                k,
                a: a.0,
                lda: a.1,
                a_col: 0,
                b: b.0,
                ldb: b.1,
                c: c.0,
                ldc: c.1,
                c_col: 0,
                cols: &self.work.cols,
                trans_a: a.2,
                trans_b: b.2,
            },
        );
    }

    /// Records the forward and backward pass for the batch in `work.x`; gradients land in `grads`.
    /// Mirrors `train::sae_train::loss_and_grads` step by step.
    fn record_gradients(&self, gpu: &Gpu, enc: &mut wgpu::CommandEncoder, dead: &[bool], sparsity_scale: f32) {
        let (d, m, bsz) = (self.d_in, self.d_sae, self.batch);
        let (p, g, w) = (&self.params, &self.grads, &self.work);
        let tp = |rows: usize, cols: usize| TrainParams { rows: rows as u32, cols: cols as u32, ..Default::default() };
        let gated = matches!(self.arch, TrainArch::Gated { .. });

        // Forward: sae_in = x − b_dec; pre = sae_in·W_enc + b_enc; acts; recon = acts·W_dec + b_dec.
        kernels::normalize_rows(
            gpu,
            enc,
            bsz,
            d,
            RowNormalization { mode: 0, apply_b_dec: true },
            p.b_dec(),
            &w.x,
            &w.sae_in,
            &w.row_norms,
        );
        if gated {
            // The gate and magnitude paths share sae_in·W_enc; their biases come in gated_acts.
            self.matmul(gpu, enc, Epilogue::Store, (bsz, m, d), (&w.sae_in, d, false), (p.w_enc(), m, false), (&w.pre, m));
        } else {
            enc.copy_buffer_to_buffer(p.b_enc(), 0, &w.cols, 0, (m * 4) as u64);
            self.matmul(gpu, enc, Epilogue::TopKPre, (bsz, m, d), (&w.sae_in, d, false), (p.w_enc(), m, false), (&w.pre, m));
        }
        match self.arch {
            TrainArch::Standard { .. } => kernels::train_op(
                gpu,
                enc,
                TrainOp::ReluActs,
                tp(bsz, m),
                TrainIo { in0: Some(&w.pre), out0: Some(&w.acts), ..Default::default() },
                bsz * m,
            ),
            TrainArch::TopK { k } => {
                kernels::topk(gpu, enc, bsz, m, m, k, &w.pre, &w.list_index, &w.list_value);
                enc.clear_buffer(&w.acts, 0, None);
                let params = TrainParams { k: k as u32, ..tp(bsz, m) };
                let io = TrainIo { in0: Some(&w.list_index), in1: Some(&w.list_value), out0: Some(&w.acts), ..Default::default() };
                kernels::train_op(gpu, enc, TrainOp::ScatterLists, params, io, bsz * k);
            }
            TrainArch::BatchTopK { k } => {
                enc.clear_buffer(&w.histogram, 0, None);
                enc.clear_buffer(&w.select_state, 0, None);
                kernels::batch_topk(gpu, enc, bsz * m, k * bsz, &w.pre, &w.acts, &w.histogram, &w.select_state);
            }
            TrainArch::JumpRelu { .. } => {
                let io = TrainIo { in0: Some(&w.pre), in1: Some(p.threshold()), out0: Some(&w.acts), ..Default::default() };
                kernels::train_op(gpu, enc, TrainOp::JumpReluActs, tp(bsz, m), io, bsz * m);
            }
            TrainArch::Gated { .. } => {
                let io = TrainIo {
                    in0: Some(&w.pre),
                    in1: Some(p.b_enc()),
                    in2: Some(p.r_mag()),
                    in3: Some(p.b_mag()),
                    out0: Some(&w.acts),
                    out1: Some(&w.aux_acts),
                    ..Default::default()
                };
                kernels::train_op(gpu, enc, TrainOp::GatedActs, tp(bsz, m), io, bsz * m);
            }
        }
        kernels::fill_bias(gpu, enc, bsz, d, p.b_dec(), &w.recon);
        self.matmul(gpu, enc, Epilogue::Accumulate, (bsz, d, m), (&w.acts, m, false), (p.w_dec(), d, false), (&w.recon, d));

        // Backward through the reconstruction.
        let io = TrainIo { in0: Some(&w.recon), in1: Some(&w.x), out0: Some(&w.g_recon), out1: Some(&w.residual), ..Default::default() };
        kernels::train_op(gpu, enc, TrainOp::ReconGrad, TrainParams { scale: 2.0 / bsz as f32, ..tp(bsz, d) }, io, bsz * d);
        kernels::train_op(
            gpu,
            enc,
            TrainOp::DecoderNorms,
            tp(m, d),
            TrainIo { in0: Some(p.w_dec()), out0: Some(&w.dec_norms), ..Default::default() },
            m,
        );
        // g_acts = g_recon·W_decᵀ.
        self.matmul(gpu, enc, Epilogue::Store, (bsz, m, d), (&w.g_recon, d, false), (p.w_dec(), d, true), (&w.g_pre, m));
        if let TrainArch::JumpRelu { l0, bandwidth } = self.arch {
            // The threshold's straight-through estimate reads g_acts before it is masked.
            let params = TrainParams { scale: l0 * sparsity_scale / bsz as f32, width: bandwidth, ..tp(bsz, m) };
            let io = TrainIo {
                in0: Some(&w.pre),
                in1: Some(p.threshold()),
                in2: Some(&w.g_pre),
                out0: Some(g.threshold()),
                ..Default::default()
            };
            kernels::train_op(gpu, enc, TrainOp::JumpReluThresholdGrad, params, io, m);
        }
        // Through the activation (plus the standard SAE's L1 term) into g_pre; for gated this is
        // the magnitude path's gradient.
        let l1 = match self.arch {
            TrainArch::Standard { l1 } | TrainArch::Gated { l1 } => l1 * sparsity_scale / bsz as f32,
            _ => 0.0,
        };
        let act_l1 = if gated { 0.0 } else { l1 };
        let io = TrainIo { in0: Some(&w.acts), in1: Some(&w.dec_norms), out0: Some(&w.g_pre), ..Default::default() };
        kernels::train_op(gpu, enc, TrainOp::ActGrad, TrainParams { scale: act_l1, ..tp(bsz, m) }, io, bsz * m);
        // g_W_dec = actsᵀ·g_recon (+ the L1 term's share).
        self.matmul(gpu, enc, Epilogue::Store, (m, d, bsz), (&w.acts, m, true), (&w.g_recon, d, false), (g.w_dec(), d));
        if act_l1 != 0.0 {
            self.record_l1_decoder_grad(gpu, enc, &w.acts, act_l1);
        }

        // The auxiliary path: AuxK (Gao et al. 2024; dead latents reconstruct the residual) or
        // the gate (its L1 and its reconstruction of x).
        let num_dead = dead.iter().filter(|&&x| x).count();
        let aux = if gated {
            // via_gate = gate_acts·W_dec + b_dec; g_aux = 2 (via_gate − x) / B.
            kernels::fill_bias(gpu, enc, bsz, d, p.b_dec(), &w.aux_recon);
            self.matmul(gpu, enc, Epilogue::Accumulate, (bsz, d, m), (&w.aux_acts, m, false), (p.w_dec(), d, false), (&w.aux_recon, d));
            let io = TrainIo { in0: Some(&w.aux_recon), in1: Some(&w.x), out0: Some(&w.g_aux), ..Default::default() };
            kernels::train_op(gpu, enc, TrainOp::AuxGrad, TrainParams { scale: 2.0 / bsz as f32, ..tp(bsz, d) }, io, bsz * d);
            true
        } else if self.arch.uses_auxk() && num_dead > 0 {
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
            self.matmul(gpu, enc, Epilogue::Store, (bsz, d, m), (&w.aux_acts, m, false), (p.w_dec(), d, false), (&w.aux_recon, d));
            let scale = 2.0 * AUXK_COEFFICIENT * aux_scale / bsz as f32;
            let io = TrainIo { in0: Some(&w.aux_recon), in1: Some(&w.residual), out0: Some(&w.g_aux), ..Default::default() };
            kernels::train_op(gpu, enc, TrainOp::AuxGrad, TrainParams { scale, ..tp(bsz, d) }, io, bsz * d);
            true
        } else {
            false
        };
        if aux {
            // g_aux_acts = g_aux·W_decᵀ, through the aux activation (with the gate's L1).
            self.matmul(gpu, enc, Epilogue::Store, (bsz, m, d), (&w.g_aux, d, false), (p.w_dec(), d, true), (&w.g_aux_acts, m));
            let io = TrainIo { in0: Some(&w.aux_acts), in1: Some(&w.dec_norms), out0: Some(&w.g_aux_acts), ..Default::default() };
            kernels::train_op(gpu, enc, TrainOp::ActGrad, TrainParams { scale: if gated { l1 } else { 0.0 }, ..tp(bsz, m) }, io, bsz * m);
            self.matmul(gpu, enc, Epilogue::Accumulate, (m, d, bsz), (&w.aux_acts, m, true), (&w.g_aux, d, false), (g.w_dec(), d));
            if gated && l1 != 0.0 {
                self.record_l1_decoder_grad(gpu, enc, &w.aux_acts, l1);
            }
        }
        if gated {
            // g_b_gate = Σ_b g_gate_pre; then g_projected, g_r_mag, g_b_mag.
            let io = TrainIo { in0: Some(&w.g_aux_acts), out0: Some(g.b_enc()), ..Default::default() };
            kernels::train_op(gpu, enc, TrainOp::ColumnSums, TrainParams { scale: 1.0, ..tp(bsz, m) }, io, m);
            let io = TrainIo {
                in1: Some(&w.pre),
                in2: Some(p.r_mag()),
                in3: Some(&w.g_aux_acts),
                out0: Some(&w.g_pre),
                out1: Some(g.r_mag()),
                out2: Some(g.b_mag()),
                ..Default::default()
            };
            kernels::train_op(gpu, enc, TrainOp::GatedBackward, tp(bsz, m), io, m);
        } else {
            if aux {
                let io = TrainIo { in0: Some(&w.aux_acts), in2: Some(&w.g_aux_acts), out0: Some(&w.g_pre), ..Default::default() };
                kernels::train_op(gpu, enc, TrainOp::AuxActGrad, tp(bsz, m), io, bsz * m);
            }
            let io = TrainIo { in0: Some(&w.g_pre), out0: Some(g.b_enc()), ..Default::default() };
            kernels::train_op(gpu, enc, TrainOp::ColumnSums, TrainParams { scale: 1.0, ..tp(bsz, m) }, io, m);
        }

        // Encoder and b_dec: g_W_enc = sae_inᵀ·g_pre, g_b_dec = Σ_b g_recon (+ Σ_b g_aux for the
        // gate's reconstruction) − Σ_b g_pre·W_encᵀ (b_dec enters the reconstructions and sae_in).
        self.matmul(gpu, enc, Epilogue::Store, (d, m, bsz), (&w.sae_in, d, true), (&w.g_pre, m, false), (g.w_enc(), m));
        self.matmul(gpu, enc, Epilogue::Store, (bsz, d, m), (&w.g_pre, m, false), (p.w_enc(), m, true), (&w.g_sae_in, d));
        let io = TrainIo { in0: Some(&w.g_recon), out0: Some(g.b_dec()), ..Default::default() };
        kernels::train_op(gpu, enc, TrainOp::ColumnSums, TrainParams { scale: 1.0, ..tp(bsz, d) }, io, d);
        if gated {
            let io = TrainIo { in0: Some(&w.g_aux), out0: Some(g.b_dec()), ..Default::default() };
            kernels::train_op(gpu, enc, TrainOp::ColumnSums, TrainParams { scale: 1.0, mode: 1, ..tp(bsz, d) }, io, d);
        }
        let io = TrainIo { in0: Some(&w.g_sae_in), out0: Some(g.b_dec()), ..Default::default() };
        kernels::train_op(gpu, enc, TrainOp::ColumnSums, TrainParams { scale: -1.0, mode: 1, ..tp(bsz, d) }, io, d);
    }

    /// The decoder-norm-weighted L1's decoder gradient:
    /// g_W_dec[j] += scale·(Σ_b acts[b, j])·W_dec[j]/‖W_dec[j]‖.
    fn record_l1_decoder_grad(&self, gpu: &Gpu, enc: &mut wgpu::CommandEncoder, acts: &wgpu::Buffer, scale: f32) {
        let (d, m, bsz, w) = (self.d_in, self.d_sae, self.batch, &self.work);
        let tp = |rows: usize, cols: usize| TrainParams { rows: rows as u32, cols: cols as u32, ..Default::default() };
        let io = TrainIo { in0: Some(acts), out0: Some(&w.col_sums), ..Default::default() };
        kernels::train_op(gpu, enc, TrainOp::ColumnSums, TrainParams { scale: 1.0, ..tp(bsz, m) }, io, m);
        let io = TrainIo {
            in0: Some(&w.col_sums),
            in1: Some(&w.dec_norms),
            in2: Some(self.params.w_dec()),
            out0: Some(self.grads.w_dec()),
            ..Default::default()
        };
        kernels::train_op(gpu, enc, TrainOp::L1DecoderGrad, TrainParams { scale, ..tp(m, d) }, io, m * d);
    }

    /// Gradients of one batch without updating (for tests against the CPU reference).
    pub async fn gradients(&self, gpu: &Gpu, x: &[f32], dead: &[bool], sparsity_scale: f32) -> Result<Params, GpuError> {
        gpu.queue.write_buffer(&self.work.x, 0, bytemuck::cast_slice(x));
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        self.record_gradients(gpu, &mut enc, dead, sparsity_scale);
        gpu.queue.submit([enc.finish()]);
        self.grads.read(gpu, &self.shape).await
    }

    /// One training step on `x` (`[batch, d_in]`): gradients, the decoder constraint, Adam, the
    /// parameter constraints; one read-back (fire counts and BatchTopK's threshold).
    pub async fn step(&mut self, gpu: &Gpu, x: &[f32], dead: &[bool], sparsity_scale: f32, lr: f32) -> Result<StepResult, GpuError> {
        let (d, m, bsz) = (self.d_in, self.d_sae, self.batch);
        assert_eq!(x.len(), bsz * d, "a batch is [batch, d_in]");
        gpu.queue.write_buffer(&self.work.x, 0, bytemuck::cast_slice(x));
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        self.record_gradients(gpu, &mut enc, dead, sparsity_scale);
        let unit_decoder = self.arch.unit_decoder();
        let rows = |rows: usize, cols: usize| TrainParams { rows: rows as u32, cols: cols as u32, ..Default::default() };
        if unit_decoder {
            let io = TrainIo { in0: Some(self.params.w_dec()), out0: Some(self.grads.w_dec()), ..Default::default() };
            kernels::train_op(gpu, &mut enc, TrainOp::RemoveParallelGrad, rows(m, d), io, m);
        }
        let (beta1, beta2) = (0.9f32, 0.999f32);
        self.adam_beta_t = (self.adam_beta_t.0 * beta1, self.adam_beta_t.1 * beta2);
        let (c1, c2) = (1.0 - self.adam_beta_t.0, 1.0 - self.adam_beta_t.1);
        for (i, tensor) in self.shape.tensors().into_iter().enumerate() {
            let n = tensor.len();
            if n == 0 {
                continue;
            }
            // Thresholds stay ≥ 0 (apply_constraints).
            let mode = u32::from(TENSOR_NAMES[i] == "threshold");
            let params = TrainParams { rows: n as u32, mode, lr, beta1, beta2, eps: 1e-8, c1, c2, ..Default::default() };
            let io = TrainIo {
                in0: Some(&self.grads.buffers[i]),
                out0: Some(&self.params.buffers[i]),
                out1: Some(&self.adam_m.buffers[i]),
                out2: Some(&self.adam_v.buffers[i]),
                ..Default::default()
            };
            kernels::train_op(gpu, &mut enc, TrainOp::Adam, params, io, n);
        }
        if unit_decoder {
            let io = TrainIo { out0: Some(self.params.w_dec()), ..Default::default() };
            kernels::train_op(gpu, &mut enc, TrainOp::NormalizeDecoder, rows(m, d), io, m);
        }
        let w = &self.work;
        enc.clear_buffer(&w.report, 0, None);
        kernels::fire_counts(gpu, &mut enc, bsz, m, kernels::Activations::Dense { acts: &w.acts, ld: m }, &w.report);
        enc.copy_buffer_to_buffer(&w.select_state, 0, &w.report, (m * 4) as u64, 16);
        gpu.queue.submit([enc.finish()]);
        let mut report = gpu.read_u32(&w.report, m + 4).await?;
        let state = report.split_off(m);
        let kept_any = state[0] != u32::MAX && report.iter().any(|&c| c > 0);
        let batch_min_act = (matches!(self.arch, TrainArch::BatchTopK { .. }) && kept_any).then(|| f32::from_bits(state[0]));
        Ok(StepResult { fire_counts: report, batch_min_act })
    }

    pub async fn params(&self, gpu: &Gpu) -> Result<Params, GpuError> {
        self.params.read(gpu, &self.shape).await
    }

    /// Parameters and Adam moments `(params, m, v)`, for host-side surgery such as resampling.
    pub async fn state(&self, gpu: &Gpu) -> Result<(Params, Params, Params), GpuError> {
        Ok((
            self.params.read(gpu, &self.shape).await?,
            self.adam_m.read(gpu, &self.shape).await?,
            self.adam_v.read(gpu, &self.shape).await?,
        ))
    }

    /// β₁ᵗ and β₂ᵗ after the steps taken so far (with `state`, all Adam needs to go on).
    pub fn adam_beta_t(&self) -> (f32, f32) {
        self.adam_beta_t
    }

    /// Sets β₁ᵗ and β₂ᵗ, for an optimizer that resumes after steps taken elsewhere.
    pub fn set_adam_beta_t(&mut self, beta_t: (f32, f32)) {
        self.adam_beta_t = beta_t;
    }

    /// Writes back parameters and Adam moments.
    pub fn set_state(&self, gpu: &Gpu, params: &Params, m: &Params, v: &Params) {
        for (set, values) in [(&self.params, params), (&self.adam_m, m), (&self.adam_v, v)] {
            for (buffer, data) in set.buffers.iter().zip(values.tensors()) {
                if !data.is_empty() {
                    gpu.queue.write_buffer(buffer, 0, bytemuck::cast_slice(data));
                }
            }
        }
    }
}
