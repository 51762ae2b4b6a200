#!/usr/bin/env bash
# The whole pipeline on a tiny configuration (about two minutes on a 2-core CPU), as a DVC experiment:
# used by tests/test_e2e.py and by .github/workflows/pipeline.yml. Extra arguments go to `dvc exp run`.
# The sweep keeps three of its points (two DDIM, one DPM-Solver++) (`~key` deletes a key): each point costs an FID, about 3.5 s here.
set -euo pipefail
dvc exp run "$@" \
  -S prepare.train_limit=256 -S prepare.reference_limit=64 \
  -S 'model.unet.down_ch=[16,32,64]' -S 'model.unet.mid_ch=[64,64]' -S 'model.unet.up_ch=[64,32,16]' \
  -S model.unet.t_emb_dim=32 \
  -S train.epochs=2 -S train.batch_size=64 -S train.log_every=2 -S train.grid_images=4 -S train.grid_steps=4 \
  -S classifier.epochs=1 \
  -S sample.num_images=12 -S sample.steps=4 -S sample.batch_size=12 -S sample.grid_images=12 \
  -S evaluate.num_real=12 -S evaluate.batch_size=12 -S evaluate.kid_subset_size=6 -S evaluate.kid_subsets=10 \
  -S timestep_loss.num_images=16 -S timestep_loss.buckets=4 \
  -S sweep.num_images=4 -S sweep.batch_size=4 -S sweep.kid_subset_size=2 -S sweep.kid_subsets=5 \
  -S '~sweep.points.ddim10_eta1' -S '~sweep.points.sde2m_10'
