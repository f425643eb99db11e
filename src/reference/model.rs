//! model.wgsl's twins, composed by `model::cpu` into the reference forward pass: the embedding
//! gather, residual adds, `gelu_new`, LayerNorm and causal attention.

/// gather_rows: `out[t] = table[tokens[t] − first]` for the tokens in `[first, first + count)`
/// (one piece of an embedding split over bindings; other rows of `out` are left as they are).
pub fn gather_rows(table: &[f32], first: usize, width: usize, tokens: &[u32], out: &mut [f32]) {
    let count = table.len() / width;
    for (t, &token) in tokens.iter().enumerate() {
        let token = token as usize;
        if token >= first && token < first + count {
            out[t * width..(t + 1) * width].copy_from_slice(&table[(token - first) * width..(token - first + 1) * width]);
        }
    }
}

/// add: `a + b` element-wise.
pub fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// torch.nn.LayerNorm over the last dimension: biased variance, `eps` inside the square root.
pub fn layer_norm(x: &[f32], weight: &[f32], bias: &[f32], eps: f32) -> Vec<f32> {
    let d = weight.len();
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(d) {
        let mean = row.iter().sum::<f32>() / d as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let inv = 1.0 / (var + eps).sqrt();
        out.extend(row.iter().zip(weight.iter().zip(bias)).map(|(v, (w, b))| (v - mean) * inv * w + b));
    }
    out
}

/// GPT-2's `gelu_new`: `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` (Hendrycks & Gimpel's tanh form).
pub fn gelu_new(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh())
}

/// Causal multi-head self-attention from `qkv` `[n, 3·d]` (q | k | v, heads contiguous within
/// each): returns `z` `[n, d]` (each head's weighted values, heads concatenated; TransformerLens's
/// `attn.hook_z` flattened), scores scaled by `scale` (1/√d_head in GPT-2).
pub fn attention_z(qkv: &[f32], n: usize, d: usize, n_heads: usize, scale: f32) -> Vec<f32> {
    let dh = d / n_heads;
    let mut z = vec![0.0f32; n * d];
    let mut scores = vec![0.0f32; n];
    for head in 0..n_heads {
        let (q_off, k_off, v_off) = (head * dh, d + head * dh, 2 * d + head * dh);
        for t in 0..n {
            let q = &qkv[t * 3 * d + q_off..t * 3 * d + q_off + dh];
            // Scores for positions 0..=t (the causal mask), softmax with the max subtracted.
            let mut max = f32::NEG_INFINITY;
            for (s, score) in scores.iter_mut().enumerate().take(t + 1) {
                let k = &qkv[s * 3 * d + k_off..s * 3 * d + k_off + dh];
                *score = q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale;
                max = max.max(*score);
            }
            let mut total = 0.0f32;
            for score in scores.iter_mut().take(t + 1) {
                *score = (*score - max).exp();
                total += *score;
            }
            let out = &mut z[t * d + head * dh..t * d + (head + 1) * dh];
            for (s, &p) in scores.iter().enumerate().take(t + 1) {
                let v = &qkv[s * 3 * d + v_off..s * 3 * d + v_off + dh];
                let w = p / total;
                out.iter_mut().zip(v).for_each(|(o, vv)| *o += w * vv);
            }
        }
    }
    z
}
