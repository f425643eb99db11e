//! SAE training on the GPU: the same step as `train::sae_train` (forward, losses, backward, Adam,
//! decoder constraint), recorded as matmul.wgsl products, topk.wgsl selections and train.wgsl
//! element-wise kernels, with parameters, gradients and Adam moments resident on the GPU.
//! Per step only the fire counts come back (for dead-latent tracking).

use super::sae_train::{k_aux, TrainArch, AUXK_COEFFICIENT};
use crate::gpu::kernels::batch_topk::{batch_topk, BatchTopK};
use crate::gpu::kernels::matmul::{matmul, Epilogue, Matmul, Storage};
use crate::gpu::kernels::metrics::{fire_counts, Activations};
use crate::gpu::kernels::rows::{fill_bias, normalize_rows, NormalizeRows, RowNormalization};
use crate::gpu::kernels::topk::{topk, topk_dense, TopK, TopKDense, MAX_TOPK};
use crate::gpu::kernels::train::{self as ops, AdamStep, Shape, Sum};
use std::sync::Arc;

use crate::gpu::{BindGroupCache, Gpu, GpuError};
use crate::sae::{EncoderTensors, SaeWeights};

/// The encoder's own tensors on the GPU, as [`EncoderTensors`].
enum EncoderBuffers {
    Bias { b_enc: wgpu::Buffer },
    Threshold { b_enc: wgpu::Buffer, threshold: wgpu::Buffer },
    Gated { b_gate: wgpu::Buffer, r_mag: wgpu::Buffer, b_mag: wgpu::Buffer },
}

/// One set of weight-shaped tensors on the GPU (parameters, gradients, Adam's moments).
struct TensorSet {
    w_enc: wgpu::Buffer,
    w_dec: wgpu::Buffer,
    b_dec: wgpu::Buffer,
    encoder: EncoderBuffers,
}

impl TensorSet {
    fn upload(gpu: &Gpu, p: &SaeWeights) -> TensorSet {
        let up = |name: &str, t: &[f32]| gpu.upload_f32(name, t);
        let encoder = match &p.encoder {
            EncoderTensors::Bias { b_enc } => EncoderBuffers::Bias { b_enc: up("b_enc", b_enc) },
            EncoderTensors::Threshold { b_enc, threshold } => {
                EncoderBuffers::Threshold { b_enc: up("b_enc", b_enc), threshold: up("threshold", threshold) }
            }
            EncoderTensors::Gated { b_gate, r_mag, b_mag } => {
                EncoderBuffers::Gated { b_gate: up("b_gate", b_gate), r_mag: up("r_mag", r_mag), b_mag: up("b_mag", b_mag) }
            }
        };
        TensorSet { w_enc: up("W_enc", &p.w_enc), w_dec: up("W_dec", &p.w_dec), b_dec: up("b_dec", &p.b_dec), encoder }
    }

    /// The bias added to `x W_enc`: `b_enc`, or the gate's `b_gate`.
    fn pre_bias(&self) -> &wgpu::Buffer {
        match &self.encoder {
            EncoderBuffers::Bias { b_enc } | EncoderBuffers::Threshold { b_enc, .. } => b_enc,
            EncoderBuffers::Gated { b_gate, .. } => b_gate,
        }
    }

    /// The buffers in [`SaeWeights::tensors`] order.
    fn buffers(&self) -> Vec<&wgpu::Buffer> {
        let encoder = match &self.encoder {
            EncoderBuffers::Bias { b_enc } => vec![b_enc],
            EncoderBuffers::Threshold { b_enc, threshold } => vec![b_enc, threshold],
            EncoderBuffers::Gated { b_gate, r_mag, b_mag } => vec![b_gate, r_mag, b_mag],
        };
        [&self.w_enc, &self.w_dec, &self.b_dec].into_iter().chain(encoder).collect()
    }

    /// Reads back tensors shaped like `shape`.
    async fn read(&self, gpu: &Gpu, shape: &SaeWeights) -> Result<SaeWeights, GpuError> {
        let mut p = shape.clone();
        for (buffer, (_, tensor)) in self.buffers().into_iter().zip(p.tensors_mut()) {
            let len = tensor.len();
            *tensor = gpu.read_f32(buffer, len).await?;
        }
        Ok(p)
    }

    fn write(&self, gpu: &Gpu, p: &SaeWeights) {
        for (buffer, (_, data)) in self.buffers().into_iter().zip(p.tensors()) {
            gpu.queue.write_buffer(buffer, 0, bytemuck::cast_slice(data));
        }
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
    shape: SaeWeights,
    params: TensorSet,
    grads: TensorSet,
    adam_m: TensorSet,
    adam_v: TensorSet,
    work: Work,
    /// β₁ᵗ, β₂ᵗ as running products, exactly as `train::sae_train::Adam`.
    adam_beta_t: (f32, f32),
    /// The step's bind groups, made on the first step and reused while its buffers and
    /// uniforms repeat (all but Adam's, whose bias corrections change every step).
    bind_groups: Arc<BindGroupCache>,
}

impl GpuTrainer {
    pub fn new(gpu: &Gpu, p: &SaeWeights, arch: TrainArch, batch: usize) -> Result<GpuTrainer, GpuError> {
        let (d, m) = (p.d_in, p.d_sae);
        if p.encoder.kind() != arch.encoder_kind() || !p.shapes_agree() {
            return Err(GpuError::Input(format!("{} training needs the tensors {:?}", arch.name(), arch.encoder_kind().tensor_names())));
        }
        if let TrainArch::TopK { k } = arch {
            if k > MAX_TOPK {
                return Err(GpuError::TooLarge(format!("GPU TopK training needs k ≤ {MAX_TOPK}, got k={k}")));
            }
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
            bind_groups: Default::default(),
        })
    }

    /// One product on the trainer's buffers: `(m, n, k)`, then (buffer, leading dimension,
    /// transposed) for A and B and (buffer, leading dimension) for C.
    #[allow(clippy::too_many_arguments)] // the three operands' layouts, as matmul.wgsl reads them
    fn matmul(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        epilogue: Epilogue,
        shape: (usize, usize, usize),
        a: (&wgpu::Buffer, usize, bool),
        b: (&wgpu::Buffer, usize, bool),
        c: (&wgpu::Buffer, usize),
    ) -> Result<(), GpuError> {
        let (m, n, k) = shape;
        matmul(
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
                b_storage: Storage::F32,
            },
        )
    }

    /// Records the forward and backward pass for the batch in `work.x`; gradients land in `grads`.
    /// Mirrors `train::sae_train::loss_and_grads` step by step.
    fn record_gradients(&self, gpu: &Gpu, enc: &mut wgpu::CommandEncoder, dead: &[bool], sparsity_scale: f32) -> Result<(), GpuError> {
        let (d, m, bsz) = (self.d_in, self.d_sae, self.batch);
        let (p, g, w) = (&self.params, &self.grads, &self.work);
        let (acts_shape, rows_shape, decoder) = (Shape::new(bsz, m), Shape::new(bsz, d), Shape::new(m, d));
        let gated = matches!(p.encoder, EncoderBuffers::Gated { .. });

        // Forward: sae_in = x − b_dec; pre = sae_in·W_enc + b_enc; acts; recon = acts·W_dec + b_dec.
        let norm = RowNormalization { mode: 0, apply_b_dec: true };
        normalize_rows(
            gpu,
            enc,
            NormalizeRows { rows: bsz, d_in: d, norm, b_dec: &p.b_dec, x: &w.x, sae_in: &w.sae_in, norms: &w.row_norms },
        )?;
        if gated {
            // The gate and magnitude paths share sae_in·W_enc; their biases come in gated_acts.
            self.matmul(gpu, enc, Epilogue::Store, (bsz, m, d), (&w.sae_in, d, false), (&p.w_enc, m, false), (&w.pre, m))?;
        } else {
            enc.copy_buffer_to_buffer(p.pre_bias(), 0, &w.cols, 0, (m * 4) as u64);
            self.matmul(gpu, enc, Epilogue::TopKPre, (bsz, m, d), (&w.sae_in, d, false), (&p.w_enc, m, false), (&w.pre, m))?;
        }
        match (&p.encoder, self.arch) {
            (EncoderBuffers::Bias { .. }, TrainArch::TopK { k }) => {
                topk(gpu, enc, TopK { rows: bsz, d_sae: m, ld: m, k, pre: &w.pre, index: &w.list_index, value: &w.list_value })?;
                enc.clear_buffer(&w.acts, 0, None);
                ops::scatter_lists(gpu, enc, acts_shape, k, &w.list_index, &w.list_value, &w.acts)?;
            }
            (EncoderBuffers::Bias { .. }, TrainArch::BatchTopK { k }) => {
                enc.clear_buffer(&w.histogram, 0, None);
                enc.clear_buffer(&w.select_state, 0, None);
                let args = BatchTopK {
                    n: bsz * m,
                    count: k * bsz,
                    values: &w.pre,
                    kept: &w.acts,
                    histogram: &w.histogram,
                    state: &w.select_state,
                };
                batch_topk(gpu, enc, args)?;
            }
            (EncoderBuffers::Bias { .. }, _) => ops::relu_acts(gpu, enc, acts_shape, &w.pre, &w.acts)?,
            (EncoderBuffers::Threshold { threshold, .. }, _) => ops::jumprelu_acts(gpu, enc, acts_shape, &w.pre, threshold, &w.acts)?,
            (EncoderBuffers::Gated { b_gate, r_mag, b_mag }, _) => ops::gated_acts(
                gpu,
                enc,
                ops::GatedActs { shape: acts_shape, projected: &w.pre, b_gate, r_mag, b_mag, acts: &w.acts, gate_acts: &w.aux_acts },
            )?,
        }
        fill_bias(gpu, enc, bsz, d, &p.b_dec, &w.recon)?;
        self.matmul(gpu, enc, Epilogue::Accumulate, (bsz, d, m), (&w.acts, m, false), (&p.w_dec, d, false), (&w.recon, d))?;

        // Backward through the reconstruction.
        let args = ops::ReconGrad {
            shape: rows_shape,
            scale: 2.0 / bsz as f32,
            recon: &w.recon,
            x: &w.x,
            g_recon: &w.g_recon,
            residual: &w.residual,
        };
        ops::recon_grad(gpu, enc, args)?;
        ops::decoder_norms(gpu, enc, decoder, &p.w_dec, &w.dec_norms)?;
        // g_acts = g_recon·W_decᵀ.
        self.matmul(gpu, enc, Epilogue::Store, (bsz, m, d), (&w.g_recon, d, false), (&p.w_dec, d, true), (&w.g_pre, m))?;
        if let (
            TrainArch::JumpRelu { l0, bandwidth },
            EncoderBuffers::Threshold { threshold, .. },
            EncoderBuffers::Threshold { threshold: g_threshold, .. },
        ) = (self.arch, &p.encoder, &g.encoder)
        {
            // The threshold's straight-through estimate reads g_acts before it is masked.
            let args = ops::JumpReluThresholdGrad {
                shape: acts_shape,
                l0_scale: l0 * sparsity_scale / bsz as f32,
                bandwidth,
                pre: &w.pre,
                threshold,
                g_acts: &w.g_pre,
                g_threshold,
            };
            ops::jumprelu_threshold_grad(gpu, enc, args)?;
        }
        // Through the activation (plus the standard SAE's L1 term) into g_pre; for gated this is
        // the magnitude path's gradient.
        let l1 = match self.arch {
            TrainArch::Standard { l1 } | TrainArch::Gated { l1 } => l1 * sparsity_scale / bsz as f32,
            _ => 0.0,
        };
        let act_l1 = if gated { 0.0 } else { l1 };
        ops::act_grad(gpu, enc, acts_shape, act_l1, &w.acts, &w.dec_norms, &w.g_pre)?;
        // g_W_dec = actsᵀ·g_recon (+ the L1 term's share).
        self.matmul(gpu, enc, Epilogue::Store, (m, d, bsz), (&w.acts, m, true), (&w.g_recon, d, false), (&g.w_dec, d))?;
        if act_l1 != 0.0 {
            self.record_l1_decoder_grad(gpu, enc, &w.acts, act_l1)?;
        }

        // The auxiliary path: AuxK (Gao et al. 2024; dead latents reconstruct the residual) or
        // the gate (its L1 and its reconstruction of x).
        let num_dead = dead.iter().filter(|&&x| x).count();
        let aux = if gated {
            // via_gate = gate_acts·W_dec + b_dec; g_aux = 2 (via_gate − x) / B.
            fill_bias(gpu, enc, bsz, d, &p.b_dec, &w.aux_recon)?;
            self.matmul(gpu, enc, Epilogue::Accumulate, (bsz, d, m), (&w.aux_acts, m, false), (&p.w_dec, d, false), (&w.aux_recon, d))?;
            ops::aux_grad(gpu, enc, rows_shape, 2.0 / bsz as f32, &w.aux_recon, &w.x, &w.g_aux)?;
            true
        } else if self.arch.uses_auxk() && num_dead > 0 {
            let aux_scale = (num_dead as f32 / k_aux(d) as f32).min(1.0);
            let k_used = k_aux(d).min(num_dead);
            let mask: Vec<f32> = dead.iter().map(|&x| if x { 1.0 } else { 0.0 }).collect();
            gpu.queue.write_buffer(&w.dead, 0, bytemuck::cast_slice(&mask));
            ops::mask_dead(gpu, enc, acts_shape, &w.pre, &w.dead, &w.masked)?;
            // k_aux = d_in/2 is more than a list holds at GPT-2's width and up: the selection is
            // written densely, which is what the product below reads anyway.
            topk_dense(gpu, enc, TopKDense { rows: bsz, d_sae: m, ld: m, k: k_used, pre: &w.masked, dense: &w.aux_acts })?;
            self.matmul(gpu, enc, Epilogue::Store, (bsz, d, m), (&w.aux_acts, m, false), (&p.w_dec, d, false), (&w.aux_recon, d))?;
            let scale = 2.0 * AUXK_COEFFICIENT * aux_scale / bsz as f32;
            ops::aux_grad(gpu, enc, rows_shape, scale, &w.aux_recon, &w.residual, &w.g_aux)?;
            true
        } else {
            false
        };
        if aux {
            // g_aux_acts = g_aux·W_decᵀ, through the aux activation (with the gate's L1).
            self.matmul(gpu, enc, Epilogue::Store, (bsz, m, d), (&w.g_aux, d, false), (&p.w_dec, d, true), (&w.g_aux_acts, m))?;
            ops::act_grad(gpu, enc, acts_shape, if gated { l1 } else { 0.0 }, &w.aux_acts, &w.dec_norms, &w.g_aux_acts)?;
            self.matmul(gpu, enc, Epilogue::Accumulate, (m, d, bsz), (&w.aux_acts, m, true), (&w.g_aux, d, false), (&g.w_dec, d))?;
            if gated && l1 != 0.0 {
                self.record_l1_decoder_grad(gpu, enc, &w.aux_acts, l1)?;
            }
        }
        if let (EncoderBuffers::Gated { r_mag, .. }, EncoderBuffers::Gated { b_gate: g_b_gate, r_mag: g_r_mag, b_mag: g_b_mag }) =
            (&p.encoder, &g.encoder)
        {
            // g_b_gate = Σ_b g_gate_pre; then g_projected, g_r_mag, g_b_mag.
            ops::column_sums(gpu, enc, acts_shape, 1.0, Sum::Set, &w.g_aux_acts, g_b_gate)?;
            let args = ops::GatedBackward {
                shape: acts_shape,
                projected: &w.pre,
                r_mag,
                g_gate_pre: &w.g_aux_acts,
                g_mag_pre: &w.g_pre,
                g_r_mag,
                g_b_mag,
            };
            ops::gated_backward(gpu, enc, args)?;
        } else {
            if aux {
                ops::aux_act_grad(gpu, enc, acts_shape, &w.aux_acts, &w.g_aux_acts, &w.g_pre)?;
            }
            ops::column_sums(gpu, enc, acts_shape, 1.0, Sum::Set, &w.g_pre, g.pre_bias())?;
        }

        // Encoder and b_dec: g_W_enc = sae_inᵀ·g_pre, g_b_dec = Σ_b g_recon (+ Σ_b g_aux for the
        // gate's reconstruction) − Σ_b g_pre·W_encᵀ (b_dec enters the reconstructions and sae_in).
        self.matmul(gpu, enc, Epilogue::Store, (d, m, bsz), (&w.sae_in, d, true), (&w.g_pre, m, false), (&g.w_enc, m))?;
        self.matmul(gpu, enc, Epilogue::Store, (bsz, d, m), (&w.g_pre, m, false), (&p.w_enc, m, true), (&w.g_sae_in, d))?;
        ops::column_sums(gpu, enc, rows_shape, 1.0, Sum::Set, &w.g_recon, &g.b_dec)?;
        if gated {
            ops::column_sums(gpu, enc, rows_shape, 1.0, Sum::Add, &w.g_aux, &g.b_dec)?;
        }
        ops::column_sums(gpu, enc, rows_shape, -1.0, Sum::Add, &w.g_sae_in, &g.b_dec)
    }

    /// The decoder-norm-weighted L1's decoder gradient:
    /// g_W_dec[j] += scale·(Σ_b acts[b, j])·W_dec[j]/‖W_dec[j]‖.
    fn record_l1_decoder_grad(&self, gpu: &Gpu, enc: &mut wgpu::CommandEncoder, acts: &wgpu::Buffer, scale: f32) -> Result<(), GpuError> {
        let (d, m, bsz, w) = (self.d_in, self.d_sae, self.batch, &self.work);
        ops::column_sums(gpu, enc, Shape::new(bsz, m), 1.0, Sum::Set, acts, &w.col_sums)?;
        let args = ops::L1DecoderGrad {
            decoder: Shape::new(m, d),
            scale,
            act_sums: &w.col_sums,
            decoder_norms: &w.dec_norms,
            w_dec: &self.params.w_dec,
            g_w_dec: &self.grads.w_dec,
        };
        ops::l1_decoder_grad(gpu, enc, args)
    }

    /// Gradients of one batch without updating (for tests against the CPU reference).
    pub async fn gradients(&self, gpu: &Gpu, x: &[f32], dead: &[bool], sparsity_scale: f32) -> Result<SaeWeights, GpuError> {
        gpu.queue.write_buffer(&self.work.x, 0, bytemuck::cast_slice(x));
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        self.record_gradients(gpu, &mut enc, dead, sparsity_scale)?;
        gpu.queue.submit([enc.finish()]);
        self.grads.read(gpu, &self.shape).await
    }

    /// One training step on `x` (`[batch, d_in]`): gradients, the decoder constraint, Adam, the
    /// parameter constraints; one read-back (fire counts and BatchTopK's threshold).
    pub async fn step(&mut self, gpu: &Gpu, x: &[f32], dead: &[bool], sparsity_scale: f32, lr: f32) -> Result<StepResult, GpuError> {
        let (d, m, bsz) = (self.d_in, self.d_sae, self.batch);
        if x.len() != bsz * d || dead.len() != m {
            return Err(GpuError::Input(format!(
                "a step takes [{bsz}, {d}] inputs and {m} dead flags, got {} and {}",
                x.len(),
                dead.len()
            )));
        }
        gpu.queue.write_buffer(&self.work.x, 0, bytemuck::cast_slice(x));
        let (beta1, beta2) = (0.9f32, 0.999f32);
        let beta_t = (self.adam_beta_t.0 * beta1, self.adam_beta_t.1 * beta2);
        let (c1, c2) = (1.0 - beta_t.0, 1.0 - beta_t.1);
        let this = &*self;
        let enc = gpu.record_with(&this.bind_groups, || -> Result<wgpu::CommandEncoder, GpuError> {
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            this.record_gradients(gpu, &mut enc, dead, sparsity_scale)?;
            let unit_decoder = this.arch.unit_decoder();
            let decoder = Shape::new(m, d);
            if unit_decoder {
                ops::remove_parallel_grad(gpu, &mut enc, decoder, &this.params.w_dec, &this.grads.w_dec)?;
            }
            let sets = [&this.grads, &this.params, &this.adam_m, &this.adam_v].map(TensorSet::buffers);
            for (i, (name, tensor)) in this.shape.tensors().into_iter().enumerate() {
                // Thresholds stay ≥ 0 (apply_constraints).
                let step = AdamStep { lr, beta1, beta2, eps: 1e-8, c1, c2, clamp_at_zero: name == "threshold" };
                let args = ops::Adam { n: tensor.len(), step, grad: sets[0][i], param: sets[1][i], m: sets[2][i], v: sets[3][i] };
                ops::adam(gpu, &mut enc, args)?;
            }
            if unit_decoder {
                ops::normalize_decoder(gpu, &mut enc, decoder, &this.params.w_dec)?;
            }
            let w = &this.work;
            enc.clear_buffer(&w.report, 0, None);
            fire_counts(gpu, &mut enc, bsz, m, Activations::Dense { acts: &w.acts, ld: m }, &w.report)?;
            enc.copy_buffer_to_buffer(&w.select_state, 0, &w.report, (m * 4) as u64, 16);
            Ok(enc)
        })?;
        self.adam_beta_t = beta_t;
        let w = &self.work;
        gpu.queue.submit([enc.finish()]);
        let mut report = gpu.read_u32(&w.report, m + 4).await?;
        let state = report.split_off(m);
        let kept_any = state[0] != u32::MAX && report.iter().any(|&c| c > 0);
        let batch_min_act = (matches!(self.arch, TrainArch::BatchTopK { .. }) && kept_any).then(|| f32::from_bits(state[0]));
        Ok(StepResult { fire_counts: report, batch_min_act })
    }

    pub async fn params(&self, gpu: &Gpu) -> Result<SaeWeights, GpuError> {
        self.params.read(gpu, &self.shape).await
    }

    /// Parameters and Adam moments `(params, m, v)`, for host-side surgery such as resampling.
    pub async fn state(&self, gpu: &Gpu) -> Result<(SaeWeights, SaeWeights, SaeWeights), GpuError> {
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
    pub fn set_state(&self, gpu: &Gpu, params: &SaeWeights, m: &SaeWeights, v: &SaeWeights) {
        for (set, values) in [(&self.params, params), (&self.adam_m, m), (&self.adam_v, v)] {
            set.write(gpu, values);
        }
    }
}
