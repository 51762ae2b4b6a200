"""Stage `fetch_emoji`: write Google's 64×64 Noto emoji PNGs (npm emoji-datasource-google) to a folder (no params).

Usage: python stages/fetch_emoji.py --out data/emoji
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

# This tree's package first, not the one installed in editable mode: a `--temp` or `--queue` experiment
# runs in its own copy of the repository and must run that copy's code (the code dvc.lock records).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from diffpipe.core.cli import run_main  # noqa: E402
from diffpipe.sources import emoji  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder: the PNGs and LICENSE.txt (replaced as a whole)")
    args = parser.parse_args()
    count = emoji.fetch(args.out)
    print(f"wrote {count} emoji PNGs to {args.out}")


if __name__ == "__main__":
    run_main(main)
