"""Process set-up, in one place: how every stage process starts (`scripts/launch.py` calls `main`).

    usage: python scripts/launch.py [--processes N] [--share-cores] SCRIPT [ARGS...]

Before the stage script imports anything, this sets what must be set before numpy and torch load their
thread pools, for the stage process and (through the environment) for every torchrun worker:

- **the tree's `src` first on the import path** (`PYTHONPATH`, and `sys.path` for the process itself): a
  `dvc exp run --temp` or `--queue` experiment runs in its own copy of the repository and must run that
  copy's code, the code `dvc.lock` records, not the editable install's;
- **`MKL_DYNAMIC=FALSE`**: MKL (inside torch's CPU build) may otherwise run a matrix product on fewer threads
  than asked when the machine is busy, which changes its summation order (on a 2-core machine under load,
  about 1 run in 7 of the same sampling command gave other bytes; none in 24 with it off);
- **the thread count of each torchrun worker** (`OMP_NUM_THREADS`; torchrun would set 1): with
  `--share-cores` (training, whose result only has to match to round-off) the CPUs are split between the N
  workers; otherwise each worker keeps a lone process's thread count (all CPUs it may run on), because the
  thread count changes how oneDNN and OpenBLAS split their sums and sampling and feature extraction must give
  a single process's bytes. That oversubscribes one machine's cores: use processes across machines or GPUs.

N = 1 runs SCRIPT in this Python process, as `python SCRIPT ARGS…` would (torchrun would only add a launcher
process that imports torch too: about 2.5 s per stage, for the same bytes); N > 1 replaces this process with
`torchrun --standalone --nproc_per_node=N SCRIPT ARGS…`.

This module imports nothing but the standard library, so it runs before numpy or torch are loaded.
"""
from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

USAGE = "usage: python scripts/launch.py [--processes N] [--share-cores] SCRIPT [ARGS...]"


class UsageError(Exception):
    pass


def parse(argv: list[str]) -> tuple[int, bool, str, list[str]]:
    """(processes, share_cores, script, script args) from the launcher's own arguments, which come first."""
    processes, share, i = 1, False, 0
    while i < len(argv) and argv[i].startswith("--"):
        if argv[i] == "--share-cores":
            share, i = True, i + 1
        elif argv[i] == "--processes":
            value = argv[i + 1] if i + 1 < len(argv) else ""
            if not value.isdigit() or int(value) < 1:
                raise UsageError(f"--processes must be a whole number >= 1, got {value!r}")
            processes, i = int(value), i + 2
        else:
            raise UsageError(f"unknown launcher option {argv[i]!r}")
    if i >= len(argv):
        raise UsageError("no SCRIPT given")
    return processes, share, argv[i], argv[i + 1:]


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def process_environment(src: Path, processes: int, share_cores: bool, environ: dict[str, str]) -> dict[str, str]:
    """The variables to set for a stage run with `processes` workers from the tree whose package is `src`."""
    path = environ.get("PYTHONPATH")
    env = {"PYTHONPATH": str(src) + (os.pathsep + path if path else ""),
           "MKL_DYNAMIC": environ.get("MKL_DYNAMIC", "FALSE")}
    if processes > 1:
        cpus = usable_cpus()
        env["OMP_NUM_THREADS"] = str(max(1, cpus // processes) if share_cores else cpus)
    return env


def main(argv: list[str], src: Path) -> None:
    try:
        processes, share, script, args = parse(argv)
    except UsageError as e:
        sys.exit(f"error: {e}; {USAGE}")
    os.environ.update(process_environment(src, processes, share, os.environ))
    if processes > 1:
        os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                  f"--nproc_per_node={processes}", script, *args])
    # As `python SCRIPT` would: the script's folder first, then PYTHONPATH (read at start-up, so set here too).
    sys.argv = [script, *args]
    sys.path[:1] = [os.path.dirname(os.path.abspath(script)), str(src)]
    runpy.run_path(script, run_name="__main__")
