#!/usr/bin/env bash
# Trains the page's bundled SAEs with `saelab train` on the bundled model (www/models/kjv-gpt2),
# over the model's own training chapters of the KJV: TopK and BatchTopK, 1024 and 4096 latents, k =
# 16, at blocks.2.hook_resid_pre (the middle of its 4 layers), 500k tokens each. Each SAE goes to
# www/models/kjv-gpt2/saes/<name>/ with the run's final metrics in metrics.json beside the SAELens
# files. Names given after the corpus train only those (to run several at once).
#
#   apt-get install bible-kjv && cargo build --release
#   .venv/bin/python tools/train_bundled_model.py --write-corpus /tmp/kjv-train.txt
#   bash tools/train_bundled_saes.sh /tmp/kjv-train.txt [topk-1024 batchtopk-1024 topk-4096 batchtopk-4096]
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:?usage: train_bundled_saes.sh CORPUS.txt [NAME...]}
shift
names=${*:-topk-1024 batchtopk-1024 topk-4096 batchtopk-4096}
model=www/models/kjv-gpt2
mkdir -p $model/saes
for name in $names; do
  arch=${name%-*}
  dict=${name#*-}
  out=$model/saes/$name
  target/release/saelab train --model $model --hook blocks.2.hook_resid_pre --corpus "$corpus" --arch "$arch" --k 16 \
    --dict "$dict" --tokens 500000 --batch 1024 --lr 0.001 --context 128 --seed 1 --device cpu --save "$out" >"$out.metrics.tmp"
  mv "$out.metrics.tmp" "$out/metrics.json"
  echo "$name: $(cat "$out/metrics.json")"
done
