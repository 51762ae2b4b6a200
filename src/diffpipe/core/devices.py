"""Device and precision choices from params: `auto` = CUDA when present, else CPU."""
from __future__ import annotations

from typing import Optional

import torch

from .errors import ConfigError


def resolve_device(name: str, key: str = "device") -> torch.device:
    """'auto' | 'cpu' | 'cuda' -> torch.device; asking for CUDA without one names the params key."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"params key `{key}` is 'cuda' but no CUDA device is available (use 'auto' or 'cpu')")
    return torch.device(name)


def autocast_dtype(precision: str) -> Optional[torch.dtype]:
    """'bf16' -> torch.bfloat16 (autocast), 'fp32' -> None (no autocast)."""
    return torch.bfloat16 if precision == "bf16" else None
