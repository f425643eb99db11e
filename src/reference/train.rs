//! train.wgsl's twins, one per entry point, written as the shader computes (same operands, same
//! order of operations per element). `[rows, cols]` matrices are row-major.

/// relu_acts: `relu(pre)`.
pub fn relu_acts(pre: &[f32]) -> Vec<f32> {
    pre.iter().map(|&v| v.max(0.0)).collect()
}

/// scatter_lists: `dense[r, index[r, s]] = value[r, s]` over `[rows, k]` lists into `dense`
/// (`[rows, cols]`, cleared by the caller).
pub fn scatter_lists(cols: usize, k: usize, index: &[u32], value: &[f32], dense: &mut [f32]) {
    for (e, (&f, &v)) in index.iter().zip(value).enumerate() {
        dense[(e / k) * cols + f as usize] = v;
    }
}

/// recon_grad: `(scale · (recon − x), x − recon)`.
pub fn recon_grad(scale: f32, recon: &[f32], x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    recon.iter().zip(x).map(|(r, v)| (scale * (r - v), -(r - v))).unzip()
}

/// act_grad, in place over `g`: `acts > 0 ? g + scale · norms[j] : 0`.
pub fn act_grad(cols: usize, scale: f32, acts: &[f32], norms: &[f32], g: &mut [f32]) {
    for (i, (gv, &a)) in g.iter_mut().zip(acts).enumerate() {
        *gv = if a > 0.0 { *gv + scale * norms[i % cols] } else { 0.0 };
    }
}

/// aux_act_grad: `g_pre += aux_acts > 0 ? g_aux_acts : 0`.
pub fn aux_act_grad(aux_acts: &[f32], g_aux_acts: &[f32], g_pre: &mut [f32]) {
    for ((g, &a), &ga) in g_pre.iter_mut().zip(aux_acts).zip(g_aux_acts) {
        if a > 0.0 {
            *g += ga;
        }
    }
}

/// mask_dead: `dead[j] > 0.5 ? pre : −f32::MAX`.
pub fn mask_dead(cols: usize, pre: &[f32], dead: &[f32]) -> Vec<f32> {
    pre.iter().enumerate().map(|(i, &v)| if dead[i % cols] > 0.5 { v } else { -f32::MAX }).collect()
}

/// aux_grad: `scale · (aux_recon − target)`.
pub fn aux_grad(scale: f32, aux_recon: &[f32], target: &[f32]) -> Vec<f32> {
    aux_recon.iter().zip(target).map(|(a, t)| scale * (a - t)).collect()
}

/// column_sums: `scale · Σ_r input[r, j]`, replacing `out` or added to it.
pub fn column_sums(cols: usize, scale: f32, add: bool, input: &[f32], out: &mut [f32]) {
    for (j, o) in out.iter_mut().enumerate().take(cols) {
        let s: f32 = input.iter().skip(j).step_by(cols).sum();
        *o = if add { *o + scale * s } else { scale * s };
    }
}

/// l1_decoder_grad: `g_w_dec[j] += scale · act_sums[j] · w_dec[j] / max(norms[j], 1e-12)`.
pub fn l1_decoder_grad(d_in: usize, scale: f32, act_sums: &[f32], norms: &[f32], w_dec: &[f32], g_w_dec: &mut [f32]) {
    for (i, (g, &w)) in g_w_dec.iter_mut().zip(w_dec).enumerate() {
        let j = i / d_in;
        *g += scale * act_sums[j] * w / norms[j].max(1e-12);
    }
}

/// decoder_norms: `‖w_dec[j]‖` per row.
pub fn decoder_norms(d_in: usize, w_dec: &[f32]) -> Vec<f32> {
    w_dec.chunks_exact(d_in).map(|row| row.iter().map(|v| v * v).sum::<f32>().sqrt()).collect()
}

/// remove_parallel_grad: `g[j] −= (w[j]·g[j] / max(‖w[j]‖², 1e-12)) w[j]` per row.
pub fn remove_parallel_grad(d_in: usize, w_dec: &[f32], g_w_dec: &mut [f32]) {
    for (w, g) in w_dec.chunks_exact(d_in).zip(g_w_dec.chunks_exact_mut(d_in)) {
        let dot: f32 = w.iter().zip(g.iter()).map(|(a, b)| a * b).sum();
        let nn: f32 = w.iter().map(|a| a * a).sum();
        let f = dot / nn.max(1e-12);
        g.iter_mut().zip(w).for_each(|(gv, wv)| *gv -= f * wv);
    }
}

/// normalize_decoder: `w[j] /= max(‖w[j]‖, 1e-12)` per row, in place.
pub fn normalize_decoder(d_in: usize, w_dec: &mut [f32]) {
    for row in w_dec.chunks_exact_mut(d_in) {
        let inv = 1.0 / row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

/// adam (torch.optim.Adam with bias correction; `c1 = 1 − β₁ᵗ`, `c2 = 1 − β₂ᵗ`), in place over
/// `param`, `m`, `v`; `clamp_at_zero` keeps the parameter ≥ 0 (JumpReLU thresholds).
#[allow(clippy::too_many_arguments)]
pub fn adam(
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    c1: f32,
    c2: f32,
    clamp_at_zero: bool,
    grad: &[f32],
    param: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    for i in 0..grad.len() {
        let g = grad[i];
        m[i] = beta1 * m[i] + (1.0 - beta1) * g;
        v[i] = beta2 * v[i] + (1.0 - beta2) * g * g;
        let updated = param[i] - lr * (m[i] / c1) / ((v[i] / c2).sqrt() + eps);
        param[i] = if clamp_at_zero { updated.max(0.0) } else { updated };
    }
}

/// jumprelu_acts: `pre > threshold[j] ? pre : 0`.
pub fn jumprelu_acts(cols: usize, pre: &[f32], threshold: &[f32]) -> Vec<f32> {
    pre.iter().enumerate().map(|(i, &h)| if h > threshold[i % cols] { h } else { 0.0 }).collect()
}

/// jumprelu_threshold_grad: `g_θ[j] = −Σ_r K((pre − θ)/ε) · (θ/ε · g_acts + scale/ε)` with the
/// rectangle kernel K = 1 on (−½, ½).
pub fn jumprelu_threshold_grad(cols: usize, scale: f32, width: f32, pre: &[f32], threshold: &[f32], g_acts: &[f32]) -> Vec<f32> {
    (0..cols)
        .map(|j| {
            let t = threshold[j];
            let mut g = 0.0f32;
            for (h, ga) in pre.iter().skip(j).step_by(cols).zip(g_acts.iter().skip(j).step_by(cols)) {
                let u = (h - t) / width;
                if u > -0.5 && u < 0.5 {
                    g -= t / width * ga + scale / width;
                }
            }
            g
        })
        .collect()
}

/// gated_acts: `(acts, gate_acts)` with `gate_pre = projected + b_gate`, `mag_pre = projected ·
/// exp(r_mag) + b_mag`, `acts = gate_pre > 0 ? relu(mag_pre) : 0`, `gate_acts = relu(gate_pre)`.
pub fn gated_acts(cols: usize, projected: &[f32], b_gate: &[f32], r_mag: &[f32], b_mag: &[f32]) -> (Vec<f32>, Vec<f32>) {
    projected
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let j = i % cols;
            let gate_pre = p + b_gate[j];
            let mag_pre = p * r_mag[j].exp() + b_mag[j];
            (if gate_pre > 0.0 { mag_pre.max(0.0) } else { 0.0 }, gate_pre.max(0.0))
        })
        .unzip()
}

/// gated_backward: `g_mag_pre` becomes `g_mag_pre · exp(r_mag) + g_gate_pre` in place; returns
/// `(g_r_mag, g_b_mag)` with `g_r_mag[j] = Σ_r g_mag_pre · projected · exp(r_mag)` and
/// `g_b_mag[j] = Σ_r g_mag_pre`.
pub fn gated_backward(cols: usize, projected: &[f32], r_mag: &[f32], g_gate_pre: &[f32], g_mag_pre: &mut [f32]) -> (Vec<f32>, Vec<f32>) {
    let rows = projected.len() / cols;
    let (mut g_r, mut g_b) = (vec![0.0f32; cols], vec![0.0f32; cols]);
    for j in 0..cols {
        let e = r_mag[j].exp();
        for r in 0..rows {
            let i = r * cols + j;
            let g_mag = g_mag_pre[i];
            g_r[j] += g_mag * projected[i] * e;
            g_b[j] += g_mag;
            g_mag_pre[i] = g_mag * e + g_gate_pre[i];
        }
    }
    (g_r, g_b)
}
