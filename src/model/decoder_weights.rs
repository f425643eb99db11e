//! A decoder's weights in one layout whatever the family: every projection `[out, in]` row-major
//! as `torch.nn.Linear` stores it (GPT-2's `Conv1D` `[in, out]` is transposed on load, fused
//! q/k/v projections are split). Each family's file in `model::families` says where its tensors
//! are, once, over [`Tensors`], which finds them by name and checks their shapes. What a family's
//! loader gets a tensor as is the type parameter `T`: its values in f32 (`Vec<f32>`, the default,
//! widened from f16/bf16 — what the CPU reference runs), or only where its values are in the
//! checkpoint ([`TensorPlace`], from the files' headers — what a GPU upload streams by, so the
//! weights need never be in host memory at once).

use std::collections::BTreeMap;
use std::ops::Range;

use super::decoder::{BlockLayout, DecoderConfig, Mlp, NormKind, Positions};
use crate::formats::safetensors::{FloatDtype, RawTensor, TensorEntry, TensorFile};

/// A tensor as a family's loader gets it: rows can be taken, it can be transposed and parts of
/// it joined — the only changes a family makes to its checkpoint's tensors.
pub trait TensorValues: Sized + std::fmt::Debug {
    /// Rows `rows` of it read as `[_, row_len]`.
    fn rows(&self, rows: Range<usize>, row_len: usize) -> Self;
    /// `[rows, cols]` read as `[cols, rows]`.
    fn transposed(self, rows: usize, cols: usize) -> Self;
    /// The parts' rows one after another (parts of one tensor, with one row length).
    fn concat(parts: Vec<Self>) -> Self;
}

impl TensorValues for Vec<f32> {
    fn rows(&self, rows: Range<usize>, row_len: usize) -> Vec<f32> {
        self[rows.start * row_len..rows.end * row_len].to_vec()
    }

    fn transposed(self, rows: usize, cols: usize) -> Vec<f32> {
        transpose(&self, rows, cols)
    }

    fn concat(parts: Vec<Vec<f32>>) -> Vec<f32> {
        parts.concat()
    }
}

/// Where a tensor the model uses is in the checkpoint: rows of stored tensor `tensor` (read
/// transposed for GPT-2's `Conv1D`), in order.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorPlace {
    pub tensor: String,
    pub dtype: FloatDtype,
    /// The stored tensor's shape.
    pub stored: Vec<usize>,
    /// Whether the model reads the stored `[rows, cols]` as `[cols, rows]`.
    pub transposed: bool,
    /// The values read, in row-major order of the tensor as the model reads it (after any
    /// transpose): `rows` of length `row_len`. `None`: all of it.
    pub rows: Option<(Vec<Range<usize>>, usize)>,
}

impl TensorPlace {
    /// Values in the tensor as read (after any transpose).
    fn len(&self) -> usize {
        self.stored.iter().product()
    }

    /// The row ranges read, at `row_len` values a row; the whole tensor is one range.
    fn row_ranges(&self, row_len: usize) -> Vec<Range<usize>> {
        match &self.rows {
            None => std::iter::once(0..self.len() / row_len.max(1)).collect(),
            Some((ranges, len)) => {
                // Families take rows of a tensor at one row length (a weight's d_in, a bias's 1).
                assert_eq!(*len, row_len, "rows of '{}' taken at two row lengths", self.tensor);
                ranges.clone()
            }
        }
    }

    /// The values of this place from its stored tensor's values `stored` (the tensor named
    /// `tensor`, widened to f32).
    pub fn gather(&self, stored: Vec<f32>) -> Vec<f32> {
        let values = if self.transposed { transpose(&stored, self.stored[0], self.stored[1]) } else { stored };
        match &self.rows {
            None => values,
            Some((ranges, len)) => ranges.iter().flat_map(|r| values[r.start * len..r.end * len].iter().copied()).collect(),
        }
    }

    /// The byte ranges (from the tensor's first byte) holding the values in order, when they can
    /// be copied as stored (not transposed).
    pub fn stored_byte_ranges(&self) -> Option<Vec<Range<u64>>> {
        if self.transposed {
            return None;
        }
        let b = self.dtype.bytes() as u64;
        Some(match &self.rows {
            None => std::iter::once(0..self.len() as u64 * b).collect(),
            Some((ranges, len)) => ranges.iter().map(|r| (r.start * len) as u64 * b..(r.end * len) as u64 * b).collect(),
        })
    }
}

impl TensorValues for TensorPlace {
    fn rows(&self, rows: Range<usize>, row_len: usize) -> TensorPlace {
        // Rows of the rows read so far: walk the current ranges and keep the part in `rows`.
        let mut picked = Vec::new();
        let mut seen = 0;
        for r in self.row_ranges(row_len) {
            let (from, to) = (seen, seen + r.len());
            let (a, b) = (rows.start.max(from), rows.end.min(to));
            if a < b {
                picked.push(r.start + (a - from)..r.start + (b - from));
            }
            seen = to;
        }
        TensorPlace { rows: Some((picked, row_len)), ..self.clone() }
    }

    fn transposed(self, _rows: usize, _cols: usize) -> TensorPlace {
        debug_assert!(self.rows.is_none() && !self.transposed, "only a whole stored tensor is transposed");
        TensorPlace { transposed: true, ..self }
    }

    fn concat(parts: Vec<TensorPlace>) -> TensorPlace {
        let mut parts = parts.into_iter();
        let first = parts.next().expect("parts to join");
        let (mut ranges, len) = first.rows.clone().expect("parts are rows of a tensor");
        for p in parts {
            debug_assert_eq!(p.tensor, first.tensor, "parts of one tensor");
            let (more, l) = p.rows.expect("parts are rows of a tensor");
            debug_assert_eq!(l, len, "parts with one row length");
            ranges.extend(more);
        }
        TensorPlace { rows: Some((ranges, len)), ..first }
    }
}

/// One tensor of a checkpoint as found by name: with its values, or only its header's entry.
pub trait StoredTensor {
    type Values: TensorValues;
    fn dtype(&self) -> FloatDtype;
    fn shape(&self) -> &[usize];
    /// What the family's loader gets: `name`'s values (every one finite), or its place.
    fn values(self, name: &str) -> Result<Self::Values, String>;
}

impl StoredTensor for RawTensor {
    type Values = Vec<f32>;
    fn dtype(&self) -> FloatDtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn values(self, name: &str) -> Result<Vec<f32>, String> {
        self.finite_f32(name)
    }
}

impl StoredTensor for TensorEntry {
    type Values = TensorPlace;
    fn dtype(&self) -> FloatDtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// Finiteness is checked when the values are read.
    fn values(self, name: &str) -> Result<TensorPlace, String> {
        Ok(TensorPlace { tensor: name.to_string(), dtype: self.dtype, stored: self.shape, transposed: false, rows: None })
    }
}

/// `y = x Wᵀ + b` with `W` `[d_out, d_in]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear<T = Vec<f32>> {
    pub d_in: usize,
    pub d_out: usize,
    pub weight: T,
    pub bias: Option<T>,
}

impl Linear {
    /// `x` `[n, d_in]` → `[n, d_out]`: `x·Wᵀ + b` on the host's GEMM.
    pub fn apply(&self, x: &[f32]) -> Vec<f32> {
        crate::gemm::linear(x, self.d_in, &self.weight, self.d_out, self.bias.as_deref())
    }
}

/// A norm's scale (and LayerNorm's shift).
#[derive(Debug, Clone, PartialEq)]
pub struct NormWeights<T = Vec<f32>> {
    pub weight: T,
    pub bias: Option<T>,
}

/// One block's weights. Which norms exist follows the layout: `attn_norm` and `mlp_norm` always
/// (GPT-2's ln_1/ln_2, Llama's input/post-attention norms, Gemma's input/pre-feed-forward norms);
/// `post_attn_norm` and `post_mlp_norm` for Gemma's sandwich.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerWeights<L = Linear, N = NormWeights> {
    pub attn_norm: N,
    pub q: L,
    pub k: L,
    pub v: L,
    pub o: L,
    /// Over each head's `d_head` queries and keys (Qwen 3, Gemma 3).
    pub q_norm: Option<N>,
    pub k_norm: Option<N>,
    pub post_attn_norm: Option<N>,
    pub mlp_norm: N,
    /// The gated MLP's gate; `None` for a plain MLP.
    pub gate: Option<L>,
    pub up: L,
    pub down: L,
    pub post_mlp_norm: Option<N>,
}

/// A block of a checkpoint's tensors as `T` (values, or places).
pub type Layer<T> = LayerWeights<Linear<T>, NormWeights<T>>;

impl<L, N> LayerWeights<L, N> {
    /// The block's projections: q, k, v, o, then the MLP's (gate if any, up, down).
    pub fn linears(&self) -> impl Iterator<Item = &L> {
        [&self.q, &self.k, &self.v, &self.o].into_iter().chain(&self.gate).chain([&self.up, &self.down])
    }

    /// Its parts by reference.
    pub fn as_ref(&self) -> LayerWeights<&L, &N> {
        LayerWeights {
            attn_norm: &self.attn_norm,
            q: &self.q,
            k: &self.k,
            v: &self.v,
            o: &self.o,
            q_norm: self.q_norm.as_ref(),
            k_norm: self.k_norm.as_ref(),
            post_attn_norm: self.post_attn_norm.as_ref(),
            mlp_norm: &self.mlp_norm,
            gate: self.gate.as_ref(),
            up: &self.up,
            down: &self.down,
            post_mlp_norm: self.post_mlp_norm.as_ref(),
        }
    }

    /// The same block with each projection through `linear` and each norm through `norm`, both
    /// given the part's name ("q", "attn_norm", …).
    pub fn map<L2, N2>(self, mut linear: impl FnMut(&str, L) -> L2, mut norm: impl FnMut(&str, N) -> N2) -> LayerWeights<L2, N2> {
        LayerWeights {
            attn_norm: norm("attn_norm", self.attn_norm),
            q: linear("q", self.q),
            k: linear("k", self.k),
            v: linear("v", self.v),
            o: linear("o", self.o),
            q_norm: self.q_norm.map(|n| norm("q_norm", n)),
            k_norm: self.k_norm.map(|n| norm("k_norm", n)),
            post_attn_norm: self.post_attn_norm.map(|n| norm("post_attn_norm", n)),
            mlp_norm: norm("mlp_norm", self.mlp_norm),
            gate: self.gate.map(|g| linear("gate", g)),
            up: linear("up", self.up),
            down: linear("down", self.down),
            post_mlp_norm: self.post_mlp_norm.map(|n| norm("post_mlp_norm", n)),
        }
    }

    /// The block's norms that exist.
    pub fn norms(&self) -> impl Iterator<Item = &N> {
        [
            Some(&self.attn_norm),
            self.q_norm.as_ref(),
            self.k_norm.as_ref(),
            self.post_attn_norm.as_ref(),
            Some(&self.mlp_norm),
            self.post_mlp_norm.as_ref(),
        ]
        .into_iter()
        .flatten()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DecoderWeights<T = Vec<f32>> {
    /// `[vocab, d_model]`
    pub embed: T,
    /// Learned positions `[max_positions, d_model]` (GPT-2).
    pub pos_embed: Option<T>,
    pub layers: Vec<Layer<T>>,
    pub final_norm: NormWeights<T>,
    /// `[vocab, d_model]`; `None` when tied to `embed`.
    pub unembed: Option<T>,
    /// What the checkpoint stored them in (every tensor; f32 when they differ): the GPU keeps
    /// f16/bf16 weights in half precision, the host widens them to f32.
    pub dtype: FloatDtype,
}

/// A checkpoint's tensors by name (one file, or a sharded checkpoint's files merged), taken out
/// as they are used: with their values (`RawTensor`) or only their header entries (`TensorEntry`).
pub struct Tensors<E = RawTensor> {
    tensors: BTreeMap<String, E>,
}

impl Tensors {
    pub fn new(files: Vec<TensorFile>) -> Tensors {
        Tensors { tensors: files.into_iter().flat_map(|f| f.tensors).collect() }
    }
}

impl<E: StoredTensor> Tensors<E> {
    pub fn from_entries(tensors: BTreeMap<String, E>) -> Tensors<E> {
        Tensors { tensors }
    }

    /// The dtype every tensor has, or f32 when they differ (or there are none).
    pub fn common_dtype(&self) -> FloatDtype {
        let mut dtypes = self.tensors.values().map(|t| t.dtype());
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

    /// Tensor `name` with `shape`.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<E::Values, String> {
        let t = self.tensors.remove(name).ok_or_else(|| format!("missing tensor '{name}'"))?;
        if t.shape() != shape {
            return Err(format!("'{name}' has shape {:?}, the config implies {shape:?}", t.shape()));
        }
        t.values(name)
    }

    /// `name` if the checkpoint has it.
    pub fn take_optional(&mut self, name: &str, shape: &[usize]) -> Result<Option<E::Values>, String> {
        if self.has(name) {
            self.take(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }

    /// An `nn.Linear` `{prefix}.weight` `[d_out, d_in]`, with `{prefix}.bias` when `bias`.
    pub fn linear(&mut self, prefix: &str, d_in: usize, d_out: usize, bias: bool) -> Result<Linear<E::Values>, String> {
        let weight = self.take(&format!("{prefix}.weight"), &[d_out, d_in])?;
        let bias = if bias { Some(self.take(&format!("{prefix}.bias"), &[d_out])?) } else { None };
        Ok(Linear { d_in, d_out, weight, bias })
    }

    /// A norm `{prefix}.weight` `[d]`, with `{prefix}.bias` when `bias`.
    pub fn norm(&mut self, prefix: &str, d: usize, bias: bool) -> Result<NormWeights<E::Values>, String> {
        let weight = self.take(&format!("{prefix}.weight"), &[d])?;
        let bias = if bias { Some(self.take(&format!("{prefix}.bias"), &[d])?) } else { None };
        Ok(NormWeights { weight, bias })
    }

    /// Sets aside, unread, every tensor whose name starts with one of `prefixes` (a part of the
    /// checkpoint that never runs, as a multimodal model's vision tower on text).
    pub fn set_aside(&mut self, prefixes: &[&str]) {
        self.tensors.retain(|name, _| !prefixes.iter().any(|p| name.starts_with(p)));
    }

    /// What is left once the family has taken its tensors (reported: a tensor the family does not
    /// know may change the computation).
    pub fn remaining(&self) -> Vec<&str> {
        self.tensors.keys().map(String::as_str).collect()
    }
}

/// Splits the rows of a fused projection `[Σ parts, d_in]` (with its bias) into consecutive parts.
pub fn split_rows<T: TensorValues>(fused: Linear<T>, parts: &[usize]) -> Vec<Linear<T>> {
    let mut out = Vec::new();
    let mut start = 0;
    for &rows in parts {
        let weight = fused.weight.rows(start..start + rows, fused.d_in);
        let bias = fused.bias.as_ref().map(|b| b.rows(start..start + rows, 1));
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
