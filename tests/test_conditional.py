"""Class-conditional networks and classifier-free guidance: the label embedding, the guidance arithmetic,
label dropout, the params rules, a tiny conditional training run, and the conditional grid and accuracy."""
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import TINY_UNET, diffusion_cfg, model_cfg, spec, train_cfg
from test_train import tiny_images

from diffpipe.core.errors import ConfigError, PipelineError
from diffpipe.core.params import load_params
from diffpipe.diffusion.denoiser import combine, guided, make_eps_fn
from diffpipe.diffusion.generate import generate, requested_labels
from diffpipe.diffusion.schedule import NoiseSchedule
from diffpipe.diffusion.training import run_fingerprint, step_labels, train
from diffpipe.metrics.classes import conditional_accuracy
from diffpipe.metrics.sweep import guidance_name, point_row
from diffpipe.nets.builder import build_model
from diffpipe.pictures.grids import class_rows

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(**TINY_UNET, attn_down=(False, True), attn_up=(True, False))


def nets(num_classes):
    torch.manual_seed(0)
    unet = build_model(model_cfg(num_classes=num_classes, **TINY), 1, 8).eval()
    torch.manual_seed(0)
    resunet = build_model(model_cfg("resunet", num_classes=num_classes), 3, 8).eval()
    w = resunet.conv_out.weight  # the source starts it at zero, so the output is zero whatever the label
    w.data = torch.linspace(-0.1, 0.1, w.numel()).view_as(w)
    return unet, resunet


@pytest.mark.parametrize("which", [0, 1], ids=["unet", "resunet"])
def test_label_embedding_shapes_and_null_token(which):
    net = nets(10)[which]
    channels, dim = (1, 16) if which == 0 else (3, 32)
    assert tuple(net.label_emb.table.weight.shape) == (11, dim)  # ten classes and the null token
    x, t = torch.randn(4, channels, 8, 8), torch.tensor([3.0, 10.0, 0.5, 7.0])
    if which == 1:
        t = t / 20  # the residual U-Net takes a noise variance
    labels = torch.tensor([0, 3, 9, -1])
    out = net(x, t, labels)
    assert out.shape == x.shape
    torch.testing.assert_close(net(x, t), net(x, t, torch.full((4,), -1)))  # None = every image unlabelled
    assert not torch.allclose(net(x, t, torch.tensor([1, 3, 9, -1]))[0], out[0])  # the label changes the output
    torch.testing.assert_close(net(x, t, torch.tensor([1, 3, 9, -1]))[1:], out[1:])  # only that image's
    with pytest.raises(ValueError, match="shape"):
        net(x, t, torch.tensor([0, 1]))


def test_unconditional_network_is_the_source_network_and_refuses_labels():
    plain, cond = nets(0), nets(10)
    for p, c in zip(plain, cond):
        assert p.label_emb is None
        conditional = {k: v for k, v in c.state_dict().items() if not k.startswith("label_emb.")}
        assert conditional.keys() == p.state_dict().keys()  # the embedding is built last: same start otherwise
        assert all(torch.equal(conditional[k], v) for k, v in p.state_dict().items())
    with pytest.raises(ValueError, match="unconditional"):
        plain[0](torch.randn(2, 1, 8, 8), torch.tensor([1.0, 2.0]), torch.tensor([0, 1]))


def test_guidance_scale_0_is_unconditional_1_conditional_and_between_is_the_cfg_formula():
    unet = nets(10)[0]
    schedule = NoiseSchedule.from_config(diffusion_cfg(num_timesteps=50))
    eps_fn = make_eps_fn(unet, schedule)
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([5, 20, 49])
    y = torch.tensor([2, 7, 4])
    cond, uncond = eps_fn(x, t, y), eps_fn(x, t, torch.full_like(y, -1))
    assert not torch.allclose(cond, uncond)
    torch.testing.assert_close(guided(eps_fn, y, 0.0)(x, t), uncond)
    torch.testing.assert_close(guided(eps_fn, y, 1.0)(x, t), cond)
    # any other w: one call on the doubled batch, combined as eps_u + w (eps_c - eps_u)
    torch.testing.assert_close(guided(eps_fn, y, 2.5)(x, t), uncond + 2.5 * (cond - uncond), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(combine(cond, uncond, 0.0), uncond)
    torch.testing.assert_close(combine(cond, uncond, 1.0), cond)
    torch.testing.assert_close(guided(eps_fn, None, 1.0)(x, t), eps_fn(x, t))  # unlabelled samples


def test_label_dropout_is_a_function_of_the_position():
    positions = torch.arange(20_000, dtype=torch.int64)
    labels = positions % 10
    seen = step_labels(0, positions, labels, 0.1)
    dropped = seen == -1
    assert abs(dropped.float().mean().item() - 0.1) < 0.01
    assert torch.equal(seen[~dropped], labels[~dropped])
    assert torch.equal(step_labels(0, positions[5000:7000], labels[5000:7000], 0.1), seen[5000:7000])  # any split
    assert not torch.equal(step_labels(1, positions, labels, 0.1), seen)  # the seed matters
    assert torch.equal(step_labels(0, positions, labels, 0.0), labels)


def test_conditional_training_needs_labels_and_fingerprints_them():
    images = tiny_images()
    cond = model_cfg(num_classes=2, **TINY)
    with pytest.raises(PipelineError, match="no training labels"):
        train(images, diffusion_cfg(num_timesteps=20), cond, train_cfg(epochs=1, batch_size=8), progress=False)
    with pytest.raises(PipelineError, match="0-1"):
        train(images, diffusion_cfg(num_timesteps=20), cond, train_cfg(epochs=1, batch_size=8), progress=False,
              labels=np.full(len(images), 2))
    labels = np.arange(len(images)) % 2
    a = run_fingerprint(images, diffusion_cfg(), cond, train_cfg(), labels)
    b = run_fingerprint(images, diffusion_cfg(), cond, train_cfg(), 1 - labels)
    assert a != b and "labels_md5" not in run_fingerprint(images, diffusion_cfg(), cond, train_cfg())


def test_a_tiny_conditional_model_draws_the_requested_pattern():
    """Two patterns (a vertical and a horizontal bar), labelled 1 and 0: guided samples follow their label."""
    images = tiny_images()
    labels = np.arange(len(images)) % 2  # tiny_images: odd rows hold the vertical bar
    diffusion = diffusion_cfg(num_timesteps=50)
    cfg = train_cfg(epochs=60, batch_size=8, lr=3e-3, log_every=50, cond_drop_prob=0.2, lr_schedule="constant",
                    warmup_steps=0)
    result = train(images, diffusion, model_cfg(num_classes=2, **TINY), cfg, progress=False, labels=labels)
    model = build_model(model_cfg(num_classes=2, **TINY), 1, 8)
    model.load_state_dict(result.checkpoint["ema"])
    want = requested_labels([0, 1], 16)
    out = generate(model.eval(), NoiseSchedule.from_config(diffusion), (1, 8, 8), spec("ddim", steps=20), 16, 0, 16,
                   progress=False, labels=want, guidance_scale=2.0)
    patterns = images[:2].astype(np.float64)  # [horizontal bar (label 0), vertical bar (label 1)]
    distance = ((out[:, None].astype(np.float64) - patterns[None]) ** 2).mean(axis=(2, 3, 4))
    assert (distance.argmin(axis=1) == want).mean() >= 0.9, distance


def test_requested_labels_and_grid_rows_and_accuracy():
    assert requested_labels([], 5) is None
    assert requested_labels([3, 7], 5).tolist() == [3, 7, 3, 7, 3]
    assert requested_labels(range(10), 3, first=9).tolist() == [9, 0, 1]
    images = np.arange(12, dtype=np.uint8).reshape(12, 1, 1, 1)
    grid, per_row = class_rows(images, requested_labels([2, 0, 1], 12), 6)
    assert per_row == 2 and grid[:, 0, 0, 0].tolist() == [1, 4, 2, 5, 0, 3]  # class 0's images, then 1's, then 2's
    grid, per_row = class_rows(images[:4], np.array([0, 0, 0, 1]), 6)  # class 1 has one image: black beside it
    assert per_row == 3 and grid[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 0, 0]
    probs = np.eye(3)[[0, 1, 2, 2]]
    assert conditional_accuracy(probs, np.array([0, 1, 1, -1])) == pytest.approx(2 / 3)  # -1: not counted
    assert conditional_accuracy(probs, np.full(4, -1)) is None


def test_sweep_counts_both_network_calls_of_guidance():
    described = {"sampler": "ddim", "steps": 50, "eta": 1.0, "nfe": 50}
    assert point_row("p", described, 1.0, 0.1, 0.01)["nfe"] == 50
    assert point_row("p", described, 1.0, 0.1, 0.01, guidance_scale=1.0, accuracy=0.9)["nfe"] == 50
    assert point_row("p", described, 1.0, 0.1, 0.01, guidance_scale=3.0, accuracy=0.9)["nfe"] == 100
    assert [guidance_name(w) for w in (0.0, 2.0, 2.5)] == ["w0", "w2", "w2p5"]


def edited(tmp_path, edit):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(data)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_params(path)


@pytest.mark.parametrize("edit, key", [
    (lambda d: d["sample"].update(guidance_scale=3.0), "sample.guidance_scale"),
    (lambda d: d["sample"].update(labels=[1, 2]), "sample.labels"),  # the model is unconditional
    (lambda d: (d["model"].update(num_classes=10), d["sample"].update(labels=[3, 10])), "sample.labels"),
    (lambda d: d["sample"].update(labels=[-1]), "sample.labels"),
    (lambda d: d["model"].update(num_classes=7), "model.num_classes"),  # the data have 10 classes
    (lambda d: d["train"].update(cond_drop_prob=1.0), "train.cond_drop_prob"),
    (lambda d: d["sweep"].update(guidance_scales=[2.0]), "sweep.guidance_scales"),  # no sweep.labels
    (lambda d: d["sweep"].update(guidance_scale=3.0), "sweep.guidance_scale"),
    (lambda d: d["sweep"].update(labels=[1, 2]), "sweep.labels"),  # the model is unconditional
    (lambda d: (d["model"].update(num_classes=10), d["sweep"].update(labels=[3, 10])), "sweep.labels"),
    (lambda d: (d["model"].update(num_classes=10), d["sweep"].update(labels=[0, 1]),
                d["sweep"].update(guidance_scales=[2.0], guidance_point="nope")), "sweep.guidance_point"),
])
def test_conditional_params_are_checked_in_one_line(tmp_path, edit, key):
    with pytest.raises(ConfigError, match=f"`{key}`"):
        edited(tmp_path, edit)


def test_the_documented_conditional_settings_load(tmp_path):
    def conditional(d):
        d["model"]["num_classes"] = 10
        d["sample"].update(labels=list(range(10)), guidance_scale=3.0)
        d["sweep"].update(labels=list(range(10)), guidance_scale=3.0, guidance_scales=[0.0, 1.0, 3.0])

    params = edited(tmp_path, conditional)
    assert params.sample.labels == params.sweep.labels == tuple(range(10))
    assert params.sweep.guidance_scales == (0.0, 1.0, 3.0)
