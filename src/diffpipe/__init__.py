"""diffpipe: a reproducible diffusion-model pipeline (DDPM/DDIM) driven by DVC.

Modules, one job each: config (params loader), pixels (the two scaling functions), io (atomic writes),
mnist_source (default data), csv_data (CSV reader), schedule (noise schedules), unet (System A network),
samplers (DDPM / DDIM), train (training loop), inception / fid (FID/KID with torch-fidelity).
"""
__version__ = "0.1.0"
