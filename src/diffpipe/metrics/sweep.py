"""Sampler sweep: FID/KID of several samplers from one trained checkpoint, against their cost.

Each point (DDIM at S steps and eta, or DDPM at all T steps) samples the same seeds
first_seed … first_seed + num_images - 1, so points differ only in the sampler. The cost axis is the number
of network evaluations per image (NFE): deterministic, so the summary never depends on timings (those are
in the cost file). Points are grouped into series (sampler and eta) so the plot never joins unlike points.
"""
from __future__ import annotations


def series_name(sampler: str, eta: float) -> str:
    return "DDPM" if sampler == "ddpm" else f"DDIM eta={eta:g}"


def point_row(name: str, described: dict, fid: float, kid_mean: float, kid_std: float) -> dict:
    """One flat row: the point, its series, its NFE and its scores. `described` is `describe_sampler`'s dict."""
    return {"point": name, "series": series_name(described["sampler"], described["eta"]),
            "sampler": described["sampler"], "steps": described["steps"], "eta": described["eta"],
            "nfe": described["steps"], "fid": fid, "kid_mean": kid_mean, "kid_std": kid_std}


def sorted_rows(rows: list[dict]) -> list[dict]:
    """DDIM by (eta, steps), then DDPM."""
    return sorted(rows, key=lambda r: (r["sampler"] == "ddpm", r["eta"], r["steps"]))


def metrics_of(rows: list[dict]) -> dict:
    """The DVC metrics: per point, FID and KID (mean and std), nothing else."""
    return {r["point"]: {"fid": r["fid"], "kid_mean": r["kid_mean"], "kid_std": r["kid_std"]} for r in rows}


def markdown_table(rows: list[dict], num_images: int) -> str:
    lines = [f"Sampler sweep: {num_images} generated images per point, same seeds for every point; "
             "NFE = network evaluations per image.", "",
             "| point | sampler | steps | eta | NFE | FID | KID × 1e3 |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['point']} | {r['sampler']} | {r['steps']} | {r['eta']} | {r['nfe']} | {r['fid']:.2f} | "
                     f"{1e3 * r['kid_mean']:.2f} ± {1e3 * r['kid_std']:.2f} |")
    return "\n".join(lines) + "\n"
