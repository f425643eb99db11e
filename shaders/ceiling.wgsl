// The adapter's own ceilings, for the benchmark harness (`bench::gpu_ceilings`), so each figure
// can be read as a fraction of what this adapter can do:
// - fma_rounds: each thread runs `rounds` rounds of acc = fma(acc, a, b) on 8 independent vec4
//   accumulators (64 flops a round; independent chains hide the FMA latency) and writes their
//   sum, so the compiler cannot drop the work. CPU twin: reference::fma_rounds.
// - copy: dst[i] = src[i] over `count` vec4s (read + write bytes are the bandwidth counted).
//   CPU twin: the identity.

struct Params {
    count: u32,
    rounds: u32,
    a: f32,
    b: f32,
}

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;

fn thread_index(wg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * 65535u) * WG + lid;
}

@compute @workgroup_size(256)
fn fma_rounds(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = thread_index(wg, lid);
    if (t >= p.count) {
        return;
    }
    let a = vec4<f32>(p.a);
    let b = vec4<f32>(p.b);
    let base = f32(t % 1024u) * 1e-3;
    var acc0 = vec4<f32>(base) + vec4<f32>(0.00, 0.01, 0.02, 0.03);
    var acc1 = vec4<f32>(base) + vec4<f32>(0.04, 0.05, 0.06, 0.07);
    var acc2 = vec4<f32>(base) + vec4<f32>(0.08, 0.09, 0.10, 0.11);
    var acc3 = vec4<f32>(base) + vec4<f32>(0.12, 0.13, 0.14, 0.15);
    var acc4 = vec4<f32>(base) + vec4<f32>(0.16, 0.17, 0.18, 0.19);
    var acc5 = vec4<f32>(base) + vec4<f32>(0.20, 0.21, 0.22, 0.23);
    var acc6 = vec4<f32>(base) + vec4<f32>(0.24, 0.25, 0.26, 0.27);
    var acc7 = vec4<f32>(base) + vec4<f32>(0.28, 0.29, 0.30, 0.31);
    for (var r = 0u; r < p.rounds; r++) {
        acc0 = fma(acc0, a, b);
        acc1 = fma(acc1, a, b);
        acc2 = fma(acc2, a, b);
        acc3 = fma(acc3, a, b);
        acc4 = fma(acc4, a, b);
        acc5 = fma(acc5, a, b);
        acc6 = fma(acc6, a, b);
        acc7 = fma(acc7, a, b);
    }
    dst[t] = ((acc0 + acc1) + (acc2 + acc3)) + ((acc4 + acc5) + (acc6 + acc7));
}

@compute @workgroup_size(256)
fn copy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wg, lid);
    if (i < p.count) {
        dst[i] = src[i];
    }
}
