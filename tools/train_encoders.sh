#!/bin/sh
# Trains the bundled encoders (pSp and e4e, ReStyle form) of both bundled models, one after another,
# as they were trained for the shipped files (about 25 minutes each on a 2-core CPU). Resumable:
# run it again after an interruption. Then copy runs/encoders/<model>-<kind>/encoder to
# src/latentshop/zoo/<model>/encoders/<kind>.
set -e
KIMG=${KIMG:-26}
for job in synthetic:psp synthetic:e4e lfw:e4e lfw:psp; do
  model=${job%%:*}; kind=${job##*:}
  if [ "$model" = synthetic ]; then data=synthetic:photo; split=""; else data=../shared/data/lfw-faces; split="--split train"; fi
  out=runs/encoders/$model-$kind
  if [ -d "$out/encoder" ]; then echo "$out done"; continue; fi
  ${PYTHON:-.venv/bin/python} -m latentshop.cli train-encoder --kind "$kind" --model "$model" --data "$data" $split --kimg "$KIMG" \
      --snapshot-kimg 4 --outdir "$out" --resume
done
