"""Stages of a stream of frames running at once, each in a thread of its own, joined by bounded queues.

Why threads suffice: PyAV's decoding and encoding, OpenCV, MediaPipe and torch all release the GIL
while they work, so a decoder thread, the networks and a paste-and-encode thread overlap on the
cores, and wall time per frame approaches the slowest stage instead of the sum. The queues hold a
few items each, so memory stays flat in the clip's length. An error in a thread is raised where
the stream is read (or in `Drain.close`); a reader that stops early stops the producer.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")

_WAIT_S = 0.1
"""How often a blocked thread looks whether the other side has stopped."""


class _End:
    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def _put(box: queue.Queue[object], item: object, stop: threading.Event) -> bool:
    """Put unless the other side stopped; False then."""
    while not stop.is_set():
        try:
            box.put(item, timeout=_WAIT_S)
            return True
        except queue.Full:
            continue
    return False


def _thread(target: Callable[[], None], name: str) -> threading.Thread:
    """A daemon thread that runs in a copy of the caller's context (a job's log fields follow it)."""
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(target,), name=name, daemon=True)
    thread.start()
    return thread


def prefetched(items: Iterable[T], depth: int, name: str = "cmet-prefetch") -> Iterator[T]:
    """`items`, produced by a thread of their own at most `depth` ahead of the reader."""
    box: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if not _put(box, item, stop):
                    return
        except BaseException as exc:  # handed to the reader, raised there
            _put(box, _End(exc), stop)
            return
        _put(box, _End(), stop)

    thread = _thread(produce, name)
    try:
        while True:
            item = box.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()


class Drain(Generic[T]):
    """Items handed to `work` in a thread of its own, at most `depth` waiting; `close` waits for the last
    and raises the thread's error, if any. A context manager: leaving with an error stops the thread."""

    def __init__(self, work: Callable[[T], None], depth: int, name: str = "cmet-drain") -> None:
        self.work = work
        self.box: queue.Queue[object] = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = _thread(self._consume, name)

    def _consume(self) -> None:
        while not self.stop.is_set():
            try:
                item = self.box.get(timeout=_WAIT_S)
            except queue.Empty:
                continue
            if isinstance(item, _End):
                return
            try:
                self.work(item)  # type: ignore[arg-type]
            except BaseException as exc:  # raised by `put` or `close` in the caller
                self.error = exc
                self.stop.set()
                return

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def put(self, item: T) -> None:
        self._raise()
        if not _put(self.box, item, self.stop):
            self._raise()

    def close(self) -> None:
        """Wait until every item is worked; the thread's error is raised here."""
        _put(self.box, _End(), self.stop)
        self.thread.join()
        self._raise()

    def __enter__(self) -> Drain[T]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.stop.set()
            self.thread.join()
