"""Submissions' heavy work off the event loop, on a bounded set of threads of its own.

Saving parts, probing, hashing and storing block for seconds on a large or odd upload. They run
on at most `CMET_SUBMISSION_THREADS` threads (an anyio `CapacityLimiter` per app), so a flood of
submissions queues there, while the event loop and the default thread pool, which sync routes
such as `GET /v1/edits` run on, stay free for everyone's reads. One key works on at most
`CMET_SUBMISSIONS_PER_KEY` submissions at once in a process (`submission`: waiting ones included; 429
`concurrent_submissions` beyond), so a key whose submissions are slow (a URL that drips, a huge upload)
leaves the other threads to other keys.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import anyio
from fastapi import FastAPI, Request

from cmet_core.errors import ErrorCode
from cmet_jobs.errors import RequestError
from cmet_jobs.settings import JobsSettings

P = ParamSpec("P")
R = TypeVar("R")


def install(app: FastAPI, settings: JobsSettings) -> None:
    app.state.heavy = anyio.CapacityLimiter(settings.submission_threads)
    app.state.submitting = Counter[str]()
    app.state.submissions_per_key = settings.submissions_per_key


async def heavy(request: Request, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """`fn(*args, **kwargs)` on one of the app's submission threads (waiting for a free one)."""
    limiter: anyio.CapacityLimiter = request.app.state.heavy
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=limiter)


SUBMISSION_RETRY_AFTER_S = 2


async def submission(request: Request, key_id: str, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """`heavy`, for one of `key_id`'s submissions: refused with 429 when the key already has its maximum
    being worked on (or waiting for a thread) in this process."""
    submitting: Counter[str] = request.app.state.submitting
    most: int = request.app.state.submissions_per_key
    if submitting[key_id] >= most:
        raise RequestError(
            ErrorCode.CONCURRENT_SUBMISSIONS,
            f"this key has {most} submissions being worked on; send the next when one is answered",
            {"Retry-After": str(SUBMISSION_RETRY_AFTER_S)},
        )
    submitting[key_id] += 1
    try:
        return await heavy(request, fn, *args, **kwargs)
    finally:
        submitting[key_id] -= 1
        if not submitting[key_id]:
            del submitting[key_id]
