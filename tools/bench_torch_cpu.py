"""The PyTorch CPU peer of `saelab bench`'s CPU backend: SAELens's own code on random inputs at the
same sizes, on every core torch uses, one JSON line per workload (the names `saelab bench` uses):

- sae-standard, sae-topk: StandardSAE and TopKSAE `decode(encode(x))` on `--n` rows;
- train-topk: one TopKTrainingSAE step on a batch of `--train-batch` rows, as SAELens's
  `SAETrainer._train_step` takes it: `training_forward_pass` (MSE + AuxK over the dead latents,
  `dead_feature_window = 0`: a latent that did not fire in the previous step is dead, saelab's
  `dead_after_steps = 1`), the fire bookkeeping, `backward`, `clip_grad_norm_(1.0)`, Adam.

GFLOP/s are counted as `saelab bench` counts them: 2·d_in·d_sae per row for the encoder, the same
for a dense decoder, 2·k·d_in for TopK's; a training step 6·d_in·d_sae + 2·k·d_in a row.

    .venv/bin/python tools/bench_torch_cpu.py --n 1024 [--train-batch 1024] [--d-in 768]
        [--d-sae 24576] [--k 32] [--repeats 3]

Reports the median of `--repeats` timed runs after one warm-up run. `saelab bench` runs this
script itself when Python with sae_lens is there (`--peer auto`).
"""

import argparse
import json
import statistics
import time

import torch
from sae_lens import StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig
from sae_lens.saes.sae import TrainStepInput
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig


def median_seconds(repeats, work):
    work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def line(workload, rows, seconds, fastest, flops_per_row, a, note, **extra):
    return json.dumps({
        "workload": workload, "device": f"pytorch {torch.__version__} cpu ({torch.get_num_threads()} threads)",
        "rows": rows, "d_in": a.d_in, "d_sae": a.d_sae, "k": a.k, "seconds": seconds, "min_seconds": fastest,
        "repeats": a.repeats, "rows_per_s": rows / seconds, "gflop_per_s": flops_per_row * rows / seconds / 1e9,
        "note": note, **extra,
    })


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--train-batch", type=int, default=1024)
    ap.add_argument("--d-in", type=int, default=768)
    ap.add_argument("--d-sae", type=int, default=24576)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.manual_seed(7)
    dm = a.d_in * a.d_sae
    x = torch.randn(a.n, a.d_in)
    for arch in ["standard", "topk"]:
        if arch == "standard":
            sae = StandardSAE(StandardSAEConfig(d_in=a.d_in, d_sae=a.d_sae))
        else:
            sae = TopKSAE(TopKSAEConfig(d_in=a.d_in, d_sae=a.d_sae, k=a.k))
        # SAELens initialises some tensors to zeros; random weights keep the ReLU's density honest.
        with torch.no_grad():
            for p in sae.parameters():
                p.normal_(0.0, 0.02)
        flops_per_row = 2 * dm + (2 * a.k * a.d_in if arch == "topk" else 2 * dm)
        with torch.no_grad():
            seconds, fastest = median_seconds(a.repeats, lambda: sae.decode(sae.encode(x)))
        print(line(f"sae-{arch}", a.n, seconds, fastest, flops_per_row, a, f"SAELens {arch} decode(encode(x)), median of {a.repeats}"))

    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=a.d_in, d_sae=a.d_sae, k=a.k))
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-3, betas=(0.9, 0.999))
    batch = torch.randn(a.train_batch, a.d_in)
    since_fired = torch.zeros(a.d_sae)
    steps = [0]

    def train_step():
        # SAETrainer._train_step, with its dead_neurons property inlined (window 0); TopK has no
        # scheduled coefficients (TopKTrainingSAE.get_coefficients is empty).
        sae.train()
        out = sae.training_forward_pass(TrainStepInput(
            sae_in=batch, coefficients={}, dead_neuron_mask=since_fired > 0,
            n_training_steps=steps[0], is_logging_step=False,
        ))
        with torch.no_grad():
            did_fire = out.feature_acts.bool().float().sum(-2).bool()
            if did_fire.is_sparse:
                did_fire = did_fire.to_dense()
            since_fired.add_(1)
            since_fired[did_fire] = 0
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        steps[0] += 1

    seconds, fastest = median_seconds(a.repeats, train_step)
    print(line("train-topk", a.train_batch, seconds, fastest, 6 * dm + 2 * a.k * a.d_in, a,
               f"SAELens TopKTrainingSAE step (AuxK, backward, grad clip, Adam), median of {a.repeats}",
               dead_fraction=float((since_fired > 0).float().mean())))


if __name__ == "__main__":
    main()
