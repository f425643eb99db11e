// Sparse decode from per-row (index, value) lists (the TopK kernel's output):
//   out[r, :] += Σ_s value[r, s] * scale[idx - f0] * W_dec_chunk[idx - f0, :]   for idx in [f0, f0 + width)
// Called once per feature chunk of W_dec (weights larger than one storage binding are split by
// feature rows); `out` starts as b_dec (rows.wgsl fill_bias). `scale` is 1, or 1/‖W_dec[i]‖ for
// TopK SAEs with rescale_acts_by_decoder_norm. CPU twin: sae::cpu::decode_row.

struct Params {
    rows: u32,
    d_in: u32,
    k: u32,
    f0: u32,
    width: u32,
}

const WG: u32 = 128u;
const MAX_K: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> list_index: array<u32>;
@group(0) @binding(2) var<storage, read> list_value: array<f32>;
@group(0) @binding(3) var<storage, read> w_dec: array<f32>;
@group(0) @binding(4) var<storage, read> scale: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

var<workgroup> local_index: array<u32, MAX_K>;
var<workgroup> local_value: array<f32, MAX_K>;

@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wg.x + wg.y * 65535u;
    if (row >= p.rows) {
        return;
    }
    // Stage this row's entries that fall in the chunk, as chunk-local indices; others get value 0.
    for (var s = lid; s < p.k; s += WG) {
        let idx = list_index[row * p.k + s];
        var local = 0u;
        var value = 0.0;
        if (idx >= p.f0 && idx < p.f0 + p.width) {
            local = idx - p.f0;
            value = list_value[row * p.k + s] * scale[local];
        }
        local_index[s] = local;
        local_value[s] = value;
    }
    workgroupBarrier();
    for (var i = lid; i < p.d_in; i += WG) {
        var acc = out[row * p.d_in + i];
        for (var s = 0u; s < p.k; s++) {
            let v = local_value[s];
            if (v != 0.0) {
                acc = fma(v, w_dec[local_index[s] * p.d_in + i], acc);
            }
        }
        out[row * p.d_in + i] = acc;
    }
}
