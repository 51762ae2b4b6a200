"""torch-fidelity in this environment: importing it, and building its FID Inception from a weights file safely.

Importing: torchvision / torch-fidelity must import even when torchvision's compiled ops do not match
the installed torch.

torch-fidelity imports torchvision, and the pinned torchvision 0.28.0 wheel is a CUDA build whose `_C.so`
cannot load into the CPU torch 2.13.0 here. Nothing this project uses needs those compiled ops (detection
ops such as nms, roi_align; `torchvision.io` decoding stays unavailable, images are read with Pillow).
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType

import torch

from .errors import PipelineError

# Keeps the operator definitions alive: a `torch.library.Library` deregisters them when collected.
_SHIM_LIBRARY: torch.library.Library | None = None

# The operators that torchvision's own import registers fake kernels for unconditionally
# (torchvision/_meta_registrations.py: `@torch.library.register_fake("torchvision::nms")` and `qnms`);
# every other registration there is skipped when the extension did not load. Found by trial.
_SHIM_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)


def _load_extension() -> bool:
    """Try to load torchvision's compiled `_C` extension (without importing torchvision); True on success."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return False
    for lib in sorted(Path(spec.origin).parent.glob("_C*.so")) + sorted(Path(spec.origin).parent.glob("_C*.pyd")):
        try:
            torch.ops.load_library(str(lib))
            return True
        except (OSError, RuntimeError):
            pass
    return False


def import_torchvision() -> ModuleType:
    """`import torchvision`, declaring its detection operators first if its compiled extension cannot load."""
    global _SHIM_LIBRARY
    if "torchvision" in sys.modules:
        return sys.modules["torchvision"]
    if _SHIM_LIBRARY is None and not _load_extension():
        # torchvision's import registers fake (meta) kernels for torchvision::nms and ::qnms, which fails with
        # "operator torchvision::nms does not exist" when its CUDA-built `_C.so` cannot load into this CPU
        # torch. Declaring just the schemas (no kernels) lets the import finish; calling these ops still
        # fails with torchvision's own "Couldn't load custom C++ ops" error, since `extension._has_ops()` is
        # False. Inception feature extraction uses none of them.
        _SHIM_LIBRARY = torch.library.Library("torchvision", "FRAGMENT")
        for schema in _SHIM_SCHEMAS:
            _SHIM_LIBRARY.define(schema)
    import torchvision

    return torchvision


def import_torch_fidelity() -> ModuleType:
    """`import torch_fidelity` (which imports torchvision) after `import_torchvision()`."""
    import_torchvision()
    import torch_fidelity

    return torch_fidelity


FEATURE_EXTRACTOR_NAME = "inception-v3-compat"  # torch-fidelity's registry name; only a label here
# SHA-256 of the converted FID weights file (the `inception_weights` stage's output, deterministic: the
# stage checks that it wrote exactly these bytes). Every reader checks it before loading the file.
WEIGHTS_SHA256 = "1cfcff72fa6451b929bde1b5be55cc86cff964f783b770e6e6bd5cf51de963d7"


def inception_skeleton() -> torch.nn.Module:
    """torch-fidelity's `FeatureExtractorInceptionV3` (2048-d pool output), randomly initialised.

    Its constructor insists on `torch.load(path, weights_only=False)` of a weights file, which can run code
    from a crafted file; it is given an empty dict serialised here, and its load is skipped.
    """
    import_torch_fidelity()
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Skeleton(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):
            return None

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    return _Skeleton(FEATURE_EXTRACTOR_NAME, ["2048"], feature_extractor_weights_path=empty)


def inception_extractor(state_dict: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The FID Inception with `state_dict` (tensors, already loaded safely) loaded strictly, in eval mode."""
    extractor = inception_skeleton()
    torch.nn.Module.load_state_dict(extractor, state_dict, strict=True)
    return extractor.eval()


def load_inception(path: str | Path) -> torch.nn.Module:
    """The FID Inception from the converted weights file: checked against WEIGHTS_SHA256, loaded as tensors
    only (`weights_only=True`); a missing, truncated or foreign file is one PipelineError naming it."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PipelineError(f"{path}: Inception weights not found (run the inception_weights stage)") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise PipelineError(f"{path}: SHA-256 {digest[:12]}… is not that of the converted Inception weights "
                            f"({WEIGHTS_SHA256[:12]}…); re-run the inception_weights stage (dvc repro -f inception_weights)")
    state_dict = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return inception_extractor(state_dict)
