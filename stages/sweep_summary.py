"""Stage `sweep_summary`: the sweep points' metrics -> one CSV (DVC plot), a markdown table, a PNG plot."""
from __future__ import annotations

import argparse
from pathlib import Path

from diffpipe.core import files
from diffpipe.core.cli import run_main
from diffpipe.core.errors import ConfigError
from diffpipe.core.params import load_params
from diffpipe.metrics.sweep import markdown_table, summary_rows
from diffpipe.pictures.plots import plot_xy, write_csv_rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points-dir", required=True, help="folder of per-point metrics JSON (<point>.json)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--csv", required=True)
    p.add_argument("--table", required=True)
    p.add_argument("--plot", required=True)
    args = p.parse_args()
    cfg = load_params(args.params).sweep
    if cfg is None:
        raise ConfigError("params section `sweep` is null, but the sweep_summary stage is running")
    # Only the points in params: a file left by a point since removed from params is not reported.
    results = [files.read_json(Path(args.points_dir) / f"{name}.json") for name in cfg.points]
    rows = summary_rows(results)
    write_csv_rows(args.csv, rows)
    files.write_text(args.table, markdown_table(rows, results[0]["num_images"]))
    ddim = [r for r in rows if r["sampler"] == "ddim"]
    ddpm = ", ".join("DDPM {} steps: FID {:.1f}".format(r["steps"], r["fid"]) for r in rows if r["sampler"] == "ddpm")
    plot_xy(ddim, "steps", "fid", args.plot, f"DDIM: FID vs sampling steps ({ddpm or 'no DDPM point'})",
            group="eta", logx=True)


if __name__ == "__main__":
    run_main(main)
