"""Static PNG plots (matplotlib, Agg) for the README; `dvc plots` draws the same data interactively."""
from __future__ import annotations

import csv
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..core.files import atomic_path  # noqa: E402


def write_csv_rows(path: str | os.PathLike, rows: list[dict], fieldnames: list[str] | None = None) -> None:
    """Rows as CSV; `fieldnames` (default: the first row's keys) lets an empty table keep its header."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames or list(rows[0].keys()))
            writer.writeheader()
            writer.writerows(rows)


def _save(fig, path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_loss(step_rows: list[dict], epoch_rows: list[dict], path: str | os.PathLike, title: str = "training loss") -> None:
    """Loss per logged step window (thin) and per epoch mean (dots), log-scale y."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([int(float(r["step"])) for r in step_rows], [float(r["loss"]) for r in step_rows], lw=1, label="per log window")
    if epoch_rows and step_rows:
        steps_per_epoch = int(step_rows[-1]["step"]) / max(1, int(epoch_rows[-1]["epoch"]))
        ax.plot([int(float(r["epoch"])) * steps_per_epoch for r in epoch_rows], [float(r["loss"]) for r in epoch_rows],
                "o-", label="epoch mean")
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def plot_xy(rows: list[dict], x: str, y: str, path: str | os.PathLike, title: str, group: str | None = None,
            logx: bool = False) -> None:
    """A line per `group` value (or one line) of y against x."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    groups = sorted({r[group] for r in rows}) if group else [None]
    for g in groups:
        sel = [r for r in rows if group is None or r[group] == g]
        sel.sort(key=lambda r: float(r[x]))
        ax.plot([float(r[x]) for r in sel], [float(r[y]) for r in sel], "o-", label=f"{group}={g}" if group else None)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if group:
        ax.legend()
    _save(fig, path)


def plot_guidance(rows: list[dict], path: str | os.PathLike, num_images: int) -> None:
    """Classifier-free guidance sweep: accuracy and KID against the guidance scale w (side by side); a note
    instead when there are no guidance points (an unconditional model)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    if not rows:
        for ax in axes:
            ax.axis("off")
        axes[0].text(0, 0.5, "no guidance points (sweep.guidance_scales is empty)", fontsize=11)
        _save(fig, path)
        return
    rows = sorted(rows, key=lambda r: r["guidance_scale"])
    w = [r["guidance_scale"] for r in rows]
    if all(r["accuracy"] is not None for r in rows):
        axes[0].plot(w, [r["accuracy"] for r in rows], "o-")
    axes[0].set_ylabel("accuracy (classifier agrees with the label)")
    axes[1].errorbar(w, [r["kid_mean"] for r in rows], yerr=[r["kid_std"] for r in rows], fmt="o-", capsize=3)
    axes[1].set_ylabel("KID")
    for ax in axes:
        ax.set_xlabel("guidance scale w")
        ax.grid(alpha=0.3)
    fig.suptitle(f"classifier-free guidance: {num_images} images per scale")
    _save(fig, path)
