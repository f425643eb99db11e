//! Seeded random numbers and random SAEs, the same on every platform (no OS entropy), for tests,
//! benchmarks and the page's demo data.

use crate::formats::safetensors::{RawTensor, TensorFile};
use crate::formats::sae_files::{parse_sae, SaeFileBytes};

use super::Sae;

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, fast, and good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
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

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let u2 = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }

    pub fn normals(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.normal() * scale).collect()
    }
}

/// A random SAE of the given architecture (`standard`, `topk`, `jumprelu`, `gated`, `batchtopk`),
/// built through the same parser as files are, so it is valid by construction.
/// Weights are scaled like SAELens's initialisation (‖W_dec[i]‖ ≈ 1, W_enc ≈ W_decᵀ) plus noise, so
/// that a realistic fraction of features fire on standard-normal inputs.
pub fn random_sae(arch: &str, d_in: usize, d_sae: usize, k: usize, seed: u64) -> Sae {
    random_sae_with(arch, d_in, d_sae, k, seed, serde_json::Map::new())
}

/// As `random_sae`, with extra cfg.json keys (e.g. `normalize_activations`).
pub fn random_sae_with(
    arch: &str,
    d_in: usize,
    d_sae: usize,
    k: usize,
    seed: u64,
    extra_cfg: serde_json::Map<String, serde_json::Value>,
) -> Sae {
    let mut rng = Rng::new(seed);
    let w_dec = rng.normals(d_sae * d_in, 1.0 / (d_in as f32).sqrt());
    let mut w_enc = vec![0.0; d_in * d_sae];
    for i in 0..d_in {
        for j in 0..d_sae {
            w_enc[i * d_sae + j] = w_dec[j * d_in + i] + rng.normal() * 0.1 / (d_in as f32).sqrt();
        }
    }
    let mut tensors = vec![
        ("W_enc", vec![d_in, d_sae], w_enc),
        ("W_dec", vec![d_sae, d_in], w_dec),
        ("b_dec", vec![d_in], rng.normals(d_in, 0.1)),
    ];
    match arch {
        "gated" => {
            tensors.push(("b_gate", vec![d_sae], rng.normals(d_sae, 0.5)));
            tensors.push(("b_mag", vec![d_sae], rng.normals(d_sae, 0.5)));
            tensors.push(("r_mag", vec![d_sae], rng.normals(d_sae, 0.2)));
        }
        _ => tensors.push(("b_enc", vec![d_sae], rng.normals(d_sae, 0.5))),
    }
    if arch == "jumprelu" || arch == "batchtopk" {
        tensors.push(("threshold", vec![d_sae], (0..d_sae).map(|_| rng.uniform() * 1.5).collect()));
    }
    let file = TensorFile {
        tensors: tensors.into_iter().map(|(n, shape, data)| (n.to_string(), RawTensor::from_f32(shape, &data))).collect(),
        metadata: None,
    };
    let mut cfg = serde_json::json!({
        "architecture": arch, "d_in": d_in, "d_sae": d_sae, "dtype": "float32",
        "apply_b_dec_to_input": true, "normalize_activations": "none",
        "metadata": { "hook_name": "random", "model_name": "random" },
    });
    if arch == "topk" || arch == "batchtopk" {
        cfg["k"] = k.into();
    }
    if let serde_json::Value::Object(map) = &mut cfg {
        map.extend(extra_cfg);
    }
    let cfg_bytes = cfg.to_string().into_bytes();
    parse_sae(SaeFileBytes { cfg: &cfg_bytes, weights: &file.serialize(), sparsity: None })
        .expect("a random SAE is valid by construction")
}
