"""The one error every model loader raises, so callers catch a single type whatever the model."""

from __future__ import annotations

from collections.abc import Sequence


class ModelLoadError(ValueError):
    """A model file or directory that cannot be served; the message names the file and the problem.

    Loaders raise it instead of running on partly random weights, which some libraries (funasr
    among them) do silently when keys are missing or shapes differ.
    """


def few(items: Sequence[str], n: int = 4) -> str:
    """The first `n` items and how many there are, so one error line stays readable for any count."""
    shown = ", ".join(items[:n])
    return shown + (f", ... ({len(items)} in all)" if len(items) > n else "")
