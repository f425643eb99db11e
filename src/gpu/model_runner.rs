//! GPT-2 on the GPU: the weights uploaded once (the token embedding and unembedding split into
//! row chunks that each fit one binding), then the forward pass of `model::cpu::forward` recorded as
//! model.wgsl kernels (embedding gather, LayerNorm, causal attention, gelu_new, residual adds) and
//! matmul.wgsl products. Only the logits and the hook points asked for are read back.

use super::kernels::matmul::{matmul, Epilogue, Matmul};
use super::kernels::model::{self, Attention, TableChunk, MAX_CONTEXT};
use super::{Gpu, GpuError};
use crate::model::{check_tokens, BlockSite, Gpt2, Gpt2Config, HookPoint, Intervention, LayerNorm};

/// A linear layer `x·W + b`: `W` `[k, n]`, and the matmul epilogue's `[bias | 1 | 0]` columns.
struct GpuLinear {
    weight: wgpu::Buffer,
    cols: wgpu::Buffer,
    k: usize,
    n: usize,
}

impl GpuLinear {
    fn upload(gpu: &Gpu, label: &str, weight: &[f32], bias: &[f32]) -> GpuLinear {
        let n = bias.len();
        let mut cols = bias.to_vec();
        cols.extend(std::iter::repeat_n(1.0, n));
        cols.extend(std::iter::repeat_n(0.0, n));
        GpuLinear { weight: gpu.upload_f32(label, weight), cols: gpu.upload_f32(label, &cols), k: weight.len() / n, n }
    }

    /// `out[rows, n] = x[rows, k]·W + b`.
    fn record(&self, gpu: &Gpu, enc: &mut wgpu::CommandEncoder, rows: usize, x: &wgpu::Buffer, out: &wgpu::Buffer) -> Result<(), GpuError> {
        let (k, n) = (self.k, self.n);
        let args = Matmul {
            m: rows,
            n,
            k,
            a: x,
            lda: k,
            a_col: 0,
            b: &self.weight,
            ldb: n,
            c: out,
            ldc: n,
            c_col: 0,
            cols: &self.cols,
            trans_a: false,
            trans_b: false,
        };
        // (acc + bias) · 1: the TopK pre-activation epilogue is exactly a biased linear layer.
        matmul(gpu, enc, Epilogue::TopKPre, args)
    }
}

struct GpuLayerNorm {
    weight: wgpu::Buffer,
    bias: wgpu::Buffer,
}

impl GpuLayerNorm {
    fn upload(gpu: &Gpu, ln: &LayerNorm) -> GpuLayerNorm {
        GpuLayerNorm { weight: gpu.upload_f32("ln weight", &ln.weight), bias: gpu.upload_f32("ln bias", &ln.bias) }
    }
}

struct GpuBlock {
    ln_1: GpuLayerNorm,
    qkv: GpuLinear,
    attn_out: GpuLinear,
    ln_2: GpuLayerNorm,
    mlp_in: GpuLinear,
    mlp_out: GpuLinear,
}

/// Rows `[first, first + rows)` of a `[vocab, d_model]` table.
struct RowChunk {
    first: usize,
    rows: usize,
    buffer: wgpu::Buffer,
}

fn upload_row_chunks(gpu: &Gpu, label: &str, table: &[f32], d: usize, max_bytes: u64) -> Vec<RowChunk> {
    let rows_per_chunk = ((max_bytes / (d as u64 * 4)) as usize).max(1);
    table
        .chunks(rows_per_chunk * d)
        .enumerate()
        .map(|(i, chunk)| RowChunk { first: i * rows_per_chunk, rows: chunk.len() / d, buffer: gpu.upload_f32(label, chunk) })
        .collect()
}

pub struct GpuGpt2 {
    pub cfg: Gpt2Config,
    wte: Vec<RowChunk>,
    /// A separate unembedding; `None` when tied to `wte`.
    lm_head: Option<Vec<RowChunk>>,
    wpe: wgpu::Buffer,
    blocks: Vec<GpuBlock>,
    ln_f: GpuLayerNorm,
    max_binding_bytes: u64,
}

/// What a GPU forward pass returns.
pub struct GpuForward {
    /// `[n_tokens, vocab]`
    pub logits: Vec<f32>,
    /// The requested hook points, each `[n_tokens, d_model]`, in the order asked.
    pub hooks: Vec<Vec<f32>>,
}

impl GpuGpt2 {
    pub fn upload(gpu: &Gpu, model: &Gpt2) -> Result<GpuGpt2, GpuError> {
        GpuGpt2::upload_with_limit(gpu, model, gpu.max_binding_bytes())
    }

    /// As `upload`, splitting embedding tables into chunks of at most `max_binding_bytes` (tests
    /// use a small limit to exercise the split that GPT-2 small's 147 MiB embedding needs).
    pub fn upload_with_limit(gpu: &Gpu, model: &Gpt2, max_binding_bytes: u64) -> Result<GpuGpt2, GpuError> {
        let cfg = model.cfg.clone();
        let (d, m) = (cfg.d_model, cfg.d_mlp);
        let widest = [d * 3 * d, d * m, cfg.n_positions * d].into_iter().max().unwrap_or(0) as u64 * 4;
        if widest > gpu.max_binding_bytes() {
            return Err(GpuError::TooLarge(format!(
                "a weight matrix of {widest} bytes does not fit one GPU binding of {} bytes",
                gpu.max_binding_bytes()
            )));
        }
        let blocks = model
            .blocks
            .iter()
            .map(|b| GpuBlock {
                ln_1: GpuLayerNorm::upload(gpu, &b.ln_1),
                qkv: GpuLinear::upload(gpu, "c_attn", &b.qkv_weight, &b.qkv_bias),
                attn_out: GpuLinear::upload(gpu, "attn.c_proj", &b.attn_out_weight, &b.attn_out_bias),
                ln_2: GpuLayerNorm::upload(gpu, &b.ln_2),
                mlp_in: GpuLinear::upload(gpu, "c_fc", &b.mlp_in_weight, &b.mlp_in_bias),
                mlp_out: GpuLinear::upload(gpu, "mlp.c_proj", &b.mlp_out_weight, &b.mlp_out_bias),
            })
            .collect();
        let limit = max_binding_bytes.min(gpu.max_binding_bytes());
        Ok(GpuGpt2 {
            wte: upload_row_chunks(gpu, "wte", &model.wte, d, limit),
            lm_head: model.lm_head.as_ref().map(|h| upload_row_chunks(gpu, "lm_head", h, d, limit)),
            wpe: gpu.upload_f32("wpe", &model.wpe),
            blocks,
            ln_f: GpuLayerNorm::upload(gpu, &model.ln_f),
            max_binding_bytes: limit,
            cfg,
        })
    }

    /// How many pieces the token embedding was split into.
    pub fn embedding_chunks(&self) -> usize {
        self.wte.len()
    }

    /// Runs `tokens` and reads back the logits and the hook points named in `hooks`.
    pub async fn forward(&self, gpu: &Gpu, tokens: &[u32], hooks: &[HookPoint]) -> Result<GpuForward, GpuError> {
        self.run(gpu, tokens, hooks, &[]).await
    }

    /// Runs `tokens` with `interventions` applied (as `model::cpu::run`) and reads back the
    /// logits and the hook points named in `hooks` (after any intervention there).
    pub async fn run(
        &self,
        gpu: &Gpu,
        tokens: &[u32],
        hooks: &[HookPoint],
        interventions: &[Intervention<'_>],
    ) -> Result<GpuForward, GpuError> {
        self.run_partial(gpu, tokens, hooks, interventions, self.cfg.n_layers, true).await
    }

    /// The activations `[n_tokens, d]` at `hook`, running only the blocks needed to reach it
    /// and no unembedding (as `model::cpu::activations_at`).
    pub async fn activations_at(&self, gpu: &Gpu, tokens: &[u32], hook: HookPoint) -> Result<Vec<f32>, GpuError> {
        let (blocks, at_end) = self.cfg.extent_to_reach(hook);
        let out = self.run_partial(gpu, tokens, &[hook], &[], blocks, at_end).await?;
        out.hooks.into_iter().next().ok_or_else(|| GpuError::Input(format!("{hook} was not reached")))
    }

    /// `run` through the first `blocks` blocks; the final LayerNorm and the logits only when
    /// `to_the_end` (else the logits come back empty).
    async fn run_partial(
        &self,
        gpu: &Gpu,
        tokens: &[u32],
        hooks: &[HookPoint],
        interventions: &[Intervention<'_>],
        blocks: usize,
        to_the_end: bool,
    ) -> Result<GpuForward, GpuError> {
        let cfg = &self.cfg;
        check_tokens(cfg, tokens).map_err(|e| GpuError::Input(e.to_string()))?;
        if let Some(hook) = hooks.iter().find(|h| !cfg.has_hook(**h)) {
            return Err(GpuError::Input(format!("{hook} is not a hook point of this model ({} layers)", cfg.n_layers)));
        }
        for i in interventions {
            i.check(cfg, tokens.len()).map_err(GpuError::Input)?;
        }
        let (n, d, m, vocab) = (tokens.len(), cfg.d_model, cfg.d_mlp, cfg.vocab_size);
        if n > MAX_CONTEXT {
            return Err(GpuError::TooLarge(format!("the GPU attention kernel takes at most {MAX_CONTEXT} tokens, got {n}")));
        }
        let f = |count: usize| (count * 4) as u64;
        let token_buffer = gpu.upload_bytes("tokens", bytemuck::cast_slice(tokens));
        let embed = gpu.storage("hook_embed", f(n * d));
        let pos_embed = gpu.storage("hook_pos_embed", f(n * d));
        let mut resid = gpu.storage("resid", f(n * d));
        let mut resid_next = gpu.storage("resid", f(n * d));
        let resid_mid = gpu.storage("resid_mid", f(n * d));
        let normed = gpu.storage("ln out", f(n * d));
        let qkv = gpu.storage("qkv", f(n * 3 * d));
        let z = gpu.storage("z", f(n * d));
        let attn_out = gpu.storage("attn_out", f(n * d));
        let hidden = gpu.storage("mlp hidden", f(n * m));
        let mlp_out = gpu.storage("mlp_out", f(n * d));
        let captured: Vec<wgpu::Buffer> = hooks.iter().map(|h| gpu.storage(&h.to_string(), f(n * d))).collect();
        // Each intervention as an [n, d] buffer: the replacement, or the vector tiled over tokens.
        let changes: Vec<(HookPoint, bool, wgpu::Buffer)> = interventions
            .iter()
            .map(|i| match i {
                Intervention::Replace { hook, values } => (*hook, true, gpu.upload_f32("replacement", values)),
                Intervention::AddToEveryToken { hook, vector } => (*hook, false, gpu.upload_f32("added", &vector.repeat(n))),
            })
            .collect();
        let scratch = gpu.storage("intervention scratch", f(n * d));

        let mut enc = gpu.device.create_command_encoder(&Default::default());
        // At a hook point: apply the interventions there to the activation's buffer, then copy it
        // out if it was asked for.
        let capture = |enc: &mut wgpu::CommandEncoder, point: HookPoint, at: &wgpu::Buffer| -> Result<(), GpuError> {
            for (_, replace, values) in changes.iter().filter(|c| c.0 == point) {
                if *replace {
                    enc.copy_buffer_to_buffer(values, 0, at, 0, f(n * d));
                } else {
                    model::add(gpu, enc, n * d, at, values, &scratch)?;
                    enc.copy_buffer_to_buffer(&scratch, 0, at, 0, f(n * d));
                }
            }
            for (&wanted, buffer) in hooks.iter().zip(&captured) {
                if wanted == point {
                    enc.copy_buffer_to_buffer(at, 0, buffer, 0, f(n * d));
                }
            }
            Ok(())
        };
        for chunk in &self.wte {
            let table = TableChunk { first: chunk.first, count: chunk.rows, width: d, rows: &chunk.buffer };
            model::gather_rows(gpu, &mut enc, n, table, &token_buffer, &embed)?;
        }
        capture(&mut enc, HookPoint::Embed, &embed)?;
        enc.copy_buffer_to_buffer(&self.wpe, 0, &pos_embed, 0, f(n * d));
        capture(&mut enc, HookPoint::PosEmbed, &pos_embed)?;
        let add =
            |enc: &mut wgpu::CommandEncoder, a: &wgpu::Buffer, b: &wgpu::Buffer, out: &wgpu::Buffer| model::add(gpu, enc, n * d, a, b, out);
        let layer_norm = |enc: &mut wgpu::CommandEncoder, ln: &GpuLayerNorm, x: &wgpu::Buffer, out: &wgpu::Buffer| {
            let args = model::LayerNorm { rows: n, width: d, eps: cfg.layer_norm_eps, x, weight: &ln.weight, bias: &ln.bias, out };
            model::layer_norm(gpu, enc, args)
        };
        add(&mut enc, &embed, &pos_embed, &resid)?;
        let scale = if cfg.scale_attn_weights { 1.0 / (cfg.d_head() as f32).sqrt() } else { 1.0 };
        for (layer, block) in self.blocks.iter().enumerate().take(blocks) {
            let at = |site| HookPoint::block(layer, site);
            capture(&mut enc, at(BlockSite::ResidPre), &resid)?;
            layer_norm(&mut enc, &block.ln_1, &resid, &normed)?;
            block.qkv.record(gpu, &mut enc, n, &normed, &qkv)?;
            model::attention(gpu, &mut enc, Attention { rows: n, n_heads: cfg.n_heads, d_head: cfg.d_head(), scale, qkv: &qkv, z: &z })?;
            capture(&mut enc, at(BlockSite::AttnZ), &z)?;
            block.attn_out.record(gpu, &mut enc, n, &z, &attn_out)?;
            capture(&mut enc, at(BlockSite::AttnOut), &attn_out)?;
            add(&mut enc, &resid, &attn_out, &resid_mid)?;
            capture(&mut enc, at(BlockSite::ResidMid), &resid_mid)?;
            layer_norm(&mut enc, &block.ln_2, &resid_mid, &normed)?;
            block.mlp_in.record(gpu, &mut enc, n, &normed, &hidden)?;
            model::gelu_new(gpu, &mut enc, n * m, &hidden)?;
            block.mlp_out.record(gpu, &mut enc, n, &hidden, &mlp_out)?;
            capture(&mut enc, at(BlockSite::MlpOut), &mlp_out)?;
            add(&mut enc, &resid_mid, &mlp_out, &resid_next)?;
            std::mem::swap(&mut resid, &mut resid_next);
            capture(&mut enc, at(BlockSite::ResidPost), &resid)?;
        }
        if !to_the_end {
            gpu.queue.submit([enc.finish()]);
            return Ok(GpuForward { logits: Vec::new(), hooks: read_all(gpu, &captured, n * d).await? });
        }
        layer_norm(&mut enc, &self.ln_f, &resid, &normed)?;
        capture(&mut enc, HookPoint::FinalNormalized, &normed)?;
        gpu.queue.submit([enc.finish()]);

        // Logits in row blocks that fit one binding, each block through every unembedding chunk.
        let unembed = self.lm_head.as_ref().unwrap_or(&self.wte);
        let block_rows = ((self.max_binding_bytes / f(vocab)) as usize).clamp(1, n);
        let logits_block = gpu.storage("logits", f(block_rows * vocab));
        let zeros = gpu.upload_f32("no bias", &[0.0; 1]);
        let mut logits = Vec::with_capacity(n * vocab);
        for row0 in (0..n).step_by(block_rows) {
            let rows_here = block_rows.min(n - row0);
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            for chunk in unembed {
                let args = Matmul {
                    m: rows_here,
                    n: chunk.rows,
                    k: d,
                    a: &normed,
                    lda: d,
                    a_col: row0 * d,
                    b: &chunk.buffer,
                    ldb: d,
                    c: &logits_block,
                    ldc: vocab,
                    c_col: chunk.first,
                    cols: &zeros,
                    trans_a: false,
                    trans_b: true,
                };
                matmul(gpu, &mut enc, Epilogue::Store, args)?;
            }
            gpu.queue.submit([enc.finish()]);
            logits.extend(gpu.read_f32(&logits_block, rows_here * vocab).await?);
        }
        Ok(GpuForward { logits, hooks: read_all(gpu, &captured, n * d).await? })
    }
}

/// Reads back `len` floats of each buffer.
async fn read_all(gpu: &Gpu, buffers: &[wgpu::Buffer], len: usize) -> Result<Vec<Vec<f32>>, GpuError> {
    let mut out = Vec::with_capacity(buffers.len());
    for buffer in buffers {
        out.push(gpu.read_f32(buffer, len).await?);
    }
    Ok(out)
}
