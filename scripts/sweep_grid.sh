#!/usr/bin/env bash
# The sampler x NFE grid of docs/ablation.md ("Round 5") as one DVC experiment: the sweep stage with every
# sampler at about 5, 10, 15, 25 and 50 network evaluations per image, 500 images each, scored with the
# evaluate stage's KID protocol (50 subsets of 250). It replaces the default (smaller) sweep.points; other
# stages re-run only if the arguments change their params (a design's -S keys retrain it first).
#   bash scripts/sweep_grid.sh NAME [dvc exp run arguments, e.g. -S diffusion.prediction=v]
# About 17 minutes of sweep on a 2-core CPU (22 points).
set -euo pipefail
name="${1:?usage: bash scripts/sweep_grid.sh NAME [dvc exp run arguments]}"
shift
point() { printf '%s: {sampler: %s, steps: %s, eta: %s, clip_x0: false}' "$1" "$2" "$3" "$4"; }
points=()
for s in 5 10 15 25 50; do points+=("$(point "ddim${s}_eta1" ddim "$s" 1.0)"); done
for s in 10 50; do points+=("$(point "ddim${s}_eta0" ddim "$s" 0.0)"); done
for s in 5 10 15 25 50; do points+=("$(point "dpm2m_$s" dpmpp_2m "$s" 0.0)"); done
for s in 5 10 15 25 50; do points+=("$(point "sde2m_$s" dpmpp_2m_sde "$s" 0.0)"); done
for s in 3 5 8 13 25; do points+=("$(point "heun$s" heun "$s" 0.0)"); done   # NFE 2s - 1: 5, 9, 15, 25, 49
grid="$(IFS=,; echo "{${points[*]}}")"
dvc exp run -n "$name" "$@" \
  -S sweep.num_images=500 -S sweep.batch_size=250 -S sweep.kid_subset_size=250 -S sweep.kid_subsets=50 \
  -S sweep.guidance_point=ddim50_eta1 -S '~sweep.points' -S "+sweep.points=$grid"
