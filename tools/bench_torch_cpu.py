"""The PyTorch CPU peer of `saelab bench --device cpu`: SAELens's own StandardSAE and TopKSAE
`decode(encode(x))` on random inputs at the same sizes, on every core torch uses, one JSON line
per architecture (GFLOP/s counted as `saelab bench` counts them: 2·d_in·d_sae per row for the
encoder, the same for a dense decoder, 2·k·d_in for TopK's).

    .venv/bin/python tools/bench_torch_cpu.py --n 1024 [--d-in 768] [--d-sae 24576] [--k 32] [--repeats 3]

Reports the median of `--repeats` timed runs after one warm-up run.
"""

import argparse
import json
import statistics
import time

import torch
from sae_lens import StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--d-in", type=int, default=768)
    ap.add_argument("--d-sae", type=int, default=24576)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.manual_seed(7)
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
        flops_per_row = 2 * a.d_in * a.d_sae + (2 * a.k * a.d_in if arch == "topk" else 2 * a.d_in * a.d_sae)
        times = []
        with torch.no_grad():
            sae.decode(sae.encode(x))
            for _ in range(a.repeats):
                start = time.perf_counter()
                sae.decode(sae.encode(x))
                times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        print(json.dumps({
            "arch": arch, "device": f"pytorch {torch.__version__} cpu ({torch.get_num_threads()} threads)",
            "n": a.n, "d_in": a.d_in, "d_sae": a.d_sae, "k": a.k if arch == "topk" else None,
            "seconds": seconds, "rows_per_s": a.n / seconds, "gflop_per_s": flops_per_row * a.n / seconds / 1e9,
            "note": f"SAELens {arch} decode(encode(x)), median of {a.repeats}",
        }))


if __name__ == "__main__":
    main()
