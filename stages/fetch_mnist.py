"""Stage `fetch_mnist`: write full MNIST as labelled digit-recognizer CSVs (no params).

Usage: python stages/fetch_mnist.py --train-csv data/mnist_train.csv --test-csv data/mnist_test.csv
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

# This tree's package first, not the one installed in editable mode: a `--temp` or `--queue` experiment
# runs in its own copy of the repository and must run that copy's code (the code dvc.lock records).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from diffpipe.core.cli import run_main  # noqa: E402
from diffpipe.sources import mnist  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-csv", required=True, help="output: 60000 labelled training images")
    parser.add_argument("--test-csv", required=True, help="output: 10000 labelled test images")
    args = parser.parse_args()
    mnist.fetch_csvs(args.train_csv, args.test_csv)


if __name__ == "__main__":
    run_main(main)
