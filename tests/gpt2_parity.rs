//! The GPT-2 forward pass against Hugging Face `transformers` (fixtures from
//! tools/make_gpt2_fixtures.py: three small random models — tied f32 with `transformer.`
//! prefixes, unprefixed f16, untied bf16): logits and every hook point.

use std::path::{Path, PathBuf};

use saelab::formats::npy;
use saelab::formats::safetensors::TensorFile;
use saelab::model::cpu;
use saelab::model::files::load_model_dir;

/// f32 sums of a few hundred terms in another order, through 3 layers and a softmax:
/// |ours − HF| ≤ 2e-4 · (1 + |HF|).
const TOL: f32 = 2e-4;

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2").join(case)
}

pub fn tokens(dir: &Path) -> Vec<u32> {
    let bytes = std::fs::read(dir.join("tokens.npy")).unwrap();
    npy::read_i64("tokens.npy", &bytes).unwrap().1.into_iter().map(|t| t as u32).collect()
}

fn expected(dir: &Path) -> TensorFile {
    TensorFile::parse("expected.safetensors", &std::fs::read(dir.join("expected.safetensors")).unwrap()).unwrap()
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= TOL * (1.0 + b.abs()), "{what}[{i}]: ours {a}, transformers {b}");
    }
}

#[test]
fn cpu_forward_matches_transformers_at_every_hook() {
    for case in ["tied_f32", "bare_f16", "untied_bf16"] {
        let dir = fixture(case);
        let model = load_model_dir(&dir).unwrap();
        assert_eq!(model.weights.unembed.is_some(), case == "untied_bf16");
        let tokens = tokens(&dir);
        let want = expected(&dir);
        // The points these fixtures captured from transformers' modules (the MLP-input points
        // came later; tests/families.rs checks every point against TransformerLens).
        let names: Vec<_> = model.cfg.hook_points().into_iter().filter(|h| want.tensors.contains_key(&h.to_string())).collect();
        assert_eq!(names.len(), want.tensors.len() - 1, "{case}: every reference is checked");
        let (logits, hooks) = cpu::run_with_hooks(&model, &tokens, &names).unwrap();
        assert_close(&format!("{case} logits"), &logits, &want.tensors["logits"].to_f32());
        for (name, got) in names.iter().zip(&hooks) {
            let reference = &want.tensors[name.to_string().as_str()];
            assert_eq!(reference.shape, [tokens.len(), model.cfg.d_model], "{case} {name}");
            // transformers' ln_f output carries the weight and bias; TransformerLens's
            // ln_final.hook_normalized (saelab's) is taken before them.
            let got = match name {
                saelab::model::HookPoint::FinalNormalized => {
                    let norm = &model.weights.final_norm;
                    let affine = saelab::reference::model::Affine { weight: &norm.weight, bias: norm.bias.as_deref() };
                    saelab::reference::model::scale_shift(got, affine, false)
                }
                _ => got.clone(),
            };
            assert_close(&format!("{case} {name}"), &got, &reference.to_f32());
        }
    }
}

#[test]
fn a_hook_that_changes_activations_changes_what_follows() {
    let dir = fixture("tied_f32");
    let model = load_model_dir(&dir).unwrap();
    let tokens = tokens(&dir);
    let clean = cpu::forward(&model, &tokens, &mut |_, _, _| {}).unwrap();
    // Zeroing the last layer's MLP output: the final residual loses exactly that term.
    let last = model.cfg.n_layers - 1;
    let (mut mlp_out, mut resid_mid, mut resid_post) = (Vec::new(), Vec::new(), Vec::new());
    let ablated = cpu::forward(&model, &tokens, &mut |name, acts, _| {
        if name.to_string() == format!("blocks.{last}.hook_mlp_out") {
            mlp_out = acts.to_vec();
            acts.iter_mut().for_each(|v| *v = 0.0);
        } else if name.to_string() == format!("blocks.{last}.hook_resid_mid") {
            resid_mid = acts.to_vec();
        } else if name.to_string() == format!("blocks.{last}.hook_resid_post") {
            resid_post = acts.to_vec();
        }
    })
    .unwrap();
    assert!(mlp_out.iter().any(|&v| v.abs() > 1e-3));
    assert_eq!(resid_post, resid_mid, "resid_post = resid_mid + (zeroed) mlp_out");
    assert!(clean.iter().zip(&ablated).any(|(a, b)| (a - b).abs() > 1e-3), "the logits moved");
}
