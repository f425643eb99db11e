//! model.wgsl's twins, composed by `model::cpu` into the reference forward pass of every family:
//! the embedding gather, residual adds, the norms (LayerNorm, RMSNorm, Gemma's `(1 + w)`), rotary
//! embeddings, grouped-query causal attention with sliding windows and soft-capping, the MLP's
//! activations (plain and gated) and the logits' soft cap. Each follows the `transformers` function
//! it names (5.24).

/// The MLP's non-linearity, by the names `transformers`' `ACT2FN` gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu_new`, `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
    /// `gelu`: the exact, erf-based GELU.
    GeluErf,
    /// `silu` (also called `swish`).
    Silu,
    Relu,
}

impl Activation {
    /// The activation `transformers` calls `name`, or a message naming `field`.
    pub fn from_name(field: &str, name: &str) -> Result<Activation, String> {
        Ok(match name {
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            "gelu" => Activation::GeluErf,
            "silu" | "swish" => Activation::Silu,
            "relu" => Activation::Relu,
            other => return Err(format!("{field} '{other}' is not supported (gelu_new, gelu_pytorch_tanh, gelu, silu, relu)")),
        })
    }

    /// The number model.wgsl's `activation` entries switch on.
    pub fn code(self) -> u32 {
        match self {
            Activation::GeluTanh => 0,
            Activation::GeluErf => 1,
            Activation::Silu => 2,
            Activation::Relu => 3,
        }
    }

    /// activation: the function itself.
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::GeluTanh => gelu_new(x),
            Activation::GeluErf => (0.5 * x as f64 * (1.0 + erf(x as f64 / std::f64::consts::SQRT_2))) as f32,
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::Relu => x.max(0.0),
        }
    }
}

/// gated_activation: `act(gate) · up` element-wise (SwiGLU, GeGLU).
pub fn gated_activation(act: Activation, gate: &[f32], up: &[f32]) -> Vec<f32> {
    gate.iter().zip(up).map(|(&g, &u)| act.apply(g) * u).collect()
}

/// `erf` to within 1.5·10⁻⁷ (Abramowitz & Stegun 7.1.26), for the exact GELU.
pub fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let y = 1.0 - poly * (-x * x).exp();
    if x >= 0.0 {
        y
    } else {
        -y
    }
}

/// GPT-2's `gelu_new`: `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` (Hendrycks & Gimpel's tanh form).
pub fn gelu_new(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh())
}

/// gather_rows: `out[t] = scale · table[tokens[t] − first]` for the tokens in `[first, first +
/// count)` (one piece of an embedding split over bindings; other rows of `out` are left as they
/// are). `scale` is Gemma's √d_model, 1 elsewhere.
pub fn gather_rows(table: &[f32], first: usize, width: usize, tokens: &[u32], scale: f32, out: &mut [f32]) {
    let count = table.len() / width;
    for (t, &token) in tokens.iter().enumerate() {
        let token = token as usize;
        if token >= first && token < first + count {
            let row = &table[(token - first) * width..(token - first + 1) * width];
            out[t * width..(t + 1) * width].iter_mut().zip(row).for_each(|(o, v)| *o = v * scale);
        }
    }
}

/// add: `a + b` element-wise.
pub fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// How a norm normalises (`torch.nn.LayerNorm`: centred, biased variance; `LlamaRMSNorm`: not
/// centred) and how its weight scales (`· w`, or Gemma's `· (1 + w)`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormSpec {
    pub center: bool,
    pub unit_offset: bool,
    pub eps: f32,
}

/// A norm's weight and optional bias, `[width]` each.
#[derive(Debug, Clone, Copy)]
pub struct Affine<'a> {
    pub weight: &'a [f32],
    pub bias: Option<&'a [f32]>,
}

/// norm: over rows of `width`, `x / √(mean(x²) + eps)` (after subtracting the row's mean when
/// `center`), then `affine` when given. Without it, TransformerLens's `hook_normalized`.
pub fn norm(x: &[f32], width: usize, spec: NormSpec, affine: Option<Affine<'_>>) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(width) {
        let mean = if spec.center { row.iter().sum::<f32>() / width as f32 } else { 0.0 };
        let inv = 1.0 / (row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / width as f32 + spec.eps).sqrt();
        out.extend(row.iter().map(|v| (v - mean) * inv));
    }
    match affine {
        Some(a) => scale_shift(&out, a, spec.unit_offset),
        None => out,
    }
}

/// scale_shift: `x · w + b` over rows of `w.len()`, with `(1 + w)` when `unit_offset`.
pub fn scale_shift(x: &[f32], a: Affine<'_>, unit_offset: bool) -> Vec<f32> {
    let width = a.weight.len();
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(width) {
        for (i, v) in row.iter().enumerate() {
            let w = if unit_offset { 1.0 + a.weight[i] } else { a.weight[i] };
            out.push(v * w + a.bias.map_or(0.0, |b| b[i]));
        }
    }
    out
}

/// The host half of rotary embeddings: `cos` and `sin` `[n, inv_freq.len()]` of the angles
/// `pos · inv_freq[i]`, computed in f32 as `transformers`' rotary embedding does.
pub fn rope_tables(inv_freq: &[f64], n: usize) -> (Vec<f32>, Vec<f32>) {
    let (mut cos, mut sin) = (Vec::with_capacity(n * inv_freq.len()), Vec::with_capacity(n * inv_freq.len()));
    for pos in 0..n {
        for &f in inv_freq {
            let angle = (f as f32) * pos as f32;
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    (cos, sin)
}

/// rope: rotates each head of `x` `[n, n_heads·d_head]` in place (`apply_rotary_pos_emb`): the
/// first `2·half` dimensions by `x·cos + rotate_half(x)·sin`, where `rotate_half` swaps the two
/// halves and negates the second; the rest pass through. `cos`, `sin` are `[n, half]`.
pub fn rope(x: &mut [f32], n_heads: usize, d_head: usize, cos: &[f32], sin: &[f32]) {
    let n = x.len() / (n_heads * d_head);
    let half = cos.len().checked_div(n).unwrap_or(0);
    for (pos, row) in x.chunks_exact_mut(n_heads * d_head).enumerate() {
        let (c, s) = (&cos[pos * half..(pos + 1) * half], &sin[pos * half..(pos + 1) * half]);
        for head in row.chunks_exact_mut(d_head) {
            for i in 0..half {
                let (a, b) = (head[i], head[i + half]);
                head[i] = a * c[i] - b * s[i];
                head[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}

/// What an attention layer's scores go through.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionSpec {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub d_head: usize,
    /// What `q·k` is multiplied by.
    pub scale: f32,
    /// Key `j` is seen by query `i` when `i − j < window` (`None`: every earlier key).
    pub window: Option<usize>,
    /// `cap · tanh(score / cap)` (Gemma 2).
    pub softcap: Option<f32>,
}

/// attention: grouped-query causal attention (`eager_attention_forward`). `z` `[n,
/// n_heads·d_head]` from q `[n, n_heads·d_head]` and k, v `[n, n_kv_heads·d_head]`; query head `h`
/// reads key/value head `h / (n_heads / n_kv_heads)`; softmax with the maximum subtracted.
pub fn attention(spec: AttentionSpec, q: &[f32], k: &[f32], v: &[f32], n: usize) -> Vec<f32> {
    let (dh, heads, kv_heads) = (spec.d_head, spec.n_heads, spec.n_kv_heads);
    let group = heads / kv_heads;
    let mut z = vec![0.0f32; n * heads * dh];
    let mut scores = vec![0.0f32; n];
    for h in 0..heads {
        let kvh = h / group;
        for i in 0..n {
            let first = spec.window.map_or(0, |w| (i + 1).saturating_sub(w));
            let qi = &q[(i * heads + h) * dh..(i * heads + h + 1) * dh];
            let mut max = f32::NEG_INFINITY;
            for j in first..=i {
                let kj = &k[(j * kv_heads + kvh) * dh..(j * kv_heads + kvh + 1) * dh];
                let mut s = qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * spec.scale;
                if let Some(cap) = spec.softcap {
                    s = (s / cap).tanh() * cap;
                }
                scores[j] = s;
                max = max.max(s);
            }
            let mut total = 0.0f32;
            for s in &mut scores[first..=i] {
                *s = (*s - max).exp();
                total += *s;
            }
            let out = &mut z[(i * heads + h) * dh..(i * heads + h + 1) * dh];
            for j in first..=i {
                let p = scores[j] / total;
                let vj = &v[(j * kv_heads + kvh) * dh..(j * kv_heads + kvh + 1) * dh];
                out.iter_mut().zip(vj).for_each(|(o, x)| *o += p * x);
            }
        }
    }
    z
}

/// softcap: `cap · tanh(x / cap)` in place (Gemma 2's final logits).
pub fn softcap(x: &mut [f32], cap: f32) {
    x.iter_mut().for_each(|v| *v = (*v / cap).tanh() * cap);
}
