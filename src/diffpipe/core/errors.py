"""The project's user-facing errors: one line naming the file or params key and what is wrong."""
from __future__ import annotations


class PipelineError(Exception):
    """An error with a one-line message meant for the user (file/key and what is wrong)."""


class ConfigError(PipelineError):
    """Invalid params: the message names the key (e.g. `diffusion.beta_end`) and what is wrong."""
