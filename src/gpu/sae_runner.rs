//! An SAE on the GPU: weights uploaded once (split into feature chunks that each fit one storage
//! binding), then batches of activations run through normalise → encode → (TopK) → decode →
//! metrics without leaving the GPU; only what the caller asks for is read back.

use super::kernels::matmul::{matmul, Epilogue, Matmul, Storage};
use super::kernels::metrics::{fire_counts, row_metrics, Activations, RowMetrics};
use super::kernels::rows::{denormalize_rows, fill_bias, normalize_rows, NormalizeRows, RowNormalization};
use super::kernels::sparse_decode::{sparse_decode, SparseDecode};
use super::kernels::topk::{topk, TopK, MAX_TOPK};
use super::{Gpu, GpuError};
use crate::sae::metrics::{BatchMetrics, RowStats};
use crate::sae::{EncoderTensors, Sae, SaeConfig};

/// Features `[start, start + width)`: their encoder columns, decoder rows and epilogue parameters.
struct FeatureChunk {
    start: usize,
    width: usize,
    /// `[d_in, width]`: columns `start..start+width` of W_enc, made contiguous.
    w_enc: wgpu::Buffer,
    /// `[width, d_in]`: rows of W_dec (already contiguous).
    w_dec: wgpu::Buffer,
    /// `[bias | scale_or_threshold | aux]` for the encoder epilogue.
    cols: wgpu::Buffer,
    /// Per-feature multiplier applied to TopK values before decoding (1 or 1/‖W_dec‖).
    decode_scale: wgpu::Buffer,
}

pub struct GpuSae {
    pub cfg: SaeConfig,
    chunks: Vec<FeatureChunk>,
    b_dec: wgpu::Buffer,
    /// A skip transcoder's `W_skip`, `[d_out, d_in]`.
    w_skip: Option<wgpu::Buffer>,
    epilogue: Epilogue,
}

impl GpuSae {
    /// Uploads an SAE, splitting its weights so that no binding exceeds the device's limit.
    pub fn upload(gpu: &Gpu, sae: &Sae) -> Result<GpuSae, GpuError> {
        Self::upload_with_binding_limit(gpu, sae, gpu.max_binding_bytes())
    }

    /// As `upload`, with a smaller binding limit (tests use it to force many chunks).
    pub fn upload_with_binding_limit(gpu: &Gpu, sae: &Sae, max_binding_bytes: u64) -> Result<GpuSae, GpuError> {
        let (d_in, d_sae) = (sae.d_in(), sae.d_sae());
        if let Some(k) = sae.cfg.architecture.topk() {
            if k > MAX_TOPK {
                return Err(GpuError::TooLarge(format!("k={k} is larger than the GPU TopK kernel's maximum of {MAX_TOPK}")));
            }
        }
        let row_bytes = (d_in * 4) as u64;
        let width_limit = (max_binding_bytes / row_bytes) as usize;
        if width_limit == 0 {
            return Err(GpuError::TooLarge(format!(
                "d_in={d_in} is too wide: one feature's weights exceed the GPU's {max_binding_bytes}-byte binding limit"
            )));
        }
        let columns = sae.encoder_columns();
        let decoder_norms = sae.decoder_norms();
        let rescale = sae.cfg.rescale_acts_by_decoder_norm && sae.cfg.architecture.topk().is_some();
        let mut chunks = Vec::new();
        let mut start = 0;
        while start < d_sae {
            let width = width_limit.min(d_sae - start);
            let end = start + width;
            let mut w_enc = Vec::with_capacity(d_in * width);
            for row in sae.w_enc().chunks_exact(d_sae) {
                w_enc.extend_from_slice(&row[start..end]);
            }
            let mut cols = Vec::with_capacity(3 * width);
            cols.extend_from_slice(&columns.bias[start..end]);
            cols.extend_from_slice(&columns.scale_or_threshold[start..end]);
            cols.extend_from_slice(&columns.aux[start..end]);
            let decode_scale: Vec<f32> = decoder_norms[start..end].iter().map(|&n| if rescale { 1.0 / n } else { 1.0 }).collect();
            chunks.push(FeatureChunk {
                start,
                width,
                w_enc: gpu.upload_f32("W_enc chunk", &w_enc),
                w_dec: gpu.upload_f32("W_dec chunk", &sae.w_dec()[start * d_in..end * d_in]),
                cols: gpu.upload_f32("encoder columns", &cols),
                decode_scale: gpu.upload_f32("decode scale", &decode_scale),
            });
            start = end;
        }
        // The epilogue follows the weights' encoder tensors (which `Sae::new` checked against
        // the architecture), as the CPU reference's encode does.
        let epilogue = match (&sae.weights().encoder, sae.cfg.architecture.topk()) {
            (EncoderTensors::Bias { .. }, Some(_)) => Epilogue::TopKPre,
            (EncoderTensors::Bias { .. }, None) => Epilogue::Relu,
            (EncoderTensors::Threshold { .. }, _) => Epilogue::JumpRelu,
            (EncoderTensors::Gated { .. }, _) => Epilogue::Gated,
        };
        if sae.w_skip().is_some() && row_bytes * d_in as u64 > max_binding_bytes {
            return Err(GpuError::TooLarge(format!("W_skip ({d_in} × {d_in}) exceeds the GPU's {max_binding_bytes}-byte binding limit")));
        }
        let w_skip = sae.w_skip().map(|w| gpu.upload_f32("W_skip", w));
        Ok(GpuSae { cfg: sae.cfg.clone(), chunks, b_dec: gpu.upload_f32("b_dec", sae.b_dec()), w_skip, epilogue })
    }

    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }
}

/// What to read back besides the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunRequest {
    /// Dense feature activations `[n, d_sae]` (for TopK, scattered on the host from the lists).
    pub dense_acts: bool,
    /// Reconstructions `[n, d_in]`.
    pub recon: bool,
}

#[derive(Debug, Clone)]
pub struct RunOutput {
    pub acts: Option<Vec<f32>>,
    pub recon: Option<Vec<f32>>,
    pub metrics: BatchMetrics,
}

/// Rows per block: the dense `[rows, d_sae]` activation buffer must fit one binding, and the
/// sparse fire-count dispatch one grid dimension.
fn rows_per_block(gpu: &Gpu, n: usize, d_sae: usize, k: Option<usize>) -> usize {
    let by_binding = (gpu.max_binding_bytes() / (d_sae as u64 * 4)) as usize;
    let by_grid = k.map_or(usize::MAX, |k| 65_535 * 256 / k);
    n.min(by_binding).min(by_grid).clamp(1, 8192)
}

impl Gpu {
    /// Runs `x` (`[n, d_in]`, finite) through the SAE; metrics always (of the output against
    /// `target`, a transcoder's output hook's values, or `x` itself when `None`), the rest as
    /// requested.
    pub async fn run_sae(&self, sae: &GpuSae, x: &[f32], target: Option<&[f32]>, request: RunRequest) -> Result<RunOutput, GpuError> {
        let (d_in, d_sae) = (sae.cfg.d_in, sae.cfg.d_sae);
        let n = x.len() / d_in;
        let k = sae.cfg.architecture.topk();
        let block = rows_per_block(self, n, d_sae, k);
        if (block as u64) * (d_sae as u64) * 4 > self.max_binding_bytes() {
            return Err(GpuError::TooLarge(format!("d_sae={d_sae} is too large: one row of activations exceeds the GPU's binding limit")));
        }
        let f32s = |count: usize| (count * 4) as u64;
        let x_buf = self.storage("x", f32s(block * d_in));
        let target_buf = target.map(|_| self.storage("target", f32s(block * d_in)));
        let sae_in = self.storage("sae_in", f32s(block * d_in));
        let norms = self.storage("row norms", f32s(block * 3));
        let acts = self.storage("acts", f32s(block * d_sae));
        let list_len = k.unwrap_or(0);
        let list_index = self.storage("topk index", f32s(block * list_len));
        let list_value = self.storage("topk value", f32s(block * list_len));
        let recon = self.storage("recon", f32s(block * d_in));
        let stats = self.storage("row stats", f32s(block * 3));
        let counts = self.storage("fire counts", f32s(d_sae));
        let row_norm = RowNormalization::of(&sae.cfg);

        let mut out_acts = request.dense_acts.then(|| Vec::with_capacity(n * d_sae));
        let mut out_recon = request.recon.then(|| Vec::with_capacity(n * d_in));
        let mut rows_stats = Vec::with_capacity(n);

        for first in (0..n).step_by(block) {
            let rows = block.min(n - first);
            self.queue.write_buffer(&x_buf, 0, bytemuck::cast_slice(&x[first * d_in..(first + rows) * d_in]));
            if let (Some(buf), Some(t)) = (&target_buf, target) {
                self.queue.write_buffer(buf, 0, bytemuck::cast_slice(&t[first * d_in..(first + rows) * d_in]));
            }
            let mut enc = self.device.create_command_encoder(&Default::default());
            normalize_rows(
                self,
                &mut enc,
                NormalizeRows { rows, d_in, norm: row_norm, b_dec: &sae.b_dec, x: &x_buf, sae_in: &sae_in, norms: &norms },
            )?;
            for chunk in &sae.chunks {
                matmul(
                    self,
                    &mut enc,
                    sae.epilogue,
                    Matmul {
                        m: rows,
                        n: chunk.width,
                        k: d_in,
                        a: &sae_in,
                        lda: d_in,
                        a_col: 0,
                        b: &chunk.w_enc,
                        ldb: chunk.width,
                        c: &acts,
                        ldc: d_sae,
                        c_col: chunk.start,
                        cols: &chunk.cols,
                        trans_a: false,
                        trans_b: false,
                        b_storage: Storage::F32,
                    },
                )?;
            }
            if let Some(k) = k {
                topk(self, &mut enc, TopK { rows, d_sae, ld: d_sae, k, pre: &acts, index: &list_index, value: &list_value })?;
            }
            fill_bias(self, &mut enc, rows, d_in, &sae.b_dec, &recon)?;
            for chunk in &sae.chunks {
                match k {
                    Some(k) => sparse_decode(
                        self,
                        &mut enc,
                        SparseDecode {
                            rows,
                            d_in,
                            k,
                            f0: chunk.start,
                            width: chunk.width,
                            index: &list_index,
                            value: &list_value,
                            w_dec_chunk: &chunk.w_dec,
                            scale: &chunk.decode_scale,
                            out: &recon,
                        },
                    ),
                    None => matmul(
                        self,
                        &mut enc,
                        Epilogue::Accumulate,
                        Matmul {
                            m: rows,
                            n: d_in,
                            k: chunk.width,
                            a: &acts,
                            lda: d_sae,
                            a_col: chunk.start,
                            b: &chunk.w_dec,
                            ldb: d_in,
                            c: &recon,
                            ldc: d_in,
                            c_col: 0,
                            cols: &chunk.cols,
                            trans_a: false,
                            trans_b: false,
                            b_storage: Storage::F32,
                        },
                    ),
                }?;
            }
            denormalize_rows(self, &mut enc, rows, d_in, &norms, &recon)?;
            if let Some(w_skip) = &sae.w_skip {
                // SkipTranscoder.forward: + x W_skipᵀ, on the raw input.
                matmul(
                    self,
                    &mut enc,
                    Epilogue::Accumulate,
                    Matmul {
                        m: rows,
                        n: d_in,
                        k: d_in,
                        a: &x_buf,
                        lda: d_in,
                        a_col: 0,
                        b: w_skip,
                        ldb: d_in,
                        c: &recon,
                        ldc: d_in,
                        c_col: 0,
                        cols: &sae.b_dec,
                        trans_a: false,
                        trans_b: true,
                        b_storage: Storage::F32,
                    },
                )?;
            }
            let activations = || match k {
                Some(k) => Activations::Lists { index: &list_index, value: &list_value, k },
                None => Activations::Dense { acts: &acts, ld: d_sae },
            };
            let compared = target_buf.as_ref().unwrap_or(&x_buf);
            row_metrics(self, &mut enc, RowMetrics { rows, d_in, d_sae, x: compared, recon: &recon, acts: activations(), stats: &stats })?;
            fire_counts(self, &mut enc, rows, d_sae, activations(), &counts)?;
            self.queue.submit([enc.finish()]);

            let block_stats = self.read_f32(&stats, rows * 3).await?;
            rows_stats.extend(block_stats.chunks_exact(3).map(|s| RowStats { sse: s[0], cosine: s[1], l0: s[2] }));
            if let Some(out) = out_recon.as_mut() {
                out.extend(self.read_f32(&recon, rows * d_in).await?);
            }
            match k {
                Some(k) => {
                    if let Some(out) = out_acts.as_mut() {
                        let index = self.read_u32(&list_index, rows * k).await?;
                        let value = self.read_f32(&list_value, rows * k).await?;
                        let base = out.len();
                        out.resize(base + rows * d_sae, 0.0);
                        for (r, (idx, val)) in index.chunks_exact(k).zip(value.chunks_exact(k)).enumerate() {
                            for (&i, &v) in idx.iter().zip(val) {
                                out[base + r * d_sae + i as usize] = v;
                            }
                        }
                    }
                }
                None => {
                    if let Some(out) = out_acts.as_mut() {
                        out.extend(self.read_f32(&acts, rows * d_sae).await?);
                    }
                }
            }
        }
        let fire_counts = self.read_u32(&counts, d_sae).await?;
        Ok(RunOutput {
            acts: out_acts,
            recon: out_recon,
            metrics: BatchMetrics::finish(target.unwrap_or(x), d_in, rows_stats, fire_counts),
        })
    }
}
