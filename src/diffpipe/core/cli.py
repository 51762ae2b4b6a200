"""Shared entry-point wrapper for stage scripts: user errors become one line on stderr, exit code 1."""
from __future__ import annotations

import sys
from typing import Callable

from .errors import PipelineError


def run_main(main: Callable[[], None]) -> None:
    try:
        main()
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
