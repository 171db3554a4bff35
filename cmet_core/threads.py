"""One thread policy per process: how many threads torch, OpenCV and the video codecs may each use.

Why one number: the three pools are separate, and each sizes itself to the machine's cores. On a
shared or busy host they oversubscribe the cores several times over, and torch's OpenMP threads
then wait on each other at every operation (measured: `cmet edit` of a 7 s clip on a 2-core
machine with a neighbour busy took minutes instead of seconds). `CMET_NUM_THREADS` (the settings'
`num_threads`) sets all three; unset, each gets the cores this process may run on, divided by the
worker processes sharing the host (the worker supervisor sets it per worker).

`Editor.from_settings`, where the CLI (`cmet edit`, `cmet preview`), the workers (`cmet serve`'s and
`cmet worker`'s) and the benchmarks build their editor, applies it. Idle OpenMP threads sleep instead
of spinning where the process starts from `cmet` (`cmet_cli/__init__.py`), so threads beyond the
cores that are free cost little.
"""

from __future__ import annotations

import logging
import os

from cmet_core.media.video import set_codec_threads
from cmet_core.settings import CoreSettings

log = logging.getLogger(__name__)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and `taskset` narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def thread_count(settings: CoreSettings, processes: int = 1) -> int:
    """The policy's number for each of `processes` sharing the host: the setting, else their share of the cores."""
    if settings.num_threads is not None:
        return settings.num_threads
    return max(1, available_cores() // processes)


def apply_thread_policy(settings: CoreSettings) -> int:
    """Size torch's, OpenCV's and the codecs' threads to the policy; returns the count."""
    # deferred: torch and cv2 load only where frames are worked on (the API never imports them)
    import cv2
    import torch

    threads = thread_count(settings)
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    set_codec_threads(threads)
    log.debug("thread policy: %d threads for torch, OpenCV and each codec", threads)
    return threads
