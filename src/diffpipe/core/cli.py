"""Shared entry-point wrapper for stage scripts: user errors become one line on stderr, exit code 1."""
from __future__ import annotations

import sys
from typing import Callable

from .errors import PipelineError


def run_main(main: Callable[[], None]) -> None:
    """Run a stage's main; under torchrun, leave the process group when it ends (see distributed.py)."""
    try:
        main()
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    finally:
        from . import distributed
        distributed.close(distributed.world_from_env())
