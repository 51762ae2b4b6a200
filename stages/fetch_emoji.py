"""Stage `fetch_emoji`: write Google's 64×64 Noto emoji PNGs (npm emoji-datasource-google) to a folder (no params).

Usage: python scripts/launch.py stages/fetch_emoji.py --out data/emoji
"""
from __future__ import annotations

import argparse

from diffpipe.core.cli import run_main
from diffpipe.sources import emoji


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder: the PNGs and LICENSE.txt (replaced as a whole)")
    args = parser.parse_args()
    count = emoji.fetch(args.out)
    print(f"wrote {count} emoji PNGs to {args.out}")


if __name__ == "__main__":
    run_main(main)
