"""diffpipe: a reproducible diffusion-model pipeline (DDPM/DDIM) driven by DVC.

Subpackages: core (errors, params, atomic files, CLI, devices), sources (pinned downloads), data (CSV and
image-folder input, pixel scaling), nets (the two U-Nets), diffusion (schedules, samplers, generation,
training, checkpoints), metrics (Inception features, FID/KID, timestep loss, sweep), pictures (grids, plots).
Imports point one way: stages -> package; core imports nothing else; nets know nothing of diffusion.
"""
import os

# Every stage imports this package before torch. MKL (inside torch's CPU build) may otherwise run a matrix
# product on fewer threads than asked when the machine is busy (MKL_DYNAMIC defaults to true), which changes
# its summation order: on this 2-core machine under load, about 1 run in 7 of the same sampling command gave
# other bytes (measured with a CPU-bound process beside it; none in 24 runs with MKL_DYNAMIC=FALSE).
os.environ.setdefault("MKL_DYNAMIC", "FALSE")

__version__ = "0.1.0"
