"""Sampler sweep: FID/KID and seconds per image of several samplers from one trained checkpoint.

Each point (DDIM at S steps and eta, or DDPM at all T steps) samples the same seeds
first_seed … first_seed + num_images - 1, so points differ only in the sampler.
"""
from __future__ import annotations

from ..core.errors import PipelineError
from ..core.files import read_json


POINT_KEYS = ("point", "sampler", "steps", "eta", "fid", "kid_mean", "kid_std", "s_per_img", "num_images")


def read_point(path) -> dict:
    """One sweep point's metrics JSON, with every key the summary needs, or one PipelineError naming it."""
    result = read_json(path)
    missing = [k for k in POINT_KEYS if not isinstance(result, dict) or k not in result]
    if missing:
        raise PipelineError(f"{path}: sweep point result lacks {missing}; re-run its sweep stage")
    return result


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
