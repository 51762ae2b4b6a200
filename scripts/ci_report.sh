#!/usr/bin/env bash
# Like-with-like comparison of a change against its base, for CI (.github/workflows/pipeline.yml; the e2e
# tests run it too). The tiny pipeline (scripts/tiny_repro.sh) is queued for BASE_REV and for HEAD the same
# way (`dvc exp run --queue`: each experiment snapshots its own commit's code and params), then both run,
# one after the other, each in a temp copy of its snapshot (`dvc exp run --run-all`); the workspace is left
# alone. The report is `dvc exp diff` of the two (changed metrics and params, markdown) and `dvc plots diff`
# of the two (HTML, offline when scripts/offline_plots.sh has run; images side by side).
#   usage: bash scripts/ci_report.sh BASE_REV OUT_DIR
set -euo pipefail
usage="usage: bash scripts/ci_report.sh BASE_REV OUT_DIR"
base=$(git rev-parse --verify "${1:?$usage}^{commit}")
out=${2:?$usage}
head=$(git rev-parse HEAD)
branch=$(git symbolic-ref -q --short HEAD || true)
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "error: ci_report.sh needs a clean work tree (it checks out $base)" >&2
  exit 1
fi
mkdir -p "$out"
back_to_head() { git checkout -q "${branch:-$head}"; }
trap back_to_head EXIT

git checkout -q --detach "$base"
bash scripts/tiny_repro.sh --queue -n ci-base    # the base's own script, code and params
back_to_head
bash scripts/tiny_repro.sh --queue -n ci-head
dvc exp run --run-all -j 1

{
  echo "## Tiny pipeline: base \`$(git rev-parse --short "$base")\` → this change \`$(git rev-parse --short "$head")\`"
  echo
  echo "Both runs use the same tiny configuration (scripts/tiny_repro.sh); compare them with each other, not"
  echo "with the committed full run."
  echo
  echo "### \`dvc exp diff ci-base ci-head\` (changed metrics and params)"
  echo
  dvc exp diff ci-base ci-head --md
} > "$out/report.md"
dvc plots diff ci-base ci-head -o "$out/plots" > /dev/null
echo "wrote $out/report.md and $out/plots/index.html"
