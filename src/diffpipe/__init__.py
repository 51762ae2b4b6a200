"""diffpipe: a reproducible diffusion-model pipeline (DDPM/DDIM) driven by DVC.

The public API (docs/model.md), loaded on first use so that `import diffpipe` stays cheap (no torch, no numpy:
scripts/launch.py imports `diffpipe.core.launch` before torch may load):

    model = diffpipe.load("models/export")      # an export folder or a training checkpoint; rev=, repo=
    images = model.sample(16, seed=0)           # uint8 (N, H, W, C)

Subpackages: core (errors, params, atomic files, CLI, devices, process set-up), sources (pinned downloads),
data (CSV and image-folder input, pixel scaling), nets (the two U-Nets), diffusion (schedules, samplers,
generation, training, checkpoints, the export), metrics (Inception features, FID/KID, timestep loss, sweep),
pictures (grids, plots). Imports point one way: stages -> package; core imports nothing else; nets know nothing
of diffusion. Stage processes start through `scripts/launch.py` (see `core/launch.py`); the `diffpipe` command
is cli.py.
"""

__version__ = "0.1.0"

# name -> the module that defines it, imported when the name is first used (PEP 562)
_LAZY = {"load": "diffpipe.api", "Model": "diffpipe.api", "SAMPLERS": "diffpipe.api",
         "PipelineError": "diffpipe.core.errors", "ConfigError": "diffpipe.core.errors"}
__all__ = ["load", "Model", "SAMPLERS", "PipelineError", "ConfigError", "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'diffpipe' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
