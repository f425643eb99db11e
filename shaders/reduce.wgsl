// Workgroup-wide sum of a vec4 over 128 threads, shared by the row-wise kernels
// (prepended to rows.wgsl and metrics.wgsl by gpu/kernels.rs). Every thread of the workgroup
// must call it (it contains barriers); every thread gets the total.

const WG: u32 = 128u;

var<workgroup> partial: array<vec4<f32>, WG>;

fn workgroup_sum4(value: vec4<f32>, lid: u32) -> vec4<f32> {
    partial[lid] = value;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

fn workgroup_sum(value: f32, lid: u32) -> f32 {
    return workgroup_sum4(vec4<f32>(value, 0.0, 0.0, 0.0), lid).x;
}

