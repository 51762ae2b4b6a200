"""Progress bars for long work: shown on a terminal, silent when output is a file or a CI log."""
from __future__ import annotations

from typing import Iterable, Optional

from tqdm import tqdm


def progress_bar(iterable: Optional[Iterable] = None, *, desc: str, total: Optional[int] = None, unit: str = "it",
                 enabled: bool = True, initial: int = 0) -> tqdm:
    """A tqdm bar with an ETA; `disable=None` makes tqdm hide it when stderr is not a terminal."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, initial=initial, disable=None if enabled else True,
                mininterval=1.0, dynamic_ncols=True)
