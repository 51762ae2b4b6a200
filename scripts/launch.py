"""Run a stage script as PROCESSES workers: under `torchrun --standalone` when PROCESSES > 1; in this Python
process when it is 1, as `python SCRIPT ARGS…` would (torchrun would only add a launcher process, which
imports torch too: about 2.5 s per stage here, for the same bytes).

    usage: python scripts/launch.py PROCESSES SCRIPT [ARGS...]

The `cmd` of dvc.yaml's train, sample, evaluate and reference_features stages. It imports nothing of the
package, so the stage script imports its own tree's code (a queued experiment's snapshot).
"""
import os
import runpy
import sys


def main() -> None:
    if len(sys.argv) < 3 or not sys.argv[1].isdigit() or int(sys.argv[1]) < 1:
        sys.exit(f"error: usage: python scripts/launch.py PROCESSES SCRIPT [ARGS...] with PROCESSES a whole number "
                 f">= 1, got {sys.argv[1:2]}")
    processes, script, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    if processes == 1:
        sys.argv = [script, *args]
        sys.path[0] = os.path.dirname(os.path.abspath(script))
        runpy.run_path(script, run_name="__main__")
    else:
        os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                  f"--nproc_per_node={processes}", script, *args])


if __name__ == "__main__":
    main()
