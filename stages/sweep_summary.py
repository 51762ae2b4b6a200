"""Stage `sweep_summary`: the sweep points' metrics -> one CSV (DVC plot), a markdown table, a PNG plot."""
from __future__ import annotations

import argparse
from pathlib import Path

from diffpipe import io
from diffpipe.cli import run_main
from diffpipe.plots import plot_xy, write_csv_rows
from diffpipe.config import load_params, section
from diffpipe.sweep import SweepConfig, markdown_table, summary_rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points-dir", required=True, help="folder of per-point metrics JSON (<point>.json)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--csv", required=True)
    p.add_argument("--table", required=True)
    p.add_argument("--plot", required=True)
    args = p.parse_args()
    cfg = section(load_params(args.params), "sweep", SweepConfig)
    # Only the points in params: a file left by a point since removed from params is not reported.
    results = [io.read_json(Path(args.points_dir) / f"{name}.json") for name in cfg.points]
    rows = summary_rows(results)
    write_csv_rows(args.csv, rows)
    io.write_text(args.table, markdown_table(rows, results[0]["num_images"]))
    ddim = [r for r in rows if r["sampler"] == "ddim"]
    ddpm = ", ".join("DDPM {} steps: FID {:.1f}".format(r["steps"], r["fid"]) for r in rows if r["sampler"] == "ddpm")
    plot_xy(ddim, "steps", "fid", args.plot, f"DDIM: FID vs sampling steps ({ddpm or 'no DDPM point'})",
            group="eta", logx=True)


if __name__ == "__main__":
    run_main(main)
