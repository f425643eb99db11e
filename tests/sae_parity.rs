//! Parity with SAELens: fixtures made by `tools/make_sae_fixtures.py` with the real package
//! (random weights; every architecture × apply_b_dec_to_input × normalisation, plus f16/bf16
//! weights) hold `x`, `sae.encode(x)` and `sae(x)`. The CPU reference and the GPU path must
//! reproduce them within 1e-5 absolute + 1e-4 relative.

mod common;

use common::{fixture_cases, gpu, read_npy, temp_dir};
use saelab::gpu::{GpuSae, RunRequest};
use saelab::sae::cpu;
use saelab::sae::files::{load_dir, save_dir};

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-5 + 1e-4 * w.abs(), "{what}: element {i}: saelab {g}, SAELens {w}");
    }
}

#[test]
fn cpu_and_gpu_match_saelens_for_every_fixture() {
    let cases = fixture_cases();
    assert_eq!(cases.len(), 22, "expected 5 architectures × 2 × 2 + 2 dtype cases");
    let gpu = gpu();
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let sae = load_dir(&case).unwrap_or_else(|e| panic!("{name}: {e}"));
        let x = read_npy(&case.join("x.npy"));
        let want_acts = read_npy(&case.join("encode.npy"));
        let want_recon = read_npy(&case.join("recon.npy"));

        let (acts, recon) = cpu::forward(&sae, &x.data);
        assert_close(&format!("{name} cpu encode"), &acts, &want_acts.data);
        assert_close(&format!("{name} cpu sae(x)"), &recon, &want_recon.data);

        let gpu_sae = GpuSae::upload(&gpu, &sae).unwrap();
        let out = pollster::block_on(gpu.run_sae(&gpu_sae, &x.data, None, RunRequest { dense_acts: true, recon: true })).unwrap();
        assert_close(&format!("{name} gpu encode"), &out.acts.unwrap(), &want_acts.data);
        assert_close(&format!("{name} gpu sae(x)"), &out.recon.unwrap(), &want_recon.data);
    }
}

#[test]
fn saving_is_byte_stable_and_keeps_every_cfg_key() {
    for case in fixture_cases() {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let sae = load_dir(&case).unwrap();
        let out = temp_dir(&format!("roundtrip-{name}"));
        save_dir(&sae, &out).unwrap();
        let original = safetensors::SafeTensors::deserialize(&std::fs::read(case.join("sae_weights.safetensors")).unwrap())
            .unwrap()
            .tensors()
            .into_iter()
            .map(|(n, v)| (n, (format!("{:?}", v.dtype()), v.shape().to_vec(), v.data().to_vec())))
            .collect::<std::collections::BTreeMap<_, _>>();
        let saved_bytes = std::fs::read(out.join("sae_weights.safetensors")).unwrap();
        let saved = safetensors::SafeTensors::deserialize(&saved_bytes)
            .unwrap()
            .tensors()
            .into_iter()
            .map(|(n, v)| (n, (format!("{:?}", v.dtype()), v.shape().to_vec(), v.data().to_vec())))
            .collect::<std::collections::BTreeMap<_, _>>();
        assert_eq!(saved, original, "{name}: tensors changed in a round trip");
        let cfg_in: serde_json::Value = serde_json::from_slice(&std::fs::read(case.join("cfg.json")).unwrap()).unwrap();
        let cfg_out: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("cfg.json")).unwrap()).unwrap();
        assert_eq!(cfg_out, cfg_in, "{name}: cfg.json changed in a round trip");
        // And a second save of the reloaded SAE is byte-for-byte the first.
        let again = temp_dir(&format!("roundtrip2-{name}"));
        save_dir(&load_dir(&out).unwrap(), &again).unwrap();
        assert_eq!(std::fs::read(again.join("sae_weights.safetensors")).unwrap(), saved_bytes, "{name}: second save differs");
        let _ = std::fs::remove_dir_all(&out);
        let _ = std::fs::remove_dir_all(&again);
    }
}
