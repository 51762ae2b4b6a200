#!/usr/bin/env bash
# The CUDA path, measured in one call (benchmarks/README.md, "The CUDA path, measured in one call").
#
#   OUT=DIR bash benchmarks/device_check.sh              # on the GPU machine, with .whl/ carried
#   OUT=DIR bash benchmarks/device_check.sh --dry-run    # the same steps on the CPU, tiny sizes
#
# Installs .whl/ (built here by scripts/device_wheels.sh), runs the gpu-marked tests, the default pipeline
# (dvc repro) and benchmarks/bench.py on CUDA, within a time budget (480 s; --budget SECONDS), and writes
# device_check.json, device_check.md, device_check.log and bench.md under $OUT, after every step.
# The work is benchmarks/device_check.py; this wrapper picks the Python and makes sure a JSON exists even if
# that program dies. Exit status: 0 when every step ran (some possibly degraded), 1 when a step failed.
set -u
started=$(date +%s)
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" || exit 2
cd "$root" || exit 2
out="${OUT:-}"
if [ -z "$out" ]; then
  out="$(mktemp -d "${TMPDIR:-/tmp}/device_check.XXXXXX")" || exit 2
  echo "OUT is not set: writing to $out"
fi
mkdir -p "$out" || exit 2
py="${DEVICE_CHECK_PYTHON:-}"
if [ -z "$py" ]; then
  for candidate in python3 python; do
    if command -v "$candidate" >/dev/null 2>&1; then py="$(command -v "$candidate")"; break; fi
  done
fi
if [ -z "$py" ]; then
  printf '{"status": "failed", "error": "no python3 or python on PATH"}\n' >"$out/device_check.json"
  exit 2
fi
"$py" -u benchmarks/device_check.py --out "$out" --started "$started" "$@"
rc=$?
if [ ! -s "$out/device_check.json" ]; then
  printf '{"status": "failed", "error": "benchmarks/device_check.py exited %s before writing its results", "python": "%s"}\n' \
    "$rc" "$py" >"$out/device_check.json"
fi
exit "$rc"
