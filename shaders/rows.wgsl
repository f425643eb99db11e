// Row-wise steps around the encoder and decoder (SAELens `process_sae_in` and the end of `decode`):
//   normalize_rows:   norms[r] = (shift, in_scale, out_scale) for the row's normalisation, and
//                     sae_in[r] = (x[r] - shift) * in_scale - b_dec * apply_b_dec
//   fill_bias:        out[r] = b_dec                    (start of decode)
//   denormalize_rows: out[r] = out[r] * out_scale + shift (end of decode)
// CPU twins: sae::cpu::row_norm / process_input / decode_row.

struct Params {
    rows: u32,
    d_in: u32,
    mode: u32,        // 0 identity (none, expected_average_only_in), 1 layer_norm, 2 constant_norm_rescale
    apply_b_dec: u32, // 1 when cfg.apply_b_dec_to_input
    eps: f32,         // layer_norm epsilon (SAELens: 1e-5)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> b_dec: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> sae_in: array<f32>;
@group(0) @binding(4) var<storage, read_write> norms: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

// WG, workgroup_sum: reduce.wgsl

@compute @workgroup_size(128)
fn normalize_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wg.x + wg.y * 65535u;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.d_in;
    let d = f32(p.d_in);
    var shift = 0.0;
    var in_scale = 1.0;
    var out_scale = 1.0;
    if (p.mode == 1u) {
        var s = 0.0;
        for (var i = lid; i < p.d_in; i += WG) {
            s += x[base + i];
        }
        let mean = workgroup_sum(s, lid) / d;
        var ss = 0.0;
        for (var i = lid; i < p.d_in; i += WG) {
            let c = x[base + i] - mean;
            ss += c * c;
        }
        let sd = sqrt(workgroup_sum(ss, lid) / max(d - 1.0, 1.0)); // torch.std is unbiased
        shift = mean;
        in_scale = 1.0 / (sd + p.eps);
        out_scale = sd;
    } else if (p.mode == 2u) {
        var ss = 0.0;
        for (var i = lid; i < p.d_in; i += WG) {
            ss += x[base + i] * x[base + i];
        }
        let scale = sqrt(d) / sqrt(workgroup_sum(ss, lid));
        in_scale = scale;
        out_scale = 1.0 / scale;
    }
    let b_weight = f32(p.apply_b_dec);
    for (var i = lid; i < p.d_in; i += WG) {
        sae_in[base + i] = (x[base + i] - shift) * in_scale - b_dec[i] * b_weight;
    }
    if (lid == 0u) {
        norms[row * 3u] = shift;
        norms[row * 3u + 1u] = in_scale;
        norms[row * 3u + 2u] = out_scale;
    }
}

// Elementwise entries: dispatched as (ceil(d_in / 64), rows) workgroups of 64.
@compute @workgroup_size(64)
fn fill_bias(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = wg.x * 64u + lid;
    let row = wg.y + wg.z * 65535u;
    if (i >= p.d_in || row >= p.rows) {
        return;
    }
    out[row * p.d_in + i] = b_dec[i];
}

@compute @workgroup_size(64)
fn denormalize_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = wg.x * 64u + lid;
    let row = wg.y + wg.z * 65535u;
    if (i >= p.d_in || row >= p.rows) {
        return;
    }
    let o = row * p.d_in + i;
    out[o] = out[o] * norms[row * 3u + 2u] + norms[row * 3u];
}
