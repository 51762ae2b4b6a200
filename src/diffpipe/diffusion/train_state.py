"""The resumable training state: everything the loop needs to continue exactly where it stopped.

Weights, EMA, optimizer, the global RNG, the step, the epoch and the batch within it, the epoch's and the log
window's partial loss sums, the logs and the best epoch so far (the data order and the noise are functions of
the position in the run, so they need no state). A resumed run ends with the same bytes as an uninterrupted
one. `fingerprint` says what the state was made from; only keys in CONTINUABLE may differ (with a constant
learning rate nothing in the loop depends on the total number of epochs, so raising it continues the run; a
cosine schedule depends on it, so there `epochs` is part of the fingerprint; the process count never changes
the trajectory).
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import torch
import torch.nn as nn

from ..core import distributed
from ..core.config import to_dict
from ..core.errors import PipelineError
from ..core.files import clear_stale
from ..core.launch import Stopped, stop_requested
from ..core.params import DiffusionConfig, ModelConfig, TrainConfig
from ..nets.builder import build_model
from .checkpoint import cpu_state, make_checkpoint, save_checkpoint

STATE_FILE = "state.pt"
STATE_FORMAT = "diffpipe-train-state-v2"
CONTINUABLE = ("epochs", "checkpoint_every", "processes")
# The saved dict's keys after format, fingerprint, weights, optimizer and RNG, in the file's order (the bytes
# depend on it): the counters and logs as they are, then the partial sums as CPU tensors.
COUNTERS = ("step", "epoch", "batch", "window_n", "step_losses", "epoch_losses", "best")
SUMS = ("epoch_sum", "window_sum")


class TrainingDiverged(PipelineError):
    """Non-finite loss or weights: training stopped, the last good state is kept."""


def run_fingerprint(images: np.ndarray, diffusion: DiffusionConfig, model_cfg: ModelConfig,
                    cfg: TrainConfig, labels: Optional[np.ndarray] = None) -> dict:
    continuable = CONTINUABLE if cfg.lr_schedule == "constant" else tuple(k for k in CONTINUABLE if k != "epochs")
    train_keys = {k: v for k, v in to_dict(cfg).items() if k not in continuable}
    used = {} if labels is None else {"labels_md5": hashlib.md5(np.ascontiguousarray(labels).tobytes()).hexdigest()}
    return {**used, "data_md5": hashlib.md5(np.ascontiguousarray(images).tobytes()).hexdigest(),
            "data_shape": list(images.shape), "diffusion": to_dict(diffusion), "model": to_dict(model_cfg),
            "train": train_keys}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def read_state(state_dir: Path, fingerprint: dict, epochs: int) -> tuple[Optional[dict], str]:
    """(the saved state, "") when it can be continued to `epochs`, else (None, why not)."""
    path = state_dir / STATE_FILE
    if not path.exists():
        return None, f"no saved state in {state_dir}"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - an unreadable state is not resumed, and the user is told why
        return None, f"{path} is not readable ({type(e).__name__})"
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        return None, f"{path} is not a diffpipe training state"
    old, new = _flat(state["fingerprint"]), _flat(fingerprint)
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if changed:
        what = ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:3])
        return None, f"the saved state was made from other data or settings ({what})"
    if state["epoch"] > epochs or (state["epoch"] == epochs and state["batch"] > 0):
        return None, f"the saved state is past train.epochs = {epochs} (epoch {state['epoch']})"
    return state, ""


def _finite(*modules: nn.Module) -> bool:
    """Whether every float weight and buffer is finite: one host sync per tensor."""
    return all(bool(torch.isfinite(t).all()) for m in modules for t in m.state_dict().values() if t.is_floating_point())


@dataclass(eq=False)
class TrainingState:
    """A run's resumable state on this rank: the modules it trains and the counters, sums and logs of the loop.

    `step` counts optimizer steps; `epoch` (0-based) and `batch` say where the next step starts; the sums are
    device tensors, so adding to them never waits for the device. `save()` (and `stop_if_requested()`, which
    saves) may be called after any completed step (optimizer step and `add_batch`), mid-epoch or not: the run
    resumes from exactly there."""
    model: nn.Module  # un-wrapped (no DDP, no compile): what is saved
    ema: nn.Module
    optimizer: torch.optim.Optimizer
    cfg: TrainConfig
    fingerprint: dict
    state_dir: Optional[Path]  # None: nothing is saved or resumed
    world: distributed.World
    device: torch.device
    step: int = 0
    epoch: int = 0
    batch: int = 0
    epoch_sum: Optional[torch.Tensor] = None  # the epoch's per-image losses summed so far (all ranks)
    window_sum: Optional[torch.Tensor] = None  # the same since the last logged window
    window_n: int = 0  # images in the window
    step_losses: list[dict] = field(default_factory=list)  # each logged window: step, epoch, mean loss
    epoch_losses: list[dict] = field(default_factory=list)
    best: Optional[dict] = None  # keep: best: the lowest epoch loss so far and its checkpoint (rank 0)
    saved_step: Optional[int] = None  # the step of the last state saved or resumed
    # The run's cost over all its invocations: seconds of training before this invocation (None: it continues a
    # state saved without timings), invocations so far, and each finished epoch's images and seconds (an epoch
    # resumed mid-way: its resumed part). Saved with the state; never part of the checkpoint.
    timings: dict = field(default_factory=lambda: {"seconds": 0.0, "invocations": 1, "epochs": []})
    started: float = field(default_factory=time.perf_counter)  # when this invocation's state was made

    def __post_init__(self) -> None:
        self.epoch_sum = torch.zeros((), device=self.device) if self.epoch_sum is None else self.epoch_sum
        self.window_sum = torch.zeros((), device=self.device) if self.window_sum is None else self.window_sum

    @classmethod
    def start(cls, model_cfg: ModelConfig, image_shape: tuple[int, int, int], cfg: TrainConfig, fingerprint: dict,
              state_dir: Optional[Path], world: distributed.World, device: torch.device,
              log: Callable[[str], None] = print) -> TrainingState:
        """Seeded fresh weights, an EMA copy and Adam; then the state saved in `state_dir` if it continues this
        run (see resume_or_fresh)."""
        c, h, _ = image_shape
        torch.manual_seed(cfg.seed)
        model = build_model(model_cfg, c, h).to(device)  # raises ConfigError before any training
        ema = copy.deepcopy(model).requires_grad_(False)
        model = model.to(memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, foreach=True)
        state = cls(model, ema, optimizer, cfg, fingerprint, None if state_dir is None else Path(state_dir), world,
                    device)
        state.resume_or_fresh(log)
        return state

    def resume_or_fresh(self, log: Callable[[str], None] = print) -> None:
        """Load the state saved in `state_dir` when it was made from the same data and settings and does not
        go past train.epochs; otherwise delete the folder (a fresh start). Rank 0 reads the file and sends it to
        the other ranks, whose machines need not have it (several nodes)."""
        if self.state_dir is None:
            return
        main = self.world.main
        saved, why = distributed.broadcast_object(
            read_state(self.state_dir, self.fingerprint, self.cfg.epochs) if main else None, self.world)
        if saved is None:
            if main:
                log(f"train: starting fresh: {why}")
                if self.state_dir.exists():
                    shutil.rmtree(self.state_dir)
        else:
            self.load_state_dict(saved)
            if main:
                log(f"train: resuming from step {self.step} (epoch {self.epoch + 1}, batch {self.batch}) "
                    f"of {self.state_dir / STATE_FILE}")
        if main:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            clear_stale(self.state_dir / STATE_FILE)  # a temp a `kill -9` left mid-save

    def state_dict(self) -> dict:
        """The saved dict (STATE_FORMAT): CPU copies, safe to write while training goes on."""
        return {"format": STATE_FORMAT, "fingerprint": self.fingerprint, "model": cpu_state(self.model),
                "ema": cpu_state(self.ema), "optimizer": copy.deepcopy(self.optimizer.state_dict()),
                "torch_rng": torch.get_rng_state(),
                **{k: getattr(self, k) for k in COUNTERS},
                **{k: getattr(self, k).cpu() for k in SUMS},
                "timings": self.timings_now()}

    def load_state_dict(self, saved: dict) -> None:
        self.model.load_state_dict(saved["model"])
        self.ema.load_state_dict(saved["ema"])
        self.optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["torch_rng"])
        for key in COUNTERS:
            setattr(self, key, saved[key])
        for key in SUMS:
            setattr(self, key, saved[key].to(self.device))
        self.saved_step = self.step
        earlier = saved.get("timings") or {"seconds": None, "invocations": None, "epochs": []}  # an older state
        self.timings = {"seconds": earlier["seconds"], "epochs": list(earlier["epochs"]),
                        "invocations": None if earlier["invocations"] is None else earlier["invocations"] + 1}
        self.started = time.perf_counter()

    def timings_now(self) -> dict:
        """`timings` with this invocation's time so far added (the time lost to a kill after the last save is
        not in a resumed run's total: the work it did is redone and counted then)."""
        before = self.timings["seconds"]
        return {**self.timings, "seconds": None if before is None else before + time.perf_counter() - self.started}

    def time_epoch(self, images: int, seconds: float) -> None:
        """Record the epoch just ended: `images` trained in `seconds` by this invocation."""
        self.timings["epochs"].append({"epoch": self.epoch + 1, "images": images, "seconds": seconds})

    def save(self) -> None:
        """Save the complete state at the current step to `state_dir` (atomically; rank 0 writes). Every rank
        first checks that the weights are finite (a host sync per tensor) and raises TrainingDiverged if not."""
        if self.state_dir is None:
            return
        if not _finite(self.model, self.ema):
            raise self.diverged(f"the weights are not finite at step {self.step}")
        if self.world.main:
            save_checkpoint(self.state_dir / STATE_FILE, self.state_dict())
        self.saved_step = self.step

    def stop_if_requested(self) -> None:
        """Stop here if SIGTERM, SIGINT or SIGUSR1 reached any rank (core/launch.py records it): every rank calls
        this after the same step and they agree (the largest signal number wins); the state is saved at this
        step unless it just was, every rank waits until rank 0 has written it, and `Stopped` is raised with the
        line to print (`train: stopped by SIGTERM at step N; state saved, re-run to continue`)."""
        signum = distributed.agree_max(stop_requested(), self.world)
        if not signum:
            return
        if self.saved_step != self.step:
            self.save()
        distributed.barrier(self.world)
        kept = "state saved, re-run to continue" if self.state_dir is not None else "no state folder: nothing saved"
        raise Stopped(signum, f"train: stopped by {signal.Signals(signum).name} at step {self.step}; {kept}")

    @contextlib.contextmanager
    def peer_failures(self) -> Iterator[None]:
        """Within: a collective failing because another rank is gone (killed, crashed, hung past the timeout)
        raises a one-line PipelineError saying what is kept. Nothing is saved then: this rank may be part-way
        through a step."""
        try:
            yield
        except RuntimeError as e:
            what = distributed.peer_failure(e) if self.world.distributed else ""
            if not what:
                raise
            raise PipelineError(f"train: another process of the run is gone ({what}) at step {self.step}; "
                                f"{self.kept()}") from None

    def kept(self) -> str:
        return (f"the last state saved (step {self.saved_step}) is kept in {self.state_dir}, re-run to continue"
                if self.saved_step is not None and self.state_dir is not None else "no state was saved")

    def begin_epoch(self, epoch: int) -> None:
        """Enter `epoch`; at its first batch (not in an epoch resumed mid-way) the loss sums start from zero."""
        self.epoch = epoch
        if self.batch == 0:
            self.epoch_sum = torch.zeros((), device=self.device)
            self.window_sum, self.window_n = torch.zeros((), device=self.device), 0

    def add_batch(self, loss_sum: torch.Tensor, images: int) -> None:
        """Count a finished batch of `images` whose per-image losses sum to `loss_sum` (a device tensor)."""
        self.epoch_sum += loss_sum
        self.window_sum += loss_sum
        self.window_n += images
        self.batch += 1

    def close_window(self) -> float:
        """The log window's mean loss (read from the device: a host sync), appended to step_losses; the window
        sums restart from zero. Raises TrainingDiverged when it is not finite."""
        loss = (self.window_sum / self.window_n).item()
        if not math.isfinite(loss):
            raise self.diverged(f"the loss is {loss}")
        self.step_losses.append({"step": self.step, "epoch": self.epoch + 1, "loss": loss})
        self.window_sum.zero_()
        self.window_n = 0
        return loss

    def end_epoch(self, images: int) -> float:
        """The epoch's mean loss over its `images` (a host sync), appended to epoch_losses. Raises
        TrainingDiverged when it is not finite."""
        loss = (self.epoch_sum / images).item()
        if not math.isfinite(loss):
            raise self.diverged(f"the epoch loss is {loss}")
        self.epoch_losses.append({"epoch": self.epoch + 1, "loss": loss})
        return loss

    def diverged(self, what: str) -> TrainingDiverged:
        kept = (f"the last good state (step {self.saved_step}) is kept in {self.state_dir}"
                if self.saved_step is not None else "no state was saved")
        return TrainingDiverged(f"training diverged at step {self.step} (epoch {self.epoch + 1}, "
                                f"train.lr = {self.cfg.lr}): {what}; {kept}")

    def checkpoint(self, epoch: int, loss: float, **describe) -> dict:
        """The self-describing checkpoint of the weights now (`describe`: make_checkpoint's diffusion,
        model_cfg, train_cfg, image_shape and norm)."""
        return make_checkpoint(self.model, self.ema, self.optimizer, self.step, epoch, loss, **describe)
