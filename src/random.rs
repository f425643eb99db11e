//! Seeded random numbers, the same on every platform (no OS entropy), for tests, benchmarks, the
//! page's demo data and training (initialisation, shuffling).
//!
//! "Same seed, same data on every device" needs more than a seeded generator: `f64::ln`, `cos` and
//! `exp` come from the platform's libm (glibc natively, a Rust port on wasm) and may differ in the
//! last bit, which a training run then amplifies. So the few transcendental functions the data
//! generators need are written here with + − × ÷ only, which IEEE 754 rounds identically everywhere.

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, fast, and good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The generator's whole state, to save and go on from with `from_state`.
    pub fn state(&self) -> u64 {
        self.0
    }

    pub fn from_state(state: u64) -> Rng {
        Rng(state)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [0, 1) with 53 bits.
    pub fn uniform_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Marsaglia's polar method, with the portable `ln`).
    pub fn normal(&mut self) -> f32 {
        loop {
            let u = 2.0 * self.uniform_f64() - 1.0;
            let v = 2.0 * self.uniform_f64() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                return (u * (-2.0 * portable_ln(s) / s).sqrt()) as f32;
            }
        }
    }

    pub fn normals(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.normal() * scale).collect()
    }
}

/// Natural logarithm from arithmetic alone (bit-identical on every platform), for x > 0:
/// x = m·2^e with m in [√½, √2), ln x = e·ln 2 + 2·atanh((m − 1)/(m + 1)) by its series.
pub fn portable_ln(x: f64) -> f64 {
    assert!(x > 0.0 && x.is_finite(), "portable_ln needs a positive finite argument");
    let mut m = x;
    let mut e = 0i32;
    while m >= std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    while m < std::f64::consts::FRAC_1_SQRT_2 {
        m *= 2.0;
        e -= 1;
    }
    let z = (m - 1.0) / (m + 1.0);
    let z2 = z * z;
    // |z| < 0.172: 2·Σ z^(2n+1)/(2n+1) reaches f64 precision within 12 terms.
    let mut term = z;
    let mut sum = 0.0;
    for n in 0..12 {
        sum += term / (2 * n + 1) as f64;
        term *= z2;
    }
    e as f64 * std::f64::consts::LN_2 + 2.0 * sum
}

/// e^x from arithmetic alone: x = k·ln 2 + r with |r| ≤ ln2/2, Taylor series for e^r, times 2^k.
pub fn portable_exp(x: f64) -> f64 {
    if x < -745.0 {
        return 0.0;
    }
    assert!(x < 709.0, "portable_exp overflows");
    // ln 2 split in two (Cody & Waite; the constants of fdlibm's e_exp.c) so that k·ln2 is exact
    // enough for large |x|.
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    let k = (x / std::f64::consts::LN_2).round();
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut term = 1.0;
    let mut sum = 1.0;
    for n in 1..20 {
        term *= r / n as f64;
        sum += term;
    }
    let mut scale = 1.0f64;
    let (factor, count) = if k >= 0.0 { (2.0, k as i64) } else { (0.5, -k as i64) };
    for _ in 0..count {
        scale *= factor;
    }
    sum * scale
}

/// (sin θ, cos θ) from arithmetic alone: reduce to |θ| ≤ π/4 around a multiple of π/2, then
/// Taylor series.
pub fn portable_sin_cos(theta: f64) -> (f64, f64) {
    let quarter = (theta / std::f64::consts::FRAC_PI_2).round();
    let r = theta - quarter * std::f64::consts::FRAC_PI_2;
    let r2 = r * r;
    let (mut s, mut c) = (0.0, 0.0);
    let (mut ts, mut tc) = (r, 1.0);
    for n in 0..12 {
        s += ts;
        c += tc;
        ts *= -r2 / ((2 * n + 2) * (2 * n + 3)) as f64;
        tc *= -r2 / ((2 * n + 1) * (2 * n + 2)) as f64;
    }
    match (quarter as i64).rem_euclid(4) {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_functions_agree_with_libm() {
        for &x in &[1e-300, 1e-9, 0.1, 0.5, std::f64::consts::FRAC_1_SQRT_2, 1.0, 1.5, 2.0, 10.0, 12345.678, 1e200] {
            let (a, b) = (portable_ln(x), x.ln());
            assert!((a - b).abs() <= 4.0 * f64::EPSILON * b.abs().max(1.0), "ln({x}): {a} vs {b}");
        }
        for &x in &[-700.0, -20.0, -1.0, -1e-8, 0.0, 0.3, 1.0, 5.5, 100.0, 700.0] {
            let (a, b) = (portable_exp(x), x.exp());
            assert!((a - b).abs() <= 8.0 * f64::EPSILON * b, "exp({x}): {a} vs {b}");
        }
        for i in -40..40 {
            let t = i as f64 * 0.37;
            let (s, c) = portable_sin_cos(t);
            assert!((s - t.sin()).abs() < 1e-14 && (c - t.cos()).abs() < 1e-14, "sin/cos({t})");
        }
    }

    #[test]
    fn normals_have_unit_variance() {
        let mut rng = Rng::new(3);
        let v = rng.normals(100_000, 1.0);
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.02, "mean {mean} var {var}");
    }
}
