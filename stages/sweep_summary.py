"""Stage `sweep_summary`: the sweep points' metrics -> one CSV (DVC plot), a markdown table, a PNG plot."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

# This tree's package first, not the one installed in editable mode: a `--temp` or `--queue` experiment
# runs in its own copy of the repository and must run that copy's code (the code dvc.lock records).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from diffpipe.core import files  # noqa: E402
from diffpipe.core.cli import run_main  # noqa: E402
from diffpipe.core.errors import ConfigError  # noqa: E402
from diffpipe.core.params import load_params  # noqa: E402
from diffpipe.metrics.sweep import markdown_table, read_point, summary_rows  # noqa: E402
from diffpipe.pictures.plots import plot_xy, write_csv_rows  # noqa: E402


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
    results = [read_point(Path(args.points_dir) / f"{name}.json") for name in cfg.points]
    rows = summary_rows(results)
    write_csv_rows(args.csv, rows)
    files.write_text(args.table, markdown_table(rows, results[0]["num_images"]))
    ddim = [r for r in rows if r["sampler"] == "ddim"]
    ddpm = ", ".join("DDPM {} steps: FID {:.1f}".format(r["steps"], r["fid"]) for r in rows if r["sampler"] == "ddpm")
    plot_xy(ddim, "steps", "fid", args.plot, f"DDIM: FID vs sampling steps ({ddpm or 'no DDPM point'})",
            group="eta", logx=True)


if __name__ == "__main__":
    run_main(main)
