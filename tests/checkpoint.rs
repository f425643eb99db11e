//! Checkpoints of a training run on a language model's activations: a run saved, written out, read
//! back and resumed takes exactly the steps the uninterrupted run takes (CPU bit for bit, GPU
//! within rounding), and a checkpoint from another model or corpus, or a damaged one, is refused
//! with what is wrong. Fails without a GPU adapter.

mod common;

use std::path::Path;

use saelab::backend::Backend;
use saelab::lm::LoadedModel;
use saelab::model::files::load_model_dir;
use saelab::model::Model;
use saelab::train::activations::StoreConfig;
use saelab::train::checkpoint::{read_header, Checkpoint};
use saelab::train::lm_train::LmTrainer;
use saelab::train::sae_train::TrainArch;
use saelab::train::trainer::TrainConfig;

fn model() -> Model {
    load_model_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2/tied_f32")).unwrap()
}

fn corpus(n: usize) -> Vec<u32> {
    (0..n as u32).map(|i| if i % 7 < 3 { 1 + (i % 7) * 5 } else { (i * 37 + i / 11) % 210 + 1 }).collect()
}

const HOOK: &str = "blocks.1.hook_resid_pre";

fn store_cfg() -> StoreConfig {
    // A buffer of 100 rows and batches of 24: refills land mid-run, so the saved buffer matters.
    StoreConfig { hook: HOOK.parse().unwrap(), context: 30, buffer_rows: 100, hold_out_every: 10, seed: 3 }
}

fn train_cfg(arch: TrainArch, steps: usize) -> TrainConfig {
    let mut cfg = TrainConfig::new(arch, 53, 24, steps, 5);
    cfg.lr = 3e-3;
    cfg.dead_after_steps = 4;
    cfg.resample_every = 9;
    cfg
}

/// A new run trained on `backend`, harvesting on the CPU reference.
fn new_trainer(model: &Model, tokens: &[u32], cfg: TrainConfig, backend: &Backend) -> LmTrainer {
    let model = common::model_on(model, &Backend::Cpu);
    pollster::block_on(LmTrainer::new(&model, "tied_f32", tokens, Some(0), store_cfg(), cfg, backend)).unwrap()
}

fn steps(trainer: &mut LmTrainer, model: &Model, n: usize) {
    let model: LoadedModel = common::model_on(model, &Backend::Cpu);
    for _ in 0..n {
        pollster::block_on(trainer.step(&model)).unwrap();
    }
}

/// Saves `trainer` through bytes and resumes it on `backend`, as the page does after a reload.
fn round_trip(trainer: &LmTrainer, model: &Model, tokens: &[u32], backend: &Backend) -> LmTrainer {
    let extra = serde_json::json!({ "settings": { "dict": "53" }, "evals": [1, 2] });
    let bytes = pollster::block_on(trainer.checkpoint(extra.clone())).unwrap().serialize();
    let header = read_header("run.ckpt", &bytes).unwrap();
    assert_eq!((header.step, header.extra.clone(), header.model_name.as_str()), (trainer.training.step, extra, "tied_f32"));
    LmTrainer::resume(model, tokens, Some(0), Checkpoint::parse("run.ckpt", &bytes).unwrap(), backend).unwrap()
}

#[test]
fn a_resumed_run_takes_exactly_the_steps_of_an_uninterrupted_one() {
    let model = model();
    let tokens = corpus(29 * 30);
    // BatchTopK: its running threshold, AuxK's dead-latent counters and resampling all carry over.
    for arch in [TrainArch::BatchTopK { k: 5 }, TrainArch::JumpRelu { l0: 1e-3, bandwidth: 0.05 }] {
        let mut whole = new_trainer(&model, &tokens, train_cfg(arch, 40), &Backend::Cpu);
        steps(&mut whole, &model, 40);
        let mut first = new_trainer(&model, &tokens, train_cfg(arch, 40), &Backend::Cpu);
        steps(&mut first, &model, 17);
        let mut resumed = round_trip(&first, &model, &tokens, &Backend::Cpu);
        assert_eq!(resumed.training.step, 17);
        steps(&mut resumed, &model, 23);
        assert_eq!(resumed.training.params(), whole.training.params(), "{arch:?}: the resumed run's parameters");
        assert_eq!(resumed.training.batch_topk_threshold.to_bits(), whole.training.batch_topk_threshold.to_bits());
        assert_eq!(resumed.training.dead_mask(), whole.training.dead_mask());
        assert_eq!(resumed.store.position(), whole.store.position(), "the store is where the uninterrupted one is");
        assert_eq!(resumed.store.epochs, whole.store.epochs);
        assert!(whole.store.epochs >= 1, "the run crossed an epoch boundary");
        let (a, b) = (
            pollster::block_on(whole.evaluate(&common::model_on(&model, &Backend::Cpu))).unwrap(),
            pollster::block_on(resumed.evaluate(&common::model_on(&model, &Backend::Cpu))).unwrap(),
        );
        assert_eq!(a, b);
    }
}

#[test]
fn a_run_on_the_gpu_saves_from_and_resumes_on_the_gpu() {
    let model = model();
    let tokens = corpus(29 * 30);
    let gpu = common::gpu_backend();
    let cfg = train_cfg(TrainArch::TopK { k: 6 }, 24);
    let mut whole = new_trainer(&model, &tokens, cfg.clone(), &gpu);
    steps(&mut whole, &model, 24);
    pollster::block_on(whole.training.sync()).unwrap();

    let mut first = new_trainer(&model, &tokens, cfg, &gpu);
    steps(&mut first, &model, 11);
    // The checkpoint reads parameters and Adam's moments back from the GPU; the resumed trainer
    // takes them (and Adam's step count) back there.
    let mut resumed = round_trip(&first, &model, &tokens, &gpu);
    steps(&mut resumed, &model, 13);
    pollster::block_on(resumed.training.sync()).unwrap();
    let worst =
        whole.training.params().w_dec.iter().zip(&resumed.training.params().w_dec).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "W_dec after 24 steps, resumed at 11 vs uninterrupted: differs by {worst}");
    assert_eq!(resumed.training.dead_mask(), whole.training.dead_mask());
}

#[test]
fn a_checkpoint_of_another_run_or_a_damaged_one_is_refused() {
    let model = model();
    let tokens = corpus(29 * 30);
    let mut trainer = new_trainer(&model, &tokens, train_cfg(TrainArch::TopK { k: 5 }, 10), &Backend::Cpu);
    steps(&mut trainer, &model, 3);
    let checkpoint = pollster::block_on(trainer.checkpoint(serde_json::Value::Null)).unwrap();
    let bytes = checkpoint.serialize();
    let estimate = trainer.checkpoint_size() as f64;
    assert!(bytes.len() as f64 > estimate && (bytes.len() as f64) < 1.15 * estimate, "checkpoint_size {estimate} vs {} bytes", bytes.len());
    let resume =
        |model: &Model, tokens: &[u32], c: Checkpoint| LmTrainer::resume(model, tokens, Some(0), c, &Backend::Cpu).err().expect("refused");

    // Another corpus, another model.
    assert!(resume(&model, &corpus(29 * 31), checkpoint.clone()).contains("another corpus (870 tokens)"));
    let mut other = model.clone();
    other.weights.embed[0] += 0.5;
    assert!(resume(&other, &tokens, checkpoint.clone()).contains("another model (tied_f32)"));

    // Truncated anywhere, grown, or not a checkpoint at all.
    for cut in (0..bytes.len()).step_by(bytes.len() / 37) {
        assert!(Checkpoint::parse("run.ckpt", &bytes[..cut]).is_err(), "truncated to {cut} bytes");
    }
    let mut grown = bytes.clone();
    grown.extend([7u8; 100]);
    assert!(Checkpoint::parse("run.ckpt", &grown).is_err(), "extra bytes after the data");
    assert!(Checkpoint::parse("run.ckpt", b"not a checkpoint at all").unwrap_err().to_string().starts_with("run.ckpt: "));
    let sae_weights = saelab::sae::files::serialize_sae(&trainer.to_sae()).1;
    assert!(Checkpoint::parse("sae_weights.safetensors", &sae_weights).unwrap_err().to_string().contains("not a saelab checkpoint"));

    // A header of another version, or one that does not fit its tensors or the corpus.
    let edited = |edit: &dyn Fn(&mut Checkpoint)| {
        let mut c = checkpoint.clone();
        edit(&mut c);
        c.serialize()
    };
    let version = edited(&|c| c.header.version = 2);
    assert!(Checkpoint::parse("run.ckpt", &version).unwrap_err().to_string().contains("version 2; this saelab reads version 1"));
    assert!(read_header("run.ckpt", &version).is_err());
    let wider = edited(&|c| c.trainer.cfg.dict = 70);
    let e = Checkpoint::parse("run.ckpt", &wider).unwrap_err().to_string();
    assert!(e.contains("params.W_enc has shape [60, 53], expected [60, 70]"), "{e}");
    let huge = edited(&|c| c.trainer.cfg.dict = 1 << 40);
    assert!(
        Checkpoint::parse("run.ckpt", &huge).unwrap_err().to_string().contains("expected [60, 1099511627776]"),
        "a size in the header is not allocated"
    );
    let counters = Checkpoint::parse(
        "run.ckpt",
        &edited(&|c| {
            c.trainer.steps_since_fired.pop();
        }),
    )
    .unwrap();
    assert!(resume(&model, &tokens, counters).contains("inconsistent"));
    let order = Checkpoint::parse("run.ckpt", &edited(&|c| c.store.order[0] = c.store.order[1])).unwrap();
    assert!(resume(&model, &tokens, order).contains("does not fit this corpus"));
    let mut nan = checkpoint.clone();
    nan.trainer.adam_v.w_dec[3] = f32::NAN;
    assert!(resume(&model, &tokens, Checkpoint::parse("run.ckpt", &nan.serialize()).unwrap()).contains("not all finite"));
}
