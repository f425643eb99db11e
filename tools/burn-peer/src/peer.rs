//! burn-wgpu as the peer of saelab's GPU backend: the workloads of `saelab bench` written the way
//! a burn user writes them, on burn's default wgpu device (the adapter wgpu picks for saelab too),
//! each the median of `repeats` after a warm-up, timed to `Device::sync`. The design card's
//! independent peer: burn's autotuned matmul, its `topk_with_indices`, and a TopK training step
//! through burn's autodiff and Adam. Its own crate, so saelab's build never compiles burn.

use std::time::Instant;

use burn::module::{Module, Param};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Distribution, IndexingUpdateOp, Int, Tensor};

/// A TopK SAE's parameters (SAELens's layout: W_enc `[d_in, d_sae]`, W_dec `[d_sae, d_in]`).
#[derive(Module, Debug)]
struct TopKSae {
    w_enc: Param<Tensor<2>>,
    b_enc: Param<Tensor<1>>,
    w_dec: Param<Tensor<2>>,
    b_dec: Param<Tensor<1>>,
}

impl TopKSae {
    fn random(d_in: usize, d_sae: usize, device: &Device) -> TopKSae {
        let normal = Distribution::Normal(0.0, 0.02);
        TopKSae {
            w_enc: Param::from_tensor(Tensor::random([d_in, d_sae], normal, device)),
            b_enc: Param::from_tensor(Tensor::zeros([d_sae], device)),
            w_dec: Param::from_tensor(Tensor::random([d_sae, d_in], normal, device)),
            b_dec: Param::from_tensor(Tensor::zeros([d_in], device)),
        }
    }
}

/// `relu` of each row's `k` largest of `pre`, scattered into zeros of pre's shape.
fn top_k_dense(pre: Tensor<2>, k: usize) -> Tensor<2> {
    let (values, indices) = pre.clone().topk_with_indices(k, 1);
    pre.zeros_like().scatter(1, indices, relu(values), IndexingUpdateOp::Add)
}

/// Sparse decode from TopK lists: the selected decoder rows, weighted and summed per row.
fn decode_lists(values: Tensor<2>, indices: Tensor<2, Int>, w_dec: Tensor<2>, b_dec: Tensor<1>) -> Tensor<2> {
    let [n, k] = values.dims();
    let d_in = w_dec.dims()[1];
    let rows: Tensor<2> = w_dec.select(0, indices.reshape([n * k]));
    let weighted = rows.reshape([n, k, d_in]) * values.unsqueeze_dim::<3>(2);
    weighted.sum_dim(1).reshape([n, d_in]) + b_dec.unsqueeze()
}

fn median_seconds(repeats: usize, device: &Device, mut work: impl FnMut()) -> (f64, f64) {
    work();
    device.sync().expect("burn's device failed");
    let mut times: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let start = Instant::now();
            work();
            device.sync().expect("burn's device failed");
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let n = times.len();
    let median = if n % 2 == 1 { times[n / 2] } else { 0.5 * (times[n / 2 - 1] + times[n / 2]) };
    (median, times[0])
}

/// The peer's lines, keyed by the workload names `saelab bench` uses, plus plain `matmul`.
pub fn run(n: usize, d_in: usize, d_sae: usize, k: usize, train_batch: usize, repeats: usize) -> Vec<serde_json::Value> {
    let device = Device::default();
    let device_name = format!("burn-wgpu 0.22.1 ({device:?})");
    let dm = (d_in * d_sae) as f64;
    let line = |workload: &str, rows: usize, (median, min): (f64, f64), flops_per_row: f64, note: &str| {
        serde_json::json!({
            "workload": workload, "device": device_name, "rows": rows, "seconds": median, "min_seconds": min, "repeats": repeats,
            "rows_per_s": rows as f64 / median, "gflop_per_s": flops_per_row * rows as f64 / median / 1e9, "note": note,
        })
    };
    let x: Tensor<2> = Tensor::random([n, d_in], Distribution::Normal(0.0, 1.0), &device);
    let sae = TopKSae::random(d_in, d_sae, &device);
    let (w_enc, b_enc, w_dec, b_dec) = (sae.w_enc.val(), sae.b_enc.val(), sae.w_dec.val(), sae.b_dec.val());
    let mut lines = Vec::new();

    let t = median_seconds(repeats, &device, || {
        let _ = x.clone().matmul(w_enc.clone());
    });
    lines.push(line("matmul", n, t, 2.0 * dm, "x·W_enc, burn's autotuned matmul"));

    let t = median_seconds(repeats, &device, || {
        let acts = relu(x.clone().matmul(w_enc.clone()) + b_enc.clone().unsqueeze());
        let _ = acts.matmul(w_dec.clone()) + b_dec.clone().unsqueeze();
    });
    lines.push(line("sae-standard", n, t, 4.0 * dm, "relu(x·W_enc + b_enc)·W_dec + b_dec"));

    let t = median_seconds(repeats, &device, || {
        let pre = x.clone().matmul(w_enc.clone()) + b_enc.clone().unsqueeze();
        let (values, indices) = pre.topk_with_indices(k, 1);
        let _ = decode_lists(relu(values), indices, w_dec.clone(), b_dec.clone());
    });
    lines.push(line("sae-topk", n, t, 2.0 * dm + 2.0 * (k * d_in) as f64, "topk_with_indices, then the selected W_dec rows weighted and summed"));

    // One TopK training step as SAELens takes it (MSE + AuxK over latents that did not fire in
    // the previous step, Adam), through burn's autodiff.
    let train_device = device.clone().autodiff();
    let batch: Tensor<2> = Tensor::random([train_batch, d_in], Distribution::Normal(0.0, 1.0), &train_device);
    let mut model = TopKSae::random(d_in, d_sae, &train_device);
    let mut optimizer = AdamConfig::new().with_epsilon(1e-8).init();
    let k_aux = (d_in / 2).max(1);
    let mut fired: Tensor<1> = Tensor::ones([d_sae], &train_device);
    let t = median_seconds(repeats, &train_device, || {
        let m = model.clone();
        let sae_in = batch.clone() - m.b_dec.val().unsqueeze();
        let pre = sae_in.matmul(m.w_enc.val()) + m.b_enc.val().unsqueeze();
        let acts = top_k_dense(pre.clone(), k);
        let recon = acts.clone().matmul(m.w_dec.val()) + m.b_dec.val().unsqueeze();
        let residual = (batch.clone() - recon.clone()).detach();
        let mse = (recon - batch.clone()).square().sum_dim(1).mean();
        // Dead latents: pre-activations of live ones pushed far below any dead one's.
        let dead = fired.clone().lower_elem(0.5).float().detach();
        let masked = pre * dead.clone().unsqueeze() + (dead.clone().unsqueeze::<2>() - 1.0) * 1e30;
        let aux_acts = top_k_dense(masked, k_aux);
        let aux_recon = aux_acts.matmul(m.w_dec.val());
        let num_dead = dead.sum();
        let aux_scale = (num_dead / k_aux as f32).clamp_max(1.0) / 32.0;
        let aux = (aux_recon - residual).square().sum_dim(1).mean() * aux_scale;
        fired = acts.detach().sum_dim(0).reshape([d_sae]).greater_elem(0.0).float();
        let grads = (mse + aux).backward();
        let grads = GradientsParams::from_grads(grads, &m);
        model = optimizer.step(1e-3, m, grads);
    });
    lines.push(line("train-topk", train_batch, t, 6.0 * dm + 2.0 * (k * d_in) as f64, "TopK SAE step through burn's autodiff: MSE + AuxK (dense top-k scattered), backward, Adam"));
    lines
}
