"""Submissions' heavy work off the event loop, on a bounded set of threads of its own.

Saving parts, probing, hashing and storing block for seconds on a large or odd upload. They run
on at most `CMET_SUBMISSION_THREADS` threads (an anyio `CapacityLimiter` per app), so a flood of
submissions queues there, while the event loop and the default thread pool, which sync routes
such as `GET /v1/edits` run on, stay free for everyone's reads.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import anyio
from fastapi import FastAPI, Request

from cmet_jobs.settings import JobsSettings

P = ParamSpec("P")
R = TypeVar("R")


def install(app: FastAPI, settings: JobsSettings) -> None:
    app.state.heavy = anyio.CapacityLimiter(settings.submission_threads)


async def heavy(request: Request, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """`fn(*args, **kwargs)` on one of the app's submission threads (waiting for a free one)."""
    limiter: anyio.CapacityLimiter = request.app.state.heavy
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=limiter)
