// Metric reductions (CPU twins: sae::metrics::row_stats and fire_counts).
//   row_metrics: per row r, stats[r] = (Σ(x-recon)², cos(x, recon), #active_count features), where the
//                activations are either dense rows of `acts` (SPARSE = 0) or the TopK lists (SPARSE = 1).
//   fire_counts_dense / fire_counts_sparse: counts[f] += number of rows where feature f is active_count.

struct Params {
    rows: u32,
    d_in: u32,
    d_sae: u32,
    k: u32,    // list length (sparse)
    ld: u32,   // row stride of dense acts
    eps: f32,  // F.cosine_similarity's eps
}

override SPARSE: u32 = 0u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> recon: array<f32>;
@group(0) @binding(3) var<storage, read> acts: array<f32>;       // dense [rows, ld] or list values [rows, k]
@group(0) @binding(4) var<storage, read> list_index: array<u32>; // [rows, k] (sparse only)
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;
@group(0) @binding(6) var<storage, read_write> counts: array<atomic<u32>>;

// WG, workgroup_sum4, workgroup_sum: reduce.wgsl

@compute @workgroup_size(128)
fn row_metrics(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wg.x + wg.y * 65535u;
    if (row >= p.rows) {
        return;
    }
    var s = vec4<f32>(0.0);
    for (var i = lid; i < p.d_in; i += WG) {
        let a = x[row * p.d_in + i];
        let b = recon[row * p.d_in + i];
        s += vec4<f32>((a - b) * (a - b), a * b, a * a, b * b);
    }
    var active_count = 0.0;
    if (SPARSE == 1u) {
        for (var j = lid; j < p.k; j += WG) {
            active_count += f32(acts[row * p.k + j] > 0.0);
        }
    } else {
        for (var j = lid; j < p.d_sae; j += WG) {
            active_count += f32(acts[row * p.ld + j] > 0.0);
        }
    }
    let total = workgroup_sum4(s, lid);
    let l0 = workgroup_sum(active_count, lid);
    if (lid == 0u) {
        stats[row * 3u] = total.x;
        stats[row * 3u + 1u] = total.y / max(sqrt(total.z) * sqrt(total.w), p.eps);
        stats[row * 3u + 2u] = l0;
    }
}

// One thread per feature, walking down the rows: coalesced and without contention.
@compute @workgroup_size(256)
fn fire_counts_dense(@builtin(global_invocation_id) gid: vec3<u32>) {
    let f = gid.x;
    if (f >= p.d_sae) {
        return;
    }
    var c = 0u;
    for (var r = 0u; r < p.rows; r++) {
        c += u32(acts[r * p.ld + f] > 0.0);
    }
    atomicAdd(&counts[f], c);
}

@compute @workgroup_size(256)
fn fire_counts_sparse(@builtin(global_invocation_id) gid: vec3<u32>) {
    let e = gid.x;
    if (e >= p.rows * p.k) {
        return;
    }
    if (acts[e] > 0.0) {
        atomicAdd(&counts[list_index[e]], 1u);
    }
}
