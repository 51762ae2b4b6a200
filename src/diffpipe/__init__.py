"""diffpipe: a reproducible diffusion-model pipeline (DDPM/DDIM) driven by DVC.

Subpackages: core (errors, params, atomic files, CLI, devices, process set-up), sources (pinned downloads),
data (CSV and image-folder input, pixel scaling), nets (the two U-Nets), diffusion (schedules, samplers,
generation, training, checkpoints), metrics (Inception features, FID/KID, timestep loss, sweep), pictures
(grids, plots). Imports point one way: stages -> package; core imports nothing else; nets know nothing of
diffusion. Stage processes start through `scripts/launch.py` (see `core/launch.py`).
"""

__version__ = "0.1.0"
