#!/usr/bin/env bash
# After `latentshop train --preset celeba -o runs/celeba` has finished: make the colour model the bundled
# `default`, with its evaluators, encoders and edit files. Each step is resumable or quick to redo; run
# from the repository root:  tools/ship_default.sh [model|encoders|edits|all]   (RUN=runs/celeba KIMG=...)
# Training data is CelebA (non-commercial research use): the model ships with that notice; no image ships.
set -euo pipefail
LS=${LS:-.venv/bin/latentshop}
RUN=${RUN:-runs/celeba}
KIMG=${KIMG:-40}
ZOO=src/latentshop/zoo/default
what=${1:-all}
if [[ $what == all || $what == model ]]; then
  test -f "$RUN/model/config.json" || { echo "no finished run at $RUN (train it, or export its checkpoint first)"; exit 1; }
  mkdir -p "$ZOO"
  cp "$RUN/model/config.json" "$RUN/model/model.safetensors" "$ZOO/"
  printf '{\n  "labels": "celeba",\n  "parts": "landmarks",\n  "identity": "identity"\n}\n' > "$ZOO/evaluators.json"
  echo "now add description, notice (CelebA: non-commercial research use) and training facts to $ZOO/config.json 'info',"
  echo "and drop the alias default -> lfw (checkpoints/zoo.py ALIASES; training/presets.py PRESET_ALIASES -> celeba)"
fi
if [[ $what == all || $what == encoders ]]; then
  for kind in e4e psp; do
    out=runs/encoders/default-$kind
    if [ -d "$out/encoder" ]; then echo "$out done"; continue; fi
    $LS train-encoder --kind "$kind" --model default --data ../shared/data/celeba-faces --split train --kimg "$KIMG" \
        --identity 0.1 --snapshot-kimg 4 --outdir "$out" --resume
    mkdir -p "$ZOO/encoders/$kind" && cp "$out/encoder/"* "$ZOO/encoders/$kind/"
  done
fi
if [[ $what == all || $what == edits ]]; then
  out=$ZOO/edits
  mkdir -p "$out"
  $LS directions compute --method interfacegan --model default --evaluator celeba --n 20000 --out $out/interfacegan.npz --force --device cpu
  $LS directions compute --method interfacegan --model default --evaluator landmarks --attributes yaw,pitch --n 20000 \
      --out $out/interfacegan-pose.npz --force --device cpu
  $LS directions compute --method ganspace --model default --n 100000 --components 20 --out $out/ganspace.npz --force --device cpu
  $LS directions compute --method sefa --model default --components 20 --out $out/sefa.npz --force --device cpu
  $LS stylespace find --model default --device cpu --out $out/stylespace.npz -a smile -a mouth_open -a glasses -a age -a makeup
fi
