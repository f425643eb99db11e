//! The SAE formats SAELens converts, against SAELens's own loaders: `tools/make_sae_format_fixtures.py`
//! wrote one small random SAE per format into a stand-in Hugging Face cache (`tests/fixtures/hub`,
//! with a test registry made by `tools/make_registry.py`'s `build_index`) and recorded what
//! `SAE.from_pretrained(release, sae_id)` computes from those files (sparsify: what the format's
//! own library computes). saelab opens the same files by release and id, and its CPU and GPU
//! `encode` and `sae(x)` must match within 1e-5 absolute + 1e-4 relative; its cfg must say what
//! SAELens's says.

mod common;

use std::path::{Path, PathBuf};

use common::{gpu, read_npy, temp_dir};
use saelab::gpu::{GpuSae, RunRequest};
use saelab::sae::cpu;
use saelab::sae::local::{open_by_name, open_folder};
use saelab::sae::registry::Registry;
use saelab::sae::Sae;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn hub() -> PathBuf {
    fixtures().join("hub")
}

fn test_registry() -> Registry {
    Registry::parse(&std::fs::read(hub().join("registry.json")).unwrap()).unwrap()
}

fn reference(case: &str) -> PathBuf {
    fixtures().join("sae_formats").join(case)
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-5 + 1e-4 * w.abs(), "{what}: element {i}: saelab {g}, reference {w}");
    }
}

/// CPU and GPU encode and reconstruct of `sae` against the case's recorded outputs.
fn check_numbers(case: &str, sae: &Sae, gpu: &saelab::gpu::Gpu) {
    let dir = reference(case);
    let x = read_npy(&dir.join("x.npy"));
    let (want_acts, want_recon) = (read_npy(&dir.join("encode.npy")), read_npy(&dir.join("recon.npy")));
    let (acts, recon) = cpu::forward(sae, &x.data);
    assert_close(&format!("{case} cpu encode"), &acts, &want_acts.data);
    assert_close(&format!("{case} cpu sae(x)"), &recon, &want_recon.data);
    let on_gpu = GpuSae::upload(gpu, sae).unwrap();
    let out = pollster::block_on(gpu.run_sae(&on_gpu, &x.data, None, RunRequest { dense_acts: true, recon: true })).unwrap();
    assert_close(&format!("{case} gpu encode"), &out.acts.unwrap(), &want_acts.data);
    assert_close(&format!("{case} gpu sae(x)"), &out.recon.unwrap(), &want_recon.data);
}

/// The cfg keys that change what the SAE computes or where it reads, as SAELens loaded them.
fn check_cfg(case: &str, sae: &Sae) {
    let want: Value = serde_json::from_slice(&std::fs::read(reference(case).join("cfg.json")).unwrap()).unwrap();
    let got = &sae.cfg;
    assert_eq!(got.architecture_name(), want["architecture"], "{case}: architecture");
    assert_eq!(got.d_in as u64, want["d_in"], "{case}: d_in");
    assert_eq!(got.d_sae as u64, want["d_sae"], "{case}: d_sae");
    assert_eq!(got.apply_b_dec_to_input, want["apply_b_dec_to_input"], "{case}: apply_b_dec_to_input");
    assert_eq!(got.normalization.name(), want["normalize_activations"], "{case}: normalize_activations");
    if let Some(k) = want.get("k") {
        assert_eq!(got.architecture.topk().map(|k| k as u64), k.as_u64(), "{case}: k");
    }
    let meta = &want["metadata"];
    assert_eq!(got.hook_name.as_deref(), meta["hook_name"].as_str(), "{case}: hook_name");
    // Transcoders: where the output belongs, and the Hugging Face modules both ends were read at.
    assert_eq!(got.transcoder.as_ref().and_then(|t| t.hook_name_out.as_deref()), meta["hook_name_out"].as_str(), "{case}: hook_name_out");
    let want_skip = want.get("d_out").map(|d_out| {
        assert_eq!(d_out.as_u64(), Some(got.d_in as u64), "{case}: d_out");
        want["architecture"].as_str().is_some_and(|a| a.contains("skip"))
    });
    assert_eq!(got.transcoder.as_ref().map(|t| t.skip), want_skip, "{case}: a transcoder, with a skip connection or not");
    assert_eq!(got.hf_hook_name(false).as_deref(), meta["hf_hook_name"].as_str(), "{case}: hf_hook_name");
    assert_eq!(got.hf_hook_name(true).as_deref(), meta["hf_hook_name_out"].as_str(), "{case}: hf_hook_name_out");
    assert_eq!(got.model_name.as_deref(), meta["model_name"].as_str(), "{case}: model_name");
    assert_eq!(got.prepend_bos, meta["prepend_bos"], "{case}: prepend_bos");
    let saved: Value = serde_json::from_str(&got.to_json()).unwrap();
    let ours = |k: &str| saved.get(k).or_else(|| saved["metadata"].get(k)).cloned().unwrap_or(Value::Null);
    assert_eq!(ours("neuronpedia_id"), meta.get("neuronpedia_id").cloned().unwrap_or(Value::Null), "{case}: neuronpedia_id");
    assert_eq!(
        ours("model_from_pretrained_kwargs"),
        meta.get("model_from_pretrained_kwargs").cloned().unwrap_or(Value::Null),
        "{case}: model_from_pretrained_kwargs"
    );
}

#[test]
fn every_format_opens_by_name_with_saelens_numbers() {
    let registry = test_registry();
    let gpu = gpu();
    let mut cases = 0;
    for release in &registry.releases {
        for entry in &release.saes {
            let case = format!("{}--{}", release.release, entry.id.replace('/', "_"));
            let sae = open_by_name(release, entry, &hub()).unwrap_or_else(|e| panic!("{case}: {e}"));
            check_numbers(&case, &sae, &gpu);
            if release.conversion != "sparsify" {
                check_cfg(&case, &sae);
            }
            cases += 1;
        }
    }
    // Gemma Scope (stored and deflated npz, an embedding SAE), Gemma Scope 2 (with and without
    // config.json), Llama Scope, Llama Scope R1 Distill, SAELens's own folder, sparsify,
    // dictionary_learning's six classes (one in bf16), Qwen Scope (bf16 and a strided view), the
    // GPT-2 hook_z SAEs; the transcoders: Gemma Scope 2's (plain, and affine with config.json),
    // Gemma Scope's, mwhanna's (with config.yaml, and with the misspelt wanb-config.yaml alone);
    // Goodfire's and qresearch's single files (one bf16 tensor).
    assert_eq!(cases, 24);
}

#[test]
fn a_cache_folder_opens_as_its_repositorys_and_a_llama_scope_folder_folds_its_own_factor() {
    let gpu = gpu();
    let snapshot =
        |repo: &str| hub().join(format!("models--{}", repo.replace('/', "--"))).join("snapshots/0123456789abcdef0123456789abcdef01234567");
    // Listed in the registry: the same SAE as by name (its overrides and scaling factor).
    let dir = snapshot("fnlp/Llama3_1-8B-Base-LXR-8x").join("Llama3_1-8B-Base-L7R-8x");
    let by_folder = open_folder(&dir, &test_registry()).unwrap();
    check_numbers("test-llama-scope-lxr-8x--l7r_8x", &by_folder, &gpu);
    // Not listed: the factor hyperparams.json gives, as the loader's threshold assumes.
    let empty = Registry { source: "none".into(), releases: vec![] };
    let alone = open_folder(&dir, &empty).unwrap();
    check_numbers("llama-scope-folder", &alone, &gpu);
    check_cfg("llama-scope-folder", &alone);
    // A Gemma Scope folder in the cache knows its repository, so its model and hook.
    let gemma = open_folder(&snapshot("google/gemma-scope-2b-pt-res").join("layer_3/width_16k/average_l0_9"), &empty).unwrap();
    assert_eq!(gemma.cfg.hook_name.as_deref(), Some("blocks.3.hook_resid_post"));
    check_numbers("test-gemma-scope-2b-pt-res--layer_3_width_16k_average_l0_9", &gemma, &gpu);
}

/// torch.save files: a single-file SAE opened as a file from the cache; a pickle that would run
/// code, a truncated archive, a file away from its repository and an empty folder are refused with
/// what is wrong.
#[test]
fn torch_save_files_open_as_files_and_a_pickle_that_runs_code_is_refused() {
    let gpu = gpu();
    let registry = test_registry();
    let message = |r: Result<Sae, saelab::formats::FormatError>| r.unwrap_err().to_string();
    let snapshot =
        |repo: &str| hub().join(format!("models--{}", repo.replace('/', "--"))).join("snapshots/0123456789abcdef0123456789abcdef01234567");
    let qwen = snapshot("Qwen/SAE-Res-Qwen3-1.7B-Base-W32K-L0_5").join("layer3.sae.pt");
    let sae = open_folder(&qwen, &registry).unwrap();
    check_numbers("test-qwen-scope-1.7b--layer3", &sae, &gpu);
    // Not listed in a registry, the name still says it is Qwen Scope, the repository its k.
    let alone = open_folder(&qwen, &Registry { source: "none".into(), releases: vec![] }).unwrap();
    assert_eq!(alone.cfg.architecture.topk(), Some(5));
    let kk = snapshot("ckkissane/attn-saes-gpt2-small-all-layers").join("gpt2-small_L1_Hcat_z_lr1.20e-03_l11.80e+00_ds40_v9.pt");
    check_numbers("test-gpt2-small-hook-z-kk--blocks.1.hook_z", &open_folder(&kk, &registry).unwrap(), &gpu);
    // Goodfire's and qresearch's files by their names alone, away from their repositories.
    let empty = Registry { source: "none".into(), releases: vec![] };
    for (repo, file, case, hook) in [
        (
            "Goodfire/Llama-3.1-8B-Instruct-SAE-l19",
            "Llama-3.1-8B-Instruct-SAE-l19.pth",
            "test-goodfire-llama-3.1-8b-instruct--layer_19",
            "blocks.19.hook_resid_post",
        ),
        (
            "qresearch/DeepSeek-R1-Distill-Llama-8B-SAE-l19",
            "DeepSeek-R1-Distill-Llama-8B-SAE-l19.pt",
            "test-deepseek-r1-distill-llama-8b-qresearch--blocks.19.hook_resid_post",
            "blocks.19.hook_resid_post",
        ),
    ] {
        let bare = temp_dir(&format!("bare-{}", repo.replace('/', "-"))).join(file);
        std::fs::copy(snapshot(repo).join(file), &bare).unwrap();
        let sae = open_folder(&bare, &empty).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(sae.cfg.hook_name.as_deref(), Some(hook), "{file}");
        check_numbers(case, &sae, &gpu);
    }
    // A Goodfire-named file the loader does not know, and a qresearch file whose name gives no layer.
    let unknown = temp_dir("goodfire-unknown").join("Llama-3.1-8B-Instruct-SAE-l20.pth");
    std::fs::copy(snapshot("Goodfire/Llama-3.1-8B-Instruct-SAE-l19").join("Llama-3.1-8B-Instruct-SAE-l19.pth"), &unknown).unwrap();
    let e = message(open_folder(&unknown, &empty));
    assert!(e.contains("Goodfire") && e.contains("Llama-3.1-8B-Instruct-SAE-l19.pth"), "{e}");

    // The pickle names os.system: refused by name, and nothing ran.
    let evil = fixtures().join("evil-pickle");
    let e = message(open_folder(&evil, &registry));
    assert!(e.contains("ae.pt") && e.contains("system'") && e.contains("never runs code"), "{e}");
    // A truncated ae.pt, a Qwen Scope file away from its repository, a folder where a file is meant.
    let dl = snapshot("canrager/lm_sae").join("pythia70m_sweep_test_0730/resid_post_layer_3/trainer_0");
    let cut = temp_dir("dl-truncated");
    copy_dir(&dl, &cut);
    let bytes = std::fs::read(cut.join("ae.pt")).unwrap();
    for keep in [bytes.len() - 100, bytes.len() / 2, 10] {
        std::fs::write(cut.join("ae.pt"), &bytes[..keep]).unwrap();
        let e = message(open_folder(&cut, &registry));
        assert!(e.contains("ae.pt"), "{e}");
    }
    let bare = temp_dir("bare-qwen").join("layer3.sae.pt");
    std::fs::copy(&qwen, &bare).unwrap();
    let e = message(open_folder(&bare, &registry));
    assert!(e.contains("repository name"), "{e}");
    let e = message(open_folder(&temp_dir("empty-sae"), &registry));
    assert!(e.contains("it is empty"), "{e}");
    let weights = temp_dir("a-weights-file").join("weights.bin");
    std::fs::write(&weights, b"x").unwrap();
    let e = message(open_folder(&weights, &registry));
    assert!(e.contains("layerN.sae.pt (Qwen Scope)"), "{e}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn what_cannot_be_opened_is_said_in_one_line() {
    let registry = test_registry();
    let message = |r: Result<Sae, saelab::formats::FormatError>| r.unwrap_err().to_string();
    let snapshot = hub().join("models--google--gemma-scope-2b-pt-res/snapshots/0123456789abcdef0123456789abcdef01234567");

    // A Gemma Scope folder outside a cache: its repository name is what is missing.
    let bare = temp_dir("bare-gemma-scope").join("layer_3");
    copy_dir(&snapshot.join("layer_3/width_16k/average_l0_9"), &bare);
    let e = message(open_folder(&bare, &registry));
    assert!(e.contains("repository name") && e.contains("RELEASE/SAE_ID"), "{e}");
    // A folder in no known layout names what each format expects.
    let odd = temp_dir("odd-sae");
    std::fs::write(odd.join("weights.bin"), b"x").unwrap();
    let e = message(open_folder(&odd, &registry));
    assert!(e.contains("weights.bin") && e.contains("params.npz (Gemma Scope)"), "{e}");
    // A Gemma Scope folder whose name gives no layer.
    let nameless = temp_dir("gemma-nameless");
    copy_dir(
        &snapshot.join("layer_3/width_16k/average_l0_9"),
        &nameless.join("models--google--gemma-scope-2b-pt-res/snapshots/r/width_16k"),
    );
    let e = message(open_folder(&nameless.join("models--google--gemma-scope-2b-pt-res/snapshots/r/width_16k"), &registry));
    assert!(e.contains("gives the layer (layer_N)"), "{e}");
    // A damaged file is refused naming it.
    let damaged = temp_dir("gemma-damaged").join("models--google--gemma-scope-2b-pt-res/snapshots/r/layer_3");
    copy_dir(&snapshot.join("layer_3/width_16k/average_l0_9"), &damaged);
    let npz = std::fs::read(damaged.join("params.npz")).unwrap();
    std::fs::write(damaged.join("params.npz"), &npz[..npz.len() / 2]).unwrap();
    let e = message(open_folder(&damaged, &registry));
    assert!(e.contains("params.npz") && e.contains("ZIP"), "{e}");

    // By name: a release or id not in the registry gets the nearest names.
    let e = registry.find("test-gemma-scope-2b-pt-rez", "x").unwrap_err();
    assert!(e.contains("did you mean 'test-gemma-scope-2b-pt-res'"), "{e}");
    let e = registry.find("test-gemma-scope-2b-pt-res", "layer_3/width_16k/average_l0_8").unwrap_err();
    assert!(e.contains("did you mean 'layer_3/width_16k/average_l0_9'"), "{e}");
    // Files the cache does not have: where they were looked for, and how to get them.
    let (release, entry) = registry.find("test-gemma-scope-2b-pt-res", "layer_3/width_16k/average_l0_9").unwrap();
    let e = message(open_by_name(release, entry, &temp_dir("empty-cache")));
    assert!(e.contains("not in the Hugging Face cache") && e.contains("huggingface-cli download google/gemma-scope-2b-pt-res"), "{e}");
}

#[test]
fn the_bundled_registry_is_saelens_yaml_and_says_what_opens() {
    let registry = Registry::bundled();
    assert!(registry.source.starts_with("sae-lens 6.54"), "{}", registry.source);
    // SAELens 6.54.12's pretrained_saes.yaml: 170 releases, 13,857 SAEs (DESIGN.md §3).
    assert_eq!(registry.releases.len(), 170);
    let (open, total) = registry.openable();
    assert_eq!(total, 13_857);
    let (r, e) = registry.find("gpt2-small-res-jb", "blocks.8.hook_resid_pre").unwrap();
    assert_eq!(r.repo, "jbloom/GPT2-Small-SAEs-Reformatted");
    assert_eq!(r.overrides["model_from_pretrained_kwargs"]["center_writing_weights"], true);
    assert_eq!(saelab::sae::registry::Release::neuronpedia_url(e, 7).as_deref(), Some("https://www.neuronpedia.org/gpt2-small/8-res-jb/7"));
    let (r, e) = registry.find("gemma-scope-2b-pt-res-canonical", "layer_12/width_16k/canonical").unwrap();
    assert_eq!((r.conversion.as_str(), r.why_not(e)), ("gemma_2", None));
    let (r, e) = registry.find("gemma-scope-2-270m-pt-transcoders", "transcoder/layer_9_width_16k_l0_small_affine").unwrap();
    assert_eq!(r.why_not(e), None);
    // Gemma 3 from 4B up is multimodal ('gemma3'): its text model runs.
    let (r, e) = registry.find("gemma-scope-2-4b-pt-res", &registry.release("gemma-scope-2-4b-pt-res").unwrap().saes[0].id).unwrap();
    assert_eq!((r.model_type.as_deref(), r.why_not(e)), (Some("gemma3"), None));
    // The figure the README states.
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let figure = format!("{open} of the {total}");
    assert!(readme.contains(&figure), "the README should say \"{figure}\" (SAEs of the registry this build opens)");
}

/// Transcoders opened from the cache as files and folders, not by name: mwhanna's layer file by its
/// wandb config beside it, Gemma Scope's npz folder by its repository's name; a wandb config that
/// lies about the sizes, and one that is gone, are refused naming the file.
#[test]
fn transcoder_files_open_from_the_cache_and_bad_configs_are_refused() {
    let gpu = gpu();
    let empty = Registry { source: "none".into(), releases: vec![] };
    let snapshot =
        |repo: &str| hub().join(format!("models--{}", repo.replace('/', "--"))).join("snapshots/0123456789abcdef0123456789abcdef01234567");
    let layer = snapshot("mwhanna/qwen3-14b-transcoders").join("layer_1.safetensors");
    let sae = open_folder(&layer, &empty).unwrap();
    check_numbers("test-qwen3-14b-transcoders--layer_1", &sae, &gpu);
    check_cfg("test-qwen3-14b-transcoders--layer_1", &sae);
    let folder = snapshot("google/gemma-scope-2b-pt-transcoders").join("layer_6/width_16k/average_l0_70");
    let sae = open_folder(&folder, &empty).unwrap();
    assert_eq!(sae.cfg.architecture_name(), "jumprelu_transcoder");
    check_numbers("test-gemma-scope-2b-pt-transcoders--layer_6_width_16k_average_l0_70", &sae, &gpu);

    let copy = temp_dir("mwhanna").join("models--mwhanna--qwen3-0.6b-transcoders-lowl0/snapshots/r");
    copy_dir(&snapshot("mwhanna/qwen3-0.6b-transcoders-lowl0"), &copy);
    let wandb = std::fs::read_to_string(copy.join("wandb-config.yaml")).unwrap();
    std::fs::write(copy.join("wandb-config.yaml"), wandb.replace("d_feature:\n  value: 40", "d_feature:\n  value: 41")).unwrap();
    let e = open_folder(&copy.join("layer_2.safetensors"), &empty).unwrap_err().to_string();
    assert!(e.contains("wandb-config.yaml says d_feature=41"), "{e}");
    std::fs::write(copy.join("wandb-config.yaml"), &wandb[..wandb.find("d_model:\n  value").unwrap() + 9]).unwrap();
    let e = open_folder(&copy.join("layer_2.safetensors"), &empty).unwrap_err().to_string();
    assert!(e.contains("wandb-config.yaml") && e.contains("'d_model' has no value"), "{e}");
    std::fs::remove_file(copy.join("wandb-config.yaml")).unwrap();
    let e = open_folder(&copy.join("layer_2.safetensors"), &empty).unwrap_err().to_string();
    assert!(e.contains("no single-file SAE format fits 'layer_2.safetensors'") && e.contains("wandb-config.yaml"), "{e}");
}

/// The CLI opens SAEs by name from a Hugging Face cache (`HF_HUB_CACHE`) through the bundled
/// registry, which adds what the files do not say (gpt2-small-res-jb's centring, its Neuronpedia
/// id); `saelab convert` writes any format back as a SAELens folder that gives the same numbers.
#[test]
fn the_cli_opens_by_name_and_converts() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_saelab")).args(args).env("HF_HUB_CACHE", hub()).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (code, out, err) = run(&["info", "gpt2-small-res-jb/blocks.0.hook_resid_pre"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("blocks.0.hook_resid_pre") && out.contains("\"center_writing_weights\":true"), "{out}");
    assert!(out.contains("https://www.neuronpedia.org/gpt2-small/0-res-jb"), "{out}");
    let (code, _, err) = run(&["info", "gpt2-small-res-jb/blocks.0.hook_resid_prx"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("did you mean 'blocks.0.hook_resid_pre'"), "{err}");
    let (code, _, err) = run(&["info", "gemma-scope-2b-pt-res-canonical/layer_12/width_16k/canonical"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("not in the Hugging Face cache") && err.contains("huggingface-cli download google/gemma-scope-2b-pt-res"),
        "{err}"
    );

    let folder = hub()
        .join("models--google--gemma-scope-2b-pt-mlp/snapshots/0123456789abcdef0123456789abcdef01234567/layer_1/width_16k/average_l0_20");
    let out_dir = temp_dir("converted-gemma-scope");
    let (code, out, err) = run(&["convert", "--sae", folder.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("\"hook_name\":\"blocks.1.hook_mlp_out\""), "{out}");
    let converted = saelab::sae::files::load_dir(&out_dir).unwrap();
    check_numbers("test-gemma-scope-2b-pt-mlp--layer_1_width_16k_average_l0_20", &converted, &gpu());
    let cfg: Value = serde_json::from_slice(&std::fs::read(out_dir.join("cfg.json")).unwrap()).unwrap();
    assert_eq!(cfg["metadata"]["hook_name"], "blocks.1.hook_mlp_out");
    assert_eq!(cfg["metadata"]["sae_lens_version"], saelab::sae::convert::SAELENS_VERSION);

    let (code, out, _) = run(&["registry", "--model", "gpt2"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("gpt2-small-res-jb") && out.contains("saelab opens"), "{out}");
    let (_, out, _) = run(&["registry", "--json", "--model", "pythia"]);
    let first: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert!(first["release"].is_string() && first["opens"].is_boolean(), "{first}");
}

/// An SAE that asks for TransformerLens's `center_writing_weights` reads the values of the
/// processed model (`Model::processed`, tested against TransformerLens in families.rs) although the
/// model runs as loaded (`lm::as_sae_input`, what the page does on a GPU-only model): the hook's
/// values, the SAE's features and the splice evaluation agree; an SAE that does not ask reads the
/// model as it is.
#[test]
fn an_saes_model_kwargs_give_the_processed_models_values() {
    use saelab::backend::Backend;
    use saelab::engine::LoadedSae;
    use saelab::lm::{self, LoadedModel};
    use saelab::model::processing::WeightProcessing;
    use std::rc::Rc;
    let model = saelab::model::files::load_model_dir(&fixtures().join("families/gpt2")).unwrap();
    let width = model.cfg.d_model;
    let at = |hook: &str, asks: bool| {
        let kwargs = if asks { serde_json::json!({"center_writing_weights": true}) } else { serde_json::json!({}) };
        let cfg = serde_json::json!({"metadata": {"hook_name": hook, "model_name": "gpt2", "model_from_pretrained_kwargs": kwargs}});
        cfg.as_object().unwrap().clone()
    };
    let processed = model.clone().processed(WeightProcessing { center_writing_weights: true, ..Default::default() });
    let tokens = [3u32, 17, 42, 9, 5];
    let loaded = |m: &saelab::model::Model| LoadedModel::new(Rc::new(m.clone()), &Backend::Cpu).unwrap();
    let (as_loaded, reference) = (loaded(&model), loaded(&processed));
    for (hook_name, centred) in [("blocks.1.hook_resid_pre", true), ("blocks.0.hook_mlp_out", true), ("blocks.1.attn.hook_z", false)] {
        let hook = model.cfg.hook_point(hook_name).unwrap();
        let d = model.cfg.hook_width(hook);
        let asks = saelab::sae::random::random_sae_with("topk", d, 16, 2, 1, at(hook_name, true));
        let asks = LoadedSae::new(Rc::new(asks), &Backend::Cpu).unwrap();
        let here = pollster::block_on(lm::run_text(&as_loaded, &asks, &tokens)).unwrap();
        let want = pollster::block_on(lm::run_text(&reference, &asks, &tokens)).unwrap();
        let (_, raw) = saelab::model::cpu::run(&model, &tokens, &[hook], &[]).unwrap();
        let (_, processed_hook) = saelab::model::cpu::run(&processed, &tokens, &[hook], &[]).unwrap();
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(close(&here.hook_acts, &processed_hook[0]) < 1e-4, "{hook_name}: {}", close(&here.hook_acts, &processed_hook[0]));
        assert!(close(&here.sae_acts, &want.sae_acts) < 1e-4, "{hook_name}: features");
        // Centring changes the residual stream's values and leaves attn.hook_z alone.
        assert_eq!(close(&raw[0], &here.hook_acts) > 1e-3, centred, "{hook_name}");
        let splice = |m: &LoadedModel| pollster::block_on(lm::splice(m, &asks, &tokens, 0)).unwrap();
        let (a, b) = (splice(&as_loaded), splice(&reference));
        assert!((a.ce_spliced - b.ce_spliced).abs() < 1e-4 && (a.kl - b.kl).abs() < 1e-4, "{hook_name}: {a:?} vs {b:?}");
    }
    // Without the kwargs, the values are the model's own.
    let hook = model.cfg.hook_point("blocks.1.hook_resid_pre").unwrap();
    let plain = saelab::sae::random::random_sae_with("topk", width, 16, 2, 1, at("blocks.1.hook_resid_pre", false));
    let plain = LoadedSae::new(Rc::new(plain), &Backend::Cpu).unwrap();
    let (_, raw) = saelab::model::cpu::run(&model, &tokens, &[hook], &[]).unwrap();
    assert_eq!(pollster::block_on(lm::run_text(&as_loaded, &plain, &tokens)).unwrap().hook_acts, raw[0]);
}
