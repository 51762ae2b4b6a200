"""Sampler sweep: FID/KID and seconds per image of several samplers from one trained checkpoint.

Each point (DDIM at S steps and eta, or DDPM at all T steps) samples the same seeds
first_seed … first_seed + num_images - 1, so points differ only in the sampler.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .config import ConfigError, from_dict, require


@dataclass(frozen=True)
class SweepPoint:
    sampler: Literal["ddpm", "ddim"] = "ddim"
    steps: int = 50
    eta: float = 0.0
    clip_x0: bool = False

    def __post_init__(self):
        require(self.steps >= 1, "sweep.points.<name>.steps", f"must be >= 1, got {self.steps}")
        require(0.0 <= self.eta <= 1.0, "sweep.points.<name>.eta", f"must be in [0, 1], got {self.eta}")


@dataclass(frozen=True)
class SweepConfig:
    num_images: int = 100
    batch_size: int = 100
    first_seed: int = 0
    kid_subset_size: int = 50
    kid_subsets: int = 50
    points: dict = field(default_factory=dict)  # name -> SweepPoint fields (a name per dvc.yaml stage)

    def __post_init__(self):
        require(self.num_images >= 2, "sweep.num_images", f"must be >= 2, got {self.num_images}")
        require(self.batch_size >= 1, "sweep.batch_size", f"must be >= 1, got {self.batch_size}")
        require(2 <= self.kid_subset_size <= self.num_images, "sweep.kid_subset_size",
                f"must be in [2, sweep.num_images = {self.num_images}], got {self.kid_subset_size}")
        require(len(self.points) >= 1, "sweep.points", "needs at least one named point")
        for name in self.points:
            self.point(name)  # every point is checked up front, naming its key

    def point(self, name: str) -> SweepPoint:
        if name not in self.points:
            raise ConfigError(f"params key `sweep.points.{name}` does not exist; points: {sorted(self.points)}")
        try:
            return from_dict(SweepPoint, self.points[name], f"sweep.points.{name}")
        except ConfigError as e:  # range checks inside SweepPoint do not know the point's name
            raise ConfigError(str(e).replace("<name>", name)) from None


def summary_rows(results: list[dict]) -> list[dict]:
    """Flat rows for the plot/table, ordered DDIM by (eta, steps), then DDPM."""
    rows = [{"point": r["point"], "sampler": r["sampler"], "steps": r["steps"], "eta": r["eta"],
             "fid": round(r["fid"], 3), "kid_mean": round(r["kid_mean"], 5), "kid_std": round(r["kid_std"], 5),
             "s_per_img": round(r["s_per_img"], 4)} for r in results]
    return sorted(rows, key=lambda r: (r["sampler"] == "ddpm", r["eta"], r["steps"]))


def markdown_table(rows: list[dict], num_images: int) -> str:
    lines = [f"Sampler sweep: {num_images} generated images per point, same seeds for every point.", "",
             "| point | sampler | steps | eta | FID | KID × 1e3 | s/img |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['point']} | {r['sampler']} | {r['steps']} | {r['eta']} | {r['fid']:.2f} | "
                     f"{1e3 * r['kid_mean']:.2f} ± {1e3 * r['kid_std']:.2f} | {r['s_per_img']:.3f} |")
    return "\n".join(lines) + "\n"
