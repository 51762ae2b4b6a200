"""Test processes start as stage processes do (src/diffpipe/core/launch.py): MKL_DYNAMIC off before torch loads,
so a test comparing in-process bytes with a stage's output is not at the mercy of the machine's load."""
import os

os.environ.setdefault("MKL_DYNAMIC", "FALSE")
