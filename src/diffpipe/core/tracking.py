"""DVCLive, DVC's own logger, as the stages use it: inside a DVC stage (no experiment of its own, no
dvc.yaml of its own: dvc.yaml declares the files), and resumable to an exact step.

A DVCLive folder holds `metrics.json` (the latest values: a DVC metrics file, rewritten at every log, so
`dvc exp show` during a running `dvc exp run` shows the current step and loss), `plots/metrics/<name>.tsv`
(one history per metric, columns `step` and the metric) and `plots/images/` (logged pictures).
Names under `cost/` (timings, throughput: they differ on every run) and `schedule/` (learning rate, EMA
decay: settings, not results) go to their history files only, never to `metrics.json`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from .errors import PipelineError

HISTORY_ONLY = ("cost", "schedule")


def open_live(directory: str | os.PathLike, resume: bool = False):
    """A `dvclive.Live` writing to `directory` for use inside a DVC stage."""
    os.environ.setdefault("DVCLIVE_LOGLEVEL", "WARNING")
    from dvclive import Live  # imported here: it imports DVC, which the other modules do not need

    return Live(str(directory), resume=resume, dvcyaml=None, save_dvc_exp=False, report=None)


def truncate_history(directory: str | os.PathLike, last_step: int) -> None:
    """Drop history rows after `last_step` (written after the last saved training state, before a kill),
    so a resumed run continues the curves instead of repeating part of them."""
    for tsv in Path(directory, "plots", "metrics").rglob("*.tsv"):
        lines = tsv.read_text().splitlines(keepends=True)
        if not lines:
            continue
        header = lines[0].rstrip("\n").split("\t")
        col = header.index("step") if "step" in header else None
        if col is None:
            continue
        kept = []
        for number, line in enumerate(lines[1:], start=2):
            try:
                if line.strip() and int(line.split("\t")[col]) <= last_step:
                    kept.append(line)
            except (ValueError, IndexError):
                raise PipelineError(f"{tsv}: line {number} has no integer step ({line.strip()!r}); delete "
                                    f"{directory} and the training state to start over") from None
        tsv.write_text("".join([lines[0], *kept]))


class TrainingLog:
    """Step-wise history of a training run in a DVCLive folder; `start` opens it fresh or resumed."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.live = None

    def start(self, resumed_step: Optional[int]) -> None:
        if resumed_step is not None:
            truncate_history(self.directory, resumed_step)
        self.live = open_live(self.directory, resume=resumed_step is not None)
        if resumed_step is not None:
            # DVCLive's resume moves to the step after the last one logged; a run resumed at its end logs no
            # new step, so its metrics.json must keep the saved step, as the uninterrupted run's does
            self.live.step = resumed_step

    def log(self, step: int, values: dict[str, float]) -> None:
        """Append `values` (names like `train/loss`, `schedule/lr`, `cost/img_per_s`) at optimizer step `step`."""
        self.live.step = step
        for name, value in values.items():
            self.live.log_metric(name, value)
        self._write_summary()

    def summary(self, values: dict[str, float]) -> None:
        """Values for `metrics.json` only (no history), e.g. the best epoch loss."""
        for name, value in values.items():
            self.live.log_metric(name, value, plot=False)
        self._write_summary()

    def image(self, name: str, image) -> None:
        self.live.log_image(name, image)

    def _write_summary(self) -> None:
        for group in HISTORY_ONLY:
            self.live.summary.pop(group, None)
        self.live.make_summary()
