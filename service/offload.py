"""Submissions' heavy work off the event loop, on a bounded set of threads of its own.

Saving parts, probing, hashing and storing block for seconds on a large or odd upload. They run
on at most `CMET_SUBMISSION_THREADS` threads (an anyio `CapacityLimiter` per app), so a flood of
submissions queues there, while the event loop and the default thread pool, which sync routes
such as `GET /v1/edits` run on, stay free for everyone's reads. One key works on at most
`CMET_SUBMISSIONS_PER_KEY` submissions at once across the API processes (`submission`: waiting ones
included; 429 `concurrent_submissions` beyond; `cmet_jobs.slots`), so a key whose submissions are slow (a
URL that drips, a huge upload) leaves the other threads to other keys.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import anyio
from fastapi import FastAPI, Request

from cmet_core.errors import ErrorCode
from cmet_jobs.errors import RequestError
from cmet_jobs.settings import JobsSettings
from cmet_jobs.slots import Slots, slots_for

P = ParamSpec("P")
R = TypeVar("R")


def install(app: FastAPI, settings: JobsSettings) -> None:
    app.state.heavy = anyio.CapacityLimiter(settings.submission_threads)
    app.state.submitting = slots_for(settings, "submissions", settings.submissions_per_key)


async def heavy(request: Request, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """`fn(*args, **kwargs)` on one of the app's submission threads (waiting for a free one)."""
    limiter: anyio.CapacityLimiter = request.app.state.heavy
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=limiter)


SUBMISSION_RETRY_AFTER_S = 2


async def submission(request: Request, key_id: str, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """`heavy`, for one of `key_id`'s submissions: refused with 429 when the key already has its maximum
    being worked on (or waiting for a thread) in any API process."""
    submitting: Slots = request.app.state.submitting
    slot = await anyio.to_thread.run_sync(submitting.take, key_id)
    if slot is None:
        raise RequestError(
            ErrorCode.CONCURRENT_SUBMISSIONS,
            f"this key has {submitting.limit} submissions being worked on; send the next when one is answered",
            {"Retry-After": str(SUBMISSION_RETRY_AFTER_S)},
        )
    try:
        return await heavy(request, fn, *args, **kwargs)
    finally:
        with anyio.CancelScope(shield=True):  # a client that left still gives its slot back
            await anyio.to_thread.run_sync(submitting.give, slot)
