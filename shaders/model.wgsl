// The decoder forward pass's own kernels, for every described family (the linear layers use
// matmul.wgsl). CPU twins: reference::model (`gather_rows`, `add`, `norm`, `scale_shift`, `rope`,
// `attention`, `Activation::apply`, `gated_activation`, `softcap`), which model::cpu composes into
// the reference forward. Prepended with reduce.wgsl (workgroup_sum, 128 threads) by gpu/kernels.rs.

struct Params {
    rows: u32,       // tokens (rows of a norm)
    width: u32,      // row width (or the element count for element-wise entries)
    n_heads: u32,    // attention: query heads; rope: heads in this buffer
    d_head: u32,
    first: u32,      // gather: the first vocabulary row held by this chunk of the table
    count: u32,      // gather: rows in this chunk; rope: rotated pairs per head
    eps: f32,        // norm
    scale: f32,      // attention: what q·k is multiplied by; gather: what rows are multiplied by
    n_kv_heads: u32, // attention
    window: u32,     // attention: keys within this many positions (0: every earlier key)
    softcap: f32,    // attention and softcap: cap · tanh(x / cap) (0: none)
    flags: u32,      // norm/scale_shift: NORM_* bits; activation entries: the activation's code
}

const NORM_CENTER: u32 = 1u;      // subtract the row's mean (LayerNorm)
const NORM_AFFINE: u32 = 2u;      // multiply by the weight (norm; scale_shift always does)
const NORM_BIAS: u32 = 4u;        // add the bias
const NORM_UNIT_OFFSET: u32 = 8u; // the weight is (1 + w) (Gemma)

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> in0: array<f32>;
@group(0) @binding(2) var<storage, read> in1: array<f32>;
@group(0) @binding(3) var<storage, read> in2: array<f32>;
@group(0) @binding(4) var<storage, read_write> out0: array<f32>;
@group(0) @binding(5) var<storage, read> tokens: array<u32>;
// A half-precision table, two values a word, low half first (gather_rows_packed).
@group(0) @binding(6) var<storage, read> packed: array<u32>;

fn flat_index(wg: vec3<u32>, lid: u32, size: u32) -> u32 {
    return (wg.x + wg.y * 65535u) * size + lid;
}

// tanh(u) as 1 − 2/(exp(2u) + 1): a backend's tanh built from sinh/cosh can give inf/inf = NaN for
// large |u|; this form saturates to ±1.
fn safe_tanh(u: f32) -> f32 {
    return 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
}

// erf to within 1.5e-7 (Abramowitz & Stegun 7.1.26), as reference::model::erf.
fn erf(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.3275911 * abs(x));
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let y = 1.0 - poly * exp(-x * x);
    return select(-y, y, x >= 0.0);
}

// The activation with `code` (reference::model::Activation::code): 0 gelu tanh, 1 gelu erf,
// 2 silu, 3 relu.
fn activate(code: u32, x: f32) -> f32 {
    switch code {
        case 0u: {
            return 0.5 * x * (1.0 + safe_tanh(0.7978846 * (x + 0.044715 * x * x * x)));
        }
        case 1u: {
            return 0.5 * x * (1.0 + erf(x * 0.70710678));
        }
        case 2u: {
            return x / (1.0 + exp(-x));
        }
        default: {
            return max(x, 0.0);
        }
    }
}

// out0[t, :] = scale · table[tokens[t] − first, :] for the tokens this chunk holds (one workgroup
// of 128 threads per token; other tokens are left alone).       in0 = table chunk, out0 = rows
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
        out0[t * p.width + i] = in0[src + i] * p.scale;
    }
}

// value i of `packed`, widened: f16 when `flags` is 1, bf16 when 2 (reference::matmul::unpack).
fn packed_at(i: u32) -> f32 {
    let word = packed[i >> 1u];
    let bits = select(word & 0xffffu, word >> 16u, (i & 1u) == 1u);
    if (p.flags == 1u) {
        return unpack2x16float(bits).x;
    }
    return bitcast<f32>(bits << 16u);
}

// gather_rows from a half-precision table chunk (`packed`), as gather_rows does from an f32 one.
@compute @workgroup_size(128)
fn gather_rows_packed(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
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
        out0[t * p.width + i] = packed_at(src + i) * p.scale;
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

// A norm per row, one workgroup of 128 threads per row: x / √(mean(x²) + eps), the row's mean
// subtracted first with NORM_CENTER (torch LayerNorm, biased variance), then with NORM_AFFINE
// · w (or · (1 + w)) and with NORM_BIAS + b.   in0 = x [rows, width], in1 = weight, in2 = bias
@compute @workgroup_size(128)
fn norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wg.x + wg.y * 65535u;
    // Every thread must reach the barriers in workgroup_sum: no early return.
    let live = row < p.rows;
    let base = min(row, p.rows - 1u) * p.width;
    var mean = 0.0;
    if ((p.flags & NORM_CENTER) != 0u) {
        var s = 0.0;
        for (var i = lid; i < p.width; i += 128u) {
            s += in0[base + i];
        }
        mean = workgroup_sum(s, lid) / f32(p.width);
    }
    var v = 0.0;
    for (var i = lid; i < p.width; i += 128u) {
        let c = in0[base + i] - mean;
        v += c * c;
    }
    let inv = 1.0 / sqrt(workgroup_sum(v, lid) / f32(p.width) + p.eps);
    if (live) {
        for (var i = lid; i < p.width; i += 128u) {
            var y = (in0[base + i] - mean) * inv;
            if ((p.flags & NORM_AFFINE) != 0u) {
                y *= select(in1[i], 1.0 + in1[i], (p.flags & NORM_UNIT_OFFSET) != 0u);
            }
            if ((p.flags & NORM_BIAS) != 0u) {
                y += in2[i];
            }
            out0[base + i] = y;
        }
    }
}

// out0 = in0 · w (+ b) over rows of `width` (`count` elements in all): a norm's second half on an
// already normalised x.                                   in0 = x, in1 = weight, in2 = bias
@compute @workgroup_size(256)
fn scale_shift(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wg, lid, 256u);
    if (i < p.count) {
        let c = i % p.width;
        var y = in0[i] * select(in1[c], 1.0 + in1[c], (p.flags & NORM_UNIT_OFFSET) != 0u);
        if ((p.flags & NORM_BIAS) != 0u) {
            y += in2[c];
        }
        out0[i] = y;
    }
}

// Rotary embeddings in place on out0 [rows, n_heads·d_head]: pair (i, i + count) of each head at
// position t turns by the angle whose cos and sin are in0[t, i] and in1[t, i] (rotate_half).
@compute @workgroup_size(256)
fn rope(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = flat_index(wg, lid, 256u);
    let per_row = p.n_heads * p.count;
    if (g >= p.rows * per_row) {
        return;
    }
    let t = g / per_row;
    let head = (g % per_row) / p.count;
    let i = g % p.count;
    let at = t * p.n_heads * p.d_head + head * p.d_head + i;
    let c = in0[t * p.count + i];
    let s = in1[t * p.count + i];
    let a = out0[at];
    let b = out0[at + p.count];
    out0[at] = a * c - b * s;
    out0[at + p.count] = b * c + a * s;
}

// Keys scored at a time: attention over any number of positions goes through them in tiles of
// this many, with a running max and sum (the online softmax of Milakov & Gimelshein 2018, as
// FlashAttention uses it), so no score array longer than a tile is needed.
const KEY_TILE: u32 = 1024u;
var<workgroup> scores: array<f32, KEY_TILE>;
// Each thread keeps the output values e = lid, lid + 128, … of its head: d_head ≤ 4 · 128.
const MAX_HEAD_PER_THREAD: u32 = 4u;

// Grouped-query causal attention, one workgroup of 128 threads per (query t, head h): scores
// against the keys of head h / (n_heads / n_kv_heads) from max(0, t + 1 − window) to t, soft-capped,
// softmax (max subtracted), then z[t, h·d_head + e] = Σ_s p_s · v[s, kv·d_head + e]. Keys are taken
// KEY_TILE at a time; each tile rescales what the earlier ones summed by exp(old max − new max).
//       in0 = q [rows, n_heads·d_head], in1 = k, in2 = v [rows, n_kv_heads·d_head], out0 = z
@compute @workgroup_size(128)
fn attention(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = wg.x;
    let head = wg.y;
    let kv = head / (p.n_heads / p.n_kv_heads);
    let q_at = (t * p.n_heads + head) * p.d_head;
    let kv_stride = p.n_kv_heads * p.d_head;
    let kv_off = kv * p.d_head;
    var first = 0u;
    if (p.window != 0u && t + 1u > p.window) {
        first = t + 1u - p.window;
    }
    var running_max = -0x1.fffffep+127f;
    var running_sum = 0.0;
    var acc = array<f32, MAX_HEAD_PER_THREAD>(0.0, 0.0, 0.0, 0.0);
    for (var tile = first; tile <= t; tile += KEY_TILE) {
        let last = min(tile + KEY_TILE - 1u, t);
        var local_max = -0x1.fffffep+127f;
        for (var s = tile + lid; s <= last; s += 128u) {
            var dot = 0.0;
            for (var e = 0u; e < p.d_head; e++) {
                dot += in0[q_at + e] * in1[s * kv_stride + kv_off + e];
            }
            var score = dot * p.scale;
            if (p.softcap != 0.0) {
                score = p.softcap * safe_tanh(score / p.softcap);
            }
            scores[s - tile] = score;
            local_max = max(local_max, score);
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
        let m = max(running_max, partial[0].x);
        workgroupBarrier();
        var local_sum = 0.0;
        for (var s = tile + lid; s <= last; s += 128u) {
            let e = exp(scores[s - tile] - m);
            scores[s - tile] = e;
            local_sum += e;
        }
        // What the earlier tiles summed, at this tile's maximum (0 for the first tile).
        let rescale = exp(running_max - m);
        running_sum = running_sum * rescale + workgroup_sum(local_sum, lid);
        running_max = m;
        // workgroup_sum ends with a barrier, so every score is written before it is read below.
        for (var j = 0u; j < MAX_HEAD_PER_THREAD; j++) {
            let e = lid + j * 128u;
            if (e < p.d_head) {
                var tile_acc = 0.0;
                for (var s = tile; s <= last; s++) {
                    tile_acc += scores[s - tile] * in2[s * kv_stride + kv_off + e];
                }
                acc[j] = acc[j] * rescale + tile_acc;
            }
        }
        // The next tile overwrites the scores only once every thread has read them.
        workgroupBarrier();
    }
    for (var j = 0u; j < MAX_HEAD_PER_THREAD; j++) {
        let e = lid + j * 128u;
        if (e < p.d_head) {
            out0[q_at + e] = acc[j] / running_sum;
        }
    }
}

// The same attention with no workgroup memory and no barrier: one thread per (query t, head h),
// heads fastest (threads side by side see the same number of keys), walking the keys in order
// with the online softmax (Milakov & Gimelshein 2018): a new maximum rescales what was summed.
// Its query and its d_head sums live in the thread's own memory, so heads of at most SERIAL_HEAD
// values (wider ones run `attention`: on lavapipe this entry gave wrong values past some
// threads for heads of 256, unexplained so far). Software adapters (lavapipe, SwiftShader), which
// run a workgroup's threads as loops on a CPU core and pay for every barrier, run this several
// times faster; GPUs run `attention` faster (gpu/kernels/model.rs measures both when the device
// opens). Same bindings as `attention`; 1-D grid of 64-thread workgroups.
const SERIAL_HEAD: u32 = 128u;

@compute @workgroup_size(64)
fn attention_serial(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wg, lid, 64u);
    if (i >= p.rows * p.n_heads) {
        return;
    }
    let t = i / p.n_heads;
    let head = i % p.n_heads;
    let kv = head / (p.n_heads / p.n_kv_heads);
    let q_at = i * p.d_head;
    let kv_stride = p.n_kv_heads * p.d_head;
    let kv_off = kv * p.d_head;
    var query: array<f32, SERIAL_HEAD>;
    var sums: array<f32, SERIAL_HEAD>;
    for (var e = 0u; e < p.d_head; e++) {
        query[e] = in0[q_at + e];
    }
    var first = 0u;
    if (p.window != 0u && t + 1u > p.window) {
        first = t + 1u - p.window;
    }
    var running_max = -0x1.fffffep+127f;
    var running_sum = 0.0;
    for (var s = first; s <= t; s++) {
        let key = s * kv_stride + kv_off;
        var dot = 0.0;
        for (var e = 0u; e < p.d_head; e++) {
            dot += query[e] * in1[key + e];
        }
        var score = dot * p.scale;
        if (p.softcap != 0.0) {
            score = p.softcap * safe_tanh(score / p.softcap);
        }
        if (score > running_max) {
            let rescale = exp(running_max - score);
            running_sum *= rescale;
            for (var e = 0u; e < p.d_head; e++) {
                sums[e] *= rescale;
            }
            running_max = score;
        }
        let weight = exp(score - running_max);
        running_sum += weight;
        for (var e = 0u; e < p.d_head; e++) {
            sums[e] += weight * in2[key + e];
        }
    }
    for (var e = 0u; e < p.d_head; e++) {
        out0[q_at + e] = sums[e] / running_sum;
    }
}

// The activation with code `flags` in place over `width` elements of out0.
@compute @workgroup_size(256)
fn activation(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wg, lid, 256u);
    if (i < p.width) {
        out0[i] = activate(p.flags, out0[i]);
    }
}

// out0 = act(in0) · out0 over `width` elements: a gated MLP, in0 = gate, out0 = up.
@compute @workgroup_size(256)
fn gated_activation(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wg, lid, 256u);
    if (i < p.width) {
        out0[i] = activate(p.flags, in0[i]) * out0[i];
    }
}

// cap · tanh(x / cap) in place over `width` elements of out0 (Gemma 2's final logits).
@compute @workgroup_size(256)
fn softcap(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wg, lid, 256u);
    if (i < p.width) {
        out0[i] = p.softcap * safe_tanh(out0[i] / p.softcap);
    }
}
