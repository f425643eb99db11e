// Per-row TopK selection: for each row of `pre` (the encoder's pre-activations), the k largest
// values, largest first (ties: lower index first), as (index, relu(value)) lists — SAELens's
// `TopK.forward`: `topk = x.topk(k); values = relu(topk.values)`.
//
// One workgroup per row. Floats are mapped to order-preserving u32 keys, and a 4-pass radix select
// (8 bits a pass, 256-bin histogram in workgroup memory) finds the exact key of the k-th largest
// value. Elements above it are gathered, elements equal to it are taken in index order up to k,
// and the k survivors are bitonic-sorted. Reads the row 5 times; no dense output is written.
//
// `dense`: the same selection written as a dense row instead — relu(value) where kept, 0 elsewhere
// — with no list and so no bound on k (AuxK keeps d_in/2 latents, more than a list here holds).
// CPU twin: sae::cpu::top_k_dense.

struct Params {
    rows: u32,
    d_sae: u32,
    k: u32,
    ld: u32,     // row stride of `pre`
    sort_n: u32, // power of two >= k, <= MAX_K
}

const WG: u32 = 256u;
const MAX_K: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> pre: array<f32>;
@group(0) @binding(2) var<storage, read_write> out_index: array<u32>;
@group(0) @binding(3) var<storage, read_write> out_value: array<f32>;
@group(0) @binding(4) var<storage, read_write> dense: array<f32>;

var<workgroup> histogram: array<atomic<u32>, 256>;
var<workgroup> prefix: u32;
var<workgroup> remaining: u32;
var<workgroup> above_count: atomic<u32>;
var<workgroup> equal_before: array<u32, 256>;
var<workgroup> sel_key: array<u32, MAX_K>;
var<workgroup> sel_index: array<u32, MAX_K>;

// Order-preserving map from f32 to u32 (larger float -> larger key). Twin: gpu::sortable_key.
fn sortable_key(v: f32) -> u32 {
    let bits = bitcast<u32>(v);
    return select(bits | 0x80000000u, ~bits, (bits & 0x80000000u) != 0u);
}

// true when (key_a, idx_a) sorts before (key_b, idx_b): larger key first, then lower index.
fn before(key_a: u32, idx_a: u32, key_b: u32, idx_b: u32) -> bool {
    return key_a > key_b || (key_a == key_b && idx_a < idx_b);
}

// Radix select, most significant byte first: leaves in `prefix` the exact key of the row's k-th
// largest value and in `remaining` how many elements equal to it are kept.
fn select_kth(lid: u32, base: u32) {
    if (lid == 0u) {
        prefix = 0u;
        remaining = p.k;
        atomicStore(&above_count, 0u);
    }
    var mask = 0u;
    for (var pass_index = 0u; pass_index < 4u; pass_index++) {
        let shift = 24u - 8u * pass_index;
        atomicStore(&histogram[lid], 0u);
        workgroupBarrier();
        let want = workgroupUniformLoad(&prefix);
        for (var e = lid; e < p.d_sae; e += WG) {
            let key = sortable_key(pre[base + e]);
            if ((key & mask) == want) {
                atomicAdd(&histogram[(key >> shift) & 255u], 1u);
            }
        }
        workgroupBarrier();
        if (lid == 0u) {
            var cumulative = 0u;
            let need = remaining;
            for (var bin = 255i; bin >= 0i; bin--) {
                let count = atomicLoad(&histogram[u32(bin)]);
                if (cumulative + count >= need) {
                    prefix = want | (u32(bin) << shift);
                    remaining = need - cumulative;
                    break;
                }
                cumulative += count;
            }
        }
        mask = mask | (255u << shift);
        workgroupBarrier();
    }
}

// Each thread owns a contiguous span [lo, hi) of the row; returns how many of the ties (elements
// equal to the k-th key) before its span are kept ahead of it: an exclusive scan, over the 256
// spans, of their tie counts.
fn ties_before(lid: u32, base: u32, kth: u32, lo: u32, hi: u32) -> u32 {
    var ties = 0u;
    for (var e = lo; e < hi; e++) {
        ties += u32(sortable_key(pre[base + e]) == kth);
    }
    equal_before[lid] = ties;
    workgroupBarrier();
    if (lid == 0u) {
        var running = 0u;
        for (var t = 0u; t < WG; t++) {
            let c = equal_before[t];
            equal_before[t] = running;
            running += c;
        }
    }
    workgroupBarrier();
    return equal_before[lid];
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wg.x + wg.y * 65535u;
    if (row >= p.rows) {
        return; // uniform across the workgroup
    }
    let base = row * p.ld;
    select_kth(lid, base);
    let kth = workgroupUniformLoad(&prefix);
    let take_equal = workgroupUniformLoad(&remaining);
    let above_total = p.k - take_equal;

    // Gather everything strictly above the k-th key (order fixed later by the sort).
    for (var e = lid; e < p.d_sae; e += WG) {
        let key = sortable_key(pre[base + e]);
        if (key > kth) {
            let slot = atomicAdd(&above_count, 1u);
            sel_key[slot] = key;
            sel_index[slot] = e;
        }
    }
    // Equal keys in index order: each span's first slot among the kept ties.
    let span = (p.d_sae + WG - 1u) / WG;
    let lo = min(lid * span, p.d_sae);
    let hi = min(lo + span, p.d_sae);
    var slot = ties_before(lid, base, kth, lo, hi);
    for (var e = lo; e < hi && slot < take_equal; e++) {
        if (sortable_key(pre[base + e]) == kth) {
            sel_key[above_total + slot] = kth;
            sel_index[above_total + slot] = e;
            slot++;
        }
    }
    // Pad to a power of two with entries that sort last.
    for (var s = p.k + lid; s < p.sort_n; s += WG) {
        sel_key[s] = 0u;
        sel_index[s] = 0xffffffffu;
    }
    workgroupBarrier();

    // Bitonic sort of sort_n entries, descending by key, ascending by index.
    for (var size = 2u; size <= p.sort_n; size <<= 1u) {
        for (var stride = size >> 1u; stride > 0u; stride >>= 1u) {
            for (var i = lid; i < p.sort_n; i += WG) {
                let j = i ^ stride;
                if (j > i) {
                    let ascending_block = (i & size) == 0u;
                    let ki = sel_key[i];
                    let ii = sel_index[i];
                    let kj = sel_key[j];
                    let ij = sel_index[j];
                    // In a "first" block, i should come before j; otherwise after.
                    if (before(kj, ij, ki, ii) == ascending_block) {
                        sel_key[i] = kj;
                        sel_index[i] = ij;
                        sel_key[j] = ki;
                        sel_index[j] = ii;
                    }
                }
            }
            workgroupBarrier();
        }
    }

    for (var s = lid; s < p.k; s += WG) {
        let index = sel_index[s];
        out_index[row * p.k + s] = index;
        out_value[row * p.k + s] = max(pre[base + index], 0.0);
    }
}

@compute @workgroup_size(256)
fn dense_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wg.x + wg.y * 65535u;
    if (row >= p.rows) {
        return; // uniform across the workgroup
    }
    let base = row * p.ld;
    select_kth(lid, base);
    let kth = workgroupUniformLoad(&prefix);
    let take_equal = workgroupUniformLoad(&remaining);
    let span = (p.d_sae + WG - 1u) / WG;
    let lo = min(lid * span, p.d_sae);
    let hi = min(lo + span, p.d_sae);
    var slot = ties_before(lid, base, kth, lo, hi);
    for (var e = lo; e < hi; e++) {
        let v = pre[base + e];
        let key = sortable_key(v);
        var kept = key > kth;
        if (key == kth && slot < take_equal) {
            kept = true;
            slot++;
        }
        dense[base + e] = select(0.0, max(v, 0.0), kept);
    }
}
