//! A decoder's weights in one layout whatever the family: f32, every projection `[out, in]`
//! row-major as `torch.nn.Linear` stores it (GPT-2's `Conv1D` `[in, out]` is transposed on load,
//! fused q/k/v projections are split). Each family's file in `model::families` says where its
//! tensors are; [`Tensors`] finds them by name, checks their shapes and widens f16/bf16.

use std::collections::BTreeMap;

use super::decoder::{BlockLayout, DecoderConfig, Mlp, NormKind, Positions};
use crate::formats::safetensors::{FloatDtype, RawTensor, TensorFile};

/// `y = x Wᵀ + b` with `W` `[d_out, d_in]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    pub d_in: usize,
    pub d_out: usize,
    pub weight: Vec<f32>,
    pub bias: Option<Vec<f32>>,
}

impl Linear {
    /// `x` `[n, d_in]` → `[n, d_out]`.
    pub fn apply(&self, x: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(x.len() / self.d_in * self.d_out);
        for row in x.chunks_exact(self.d_in) {
            for (o, w) in self.weight.chunks_exact(self.d_in).enumerate() {
                let dot: f32 = row.iter().zip(w).map(|(a, b)| a * b).sum();
                out.push(dot + self.bias.as_ref().map_or(0.0, |b| b[o]));
            }
        }
        out
    }
}

/// A norm's scale (and LayerNorm's shift).
#[derive(Debug, Clone, PartialEq)]
pub struct NormWeights {
    pub weight: Vec<f32>,
    pub bias: Option<Vec<f32>>,
}

/// One block's weights. Which norms exist follows the layout: `attn_norm` and `mlp_norm` always
/// (GPT-2's ln_1/ln_2, Llama's input/post-attention norms, Gemma's input/pre-feed-forward norms);
/// `post_attn_norm` and `post_mlp_norm` for Gemma's sandwich.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerWeights {
    pub attn_norm: NormWeights,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    /// Over each head's `d_head` queries and keys (Qwen 3, Gemma 3).
    pub q_norm: Option<NormWeights>,
    pub k_norm: Option<NormWeights>,
    pub post_attn_norm: Option<NormWeights>,
    pub mlp_norm: NormWeights,
    /// The gated MLP's gate; `None` for a plain MLP.
    pub gate: Option<Linear>,
    pub up: Linear,
    pub down: Linear,
    pub post_mlp_norm: Option<NormWeights>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DecoderWeights {
    /// `[vocab, d_model]`
    pub embed: Vec<f32>,
    /// Learned positions `[max_positions, d_model]` (GPT-2).
    pub pos_embed: Option<Vec<f32>>,
    pub layers: Vec<LayerWeights>,
    pub final_norm: NormWeights,
    /// `[vocab, d_model]`; `None` when tied to `embed`.
    pub unembed: Option<Vec<f32>>,
    /// What the checkpoint stored them in (every tensor; f32 when they differ): the GPU keeps
    /// f16/bf16 weights in half precision, the host widens them to f32.
    pub dtype: FloatDtype,
}

/// A checkpoint's tensors by name (one file, or a sharded checkpoint's files merged), taken out
/// as they are used.
pub struct Tensors {
    tensors: BTreeMap<String, RawTensor>,
}

impl Tensors {
    pub fn new(files: Vec<TensorFile>) -> Tensors {
        Tensors { tensors: files.into_iter().flat_map(|f| f.tensors).collect() }
    }

    /// The dtype every tensor has, or f32 when they differ (or there are none).
    pub fn common_dtype(&self) -> FloatDtype {
        let mut dtypes = self.tensors.values().map(|t| t.dtype);
        let first = dtypes.next().unwrap_or(FloatDtype::F32);
        if dtypes.all(|d| d == first) {
            first
        } else {
            FloatDtype::F32
        }
    }

    /// Whether the checkpoint has `name`.
    pub fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Tensor `name` with `shape`, in f32; every value finite.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        let t = self.tensors.remove(name).ok_or_else(|| format!("missing tensor '{name}'"))?;
        if t.shape != shape {
            return Err(format!("'{name}' has shape {:?}, the config implies {shape:?}", t.shape));
        }
        t.finite_f32(name)
    }

    /// `name` if the checkpoint has it.
    pub fn take_optional(&mut self, name: &str, shape: &[usize]) -> Result<Option<Vec<f32>>, String> {
        if self.has(name) {
            self.take(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }

    /// An `nn.Linear` `{prefix}.weight` `[d_out, d_in]`, with `{prefix}.bias` when `bias`.
    pub fn linear(&mut self, prefix: &str, d_in: usize, d_out: usize, bias: bool) -> Result<Linear, String> {
        let weight = self.take(&format!("{prefix}.weight"), &[d_out, d_in])?;
        let bias = if bias { Some(self.take(&format!("{prefix}.bias"), &[d_out])?) } else { None };
        Ok(Linear { d_in, d_out, weight, bias })
    }

    /// A norm `{prefix}.weight` `[d]`, with `{prefix}.bias` when `bias`.
    pub fn norm(&mut self, prefix: &str, d: usize, bias: bool) -> Result<NormWeights, String> {
        let weight = self.take(&format!("{prefix}.weight"), &[d])?;
        let bias = if bias { Some(self.take(&format!("{prefix}.bias"), &[d])?) } else { None };
        Ok(NormWeights { weight, bias })
    }

    /// What is left once the family has taken its tensors (reported: a tensor the family does not
    /// know may change the computation).
    pub fn remaining(&self) -> Vec<&str> {
        self.tensors.keys().map(String::as_str).collect()
    }
}

/// Splits the rows of a fused projection `[Σ parts, d_in]` (with its bias) into consecutive parts.
pub fn split_rows(fused: Linear, parts: &[usize]) -> Vec<Linear> {
    let mut out = Vec::new();
    let mut start = 0;
    for &rows in parts {
        let weight = fused.weight[start * fused.d_in..(start + rows) * fused.d_in].to_vec();
        let bias = fused.bias.as_ref().map(|b| b[start..start + rows].to_vec());
        out.push(Linear { d_in: fused.d_in, d_out: rows, weight, bias });
        start += rows;
    }
    out
}

/// `[rows, cols]` → `[cols, rows]`.
pub fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

impl DecoderWeights {
    /// Random weights for `cfg` (tests and benchmarks): N(0, 0.1²) matrices and biases, norm
    /// weights near 1 (near 0 where the norm scales by `1 + w`), every tensor the description
    /// implies.
    pub fn random(cfg: &DecoderConfig, seed: u64) -> DecoderWeights {
        let mut rng = crate::random::Rng::new(seed);
        let mut normals = |n: usize| rng.normals(n, 0.1);
        let unit = !matches!(cfg.norm.kind, NormKind::RmsNorm { unit_offset: true });
        let with_bias = cfg.norm.kind == NormKind::LayerNorm;
        let norm = |normals: &mut dyn FnMut(usize) -> Vec<f32>, d: usize| NormWeights {
            weight: normals(d).into_iter().map(|v| if unit { 1.0 + v } else { v }).collect(),
            bias: with_bias.then(|| normals(d)),
        };
        let linear = |normals: &mut dyn FnMut(usize) -> Vec<f32>, d_in: usize, d_out: usize, bias: bool| Linear {
            d_in,
            d_out,
            weight: normals(d_in * d_out),
            bias: bias.then(|| normals(d_out)),
        };
        let (d, dh, m) = (cfg.d_model, cfg.d_head, cfg.d_mlp);
        let (q_out, kv_out) = (cfg.n_heads * dh, cfg.n_kv_heads * dh);
        let sandwich = cfg.layout == BlockLayout::Sandwich;
        let gated = cfg.mlp == Mlp::Gated;
        let layers = (0..cfg.n_layers)
            .map(|_| LayerWeights {
                attn_norm: norm(&mut normals, d),
                q: linear(&mut normals, d, q_out, cfg.qkv_bias),
                k: linear(&mut normals, d, kv_out, cfg.qkv_bias),
                v: linear(&mut normals, d, kv_out, cfg.qkv_bias),
                o: linear(&mut normals, q_out, d, cfg.o_bias),
                q_norm: cfg.qk_norm.then(|| norm(&mut normals, dh)),
                k_norm: cfg.qk_norm.then(|| norm(&mut normals, dh)),
                post_attn_norm: sandwich.then(|| norm(&mut normals, d)),
                mlp_norm: norm(&mut normals, d),
                gate: gated.then(|| linear(&mut normals, d, m, cfg.mlp_bias)),
                up: linear(&mut normals, d, m, cfg.mlp_bias),
                down: linear(&mut normals, m, d, cfg.mlp_bias),
                post_mlp_norm: sandwich.then(|| norm(&mut normals, d)),
            })
            .collect();
        DecoderWeights {
            embed: normals(cfg.vocab_size * d),
            pos_embed: (cfg.positions == Positions::Learned).then(|| normals(cfg.max_positions * d)),
            layers,
            final_norm: norm(&mut normals, d),
            unembed: (!cfg.tied_embeddings).then(|| normals(cfg.vocab_size * d)),
            dtype: FloatDtype::F32,
        }
    }
}

impl DecoderWeights {
    /// Every value rounded to `dtype` (round to nearest even) and the weights marked as stored in
    /// it, as if the checkpoint held them so (random bf16 models for tests and benchmarks).
    pub fn in_precision(mut self, dtype: FloatDtype) -> DecoderWeights {
        let round = |v: &mut Vec<f32>| match dtype {
            FloatDtype::F32 => {}
            FloatDtype::F16 => v.iter_mut().for_each(|x| *x = half::f16::from_f32(*x).to_f32()),
            FloatDtype::BF16 => v.iter_mut().for_each(|x| *x = half::bf16::from_f32(*x).to_f32()),
        };
        let norm = |n: &mut NormWeights| {
            round(&mut n.weight);
            n.bias.iter_mut().for_each(round);
        };
        let linear = |l: &mut Linear| {
            round(&mut l.weight);
            l.bias.iter_mut().for_each(round);
        };
        round(&mut self.embed);
        self.pos_embed.iter_mut().for_each(round);
        self.unembed.iter_mut().for_each(round);
        norm(&mut self.final_norm);
        for l in &mut self.layers {
            [&mut l.q, &mut l.k, &mut l.v, &mut l.o, &mut l.up, &mut l.down].into_iter().chain(l.gate.as_mut()).for_each(linear);
            [&mut l.attn_norm, &mut l.mlp_norm]
                .into_iter()
                .chain([&mut l.q_norm, &mut l.k_norm, &mut l.post_attn_norm, &mut l.post_mlp_norm].into_iter().flatten())
                .for_each(norm);
        }
        self.dtype = dtype;
        self
    }
}
