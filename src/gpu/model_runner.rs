//! A decoder of any described family on the GPU: the weights uploaded once (every projection as
//! row chunks that each fit one binding — the token embedding and unembedding of a large
//! vocabulary need several), then `model::cpu::forward_hooked`'s steps recorded as model.wgsl
//! kernels (embedding gather, norms, RoPE, grouped-query attention with windows and soft caps,
//! activations, residual adds) and matmul.wgsl products, with the same hook points and
//! interventions. Only the logits and the hook points asked for are read back.

use super::kernels::matmul::{matmul, Epilogue, Matmul};
use super::kernels::model::{self, Attention, GpuAffine, Norm, ScaleShift, TableChunk};
use super::{Gpu, GpuError};
use crate::formats::safetensors::FloatDtype;
use crate::model::cpu::{attention_spec, inverse_frequencies, layer_rope, norm_spec};
use crate::model::decoder::{BlockLayout, DecoderConfig, Mlp, Rope};
use crate::model::decoder_weights::{LayerWeights, Linear, NormWeights};
use crate::model::{BlockSite, HookPoint, Intervention, Model};
use crate::reference::matmul::{pack, Storage};
use crate::reference::model::rope_tables;

/// Rows `[first, first + rows)` of a projection's `[d_out, d_in]` weight, with the matmul
/// epilogue's `[bias | 1 | 0]` columns for those rows.
pub(super) struct LinearChunk {
    pub(super) first: usize,
    pub(super) rows: usize,
    pub(super) weight: wgpu::Buffer,
    cols: wgpu::Buffer,
}

/// `y = x Wᵀ + b` with `W` `[d_out, d_in]` in row chunks of at most one binding each, stored as
/// `storage` says (f16/bf16 weights stay half precision, two a word).
pub(super) struct GpuLinear {
    pub(super) d_in: usize,
    pub(super) d_out: usize,
    pub(super) storage: Storage,
    pub(super) chunks: Vec<LinearChunk>,
}

/// The GPU storage of values stored in `dtype`.
pub(super) fn storage_of(dtype: FloatDtype) -> Storage {
    match dtype {
        FloatDtype::F32 => Storage::F32,
        FloatDtype::F16 => Storage::F16,
        FloatDtype::BF16 => Storage::Bf16,
    }
}

impl GpuLinear {
    /// Buffers for a `[d_out, d_in]` weight in row chunks of at most `max_bytes` (zeros, and no
    /// bias), to be filled by `write_weight` or by writes of stored bytes (`row_bytes_at`).
    pub(super) fn allocate(gpu: &Gpu, label: &str, d_in: usize, d_out: usize, storage: Storage, max_bytes: u64) -> GpuLinear {
        let row_bytes = (d_in as f64 * storage.bytes_per_value()).ceil() as u64;
        let rows_per_chunk = ((max_bytes / row_bytes.max(1)) as usize).clamp(1, d_out.max(1));
        let chunks = (0..d_out)
            .step_by(rows_per_chunk)
            .map(|first| {
                let rows = rows_per_chunk.min(d_out - first);
                let cols: Vec<f32> = [0.0, 1.0, 0.0].into_iter().flat_map(|v| std::iter::repeat_n(v, rows)).collect();
                let bytes = (rows as f64 * d_in as f64 * storage.bytes_per_value()).ceil() as u64;
                LinearChunk { first, rows, weight: gpu.storage(label, bytes), cols: gpu.upload_f32(label, &cols) }
            })
            .collect();
        GpuLinear { d_in, d_out, storage, chunks }
    }

    /// Writes the whole weight `[d_out, d_in]` from f32 values (packed to the storage).
    pub(super) fn write_weight(&self, gpu: &Gpu, weight: &[f32]) {
        for c in &self.chunks {
            let words = pack(&weight[c.first * self.d_in..(c.first + c.rows) * self.d_in], self.storage);
            gpu.queue.write_buffer(&c.weight, 0, bytemuck::cast_slice(&words));
        }
    }

    /// Writes the bias `[d_out]` into the epilogue's columns.
    pub(super) fn write_bias(&self, gpu: &Gpu, bias: &[f32]) {
        for c in &self.chunks {
            gpu.queue.write_buffer(&c.cols, 0, bytemuck::cast_slice(&bias[c.first..c.first + c.rows]));
        }
    }

    fn upload(gpu: &Gpu, label: &str, weight: &[f32], bias: Option<&[f32]>, d_in: usize, storage: Storage, max_bytes: u64) -> GpuLinear {
        let linear = GpuLinear::allocate(gpu, label, d_in, weight.len() / d_in.max(1), storage, max_bytes);
        linear.write_weight(gpu, weight);
        if let Some(b) = bias {
            linear.write_bias(gpu, b);
        }
        linear
    }

    fn of(gpu: &Gpu, label: &str, l: &Linear, storage: Storage, max_bytes: u64) -> GpuLinear {
        GpuLinear::upload(gpu, label, &l.weight, l.bias.as_deref(), l.d_in, storage, max_bytes)
    }

    /// The GPU bytes its buffers take.
    fn bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.weight.size() + c.cols.size()).sum()
    }

    /// `out[r, :] = x[a_offset + r·d_in ..] Wᵀ + b` for `rows` rows; `out` is `[rows, d_out]`.
    fn record(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        rows: usize,
        x: &wgpu::Buffer,
        a_offset: usize,
        out: &wgpu::Buffer,
    ) -> Result<(), GpuError> {
        // (acc + bias) · 1: the TopK pre-activation epilogue is exactly a biased linear layer.
        self.record_as(gpu, enc, rows, x, a_offset, out, Epilogue::TopKPre)
    }

    /// As `record` with `epilogue` (`Store`: `x Wᵀ`, the bias left out).
    #[allow(clippy::too_many_arguments)]
    fn record_as(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        rows: usize,
        x: &wgpu::Buffer,
        a_offset: usize,
        out: &wgpu::Buffer,
        epilogue: Epilogue,
    ) -> Result<(), GpuError> {
        for chunk in &self.chunks {
            let args = Matmul {
                m: rows,
                n: chunk.rows,
                k: self.d_in,
                a: x,
                lda: self.d_in,
                a_col: a_offset,
                b: &chunk.weight,
                ldb: self.d_in,
                c: out,
                ldc: self.d_out,
                c_col: chunk.first,
                cols: &chunk.cols,
                trans_a: false,
                trans_b: true,
                b_storage: self.storage,
            };
            matmul(gpu, enc, epilogue, args)?;
        }
        Ok(())
    }
}

pub(super) struct GpuNorm {
    weight: wgpu::Buffer,
    bias: Option<wgpu::Buffer>,
}

impl GpuNorm {
    pub(super) fn upload(gpu: &Gpu, label: &str, n: &NormWeights) -> GpuNorm {
        GpuNorm { weight: gpu.upload_f32(label, &n.weight), bias: n.bias.as_ref().map(|b| gpu.upload_f32(label, b)) }
    }

    fn affine(&self) -> GpuAffine<'_> {
        GpuAffine { weight: &self.weight, bias: self.bias.as_ref() }
    }

    fn bytes(&self) -> u64 {
        self.weight.size() + self.bias.as_ref().map_or(0, |b| b.size())
    }
}

/// One block on the GPU: its projections and norms, as `LayerWeights`.
pub(super) type GpuLayer = LayerWeights<GpuLinear, GpuNorm>;

pub struct GpuModel {
    pub cfg: DecoderConfig,
    /// The token embedding as a bias-free projection `[vocab, d_model]`: its chunks are the
    /// gather's tables, and the unembedding when tied.
    embed: GpuLinear,
    /// A separate unembedding; `None` when tied to `embed`.
    unembed: Option<GpuLinear>,
    pos_embed: Option<wgpu::Buffer>,
    layers: Vec<GpuLayer>,
    final_norm: GpuNorm,
    max_binding_bytes: u64,
    /// GPU bytes the weights take (every buffer uploaded).
    weight_bytes: u64,
}

/// Whether a model `cfg` describes fits one GPU binding of `limit` bytes where it must: a weight
/// row (projections are split by rows, never within one) and the learned position table.
pub(super) fn check_fits(gpu: &Gpu, cfg: &DecoderConfig, limit: u64) -> Result<(), GpuError> {
    let widest_row = [cfg.d_model, cfg.d_mlp, cfg.n_heads * cfg.d_head].into_iter().max().unwrap_or(0) as u64 * 4;
    let pos_bytes =
        if cfg.positions == crate::model::decoder::Positions::Learned { (cfg.max_positions * cfg.d_model) as u64 * 4 } else { 0 };
    if widest_row > limit || pos_bytes > gpu.max_binding_bytes() {
        return Err(GpuError::TooLarge(format!(
            "a weight row of {widest_row} bytes or a position table of {pos_bytes} bytes does not fit one GPU binding of {limit} bytes"
        )));
    }
    Ok(())
}

/// What a GPU forward pass returns.
pub struct GpuForward {
    /// `[n_tokens, vocab]`
    pub logits: Vec<f32>,
    /// The requested hook points, each `[n_tokens, width]`, in the order asked.
    pub hooks: Vec<Vec<f32>>,
}

impl GpuModel {
    pub fn upload(gpu: &Gpu, model: &Model) -> Result<GpuModel, GpuError> {
        GpuModel::upload_with_limit(gpu, model, gpu.max_binding_bytes())
    }

    /// As `upload`, splitting every projection into row chunks of at most `max_binding_bytes`
    /// (tests use a small limit to exercise the split that large vocabularies need). Projections and
    /// the embedding stay in the checkpoint's precision (f16/bf16: 2 bytes a parameter, f32: 4);
    /// norms, biases and learned positions are f32.
    pub fn upload_with_limit(gpu: &Gpu, model: &Model, max_binding_bytes: u64) -> Result<GpuModel, GpuError> {
        let (cfg, w) = (model.cfg.clone(), &model.weights);
        let storage = storage_of(w.dtype);
        let limit = max_binding_bytes.min(gpu.max_binding_bytes());
        check_fits(gpu, &cfg, limit)?;
        let linear = |label: &str, l: &Linear| GpuLinear::of(gpu, label, l, storage, limit);
        let norm = |label: &str, n: &NormWeights| GpuNorm::upload(gpu, label, n);
        let layers: Vec<GpuLayer> = w.layers.iter().map(|l| l.as_ref().map(linear, norm)).collect();
        let embed = GpuLinear::upload(gpu, "embed", &w.embed, None, cfg.d_model, storage, limit);
        let unembed = w.unembed.as_ref().map(|u| GpuLinear::upload(gpu, "unembed", u, None, cfg.d_model, storage, limit));
        let pos_embed = w.pos_embed.as_ref().map(|p| gpu.upload_f32("pos_embed", p));
        let final_norm = norm("final_norm", &w.final_norm);
        Ok(GpuModel::assemble(cfg, embed, unembed, pos_embed, layers, final_norm, limit))
    }

    /// The model from its uploaded parts, its GPU bytes counted.
    pub(super) fn assemble(
        cfg: DecoderConfig,
        embed: GpuLinear,
        unembed: Option<GpuLinear>,
        pos_embed: Option<wgpu::Buffer>,
        layers: Vec<GpuLayer>,
        final_norm: GpuNorm,
        max_binding_bytes: u64,
    ) -> GpuModel {
        let layer_bytes = |l: &GpuLayer| l.linears().map(GpuLinear::bytes).sum::<u64>() + l.norms().map(GpuNorm::bytes).sum::<u64>();
        let weight_bytes = embed.bytes()
            + unembed.as_ref().map_or(0, GpuLinear::bytes)
            + pos_embed.as_ref().map_or(0, |p| p.size())
            + final_norm.bytes()
            + layers.iter().map(layer_bytes).sum::<u64>();
        GpuModel { embed, unembed, pos_embed, layers, final_norm, max_binding_bytes, weight_bytes, cfg }
    }

    /// GPU bytes the weights take, every buffer counted.
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    /// How many pieces the token embedding was split into.
    pub fn embedding_chunks(&self) -> usize {
        self.embed.chunks.len()
    }

    /// Rows `rows` of the token embedding, read back (widened to f32).
    pub async fn embedding_rows(&self, gpu: &Gpu, rows: &[usize]) -> Result<Vec<f32>, GpuError> {
        let (d, storage) = (self.cfg.d_model, self.embed.storage);
        let mut out = Vec::with_capacity(rows.len() * d);
        for &r in rows {
            let chunk = self.embed.chunks.iter().find(|c| (c.first..c.first + c.rows).contains(&r));
            let chunk = chunk.ok_or_else(|| GpuError::Input(format!("embedding row {r} of {}", self.cfg.vocab_size)))?;
            // The words holding the row's values (two a word when packed).
            let per_word = if storage == Storage::F32 { 1 } else { 2 };
            let first_value = (r - chunk.first) * d;
            let (w0, w1) = (first_value / per_word, (first_value + d).div_ceil(per_word));
            let words: Vec<u32> = bytemuck::pod_collect_to_vec(&gpu.read_range(&chunk.weight, w0 as u64 * 4, (w1 - w0) as u64 * 4).await?);
            let values = crate::reference::matmul::unpack(&words, storage, (w1 - w0) * per_word);
            out.extend_from_slice(&values[first_value - w0 * per_word..][..d]);
        }
        Ok(out)
    }

    /// Rows `rows` of the learned positions, read back (none for a model without them).
    pub async fn position_rows(&self, gpu: &Gpu, rows: &[usize]) -> Result<Vec<f32>, GpuError> {
        let Some(table) = &self.pos_embed else { return Ok(Vec::new()) };
        let d = self.cfg.d_model as u64;
        let mut out = Vec::new();
        for &r in rows {
            out.extend(bytemuck::pod_collect_to_vec::<u8, f32>(&gpu.read_range(table, r as u64 * d * 4, d * 4).await?));
        }
        Ok(out)
    }

    /// The final norm's weight, then its bias if it has one, read back.
    pub async fn final_norm_values(&self, gpu: &Gpu) -> Result<Vec<f32>, GpuError> {
        let d = self.cfg.d_model;
        let mut out = gpu.read_f32(&self.final_norm.weight, d).await?;
        if let Some(b) = &self.final_norm.bias {
            out.extend(gpu.read_f32(b, d).await?);
        }
        Ok(out)
    }

    /// A direction `written` into the residual stream (`[d_model]`; `[n_heads·d_head]` through
    /// layer `through_o`'s output projection, its bias left out, when given) read by the
    /// unembedding with the final norm's scale folded in: `lm::logit_lens`'s effects `[vocab]`,
    /// before centring.
    pub async fn direct_logit_effects(&self, gpu: &Gpu, written: &[f32], through_o: Option<usize>) -> Result<Vec<f32>, GpuError> {
        let d = self.cfg.d_model;
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        let x = gpu.upload_f32("lens_in", written);
        let residual = match through_o {
            Some(layer) => {
                let o = &self.layers.get(layer).ok_or_else(|| GpuError::Input(format!("layer {layer} of {}", self.layers.len())))?.o;
                let out = gpu.storage("lens_written", (d * 4) as u64);
                o.record_as(gpu, &mut enc, 1, &x, 0, &out, Epilogue::Store)?;
                out
            }
            None => x,
        };
        let direction = gpu.storage("lens_direction", (d * 4) as u64);
        let unit_offset = matches!(self.cfg.norm.kind, crate::model::decoder::NormKind::RmsNorm { unit_offset: true });
        let scale = GpuAffine { weight: &self.final_norm.weight, bias: None };
        model::scale_shift(gpu, &mut enc, ScaleShift { n: d, width: d, unit_offset, x: &residual, affine: scale, out: &direction })?;
        let unembed = self.unembed.as_ref().unwrap_or(&self.embed);
        let effects = gpu.storage("lens_effects", (self.cfg.vocab_size * 4) as u64);
        unembed.record_as(gpu, &mut enc, 1, &direction, 0, &effects, Epilogue::Store)?;
        gpu.queue.submit([enc.finish()]);
        gpu.read_f32(&effects, self.cfg.vocab_size).await
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

    /// The activations `[n_tokens, width]` at `hook`, running only the blocks needed to reach it
    /// and no unembedding (as `model::cpu::activations_at`).
    pub async fn activations_at(&self, gpu: &Gpu, tokens: &[u32], hook: HookPoint) -> Result<Vec<f32>, GpuError> {
        let (blocks, at_end) = self.cfg.extent_to_reach(hook);
        let out = self.run_partial(gpu, tokens, &[hook], &[], blocks, at_end).await?;
        out.hooks.into_iter().next().ok_or_else(|| GpuError::Input(format!("{hook} was not reached")))
    }

    /// `run` through the first `blocks` blocks; the final norm and the logits only when
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
        cfg.check_tokens(tokens).map_err(|e| GpuError::Input(e.to_string()))?;
        if let Some(hook) = hooks.iter().find(|h| !cfg.has_hook(**h)) {
            return Err(GpuError::Input(format!("{hook} is not a hook point of this {} model", cfg.model_type)));
        }
        for i in interventions {
            i.check(cfg, tokens.len()).map_err(GpuError::Input)?;
        }
        let (n, d, m, vocab) = (tokens.len(), cfg.d_model, cfg.d_mlp, cfg.vocab_size);
        let (q_width, kv_width) = (cfg.n_heads * cfg.d_head, cfg.n_kv_heads * cfg.d_head);
        let f = |count: usize| (count * 4) as u64;
        let buffer = |label: &str, count: usize| gpu.storage(label, f(count));
        let token_buffer = gpu.upload_bytes("tokens", bytemuck::cast_slice(tokens));
        let mut resid = buffer("resid", n * d);
        let mut resid_next = buffer("resid", n * d);
        let (mid, normed, normalized, mlp_in) =
            (buffer("resid_mid", n * d), buffer("normed", n * d), buffer("normalized", n * d), buffer("mlp_in", n * d));
        let (q_pre, k_pre, q, k, v) = (
            buffer("q", n * q_width),
            buffer("k", n * kv_width),
            buffer("q normed", n * q_width),
            buffer("k normed", n * kv_width),
            buffer("v", n * kv_width),
        );
        let (z, attn_raw, attn_out) = (buffer("z", n * q_width), buffer("attn raw", n * d), buffer("attn_out", n * d));
        let (gate, up, mlp_raw, mlp_out) = (buffer("gate", n * m), buffer("up", n * m), buffer("mlp raw", n * d), buffer("mlp_out", n * d));
        let width = |h: HookPoint| cfg.hook_width(h);
        let captured: Vec<wgpu::Buffer> = hooks.iter().map(|h| buffer(&h.to_string(), n * width(*h))).collect();
        // Each intervention as an [n, width] buffer: the replacement, or the vector tiled over tokens.
        let changes: Vec<(HookPoint, bool, wgpu::Buffer)> = interventions
            .iter()
            .map(|i| match i {
                Intervention::Replace { hook, values } => (*hook, true, gpu.upload_f32("replacement", values)),
                Intervention::AddToEveryToken { hook, vector } => (*hook, false, gpu.upload_f32("added", &vector.repeat(n))),
            })
            .collect();
        let scratch = buffer("intervention scratch", n * d.max(q_width));
        let touched = |point: HookPoint| hooks.contains(&point) || changes.iter().any(|c| c.0 == point);

        let mut enc = gpu.device.create_command_encoder(&Default::default());
        // At a hook point: apply the interventions there to the activation's buffer, then copy it
        // out if it was asked for.
        let capture = |enc: &mut wgpu::CommandEncoder, point: HookPoint, at: &wgpu::Buffer| -> Result<(), GpuError> {
            let len = n * width(point);
            for (_, replace, values) in changes.iter().filter(|c| c.0 == point) {
                if *replace {
                    enc.copy_buffer_to_buffer(values, 0, at, 0, f(len));
                } else {
                    model::add(gpu, enc, len, at, values, &scratch)?;
                    enc.copy_buffer_to_buffer(&scratch, 0, at, 0, f(len));
                }
            }
            for (&wanted, out) in hooks.iter().zip(&captured) {
                if wanted == point {
                    enc.copy_buffer_to_buffer(at, 0, out, 0, f(len));
                }
            }
            Ok(())
        };
        let spec = norm_spec(cfg);
        let norm = |enc: &mut wgpu::CommandEncoder, w: Option<&GpuNorm>, x: &wgpu::Buffer, out: &wgpu::Buffer| {
            model::norm(gpu, enc, Norm { rows: n, width: d, spec, x, affine: w.map(GpuNorm::affine), out })
        };
        let scale_shift = |enc: &mut wgpu::CommandEncoder, w: &GpuNorm, x: &wgpu::Buffer, out: &wgpu::Buffer| {
            let args = ScaleShift { n: n * d, width: d, unit_offset: spec.unit_offset, x, affine: w.affine(), out };
            model::scale_shift(gpu, enc, args)
        };
        let add =
            |enc: &mut wgpu::CommandEncoder, a: &wgpu::Buffer, b: &wgpu::Buffer, out: &wgpu::Buffer| model::add(gpu, enc, n * d, a, b, out);
        // A sublayer's output projection into `out`, through Gemma's post-norm (via `raw`) when it has one.
        let project = |enc: &mut wgpu::CommandEncoder,
                       linear: &GpuLinear,
                       input: &wgpu::Buffer,
                       post: Option<&GpuNorm>,
                       raw: &wgpu::Buffer,
                       out: &wgpu::Buffer|
         -> Result<(), GpuError> {
            match post {
                Some(post) => {
                    linear.record(gpu, enc, n, input, 0, raw)?;
                    norm(enc, Some(post), raw, out)
                }
                None => linear.record(gpu, enc, n, input, 0, out),
            }
        };

        for chunk in &self.embed.chunks {
            let table = TableChunk { first: chunk.first, count: chunk.rows, width: d, rows: &chunk.weight, storage: self.embed.storage };
            model::gather_rows(gpu, &mut enc, n, table, cfg.embedding_scale.unwrap_or(1.0), &token_buffer, &resid)?;
        }
        capture(&mut enc, HookPoint::Embed, &resid)?;
        if let Some(pos) = &self.pos_embed {
            let pos_embed = buffer("hook_pos_embed", n * d);
            enc.copy_buffer_to_buffer(pos, 0, &pos_embed, 0, f(n * d));
            capture(&mut enc, HookPoint::PosEmbed, &pos_embed)?;
            add(&mut enc, &resid, &pos_embed, &resid_next)?;
            std::mem::swap(&mut resid, &mut resid_next);
        }
        // cos/sin tables per distinct RoPE, computed on the host as the twin computes them.
        let mut tables: Vec<(Rope, usize, wgpu::Buffer, wgpu::Buffer)> = Vec::new();
        for (layer, (kind, lw)) in cfg.layers.iter().zip(&self.layers).enumerate().take(blocks) {
            let at = |site| HookPoint::block(layer, site);
            capture(&mut enc, at(BlockSite::ResidPre), &resid)?;
            norm(&mut enc, Some(&lw.attn_norm), &resid, &normed)?;
            lw.q.record(gpu, &mut enc, n, &normed, 0, &q_pre)?;
            lw.k.record(gpu, &mut enc, n, &normed, 0, &k_pre)?;
            lw.v.record(gpu, &mut enc, n, &normed, 0, &v)?;
            let (q_at, k_at) = match (&lw.q_norm, &lw.k_norm) {
                (Some(qn), Some(kn)) => {
                    model::norm(
                        gpu,
                        &mut enc,
                        Norm { rows: n * cfg.n_heads, width: cfg.d_head, spec, x: &q_pre, affine: Some(qn.affine()), out: &q },
                    )?;
                    model::norm(
                        gpu,
                        &mut enc,
                        Norm { rows: n * cfg.n_kv_heads, width: cfg.d_head, spec, x: &k_pre, affine: Some(kn.affine()), out: &k },
                    )?;
                    (&q, &k)
                }
                _ => (&q_pre, &k_pre),
            };
            if let Some(rope) = layer_rope(cfg, *kind) {
                let index = match tables.iter().position(|t| t.0 == *rope) {
                    Some(i) => i,
                    None => {
                        let inv = inverse_frequencies(rope);
                        let (cos, sin) = rope_tables(&inv, n);
                        tables.push((*rope, inv.len(), gpu.upload_f32("rope cos", &cos), gpu.upload_f32("rope sin", &sin)));
                        tables.len() - 1
                    }
                };
                let (_, half, cos, sin) = &tables[index];
                for (x, heads) in [(q_at, cfg.n_heads), (k_at, cfg.n_kv_heads)] {
                    model::rope(gpu, &mut enc, model::Rope { rows: n, n_heads: heads, d_head: cfg.d_head, half: *half, cos, sin, x })?;
                }
            }
            model::attention(gpu, &mut enc, Attention { rows: n, spec: attention_spec(cfg, *kind), q: q_at, k: k_at, v: &v, z: &z })?;
            capture(&mut enc, at(BlockSite::AttnZ), &z)?;
            project(&mut enc, &lw.o, &z, lw.post_attn_norm.as_ref(), &attn_raw, &attn_out)?;
            let attn = &attn_out;
            capture(&mut enc, at(BlockSite::AttnOut), attn)?;
            let sequential = cfg.layout != BlockLayout::Parallel;
            if sequential {
                add(&mut enc, &resid, attn, &mid)?;
                capture(&mut enc, at(BlockSite::ResidMid), &mid)?;
            }
            // hook_mlp_in is a copy only the MLP reads; without a hook there, read the residual.
            let mlp_source = if sequential { &mid } else { &resid };
            let mlp_input = if touched(at(BlockSite::MlpIn)) {
                enc.copy_buffer_to_buffer(mlp_source, 0, &mlp_in, 0, f(n * d));
                capture(&mut enc, at(BlockSite::MlpIn), &mlp_in)?;
                &mlp_in
            } else {
                mlp_source
            };
            if touched(at(BlockSite::Ln2Normalized)) {
                norm(&mut enc, None, mlp_input, &normalized)?;
                capture(&mut enc, at(BlockSite::Ln2Normalized), &normalized)?;
                scale_shift(&mut enc, &lw.mlp_norm, &normalized, &normed)?;
            } else {
                norm(&mut enc, Some(&lw.mlp_norm), mlp_input, &normed)?;
            }
            capture(&mut enc, at(BlockSite::Ln2Out), &normed)?;
            lw.up.record(gpu, &mut enc, n, &normed, 0, &up)?;
            match (&cfg.mlp, &lw.gate) {
                (Mlp::Gated, Some(g)) => {
                    g.record(gpu, &mut enc, n, &normed, 0, &gate)?;
                    model::gated_activation(gpu, &mut enc, cfg.activation, n * m, &gate, &up)?;
                }
                _ => model::activation(gpu, &mut enc, cfg.activation, n * m, &up)?,
            }
            project(&mut enc, &lw.down, &up, lw.post_mlp_norm.as_ref(), &mlp_raw, &mlp_out)?;
            let mlp = &mlp_out;
            capture(&mut enc, at(BlockSite::MlpOut), mlp)?;
            if sequential {
                add(&mut enc, &mid, mlp, &resid_next)?;
            } else {
                // TransformerLens's order: resid_pre + attn_out + mlp_out.
                add(&mut enc, &resid, attn, &mid)?;
                add(&mut enc, &mid, mlp, &resid_next)?;
            }
            std::mem::swap(&mut resid, &mut resid_next);
            capture(&mut enc, at(BlockSite::ResidPost), &resid)?;
        }
        if !to_the_end {
            gpu.queue.submit([enc.finish()]);
            return Ok(GpuForward { logits: Vec::new(), hooks: self.read_hooks(gpu, hooks, &captured, n).await? });
        }
        norm(&mut enc, None, &resid, &normalized)?;
        capture(&mut enc, HookPoint::FinalNormalized, &normalized)?;
        scale_shift(&mut enc, &self.final_norm, &normalized, &normed)?;
        gpu.queue.submit([enc.finish()]);

        // Logits in row blocks that fit one binding, each block through every unembedding chunk.
        let unembed = self.unembed.as_ref().unwrap_or(&self.embed);
        let block_rows = ((self.max_binding_bytes / f(vocab)) as usize).clamp(1, n);
        let logits_block = buffer("logits", block_rows * vocab);
        let mut logits = Vec::with_capacity(n * vocab);
        for row0 in (0..n).step_by(block_rows) {
            let rows_here = block_rows.min(n - row0);
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            unembed.record(gpu, &mut enc, rows_here, &normed, row0 * d, &logits_block)?;
            if let Some(cap) = cfg.final_softcap {
                model::softcap(gpu, &mut enc, cap, rows_here * vocab, &logits_block)?;
            }
            gpu.queue.submit([enc.finish()]);
            logits.extend(gpu.read_f32(&logits_block, rows_here * vocab).await?);
        }
        Ok(GpuForward { logits, hooks: self.read_hooks(gpu, hooks, &captured, n).await? })
    }

    /// Reads back each captured hook, `n × its width` floats.
    async fn read_hooks(&self, gpu: &Gpu, hooks: &[HookPoint], buffers: &[wgpu::Buffer], n: usize) -> Result<Vec<Vec<f32>>, GpuError> {
        let mut out = Vec::with_capacity(buffers.len());
        for (hook, buffer) in hooks.iter().zip(buffers) {
            out.push(gpu.read_f32(buffer, n * self.cfg.hook_width(*hook)).await?);
        }
        Ok(out)
    }
}
