// BatchTopK's selection (Bussmann et al. 2024, "BatchTopK Sparse Autoencoders"): keep the `count`
// largest positive values of a whole batch, zero the rest. CPU twin:
// train::sae_train::batch_topk_threshold and the keep rule `v > 0 && v ≥ threshold`.
//
// A radix select on bit patterns: for v > 0 the f32 bits order like the values. Four passes, most
// significant byte first: `batch_histogram` counts the candidates (positive values whose higher
// bytes equal the prefix found so far) per value of this byte; `batch_pick` finds the byte of the
// remaining-th largest and narrows the prefix. After the last pass the prefix is the threshold's
// bits. `batch_apply` writes the kept values.
//
// state: [0] threshold bits (prefix), [1] rank still to find among candidates, [2] positive count.

struct Params {
    n: u32,
    count: u32,
    shift: u32,   // 24, 16, 8, 0
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> values: array<f32>;
@group(0) @binding(2) var<storage, read_write> histogram: array<atomic<u32>, 256>;
@group(0) @binding(3) var<storage, read_write> state: array<u32, 4>;
@group(0) @binding(4) var<storage, read_write> kept: array<f32>;

var<workgroup> local_histogram: array<atomic<u32>, 256>;

// Grid-stride over the values; a workgroup-local histogram first, so the global atomics are one
// per bin per workgroup.
@compute @workgroup_size(256)
fn batch_histogram(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    atomicStore(&local_histogram[lid], 0u);
    workgroupBarrier();
    // The first pass has no higher bytes to match (and a shift by 32 would be meaningless).
    let high_mask = select(0xffffffffu << (p.shift + 8u), 0u, p.shift >= 24u);
    let prefix = state[0] & high_mask;
    for (var i = wg.x * 256u + lid; i < p.n; i += groups.x * 256u) {
        let v = values[i];
        let key = bitcast<u32>(v);
        if (v > 0.0 && (key & high_mask) == prefix) {
            atomicAdd(&local_histogram[(key >> p.shift) & 255u], 1u);
        }
    }
    workgroupBarrier();
    let c = atomicLoad(&local_histogram[lid]);
    if (c > 0u) {
        atomicAdd(&histogram[lid], c);
    }
}

// One thread: after the first pass, all positive values are the candidates; the rank to find is
// min(count, positives). No positive values, or count 0: the threshold's bits become all ones
// (NaN), which no value passes. Clears the histogram for the next pass.
@compute @workgroup_size(1)
fn batch_pick() {
    if (p.shift == 24u) {
        var positives = 0u;
        for (var b = 0u; b < 256u; b++) {
            positives += atomicLoad(&histogram[b]);
        }
        state[0] = select(0u, 0xffffffffu, positives == 0u || p.count == 0u);
        state[1] = min(p.count, positives);
        state[2] = positives;
    }
    let remaining = state[1];
    if (remaining > 0u) {
        var above = 0u;
        var chosen = 0u;
        for (var b = 255i; b >= 0i; b--) {
            let c = atomicLoad(&histogram[b]);
            if (above + c >= remaining) {
                chosen = u32(b);
                break;
            }
            above += c;
        }
        state[0] |= chosen << p.shift;
        state[1] = remaining - above;
    }
    for (var b = 0u; b < 256u; b++) {
        atomicStore(&histogram[b], 0u);
    }
}

// kept[i] = v if v > 0 and v ≥ threshold, else 0; 1-D grid folded into x and y.
@compute @workgroup_size(256)
fn batch_apply(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wg.x + wg.y * 65535u) * 256u + lid;
    if (i < p.n) {
        let v = values[i];
        kept[i] = select(0.0, v, v > 0.0 && bitcast<u32>(v) >= state[0]);
    }
}
