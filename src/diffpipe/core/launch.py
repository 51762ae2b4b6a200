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
  a single process's bytes. That oversubscribes one machine's cores: use processes across machines or GPUs;
- **how the stage stops on a signal** (below).

N = 1 runs SCRIPT in this Python process, as `python SCRIPT ARGS…` would (torchrun would only add a launcher
process that imports torch too: about 2.5 s per stage, for the same bytes); N > 1 replaces this process with
`torchrun --standalone --nproc_per_node=N scripts/launch.py SCRIPT ARGS…`, so each worker runs this set-up too.

Stopping. SIGTERM, SIGINT (Ctrl-C) and SIGUSR1 ask a stage to stop. The first one is acted on; later ones
are ignored, so nothing interrupts a stop under way (a save, a clean-up). By default it raises `Stopped` at
once in the main thread, as Ctrl-C raises KeyboardInterrupt: the atomic writers' `finally` blocks remove
their temporary files, and outputs not yet replaced stay as they were; `run_main` (core/cli.py) prints one
line and exits with 128 + the signal number (143 SIGTERM, 130 SIGINT, 138 SIGUSR1). Inside `deferred_stop()`
(the training loop) the signal is only recorded: the trainer reads `stop_requested()` after each optimiser
step, saves its state there and raises `Stopped` itself.
A SIGTERM to DVC's process alone kills it at once, and its stage would run on to the end, writing outputs
nobody records; so the stage asks the kernel for SIGTERM when its parent dies (Linux PR_SET_PDEATHSIG).
Under torchrun the agent gets it (set before exec; it survives exec) and forwards it to the workers; a
worker gets SIGKILL when its agent dies, so a `kill -9` stops everything at once, as it does one process.
DVC runs each cmd as `$SHELL -c CMD`: bash replaces itself with the command, but dash (Debian's /bin/sh, what
DVC uses where SHELL is unset) stays as the stage's parent and lives on when DVC dies. So when the parent is
such a `SHELL -c`, the launcher also names the process above it (DVC) in DIFFPIPE_RUNNER (its pid and start
time, inherited by torchrun's workers), and every stage process watches it from a thread (a Linux pidfd): when
it ends, the process sends itself SIGTERM, as for its parent's death.

This module imports nothing but the standard library, so it runs before numpy or torch are loaded.
"""
from __future__ import annotations

import contextlib
import os
import runpy
import signal
import sys
from pathlib import Path
from typing import Iterator, Optional

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
    first = path.split(os.pathsep)[0] if path else None
    env = {"PYTHONPATH": path if first == str(src) else str(src) + (os.pathsep + path if path else ""),
           "MKL_DYNAMIC": environ.get("MKL_DYNAMIC", "FALSE")}
    if processes > 1:
        cpus = usable_cpus()
        env["OMP_NUM_THREADS"] = str(max(1, cpus // processes) if share_cores else cpus)
        # the signals torchrun's agent forwards to its workers (`--signals-to-handle`): its default list lacks
        # SIGUSR1, which would kill the agent, and a worker with it
        env["PET_SIGNALS_TO_HANDLE"] = environ.get("PET_SIGNALS_TO_HANDLE", "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1")
    return env


# ---- stopping on a signal ------------------------------------------------------------------------------

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
_requested = 0  # the first stop signal received (0: none)
_deferring = 0  # depth of deferred_stop()


class Stopped(BaseException):
    """The stage was asked to stop by signal `signum`. A BaseException, as KeyboardInterrupt, so that `except
    Exception` does not swallow it; `message` is the line run_main prints (None: its default)."""

    def __init__(self, signum: int, message: Optional[str] = None):
        super().__init__(message or signal.Signals(signum).name)
        self.signum, self.message = signum, message

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


def _on_stop_signal(signum: int, frame) -> None:
    global _requested
    if _requested:
        return  # already stopping: a second Ctrl-C or SIGTERM must not interrupt the save or the clean-up
    _requested = signum
    if not _deferring:
        raise Stopped(signum)


def install_stop_handlers() -> None:
    """Stop on SIGTERM, SIGINT and SIGUSR1 as the module docstring says. A SIGINT the process was started
    ignoring stays ignored (a shell starts background jobs so)."""
    for sig in STOP_SIGNALS:
        if sig != signal.SIGINT or signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _on_stop_signal)


def stop_requested() -> int:
    """The signal that asked this process to stop (the first one), 0 if none."""
    return _requested


@contextlib.contextmanager
def deferred_stop() -> Iterator[None]:
    """Within the block a stop signal is recorded, not raised: the caller checks `stop_requested()` where it can
    stop cleanly. A request still pending when the block ends normally is raised there."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    if _requested and not _deferring:
        raise Stopped(_requested)


def ignore_stop_signals() -> None:
    """The process is ending (on an error, or stopped): a stop signal arriving now (torchrun's agent sends SIGTERM
    to the other workers when one fails) must not replace the error's line with a stop line."""
    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) is _on_stop_signal:
            signal.signal(sig, signal.SIG_IGN)


def exit_stopped(stop: Stopped, stage: str) -> None:
    """Print the stop's one line (rank 0 only, as the stage's own reports) and exit with 128 + the signal (a signal
    arriving while Python shuts down is ignored: it would otherwise end the process by the signal instead)."""
    ignore_stop_signals()
    if os.environ.get("RANK", "0") == "0":
        print(stop.message or f"{stage}: stopped by {stop.name}; previous outputs kept", file=sys.stderr, flush=True)
    sys.exit(128 + stop.signum)


def die_with_parent(sig: int, parent: int) -> None:
    """Have the kernel send `sig` to this process when its parent (the thread that started it) ends (Linux
    PR_SET_PDEATHSIG; it survives exec). If the parent `parent` is already gone, the signal is sent now."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, sig)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent ended before the call
        os.kill(os.getpid(), sig)


# ---- stopping when the runner (DVC) ends ------------------------------------------------------------------

RUNNER_ENV = "DIFFPIPE_RUNNER"
SHELLS = frozenset({"sh", "dash", "bash", "zsh", "fish", "ksh", "mksh", "busybox"})


def _proc_stat(pid: int) -> Optional[tuple[int, str]]:
    """(parent pid, start time in clock ticks since boot) of process `pid` from /proc, None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[19]  # fields 4 and 22 of proc(5), counted after the ")" ending the name


def _runs_a_command_string(pid: int) -> bool:
    """Whether process `pid` is a shell running `SHELL [OPTIONS] -c CMD` (as DVC starts every stage)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(args[0]) and os.path.basename(args[0].decode(errors="replace")) in SHELLS and b"-c" in args[1:]


def runner_behind_shells(parent: int) -> Optional[str]:
    """"pid:start time" of the first process above `parent` that is not a `SHELL -c` (the runner: DVC), when
    `parent` is one; None when the parent is no such shell (its death alone is the runner's: PR_SET_PDEATHSIG)."""
    pid, behind = parent, False
    while pid > 1 and _runs_a_command_string(pid):
        stat = _proc_stat(pid)
        if stat is None:
            return None
        pid, behind = stat[0], True
    stat = _proc_stat(pid) if behind and pid > 1 else None
    return f"{pid}:{stat[1]}" if stat else None


def watch_runner(runner: str, sig: int) -> None:
    """Send `sig` to this process when process `runner` ("pid:start time") ends; at once if it has already ended
    (or its pid now names another process). The wait is a daemon thread blocked on a pidfd (polled once a second
    where the kernel has no pidfd_open)."""
    import select
    import threading
    import time

    pid, start = (int(runner.split(":")[0]), runner.split(":")[1]) if runner.count(":") == 1 else (0, "")
    if pid <= 1:
        return  # not a runner this launcher named
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # no pidfd (before Linux 5.3, or no such process: checked next)
        fd = None
    if (_proc_stat(pid) or (0, None))[1] != start:
        os.kill(os.getpid(), sig)
        return

    def wait() -> None:
        if fd is not None:
            select.select([fd], [], [])  # readable once the process has ended
        else:
            while (_proc_stat(pid) or (0, None))[1] == start:
                time.sleep(1)
        os.kill(os.getpid(), sig)

    threading.Thread(target=wait, name="runner watch", daemon=True).start()


def main(argv: list[str], src: Path) -> None:
    parent = os.getppid()
    try:
        processes, share, script, args = parse(argv)
    except UsageError as e:
        sys.exit(f"error: {e}; {USAGE}")
    os.environ.update(process_environment(src, processes, share, os.environ))
    runner = runner_behind_shells(parent)
    if runner:
        os.environ[RUNNER_ENV] = runner
    if processes > 1:  # torchrun's agent forwards SIGTERM, SIGINT and SIGUSR1 to the workers
        die_with_parent(signal.SIGTERM, parent)
        os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                  f"--nproc_per_node={processes}", str(src.parent / "scripts" / "launch.py"),
                                  script, *args])
    die_with_parent(signal.SIGKILL if "TORCHELASTIC_RUN_ID" in os.environ else signal.SIGTERM, parent)
    install_stop_handlers()
    if os.environ.get(RUNNER_ENV):
        watch_runner(os.environ[RUNNER_ENV], signal.SIGTERM)
    # As `python SCRIPT` would: the script's folder first, then PYTHONPATH (read at start-up, so set here too).
    sys.argv = [script, *args]
    sys.path[:1] = [os.path.dirname(os.path.abspath(script)), str(src)]
    try:
        runpy.run_path(script, run_name="__main__")
    except Stopped as stop:  # while the script imports, before its run_main catches it
        exit_stopped(stop, Path(script).stem)
