#!/usr/bin/env bash
# Re-create the edit files shipped with the bundled models (src/latentshop/zoo/<model>/edits/).
#   tools/ship_edits.sh [all|directions|stylespace]
# Each step is one `latentshop` command; all together about 10 minutes on a 2-core CPU. Run from the repository root.
set -euo pipefail
LS=${LS:-.venv/bin/latentshop}
what=${1:-all}
if [[ $what == all || $what == directions ]]; then
  for model in synthetic lfw; do
    out=src/latentshop/zoo/$model/edits
    mkdir -p "$out"
    $LS directions compute --method interfacegan --model $model --n 20000 --out $out/interfacegan.npz --force --device cpu
    $LS directions compute --method ganspace --model $model --n 100000 --components 20 --out $out/ganspace.npz --force --device cpu
    $LS directions compute --method sefa --model $model --components 20 --out $out/sefa.npz --force --device cpu
  done
fi
if [[ $what == all || $what == stylespace ]]; then
  # synthetic: candidates from relevance and from locality inside each factor's part (part segmenter)
  $LS stylespace find --model synthetic --device cpu --out src/latentshop/zoo/synthetic/edits/stylespace.npz \
    -a smile -a eye_open -a eye_size -a brow -a hair_colour -a hair_length -a glasses -a beard -a age -a skin_tone \
    -a face_width -a yaw -a light -a background_hue:cos -a clothing_hue:cos
  $LS stylespace find --model lfw --device cpu --out src/latentshop/zoo/lfw/edits/stylespace.npz -a smile -a surprise
fi
