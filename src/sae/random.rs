//! Random SAEs for tests, benchmarks and the page's demo data, seeded (`crate::random`).

use super::files::sae_from_f32_tensors;
use super::Sae;
use crate::random::Rng;

/// A random SAE of the given architecture (`standard`, `topk`, `jumprelu`, `gated`, `batchtopk`,
/// or a transcoder: `transcoder`, `skip_transcoder`, `jumprelu_transcoder`,
/// `jumprelu_skip_transcoder`, from `hook_name` to `hook_name_out`), built through the same parser as files are, so it is valid by construction.
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
    let mut tensors =
        vec![("W_enc", vec![d_in, d_sae], w_enc), ("W_dec", vec![d_sae, d_in], w_dec), ("b_dec", vec![d_in], rng.normals(d_in, 0.1))];
    let transcoder = arch.ends_with("transcoder");
    let encoder_arch = match arch {
        "transcoder" | "skip_transcoder" => "standard",
        "jumprelu_transcoder" | "jumprelu_skip_transcoder" => "jumprelu",
        other => other,
    };
    match encoder_arch {
        "gated" => {
            tensors.push(("b_gate", vec![d_sae], rng.normals(d_sae, 0.5)));
            tensors.push(("b_mag", vec![d_sae], rng.normals(d_sae, 0.5)));
            tensors.push(("r_mag", vec![d_sae], rng.normals(d_sae, 0.2)));
        }
        _ => tensors.push(("b_enc", vec![d_sae], rng.normals(d_sae, 0.5))),
    }
    if encoder_arch == "jumprelu" || arch == "batchtopk" {
        tensors.push(("threshold", vec![d_sae], (0..d_sae).map(|_| rng.uniform() * 1.5).collect()));
    }
    if arch.contains("skip_transcoder") {
        tensors.push(("W_skip", vec![d_in, d_in], rng.normals(d_in * d_in, 0.3 / (d_in as f32).sqrt())));
    }
    let mut cfg = serde_json::json!({
        "architecture": arch, "d_in": d_in, "d_sae": d_sae, "dtype": "float32",
        "apply_b_dec_to_input": true, "normalize_activations": "none",
        "metadata": { "hook_name": "random", "model_name": "random" },
    });
    if arch == "topk" || arch == "batchtopk" {
        cfg["k"] = k.into();
    }
    if transcoder {
        cfg["apply_b_dec_to_input"] = false.into();
        cfg["metadata"]["hook_name_out"] = "random_out".into();
    }
    if let serde_json::Value::Object(map) = &mut cfg {
        map.extend(extra_cfg);
    }
    let views: Vec<(&str, Vec<usize>, &[f32])> = tensors.iter().map(|(n, s, d)| (*n, s.clone(), d.as_slice())).collect();
    sae_from_f32_tensors(&cfg, &views).expect("a random SAE is valid by construction")
}
