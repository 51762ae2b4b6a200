#!/usr/bin/env bash
# Evaluate a run at N images, the field's way (docs/evaluation.md, "At N = 10,000"), as a DVC experiment:
#   bash scripts/evaluate_at.sh N [dvc exp run options, e.g. -n NAME, --temp]
# N generated images against the first N held-out images, the floor from the first N training images against
# them, KID over 100 subsets of min(1000, N/2) (torch-fidelity's defaults at N >= 2000). Only the sampling,
# the real images' features, evaluate and the sweep re-run: the checkpoint and classifier are reused (and the
# real features, once computed for this data and N, come back from DVC's run cache).
set -euo pipefail
if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ || $1 -lt 4 ]]; then
  echo "usage: bash scripts/evaluate_at.sh N [dvc exp run options]  (N: a whole number >= 4)" >&2
  exit 2
fi
n=$1
shift
subset=$(( n / 2 < 1000 ? n / 2 : 1000 ))
dvc exp run "$@" -S sample.num_images="$n" -S evaluate.num_real="$n" \
  -S evaluate.kid_subset_size="$subset" -S evaluate.kid_subsets=100
