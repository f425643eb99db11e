//! Training SAEs on a language model's activations: harvesting stops at the hook and equals the
//! full forward's capture (CPU and GPU), the activation store serves every harvested row once per
//! pass through its mixing buffer and holds contexts out, the trainer learns (held-out FVU falls)
//! with CPU and GPU steps equal, and bad settings are refused by name. Fails without a GPU adapter.

mod common;

use std::path::Path;

use saelab::backend::Backend;
use saelab::gpu::model_runner::GpuModel;
use saelab::model::files::load_model_dir;
use saelab::model::{cpu, HookPoint, Model};
use saelab::train::activations::{ActivationStore, StoreConfig};
use saelab::train::lm_train::LmTrainer;
use saelab::train::sae_train::TrainArch;
use saelab::train::trainer::TrainConfig;

fn model() -> Model {
    load_model_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2/tied_f32")).unwrap()
}

/// A corpus of token ids with some structure (repeated phrases), 211-token vocabulary.
fn corpus(n: usize) -> Vec<u32> {
    (0..n as u32).map(|i| if i % 7 < 3 { 1 + (i % 7) * 5 } else { (i * 37 + i / 11) % 210 + 1 }).collect()
}

fn store_cfg(hook: &str, context: usize) -> StoreConfig {
    StoreConfig { hook: hook.parse().unwrap(), context, buffer_rows: 40, hold_out_every: 5, seed: 4 }
}

#[test]
fn harvesting_stops_at_the_hook_and_equals_the_full_forward() {
    let model = model();
    let gpu = common::gpu();
    let gpu_model = GpuModel::upload(&gpu, &model).unwrap();
    let tokens: Vec<u32> = corpus(29);
    for name in ["hook_embed", "blocks.0.attn.hook_z", "blocks.1.hook_resid_post", "blocks.2.hook_mlp_out", "ln_final.hook_normalized"] {
        let hook: HookPoint = name.parse().unwrap();
        let (_, full) = cpu::run_with_hooks(&model, &tokens, &[hook]).unwrap();
        let cpu_acts = cpu::activations_at(&model, &tokens, hook).unwrap();
        assert_eq!(cpu_acts, full[0], "{hook}: the CPU harvest is the full forward's capture");
        let gpu_acts = pollster::block_on(gpu_model.activations_at(&gpu, &tokens, hook)).unwrap();
        let worst = gpu_acts.iter().zip(&cpu_acts).map(|(a, b)| (a - b).abs() / (1.0 + b.abs())).fold(0.0f32, f32::max);
        assert!(gpu_acts.len() == cpu_acts.len() && worst <= 1e-4, "{hook}: GPU harvest differs by {worst}");
    }
    assert_eq!(model.cfg.extent_to_reach("blocks.0.hook_resid_pre".parse().unwrap()), (1, false));
    assert_eq!(model.cfg.extent_to_reach("blocks.2.hook_resid_post".parse().unwrap()), (3, false));
    assert_eq!(model.cfg.extent_to_reach("hook_pos_embed".parse().unwrap()), (0, false));
    assert_eq!(model.cfg.extent_to_reach("ln_final.hook_normalized".parse().unwrap()), (3, true));
    assert!(cpu::activations_at(&model, &tokens, "blocks.7.hook_resid_pre".parse().unwrap())
        .unwrap_err()
        .to_string()
        .contains("not a hook point"));
}

#[test]
fn the_store_serves_each_harvested_row_and_holds_contexts_out() {
    let model = model();
    let hook = "blocks.1.hook_resid_mid";
    let tokens = corpus(19 * 10);
    // Context 20 with BOS (token 0): 19 corpus tokens per context, 10 contexts, 2 held out.
    let mut store = ActivationStore::new(&model, &tokens, Some(0), store_cfg(hook, 20)).unwrap();
    assert_eq!(store.held_out_contexts().len(), 2);
    assert!(store.held_out_contexts().iter().all(|c| c.len() == 20 && c[0] == 0));
    assert_eq!(store.rows_per_epoch(), 8 * 19, "the BOS position is not a training row");
    // Every training row, as the model computes it in its context.
    let d = model.cfg.d_model;
    let mut expected: Vec<Vec<f32>> = Vec::new();
    for (i, chunk) in tokens.chunks(19).enumerate() {
        if i % 5 == 4 {
            continue;
        }
        let context: Vec<u32> = std::iter::once(0).chain(chunk.iter().copied()).collect();
        let acts = cpu::activations_at(&model, &context, hook.parse().unwrap()).unwrap();
        expected.extend(acts[d..].chunks_exact(d).map(<[f32]>::to_vec));
    }
    // 80 rows in batches of 16: the buffer (40 rows, refilled below 20) has then harvested at most
    // 80 + 58 of the epoch's 152 rows, so none can have come round twice.
    let mut served: Vec<Vec<f32>> = Vec::new();
    while served.len() < 80 {
        let batch = pollster::block_on(store.next_batch(&common::model_on(&model, &Backend::Cpu), 16)).unwrap();
        served.extend(batch.chunks_exact(d).map(<[f32]>::to_vec));
    }
    // Each served row is a harvested one, and no row comes twice (two contexts that start with
    // the same token have the same first row, so this compares counts).
    let count = |rows: &[Vec<f32>], row: &Vec<f32>| rows.iter().filter(|r| *r == row).count();
    for row in &served {
        let (times_served, times_harvested) = (count(&served, row), count(&expected, row));
        assert!(times_harvested > 0, "a served row is not a harvested activation");
        assert!(times_served <= times_harvested, "a row served {times_served} times, harvested {times_harvested}");
    }
    // Mixed: the first batch does not come in corpus order.
    let first_rows: Vec<usize> = served[..16].iter().map(|r| expected.iter().position(|e| e == r).unwrap()).collect();
    assert!(first_rows.windows(2).any(|w| w[1] != w[0] + 1), "{first_rows:?}");
    // Past the end of the corpus the store starts another epoch.
    for _ in 0..30 {
        pollster::block_on(store.next_batch(&common::model_on(&model, &Backend::Cpu), 16)).unwrap();
    }
    assert!(store.epochs >= 1);

    // A batch larger than the buffer is served whole.
    let big = pollster::block_on(store.next_batch(&common::model_on(&model, &Backend::Cpu), 50)).unwrap();
    assert_eq!(big.len(), 50 * d);

    let err = |tokens: &[u32], cfg: StoreConfig| ActivationStore::new(&model, tokens, Some(0), cfg).err().expect("refused");
    assert!(err(&[], store_cfg(hook, 20)).contains("corpus is empty"));
    assert!(err(&tokens, store_cfg("blocks.9.hook_resid_pre", 20)).contains("hook"));
    assert!(err(&tokens, store_cfg(hook, 41)).contains("the model's context (40 positions)"));
    assert!(err(&[5, 300], store_cfg(hook, 20)).contains("token 300"));
}

fn train_config(steps: usize) -> TrainConfig {
    let mut cfg = TrainConfig::new(TrainArch::TopK { k: 6 }, 96, 64, steps, 2);
    cfg.lr = 3e-3;
    cfg.dead_after_steps = 5;
    cfg.resample_every = 20;
    cfg
}

#[test]
fn training_on_activations_learns_and_the_gpu_steps_equal_the_cpu_steps() {
    let model = model();
    let hook = "blocks.1.hook_resid_pre";
    let tokens = corpus(39 * 40);
    let cfg = StoreConfig { hook: hook.parse().unwrap(), context: 40, buffer_rows: 512, hold_out_every: 10, seed: 1 };
    let on_cpu = common::model_on(&model, &Backend::Cpu);
    let mut trainer =
        pollster::block_on(LmTrainer::new(&on_cpu, "tied_f32", &tokens, Some(0), cfg.clone(), train_config(120), &Backend::Cpu)).unwrap();
    let before = pollster::block_on(trainer.evaluate(&on_cpu)).unwrap();
    for _ in 0..120 {
        pollster::block_on(trainer.step(&on_cpu)).unwrap();
    }
    let after = pollster::block_on(trainer.evaluate(&on_cpu)).unwrap();
    assert!(after.fvu < 0.6 * before.fvu, "held-out FVU {} -> {}", before.fvu, after.fvu);
    assert!((after.l0 - 6.0).abs() < 1e-9 && after.tokens == 120 * 64);
    let recovered = after.ce_recovered.unwrap();
    assert!(recovered.is_finite() && after.ce_clean.is_some(), "{after:?}");
    let sae = trainer.training.to_sae(hook, "tied_f32");
    assert_eq!(sae.cfg.hook_name.as_deref(), Some(hook));

    // The same run with the SAE's steps on the GPU (the same harvested batches): same parameters
    // after 30 steps (through AuxK and a resampling at step 20), same held-out evaluation with the
    // model on the GPU too.
    let gpu = common::gpu_backend();
    let on_gpu = common::model_on(&model, &gpu);
    let mut a = pollster::block_on(LmTrainer::new(&on_cpu, "m", &tokens, Some(0), cfg.clone(), train_config(30), &Backend::Cpu)).unwrap();
    let mut b = pollster::block_on(LmTrainer::new(&on_cpu, "m", &tokens, Some(0), cfg, train_config(30), &gpu)).unwrap();
    for _ in 0..30 {
        pollster::block_on(a.step(&on_cpu)).unwrap();
        pollster::block_on(b.step(&on_cpu)).unwrap();
    }
    pollster::block_on(b.training.sync()).unwrap();
    let worst = a.training.params().w_dec.iter().zip(&b.training.params().w_dec).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(worst < 2e-3, "W_dec after 30 steps: CPU and GPU differ by {worst}");
    let (ea, eb) = (pollster::block_on(a.evaluate(&on_cpu)).unwrap(), pollster::block_on(b.evaluate(&on_gpu)).unwrap());
    assert!((ea.fvu - eb.fvu).abs() < 1e-2 * ea.fvu.max(1e-3) && ea.dead_fraction == eb.dead_fraction, "{ea:?} vs {eb:?}");
}
