"""Progress bars for long work: shown on a terminal, silent when output is a file or a CI log.

Use the bar as a context manager (`with progress_bar(...) as bar:`): it is then closed, ending its line, also
when the work stops on an error or a stop signal, so the stage's last line starts on a line of its own."""
from __future__ import annotations

from typing import Iterable, Optional

from tqdm import tqdm

from .launch import deferred_stop, stop_requested


def progress_bar(iterable: Optional[Iterable] = None, *, desc: str, total: Optional[int] = None, unit: str = "it",
                 enabled: bool = True, initial: int = 0) -> tqdm:
    """A tqdm bar with an ETA; `disable=None` makes tqdm hide it when stderr is not a terminal. A stop signal
    while tqdm draws the new bar is held until the bar exists, which is then closed before the stop is raised."""
    with deferred_stop():
        bar = tqdm(iterable, desc=desc, total=total, unit=unit, initial=initial, disable=None if enabled else True,
                   mininterval=1.0, dynamic_ncols=True)
        if stop_requested():
            bar.close()
    return bar
