"""The one way every stage starts: `python scripts/launch.py [--processes N] [--share-cores] SCRIPT [ARGS...]`.

It puts this tree's `src` first on the import path and hands over to `diffpipe.core.launch`, which sets the
process environment (threads, MKL_DYNAMIC) and runs SCRIPT in this process (N = 1) or under torchrun (N > 1).
"""
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path[0] = str(SRC)  # in place of this file's folder: this tree's package, not an installed one

from diffpipe.core.launch import main  # noqa: E402  (the import path must be set first)

if __name__ == "__main__":
    main(sys.argv[1:], SRC)
