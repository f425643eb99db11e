//! What the benchmark harness (`saelab bench`) measures besides the workloads themselves: the
//! median of repeated timings, and the host's own ceilings — the multiply-add throughput of its
//! widest vector unit on every core, and the bandwidth of a copy too large for its caches — so
//! each figure can be read as a fraction of what this machine can do.
//!
//! The GPU's ceilings come from `shaders/ceiling.wgsl` on the same adapter.
//!
//! Peers' figures (PyTorch's, burn's) come from their own code in the same run; nothing here
//! estimates them.

use std::time::Instant;

/// The median of `runs` timings of `work`, in seconds, after one untimed warm-up run (which
/// compiles GPU pipelines and fills caches).
pub fn median_seconds<E>(runs: usize, mut work: impl FnMut() -> Result<(), E>) -> Result<Timing, E> {
    work()?;
    let mut seconds = Vec::with_capacity(runs.max(1));
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        work()?;
        seconds.push(start.elapsed().as_secs_f64());
    }
    Ok(Timing::of(seconds))
}

/// Repeated timings of one workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    pub median: f64,
    pub min: f64,
    pub runs: usize,
}

impl Timing {
    /// The median (the mean of the middle two for an even count) and minimum of `seconds`.
    pub fn of(mut seconds: Vec<f64>) -> Timing {
        assert!(!seconds.is_empty(), "a timing needs at least one run");
        seconds.sort_by(f64::total_cmp);
        let n = seconds.len();
        let median = if n % 2 == 1 { seconds[n / 2] } else { 0.5 * (seconds[n / 2 - 1] + seconds[n / 2]) };
        Timing { median, min: seconds[0], runs: n }
    }
}

/// Independent accumulators (vector registers) each thread keeps in flight: enough to cover an
/// FMA latency of four cycles on two ports.
const CHAINS: usize = 8;

/// `iterations` rounds of `acc = acc·a + b` on `CHAINS` independent accumulators of `LANES`
/// lanes (scalar code the compiler may vectorise), and the sum of the lanes.
fn fma_rounds_portable<const LANES: usize>(iterations: usize, a: f32, b: f32) -> f32 {
    let mut acc = [[0.0f32; LANES]; CHAINS];
    for (c, chain) in acc.iter_mut().enumerate() {
        for (l, v) in chain.iter_mut().enumerate() {
            *v = (c * LANES + l) as f32 * 1e-3;
        }
    }
    for _ in 0..iterations {
        for chain in acc.iter_mut() {
            for v in chain.iter_mut() {
                // Not `mul_add`: without a fused unit it is a library call.
                *v = *v * a + b;
            }
        }
    }
    acc.iter().flatten().sum()
}

/// The same rounds on 16-lane AVX-512 FMAs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fma_rounds_avx512(iterations: usize, a: f32, b: f32) -> f32 {
    use std::arch::x86_64::*;
    let (va, vb) = (_mm512_set1_ps(a), _mm512_set1_ps(b));
    let mut acc: [__m512; CHAINS] = std::array::from_fn(|c| {
        let lanes: [f32; 16] = std::array::from_fn(|l| (c * 16 + l) as f32 * 1e-3);
        // SAFETY: `lanes` is 16 f32s, the unaligned load's width.
        unsafe { _mm512_loadu_ps(lanes.as_ptr()) }
    });
    for _ in 0..iterations {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, va, vb);
        }
    }
    acc.iter().map(|&v| _mm512_reduce_add_ps(v)).sum()
}

/// The same rounds on 8-lane AVX2 FMAs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_rounds_avx2(iterations: usize, a: f32, b: f32) -> f32 {
    use std::arch::x86_64::*;
    let (va, vb) = (_mm256_set1_ps(a), _mm256_set1_ps(b));
    let mut acc: [__m256; CHAINS] = std::array::from_fn(|c| {
        let lanes: [f32; 8] = std::array::from_fn(|l| (c * 8 + l) as f32 * 1e-3);
        // SAFETY: `lanes` is 8 f32s, the unaligned load's width.
        unsafe { _mm256_loadu_ps(lanes.as_ptr()) }
    });
    for _ in 0..iterations {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, va, vb);
        }
    }
    let mut sum = 0.0;
    for v in acc {
        let mut lanes = [0.0f32; 8];
        // SAFETY: `lanes` is 8 f32s, the unaligned store's width.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
        sum += lanes.iter().sum::<f32>();
    }
    sum
}

/// The widest multiply-add this CPU has: its name, its lanes, and `iterations` rounds on it.
fn fma_rounds_widest(iterations: usize, a: f32, b: f32) -> (&'static str, usize, f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (detected just above).
            return ("avx512 fma", 16, unsafe { fma_rounds_avx512(iterations, a, b) });
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (detected just above).
            return ("avx2 fma", 8, unsafe { fma_rounds_avx2(iterations, a, b) });
        }
    }
    // wasm32's simd128 (4 lanes) has no fused multiply-add; elsewhere, what the baseline vectorises.
    ("4-lane mul+add", 4, fma_rounds_portable::<4>(iterations, a, b))
}

/// A ceiling the harness measured: its throughput and how.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Ceiling {
    pub what: String,
    /// GFLOP/s for a compute ceiling, GB/s for a bandwidth one.
    pub value: f64,
    pub threads: usize,
}

/// The host's multiply-add throughput in GFLOP/s: every core (`gemm::threads()`) running
/// independent chains on its widest vector unit for about `budget_ms`.
pub fn cpu_fma_ceiling(budget_ms: u64) -> Ceiling {
    let threads = crate::gemm::threads();
    // Rounds per thread that take about the budget, from a short calibration run.
    let probe = 20_000;
    let start = Instant::now();
    std::hint::black_box(fma_rounds_widest(probe, std::hint::black_box(0.999_9), 1e-4).2);
    let per_round = start.elapsed().as_secs_f64().max(1e-9) / probe as f64;
    let rounds = ((budget_ms as f64 / 1e3 / per_round) as usize).max(probe);
    let start = Instant::now();
    let results = on_every_thread(threads, |t| fma_rounds_widest(rounds, std::hint::black_box(0.999_9), 1e-4 * (t + 1) as f32));
    std::hint::black_box(results.iter().map(|r| r.2).sum::<f32>());
    let (unit, lanes, _) = results[0];
    let seconds = start.elapsed().as_secs_f64();
    let flops = 2.0 * (CHAINS * lanes * rounds * threads) as f64;
    Ceiling { what: format!("{unit}, {threads} threads"), value: flops / seconds / 1e9, threads }
}

/// `work(t)` for each of `threads` threads (inline when one: wasm32 has no threads), in order.
fn on_every_thread<T: Send>(threads: usize, work: impl Fn(usize) -> T + Sync) -> Vec<T> {
    if threads <= 1 {
        return vec![work(0)];
    }
    std::thread::scope(|s| {
        let work = &work;
        let workers: Vec<_> = (0..threads).map(|t| s.spawn(move || work(t))).collect();
        workers.into_iter().map(|w| w.join().expect("a benchmark thread panicked")).collect()
    })
}

/// The host's memory bandwidth in GB/s: every core copying its share of a `mebibytes` buffer
/// (read + write bytes counted), the median of `runs`.
pub fn cpu_copy_ceiling(mebibytes: usize, runs: usize) -> Ceiling {
    let threads = crate::gemm::threads();
    let len = mebibytes * (1 << 20) / 4;
    let src: Vec<f32> = (0..len).map(|i| i as f32).collect();
    let mut dst = vec![0.0f32; len];
    let part = len.div_ceil(threads);
    let timing = median_seconds::<()>(runs, || {
        let mut parts: Vec<(&mut [f32], &[f32])> = dst.chunks_mut(part).zip(src.chunks(part)).collect();
        if parts.len() == 1 {
            let (d, from) = parts.pop().expect("one part");
            d.copy_from_slice(from);
        } else {
            std::thread::scope(|s| {
                for (d, from) in parts {
                    s.spawn(move || d.copy_from_slice(from));
                }
            });
        }
        std::hint::black_box(&dst);
        Ok(())
    })
    .expect("copying cannot fail");
    Ceiling { what: format!("copy of {mebibytes} MiB, {threads} threads"), value: 2.0 * (len * 4) as f64 / timing.median / 1e9, threads }
}

/// The GPU's multiply-add throughput and copy bandwidth (`shaders/ceiling.wgsl`), timed as
/// `gpu::kernels::time_per_run` times: wall time to a read-back, repeated in one submission.
pub async fn gpu_ceilings(gpu: &crate::gpu::Gpu) -> Result<[Ceiling; 2], crate::gpu::GpuError> {
    use crate::gpu::kernels::ceiling;
    let fma = ceiling::fma_ceiling(gpu).await?;
    let (copy, bytes) = ceiling::copy_ceiling(gpu).await?;
    Ok([
        Ceiling { what: "vec4 fma chains, 2^20 threads".into(), value: fma, threads: 1 << 20 },
        Ceiling { what: format!("copy of {} MiB", bytes >> 20), value: copy, threads: (bytes / 16) as usize },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_odd_and_even_counts() {
        assert_eq!(Timing::of(vec![3.0, 1.0, 2.0]), Timing { median: 2.0, min: 1.0, runs: 3 });
        assert_eq!(Timing::of(vec![4.0, 1.0, 3.0, 2.0]).median, 2.5);
    }

    #[test]
    fn every_fma_variant_computes_the_same_chains() {
        // The rounds are a contraction towards b/(1−a); fused and unfused agree to rounding.
        let (_, lanes, widest) = fma_rounds_widest(1000, 0.99, 1e-3);
        let plain = match lanes {
            16 => fma_rounds_portable::<16>(1000, 0.99, 1e-3),
            8 => fma_rounds_portable::<8>(1000, 0.99, 1e-3),
            _ => fma_rounds_portable::<4>(1000, 0.99, 1e-3),
        };
        let limit = (CHAINS * lanes) as f32 * 1e-3 / (1.0 - 0.99);
        assert!((plain - widest).abs() < 1e-3 * limit, "{plain} vs {widest}");
        assert!((plain - limit).abs() < 0.01 * limit, "{plain} should approach {limit}");
    }
}
