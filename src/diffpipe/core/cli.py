"""Shared entry-point wrapper for stage scripts: user errors, and a write the disk refuses (full, over a size
limit, read-only) outside the atomic writers (which say so themselves), become one line on stderr, exit code 1;
a stop on a signal (core/launch.py) becomes one line, exit code 128 + the signal number."""
from __future__ import annotations

import errno
import signal
import sys
from pathlib import Path
from typing import Callable

from .errors import PipelineError
from .launch import Stopped, exit_stopped, ignore_stop_signals


def _close_progress_bars() -> None:
    """End the progress bars an exception left open, so the line below starts a line of its own."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()


FULL_DISK = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def _fail(message: str) -> None:
    ignore_stop_signals()
    _close_progress_bars()
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def run_main(main: Callable[[], None]) -> None:
    try:
        main()
    except PipelineError as e:
        _fail(str(e))
    except OSError as e:  # e.g. DVCLive appending to its history on a full disk
        if e.errno not in FULL_DISK:
            raise
        _fail(f"{e.filename}: could not write ({e.strerror})" if e.filename else f"could not write ({e.strerror})")
    except Stopped as stop:  # e.g. `sample: stopped by SIGTERM; previous outputs kept`, exit 143
        _close_progress_bars()
        exit_stopped(stop, Path(sys.argv[0]).stem)
    except KeyboardInterrupt:  # Ctrl-C in a process the launcher did not set up
        _close_progress_bars()
        exit_stopped(Stopped(signal.SIGINT), Path(sys.argv[0]).stem)
