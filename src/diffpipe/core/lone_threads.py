"""Imported first by the stages whose outputs must be a single process's bytes under torchrun (sample,
reference_features, evaluate): before numpy and torch load their thread pools.

torchrun gives each worker OMP_NUM_THREADS=1 when it starts more than one. The thread count changes how
OpenBLAS/LAPACK and oneDNN split their sums (FID's matrix square root differs in the last digits with 1
thread), so a worker here drops that default and uses the pools' own defaults, as a lone process does.
"""
import os

if int(os.environ.get("WORLD_SIZE", "1")) > 1:
    os.environ.pop("OMP_NUM_THREADS", None)
