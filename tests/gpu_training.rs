//! GPU SAE training against its CPU reference (`train::sae_train`): gradients of one batch, then
//! whole steps (Adam and the unit-norm decoder constraint), on random data at sizes that are not
//! multiples of any workgroup. Fails without a GPU adapter.

mod common;

use common::gpu;
use saelab::random::Rng;
use saelab::sae::SaeWeights;
use saelab::train::gpu_trainer::GpuTrainer;
use saelab::train::sae_train::init_weights;
use saelab::train::sae_train::{apply_constraints, loss_and_grads, remove_parallel_decoder_grad, Adam, TrainArch};

const ALL_ARCHS: [TrainArch; 5] = [
    TrainArch::Standard { l1: 0.3 },
    TrainArch::TopK { k: 4 },
    TrainArch::BatchTopK { k: 3 },
    TrainArch::JumpRelu { l0: 0.4, bandwidth: 0.05 },
    TrainArch::Gated { l1: 0.3 },
];

fn problem(arch: TrainArch, d: usize, m: usize, batch: usize, seed: u64) -> (SaeWeights, Vec<f32>) {
    let mut rng = Rng::new(seed);
    let mut p = init_weights(arch, d, m, seed);
    *p.encoder.pre_bias_mut() = rng.normals(m, 0.2);
    p.b_dec = rng.normals(d, 0.2);
    p.w_enc.iter_mut().for_each(|w| *w += 0.1 * rng.normal());
    // Thresholds spread over the pre-activations' range, so that many sit inside the STE window.
    if let Some(t) = p.tensor_mut("threshold") {
        t.iter_mut().for_each(|t| *t = 0.5 * rng.uniform());
    }
    if let Some(r) = p.tensor_mut("r_mag") {
        r.iter_mut().for_each(|r| *r = 0.3 * rng.normal());
    }
    if let Some(b) = p.tensor_mut("b_mag") {
        b.iter_mut().for_each(|b| *b = 0.2 * rng.normal());
    }
    (p, rng.normals(batch * d, 1.0))
}

/// Per tensor: |gpu − cpu| ≤ 1e-4 · max|cpu| + 1e-6 (f32 sums in another order).
fn assert_params_close(what: &str, gpu: &SaeWeights, cpu: &SaeWeights) {
    assert_params_within(what, gpu, cpu, 1e-4, 1e-6);
}

/// Every parameter within `tolerance` of its tensor's largest magnitude, plus `absolute`.
fn assert_params_within(what: &str, gpu: &SaeWeights, cpu: &SaeWeights, tolerance: f32, absolute: f32) {
    assert_eq!(gpu.encoder.kind(), cpu.encoder.kind(), "{what}: tensors");
    for ((name, a), (_, b)) in gpu.tensors().into_iter().zip(cpu.tensors()) {
        assert_eq!(a.len(), b.len(), "{what} {name}: length");
        let scale = b.iter().fold(0.0f32, |s, v| s.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
            assert!((x - y).abs() <= tolerance * scale + absolute, "{what} {name}[{i}]: gpu {x}, cpu {y} (scale {scale})");
        }
    }
}

#[test]
fn gradients_match_the_cpu_reference() {
    let gpu = gpu();
    let (d, m, batch) = (21, 100, 53);
    let mut dead = vec![false; m];
    for j in (0..m).step_by(3) {
        dead[j] = true;
    }
    let mut few = vec![false; m];
    few[4] = true;
    few[77] = true;
    for (arch, dead) in [
        (TrainArch::Standard { l1: 0.4 }, vec![false; m]),
        (TrainArch::TopK { k: 5 }, vec![false; m]),
        (TrainArch::TopK { k: 5 }, dead.clone()), // AuxK with k_aux = d/2 = 10 of 34 dead
        (TrainArch::TopK { k: 7 }, few.clone()),  // AuxK with fewer dead than k_aux
        (TrainArch::BatchTopK { k: 6 }, vec![false; m]),
        (TrainArch::BatchTopK { k: 6 }, dead.clone()),
        (TrainArch::JumpRelu { l0: 0.4, bandwidth: 0.05 }, vec![false; m]),
        (TrainArch::Gated { l1: 0.4 }, vec![false; m]),
    ] {
        let (p, x) = problem(arch, d, m, batch, 9);
        let (_, cpu) = loss_and_grads(&p, arch, &x, &dead, 0.6);
        let trainer = GpuTrainer::new(&gpu, &p, arch, batch).unwrap();
        let got = pollster::block_on(trainer.gradients(&gpu, &x, &dead, 0.6)).unwrap();
        assert_params_close(&format!("{arch:?} gradients"), &got, &cpu);
    }
}

/// AuxK at a width whose k_aux = d_in/2 (301) is longer than a TopK list (256): GPT-2's 768 and
/// every larger model are such widths; the GPU selects densely and must still match.
#[test]
fn auxk_gradients_match_at_widths_past_the_list_length() {
    let gpu = gpu();
    let (d, m, batch) = (603, 1100, 9);
    let dead: Vec<bool> = (0..m).map(|j| j % 2 == 1).collect(); // 550 dead, more than k_aux
    let arch = TrainArch::TopK { k: 13 };
    let (p, x) = problem(arch, d, m, batch, 17);
    let (_, cpu) = loss_and_grads(&p, arch, &x, &dead, 1.0);
    let trainer = GpuTrainer::new(&gpu, &p, arch, batch).unwrap();
    let got = pollster::block_on(trainer.gradients(&gpu, &x, &dead, 1.0)).unwrap();
    assert_params_close("TopK with AuxK at d_in 603", &got, &cpu);
}

#[test]
fn steps_match_the_cpu_reference() {
    let gpu = gpu();
    let (d, m, batch) = (19, 70, 33);
    for arch in ALL_ARCHS {
        let (mut cpu, _) = problem(arch, d, m, batch, 12);
        apply_constraints(arch, &mut cpu);
        let mut trainer = GpuTrainer::new(&gpu, &cpu, arch, batch).unwrap();
        let mut adam = Adam::new(&cpu);
        let mut rng = Rng::new(13);
        for step in 0..4 {
            let x = rng.normals(batch * d, 1.0);
            let dead: Vec<bool> = (0..m).map(|j| step >= 2 && j % 5 == 0).collect();
            let (stats, mut g) = loss_and_grads(&cpu, arch, &x, &dead, 1.0);
            if arch.unit_decoder() {
                remove_parallel_decoder_grad(&cpu, &mut g);
            }
            adam.step(&mut cpu, &g, 0.01);
            apply_constraints(arch, &mut cpu);
            let result = pollster::block_on(trainer.step(&gpu, &x, &dead, 1.0, 0.01)).unwrap();
            let fired: Vec<bool> = result.fire_counts.iter().map(|&c| c > 0).collect();
            assert_eq!(fired, stats.fired, "{arch:?} step {step}: fired latents");
            // The same activation, summed in another order (see toy_run_on_both).
            let close = match (result.batch_min_act, stats.batch_min_act) {
                (Some(a), Some(b)) => (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                (a, b) => a == b,
            };
            assert!(
                close,
                "{arch:?} step {step}: BatchTopK's smallest kept activation {:?}, cpu {:?}",
                result.batch_min_act, stats.batch_min_act
            );
            let got = pollster::block_on(trainer.params(&gpu)).unwrap();
            assert_params_close(&format!("{arch:?} after step {step}"), &got, &cpu);
        }
    }
}

#[test]
fn toy_training_on_the_gpu_follows_the_cpu_trajectory() {
    for arch in [TrainArch::TopK { k: 2 }, TrainArch::BatchTopK { k: 2 }] {
        toy_run_on_both(arch);
    }
}

fn toy_run_on_both(arch: TrainArch) {
    use saelab::train::synthetic::ToyDataConfig;
    use saelab::train::toy::{ToyTrainConfig, ToyTrainer};
    let gpu = saelab::backend::Backend::Gpu(std::rc::Rc::new(gpu()));
    let data = ToyDataConfig::new(24, 12, 0.08, 3);
    let mut cfg = ToyTrainConfig::new(data, arch, 96, 32, 80);
    cfg.train.lr = 3e-3;
    cfg.train.dead_after_steps = 3; // so that AuxK takes part
    cfg.train.resample_every = 30; // and resampling, at steps 30 and 60
    let mut on_cpu = ToyTrainer::new(cfg.clone(), &saelab::backend::Backend::Cpu).unwrap();
    let mut on_gpu = ToyTrainer::new(cfg, &gpu).unwrap();
    // The CPU sums its products in matrixmultiply's blocked, fused order and the GPU in its own.
    // Adam amplifies that rounding where a gradient is near zero (a first step moves such a
    // parameter by lr · m/√v, a ratio rounding can change), and a selection decided by less than
    // the rounding (BatchTopK's threshold over a whole batch, most often) can go the other way,
    // after which the two are different runs. So the runs are compared every step within 5e-3 of
    // each tensor's scale plus two steps of lr = 3e-3 — a latent resampled or updated wrongly
    // moves by O(0.1–1) — up to the first dead-latent decision that differs, which must come
    // after AuxK has been used and the first resampling (step 30).
    let mut saw_dead = false;
    let mut compared = 0;
    for step in 1..=80 {
        pollster::block_on(on_cpu.step()).unwrap();
        pollster::block_on(on_gpu.step()).unwrap();
        if on_cpu.dead_mask() != on_gpu.dead_mask() {
            break;
        }
        pollster::block_on(on_gpu.sync()).unwrap();
        assert_params_within(
            &format!("{arch:?} toy run after {step} steps"),
            on_gpu.training.params(),
            on_cpu.training.params(),
            5e-3,
            2.0 * 3e-3,
        );
        saw_dead |= on_cpu.dead_mask().iter().any(|&d| d);
        compared = step;
    }
    assert!(saw_dead, "the run should exercise AuxK");
    assert!(compared > 30, "{arch:?}: a decision differed at step {}, before the first resampling was compared", compared + 1);
    if compared < 80 {
        eprintln!("{arch:?}: compared {compared} steps; step {} decided a near tie the other way", compared + 1);
        return;
    }
    let (a, b) = (on_gpu.training.batch_topk_threshold, on_cpu.training.batch_topk_threshold);
    assert!((a - b).abs() <= 1e-4 * b.abs(), "{arch:?} running threshold: gpu {a}, cpu {b}");
    if let TrainArch::BatchTopK { .. } = arch {
        assert!(b > 0.0, "the running threshold moved");
    }
    let (a, _) = on_cpu.evaluate(512);
    let (b, _) = on_gpu.evaluate(512);
    assert!((a.mmcs - b.mmcs).abs() < 1e-4, "mmcs cpu {} gpu {}", a.mmcs, b.mmcs);
}

#[test]
fn divergence_on_the_gpu_is_reported() {
    use saelab::train::synthetic::ToyDataConfig;
    use saelab::train::toy::{ToyTrainConfig, ToyTrainer};
    let gpu = saelab::backend::Backend::Gpu(std::rc::Rc::new(gpu()));
    let mut cfg = ToyTrainConfig::new(ToyDataConfig::new(8, 4, 0.3, 1), TrainArch::Standard { l1: 0.1 }, 8, 16, 20);
    cfg.train.lr = 1e30;
    let mut t = ToyTrainer::new(cfg, &gpu).unwrap();
    let before = t.training.params().clone();
    for _ in 0..20 {
        pollster::block_on(t.step()).unwrap();
    }
    let err = pollster::block_on(t.sync()).unwrap_err();
    assert!(err.contains("diverged"), "{err}");
    assert_eq!(t.training.params(), &before, "the last good parameters are kept");
}

#[test]
fn a_size_that_does_not_fit_the_adapter_says_what_would() {
    let gpu = gpu();
    let arch = TrainArch::TopK { k: 4 };
    let p = init_weights(arch, 16, 64, 1);
    let batch = (gpu.max_binding_bytes() / 4 / 64 + 1) as usize;
    let err = GpuTrainer::new(&gpu, &p, arch, batch).err().expect("too large").to_string();
    let max_batch = gpu.max_binding_bytes() / 4 / 64;
    assert!(err.contains(&format!("with dict 64 the batch can be at most {max_batch}")), "{err}");
}

#[test]
fn the_lab_times_each_device_and_picks_the_faster() {
    use saelab::backend::Backend;
    use saelab::train::lab::LabSettings;
    use saelab::train::toy::fastest_backend;
    let gpu = Backend::Gpu(std::rc::Rc::new(gpu()));
    let cfg = LabSettings::preset("superposition-2d").unwrap().to_config().unwrap();
    let backends = [Backend::Cpu, gpu.clone()];
    let (fastest, speeds) = pollster::block_on(fastest_backend(&cfg, &backends, 50.0)).unwrap();
    assert_eq!(speeds.len(), 2);
    assert_eq!((speeds[0].device.clone(), speeds[1].device.clone()), (Backend::Cpu.name(), gpu.name()));
    assert!(speeds.iter().all(|s| s.steps_per_s.is_finite() && s.steps_per_s > 0.0), "{speeds:?}");
    let other = 1 - fastest;
    assert!(speeds[fastest].steps_per_s >= speeds[other].steps_per_s, "{speeds:?} picked {fastest}");
    // One device alone is picked without question; none is an error.
    assert_eq!(pollster::block_on(fastest_backend(&cfg, &backends[..1], 1.0)).unwrap().0, 0);
    assert!(pollster::block_on(fastest_backend(&cfg, &[], 1.0)).is_err());
}
