"""CPU seconds per step of the data path (decoding, detection, crops, paste-back, encoding, ...), counted
per thread with `time.thread_time`.

Why thread CPU time: on a shared, loaded machine wall time measures the neighbours; the CPU a step
burns in its own thread does not, and it still adds up when the steps run in several threads at once
(the overlapped frame loop). `bench/data_path.py` switches a `Meter` on around an edit and prints the
steps; with no meter on, `step` costs one global read.

Steps nest: a step counts only its own time, not that of the steps inside it (the face pass's
decoding is "decode faces", its detection "detect faces").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

NETWORKS = "networks"
"""The step every network forward is counted under (`editing.Clock.networks`)."""


class Meter:
    """Thread CPU seconds per step name, collected from every thread while it is on."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def _stack(self) -> list[float]:
        stack: list[float] | None = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds
            self.calls[name] = self.calls.get(name, 0) + 1


_ON: Meter | None = None


@contextmanager
def metering() -> Iterator[Meter]:
    """Count the steps of everything run until the block ends (one at a time: a benchmark's)."""
    global _ON
    meter = Meter()
    _ON = meter
    try:
        yield meter
    finally:
        _ON = None


@contextmanager
def step(name: str) -> Iterator[None]:
    """Count the CPU this thread spends in the block as `name` (less the steps nested in it)."""
    meter = _ON
    if meter is None:
        yield
        return
    stack = meter._stack()
    stack.append(0.0)  # CPU of nested steps, taken out of this one
    start = time.thread_time()
    try:
        yield
    finally:
        spent = time.thread_time() - start
        nested = stack.pop()
        meter.add(name, spent - nested)
        if stack:
            stack[-1] += spent


def metered(name: str, items: Iterable[T]) -> Iterator[T]:
    """`items`, the CPU of producing each counted as `name` (a decoder's frames)."""
    iterator = iter(items)
    while True:
        with step(name):
            try:
                item = next(iterator)
            except StopIteration:
                return
        yield item
