"""Following a job or a batch to its end: the server-sent events parser and the bookkeeping both clients share.

The server sends `state`, `progress` and a last `result` event, each with the job as JSON (or `error`
when the job was deleted); a batch's stream sends those of each of its edits, then `batch`. When the
stream cannot be had (an old server, a proxy that buffers or cuts it), the clients poll `GET` instead;
either way the caller's progress callback sees each change once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel

from cmet_client import models
from cmet_client.errors import ApiError, JobFailedError, WaitTimeoutError

J = TypeVar("J", bound=BaseModel)
F = TypeVar("F", bound=BaseModel)

FINAL = frozenset({"succeeded", "failed", "canceled"})
STREAM_READ_S = 60.0
"""The server sends a keep-alive every 15 s; a stream silent for this long is dead."""


@dataclass
class EventParser:
    """Lines of a `text/event-stream` in, `(event, data)` out at each blank line (the WHATWG rules
    this server's events need: `event`, multi-line `data`, comments)."""

    event: str = "message"
    data: list[str] = field(default_factory=list)

    def line(self, text: str) -> tuple[str, str] | None:
        if text == "":
            done = (self.event, "\n".join(self.data)) if self.data else None
            self.event, self.data = "message", []
            return done
        if text.startswith(":"):
            return None
        name, _, value = text.partition(":")
        if name == "event":
            self.event = value.removeprefix(" ")
        elif name == "data":
            self.data.append(value.removeprefix(" "))
        return None


class Following(Protocol[F]):
    """What `follow` needs of a wait: the model `GET` answers, and when a read or an event is the end."""

    @property
    def model(self) -> type[F]: ...

    def seen(self, current: F) -> bool: ...

    def event(self, name: str, data: str) -> F | None: ...

    def left(self) -> float | None: ...

    def done(self, final: F) -> F: ...


def seconds_left(started: float, timeout: float | None) -> float | None:
    """Seconds left before the deadline (WaitTimeoutError when none)."""
    if timeout is None:
        return None
    left = timeout - (time.monotonic() - started)
    if left <= 0:
        raise WaitTimeoutError(f"not ended within {timeout:g} s")
    return left


@dataclass
class Watch(Generic[J]):
    """One `wait()`: reports each change to `progress`, knows the deadline, ends with the final job."""

    model: type[J]
    progress: Callable[[J], object] | None
    timeout: float | None
    raise_on_failure: bool
    started: float = field(default_factory=time.monotonic)
    last: tuple[object, ...] | None = None

    def left(self) -> float | None:
        return seconds_left(self.started, self.timeout)

    def seen(self, job: J) -> bool:
        """Whether `job` is final; calls `progress` when its state, stage or progress changed."""
        now = (getattr(job, "state", None), getattr(job, "stage", None), getattr(job, "progress", None))
        if now != self.last and self.progress is not None:
            self.progress(job)
        self.last = now
        return getattr(job, "state", None) in FINAL

    def event(self, name: str, data: str) -> J | None:
        """The final job once an event says so; a deleted job raises its problem."""
        if name == "error":
            raise ApiError.of_event(data)
        if name not in ("state", "progress", "result"):
            return None
        job = self.model.model_validate_json(data)
        return job if self.seen(job) else None

    def done(self, job: J) -> J:
        state = getattr(job, "state", None)
        if self.raise_on_failure and state in ("failed", "canceled"):
            error = getattr(job, "error", None)
            code = error.code if error is not None else "canceled"
            message = error.message if error is not None else "canceled"
            raise JobFailedError(getattr(job, "id", "?"), str(state), str(code), message)
        return job


@dataclass
class BatchWatch:
    """One batch's `wait()`: each edit's changes to `progress` (from the stream), the batch at the end."""

    progress: Callable[[models.Job], object] | None
    timeout: float | None
    model: type[models.Batch] = models.Batch
    started: float = field(default_factory=time.monotonic)
    last: dict[str, tuple[object, ...]] = field(default_factory=dict)

    def left(self) -> float | None:
        return seconds_left(self.started, self.timeout)

    def seen(self, current: models.Batch) -> bool:
        return current.state == "completed"

    def event(self, name: str, data: str) -> models.Batch | None:
        if name == "error":
            raise ApiError.of_event(data)
        if name == "batch":
            return models.Batch.model_validate_json(data)
        if name in ("state", "progress", "result"):
            job = models.Job.model_validate_json(data)
            now = (job.state, job.stage, job.progress)
            if self.last.get(job.id) != now and self.progress is not None:
                self.progress(job)
            self.last[job.id] = now
        return None

    def done(self, final: models.Batch) -> models.Batch:
        return final
