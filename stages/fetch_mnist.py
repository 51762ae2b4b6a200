"""Stage `fetch_mnist`: write full MNIST as labelled digit-recognizer CSVs (no params).

Usage: python scripts/launch.py stages/fetch_mnist.py --train-csv data/mnist_train.csv --test-csv data/mnist_test.csv
"""
from __future__ import annotations

import argparse

from diffpipe.core.cli import run_main
from diffpipe.sources import mnist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-csv", required=True, help="output: 60000 labelled training images")
    parser.add_argument("--test-csv", required=True, help="output: 10000 labelled test images")
    args = parser.parse_args()
    mnist.fetch_csvs(args.train_csv, args.test_csv)


if __name__ == "__main__":
    run_main(main)
