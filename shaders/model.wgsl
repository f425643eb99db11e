// The GPT-2 forward pass's own kernels (the linear layers use matmul.wgsl). CPU twin:
// model::cpu (`layer_norm`, `gelu_new`, `attention_z`, the embedding gather, residual adds).
// Prepended with reduce.wgsl (workgroup_sum, 128 threads) by gpu/kernels.rs.

struct Params {
    rows: u32,      // tokens
    width: u32,     // d_model (or the element count for element-wise entries)
    n_heads: u32,
    d_head: u32,
    first: u32,     // gather: the first vocabulary row held by this chunk of the table
    count: u32,     // gather: rows in this chunk
    eps: f32,       // layer_norm
    scale: f32,     // attention: 1/√d_head (or 1)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> in0: array<f32>;
@group(0) @binding(2) var<storage, read> in1: array<f32>;
@group(0) @binding(3) var<storage, read> in2: array<f32>;
@group(0) @binding(4) var<storage, read_write> out0: array<f32>;
@group(0) @binding(5) var<storage, read> tokens: array<u32>;

fn flat_index(wg: vec3<u32>, lid: u32, size: u32) -> u32 {
    return (wg.x + wg.y * 65535u) * size + lid;
}

// out0[t, :] = table[tokens[t] − first, :] for the tokens this chunk holds (one workgroup of
// 128 threads per token; other tokens are left alone).          in0 = table chunk, out0 = rows
@compute @workgroup_size(128)
fn gather_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = wg.x + wg.y * 65535u;
    if (t >= p.rows) {
        return;
    }
    let token = tokens[t];
    if (token < p.first || token >= p.first + p.count) {
        return;
    }
    let src = (token - p.first) * p.width;
    for (var i = lid; i < p.width; i += 128u) {
        out0[t * p.width + i] = in0[src + i];
    }
}

// out0 = in0 + in1, element-wise over `width` elements.
@compute @workgroup_size(256)
fn add(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wg, lid, 256u);
    if (i < p.width) {
        out0[i] = in0[i] + in1[i];
    }
}

// GPT-2's gelu_new in place over `width` elements: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
// tanh(u) is written as 1 − 2/(exp(2u) + 1): a backend's tanh built from sinh/cosh can give
// inf/inf = NaN for large |u|, this form saturates to ±1.
@compute @workgroup_size(256)
fn gelu_new(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wg, lid, 256u);
    if (i < p.width) {
        let x = out0[i];
        let u = 0.7978846 * (x + 0.044715 * x * x * x);
        out0[i] = 0.5 * x * (2.0 - 2.0 / (exp(2.0 * u) + 1.0));
    }
}

// torch LayerNorm per row (biased variance), one workgroup of 128 threads per row.
//                                   in0 = x [rows, width], in1 = weight, in2 = bias, out0 = y
@compute @workgroup_size(128)
fn layer_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wg.x + wg.y * 65535u;
    // Every thread must reach the barriers in workgroup_sum: no early return.
    let live = row < p.rows;
    let base = min(row, p.rows - 1u) * p.width;
    var s = 0.0;
    for (var i = lid; i < p.width; i += 128u) {
        s += in0[base + i];
    }
    let mean = workgroup_sum(s, lid) / f32(p.width);
    var v = 0.0;
    for (var i = lid; i < p.width; i += 128u) {
        let c = in0[base + i] - mean;
        v += c * c;
    }
    let inv = inverseSqrt(workgroup_sum(v, lid) / f32(p.width) + p.eps);
    if (live) {
        for (var i = lid; i < p.width; i += 128u) {
            out0[base + i] = (in0[base + i] - mean) * inv * in1[i] + in2[i];
        }
    }
}

const MAX_CONTEXT: u32 = 1024u;
var<workgroup> scores: array<f32, MAX_CONTEXT>;

// Causal attention, one workgroup of 128 threads per (query t, head h): scores against keys
// 0..=t, softmax (max subtracted), then z[t, h·d_head + e] = Σ_s p_s · v[s, h·d_head + e].
//                                   in0 = qkv [rows, 3·width] (q | k | v), out0 = z [rows, width]
@compute @workgroup_size(128)
fn attention(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = wg.x;
    let head = wg.y;
    let stride = 3u * p.width;
    let q = t * stride + head * p.d_head;
    let k_off = p.width + head * p.d_head;
    let v_off = 2u * p.width + head * p.d_head;
    var local_max = -0x1.fffffep+127f;
    for (var s = lid; s <= t; s += 128u) {
        var dot = 0.0;
        for (var e = 0u; e < p.d_head; e++) {
            dot += in0[q + e] * in0[s * stride + k_off + e];
        }
        scores[s] = dot * p.scale;
        local_max = max(local_max, scores[s]);
    }
    // Maximum over the workgroup through the shared vec4 reduction's storage.
    partial[lid] = vec4<f32>(local_max, 0.0, 0.0, 0.0);
    workgroupBarrier();
    for (var half = 64u; half > 0u; half >>= 1u) {
        if (lid < half) {
            partial[lid].x = max(partial[lid].x, partial[lid + half].x);
        }
        workgroupBarrier();
    }
    let m = partial[0].x;
    workgroupBarrier();
    var local_sum = 0.0;
    for (var s = lid; s <= t; s += 128u) {
        let e = exp(scores[s] - m);
        scores[s] = e;
        local_sum += e;
    }
    let total = workgroup_sum(local_sum, lid);
    // workgroup_sum ends with a barrier, so every score is written before it is read below.
    for (var e = lid; e < p.d_head; e += 128u) {
        var acc = 0.0;
        for (var s = 0u; s <= t; s++) {
            acc += scores[s] * in0[s * stride + v_off + e];
        }
        out0[t * p.width + head * p.d_head + e] = acc / total;
    }
}
