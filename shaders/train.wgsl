// Element-wise and per-row steps of SAE training (the matrix products use matmul.wgsl). CPU twin:
// train::sae_train::{loss_and_grads, remove_parallel_decoder_grad, normalize_decoder, Adam}.
// One thread per element, row or column, as each entry says; 1-D grids of 256-thread workgroups
// folded into x and y (index = (wg.x + wg.y * 65535) * 256 + lid).

struct Params {
    rows: u32,
    cols: u32,
    k: u32,
    mode: u32,
    scale: f32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    c1: f32,   // 1 - beta1^t
    c2: f32,   // 1 - beta2^t
    width: f32, // JumpReLU's bandwidth ε
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> in0: array<f32>;
@group(0) @binding(2) var<storage, read> in1: array<f32>;
@group(0) @binding(3) var<storage, read> in2: array<f32>;
@group(0) @binding(4) var<storage, read_write> out0: array<f32>;
@group(0) @binding(5) var<storage, read_write> out1: array<f32>;
@group(0) @binding(6) var<storage, read_write> out2: array<f32>;
@group(0) @binding(7) var<storage, read> in3: array<f32>;

fn index_of(wg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * 65535u) * 256u + lid;
}

// acts = relu(pre), rows × cols.                               in0 = pre, out0 = acts
@compute @workgroup_size(256)
fn relu_acts(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index_of(wg, lid);
    if (i < p.rows * p.cols) {
        out0[i] = max(in0[i], 0.0);
    }
}

// Dense rows from TopK lists (out0 cleared before): out0[r, idx] = value.
//                                                             in0 = index (u32 bits), in1 = value
@compute @workgroup_size(256)
fn scatter_lists(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let e = index_of(wg, lid);
    if (e < p.rows * p.k) {
        let row = e / p.k;
        out0[row * p.cols + bitcast<u32>(in0[e])] = in1[e];
    }
}

// g_recon = scale · (recon − x) with scale = 2/B; residual = x − recon.
//                                       in0 = recon, in1 = x, out0 = g_recon, out1 = residual
@compute @workgroup_size(256)
fn recon_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index_of(wg, lid);
    if (i < p.rows * p.cols) {
        let diff = in0[i] - in1[i];
        out0[i] = p.scale * diff;
        out1[i] = -diff;
    }
}

// Through the activation: g_pre = (acts > 0) ? g_acts + scale·‖W_dec[j]‖ : 0, in place
// (scale = λ·l1_scale/B for the standard SAE's decoder-norm-weighted L1, 0 for TopK).
//                                       in0 = acts, in1 = decoder norms, out0 = g_acts → g_pre
@compute @workgroup_size(256)
fn act_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index_of(wg, lid);
    if (i < p.rows * p.cols) {
        let j = i % p.cols;
        out0[i] = select(0.0, out0[i] + p.scale * in1[j], in0[i] > 0.0);
    }
}

// AuxK's share: g_pre += (aux_acts > 0) ? g_aux_acts : 0.    in0 = aux_acts, in2 = g_aux_acts, out0 = g_pre
@compute @workgroup_size(256)
fn aux_act_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index_of(wg, lid);
    if (i < p.rows * p.cols && in0[i] > 0.0) {
        out0[i] += in2[i];
    }
}

// Pre-activations of dead latents only (others −FLT_MAX, written in hex: Tint refuses a decimal
// literal that rounds past it), for AuxK's selection.
//                                       in0 = pre, in1 = dead mask (1/0) per column, out0 = masked
@compute @workgroup_size(256)
fn mask_dead(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index_of(wg, lid);
    if (i < p.rows * p.cols) {
        out0[i] = select(-0x1.fffffep+127f, in0[i], in1[i % p.cols] > 0.5);
    }
}

// g_aux = scale · (aux_recon − residual), scale = 2·α·aux_scale/B.
//                                       in0 = aux_recon, in1 = residual, out0 = g_aux
@compute @workgroup_size(256)
fn aux_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index_of(wg, lid);
    if (i < p.rows * p.cols) {
        out0[i] = p.scale * (in0[i] - in1[i]);
    }
}

// Column sums over rows: out0[j] = scale·Σ_r in0[r, j] (mode 0) or out0[j] += … (mode 1).
@compute @workgroup_size(256)
fn column_sums(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let j = index_of(wg, lid);
    if (j >= p.cols) {
        return;
    }
    var s = 0.0;
    for (var r = 0u; r < p.rows; r++) {
        s += in0[r * p.cols + j];
    }
    if (p.mode == 1u) {
        out0[j] += p.scale * s;
    } else {
        out0[j] = p.scale * s;
    }
}

// The L1 term's decoder gradient: g_W_dec[j] += scale·(Σ_b acts[b, j])·W_dec[j]/‖W_dec[j]‖.
//               rows = d_sae, cols = d_in; in0 = column sums of acts, in1 = norms, in2 = W_dec, out0 = g_W_dec
@compute @workgroup_size(256)
fn l1_decoder_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index_of(wg, lid);
    if (i < p.rows * p.cols) {
        let j = i / p.cols;
        out0[i] += p.scale * in0[j] * in2[i] / max(in1[j], 1e-12);
    }
}

// Per decoder row (rows = d_sae, cols = d_in), one thread a row: out0[j] = ‖in0[j]‖.
@compute @workgroup_size(256)
fn decoder_norms(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let j = index_of(wg, lid);
    if (j >= p.rows) {
        return;
    }
    var nn = 0.0;
    for (var i = j * p.cols; i < (j + 1u) * p.cols; i++) {
        nn += in0[i] * in0[i];
    }
    out0[j] = sqrt(nn);
}

// Per decoder row: g_W_dec[j] −= (W_dec[j]·g_W_dec[j] / ‖W_dec[j]‖²) W_dec[j].
//                                       in0 = W_dec, out0 = g_W_dec
@compute @workgroup_size(256)
fn remove_parallel_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let j = index_of(wg, lid);
    if (j >= p.rows) {
        return;
    }
    var dot = 0.0;
    var nn = 0.0;
    for (var i = j * p.cols; i < (j + 1u) * p.cols; i++) {
        dot += in0[i] * out0[i];
        nn += in0[i] * in0[i];
    }
    let f = dot / max(nn, 1e-12);
    for (var i = j * p.cols; i < (j + 1u) * p.cols; i++) {
        out0[i] -= f * in0[i];
    }
}

// Per decoder row: W_dec[j] /= ‖W_dec[j]‖.                        out0 = W_dec
@compute @workgroup_size(256)
fn normalize_decoder(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let j = index_of(wg, lid);
    if (j >= p.rows) {
        return;
    }
    var nn = 0.0;
    for (var i = j * p.cols; i < (j + 1u) * p.cols; i++) {
        nn += out0[i] * out0[i];
    }
    let inv = 1.0 / max(sqrt(nn), 1e-12);
    for (var i = j * p.cols; i < (j + 1u) * p.cols; i++) {
        out0[i] *= inv;
    }
}

// Adam with bias correction (torch.optim.Adam), rows = element count; mode 1 then clamps the
// parameter at 0 (JumpReLU thresholds).
//                                       in0 = grad, out0 = param, out1 = m, out2 = v
@compute @workgroup_size(256)
fn adam(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index_of(wg, lid);
    if (i >= p.rows) {
        return;
    }
    let g = in0[i];
    let m = p.beta1 * out1[i] + (1.0 - p.beta1) * g;
    let v = p.beta2 * out2[i] + (1.0 - p.beta2) * g * g;
    out1[i] = m;
    out2[i] = v;
    let updated = out0[i] - p.lr * (m / p.c1) / (sqrt(v / p.c2) + p.eps);
    out0[i] = select(updated, max(updated, 0.0), p.mode == 1u);
}

// JumpReLU: acts = pre · (pre > θ_j).                   in0 = pre, in1 = threshold, out0 = acts
@compute @workgroup_size(256)
fn jumprelu_acts(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index_of(wg, lid);
    if (i < p.rows * p.cols) {
        let h = in0[i];
        out0[i] = select(0.0, h, h > in1[i % p.cols]);
    }
}

// JumpReLU's threshold, one thread per column (SAELens JumpReLU.backward and Step.backward with a
// rectangle kernel K of width ε = width): g_θ[j] = −Σ_b K((pre−θ)/ε) · (θ/ε · g_acts + scale/ε),
// scale = λ₀·s/B (the L0 term).      in0 = pre, in1 = threshold, in2 = g_acts, out0 = g_threshold
@compute @workgroup_size(256)
fn jumprelu_threshold_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let j = index_of(wg, lid);
    if (j >= p.cols) {
        return;
    }
    let t = in1[j];
    var g = 0.0;
    for (var r = 0u; r < p.rows; r++) {
        let u = (in0[r * p.cols + j] - t) / p.width;
        if (u > -0.5 && u < 0.5) {
            g -= t / p.width * in2[r * p.cols + j] + p.scale / p.width;
        }
    }
    out0[j] = g;
}

// Gated forward from projected = sae_in·W_enc (the gate's bias is b_enc):
// gate_acts = relu(projected + b_gate); acts = (projected + b_gate > 0) · relu(projected·exp(r_mag) + b_mag).
//        in0 = projected, in1 = b_gate, in2 = r_mag, in3 = b_mag, out0 = acts, out1 = gate_acts
@compute @workgroup_size(256)
fn gated_acts(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index_of(wg, lid);
    if (i < p.rows * p.cols) {
        let j = i % p.cols;
        let gate_pre = in0[i] + in1[j];
        let mag_pre = in0[i] * exp(in2[j]) + in3[j];
        out0[i] = select(0.0, max(mag_pre, 0.0), gate_pre > 0.0);
        out1[i] = max(gate_pre, 0.0);
    }
}

// Gated backward, one thread per column: from the magnitude path's g_mag_pre and the gate's
// g_gate_pre, g_projected = g_mag_pre·exp(r_mag) + g_gate_pre (in place over g_mag_pre),
// g_r_mag[j] = Σ_b g_mag_pre·projected·exp(r_mag), g_b_mag[j] = Σ_b g_mag_pre.
//        out0 = g_mag_pre → g_projected, in1 = projected, in2 = r_mag, in3 = g_gate_pre,
//        out1 = g_r_mag, out2 = g_b_mag
@compute @workgroup_size(256)
fn gated_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let j = index_of(wg, lid);
    if (j >= p.cols) {
        return;
    }
    let e = exp(in2[j]);
    var g_r = 0.0;
    var g_b = 0.0;
    for (var r = 0u; r < p.rows; r++) {
        let i = r * p.cols + j;
        let g_mag = out0[i];
        g_r += g_mag * in1[i] * e;
        g_b += g_mag;
        out0[i] = g_mag * e + in3[i];
    }
    out1[j] = g_r;
    out2[j] = g_b;
}
