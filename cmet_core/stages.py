"""The stages of a job, one list: what the pipeline times and reports progress for, what the job record's
`stage` says, what the worker's progress guard maps to a share of the job and the stage-seconds metric labels.

A `StrEnum`, so each member is its name as a string wherever it is stored or shown (the record, the API's
`stage`, log lines, Prometheus labels).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum


class Stage(StrEnum):
    """In the order a job runs them; an edit skips `mel` and `lips`, a dub runs them before `render`."""

    STARTING = "starting"
    """The worker claimed the job; no stage has reported yet."""
    FACES = "faces"
    ENCODE = "encode"
    MEL = "mel"
    LIPS = "lips"
    """A dub's lip track from its speech (Audio2Lip)."""
    EXPRESSION = "expression"
    ENHANCE = "enhance"
    RENDER = "render"
    QUALITY = "quality"
    """The quality report, measured on the written output (`cmet_core/quality/`)."""


Progress = Callable[[Stage, int, int], None]
"""progress(stage, done, total): called as each stage advances; `total` is the frame count."""
