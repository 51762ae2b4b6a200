"""Sampler sweep: FID/KID of several samplers from one trained checkpoint, against their cost.

Each point (DDIM at S steps and eta, a solver at S steps, or DDPM at all T steps) samples the same seeds
first_seed … first_seed + num_images - 1, so points differ only in the sampler. The cost axis is the number
of network evaluations per image (NFE): deterministic, so the summary never depends on timings (those are
in the cost file). Points are grouped into series (sampler and eta) so the plot never joins unlike points.

For a class-conditional model every point samples `sample.labels` at `sample.guidance_scale`, and the
guidance points (`sweep.guidance_scales`) repeat one point's sampler at other scales: their rows carry the
classifier's agreement with the requested labels (`accuracy`). Guidance at a scale other than 0 or 1 runs
the network twice per step (conditional and unconditional), which the NFE counts.
"""
from __future__ import annotations

from ..diffusion.denoiser import network_calls


SERIES = {"ddpm": "DDPM", "dpmpp_2m": "DPM-Solver++(2M)", "dpmpp_2m_sde": "SDE-DPM-Solver++(2M)"}
ORDER = ("ddim", "heun", "dpmpp_2m", "dpmpp_2m_sde", "ddpm")  # the rows' order, by sampler


def series_name(sampler: str, eta: float) -> str:
    """One plot line per sampler (DDIM and Heun: and per eta, which changes what they compute)."""
    if sampler in SERIES:
        return SERIES[sampler]
    return f"{'DDIM' if sampler == 'ddim' else 'Heun'} eta={eta:g}"


def guidance_name(scale: float) -> str:
    """The guidance point of scale w: w0, w1, w2p5 (no dot: the name is a key in the metrics)."""
    return f"w{scale:g}".replace(".", "p")


def point_row(name: str, described: dict, fid: float, kid_mean: float, kid_std: float,
              guidance_scale: float | None = None, accuracy: float | None = None) -> dict:
    """One flat row: the point, its series, its NFE and its scores. `described` is `describe_sampler`'s dict;
    `guidance_scale` None = unlabelled samples (then no accuracy)."""
    calls = network_calls(guidance_scale is not None, guidance_scale or 0.0)
    return {"point": name, "series": series_name(described["sampler"], described["eta"]),
            "sampler": described["sampler"], "steps": described["steps"], "eta": described["eta"],
            "nfe": described["nfe"] * calls, "guidance_scale": guidance_scale, "fid": fid, "kid_mean": kid_mean,
            "kid_std": kid_std, "accuracy": accuracy}


def sorted_rows(rows: list[dict]) -> list[dict]:
    """DDIM by (eta, steps), then Heun, DPM-Solver++ and its SDE variant by (eta, steps), then DDPM."""
    return sorted(rows, key=lambda r: (ORDER.index(r["sampler"]), r["eta"], r["steps"]))


def metrics_of(rows: list[dict]) -> dict:
    """The DVC metrics: per point, FID and KID (mean and std), and the accuracy of labelled samples."""
    keys = ("fid", "kid_mean", "kid_std", "accuracy")
    return {r["point"]: {k: r[k] for k in keys if r[k] is not None} for r in rows}


def markdown_table(rows: list[dict], num_images: int) -> str:
    labelled = any(r["guidance_scale"] is not None for r in rows)
    extra = (" | w | accuracy", "|---|---") if labelled else ("", "")
    lines = [f"Sampler sweep: {num_images} generated images per point, same seeds for every point; "
             "NFE = network evaluations per image" + ("; w = guidance scale; accuracy = the classifier agrees "
                                                      "with the requested label." if labelled else "."), "",
             f"| point | sampler | steps | eta | NFE{extra[0]} | FID | KID × 1e3 |", f"|---|---|---|---|---{extra[1]}|---|---|"]
    for r in rows:
        accuracy = "n/a" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
        more = f" | {r['guidance_scale']:g} | {accuracy}" if labelled else ""
        lines.append(f"| {r['point']} | {r['sampler']} | {r['steps']} | {r['eta']} | {r['nfe']}{more} | {r['fid']:.2f} | "
                     f"{1e3 * r['kid_mean']:.2f} ± {1e3 * r['kid_std']:.2f} |")
    return "\n".join(lines) + "\n"
