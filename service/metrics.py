"""The API's request metrics and its `/metrics` page.

Requests are labelled by route template (`/v1/edits/{job_id}`), never by raw path, so ids do
not become label values. With PROMETHEUS_MULTIPROC_DIR set (several uvicorn processes) the
page sums every process's files.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from fastapi import FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from cmet_jobs import queue
from cmet_jobs.db.models import JobRow
from cmet_jobs.db.session import session_scope
from cmet_jobs.settings import JobsSettings
from cmet_jobs.states import JobState

log = logging.getLogger(__name__)

REQUESTS = Counter("cmet_http_requests_total", "API requests.", ["method", "route", "status"])
LATENCY = Histogram(
    "cmet_http_request_duration_seconds",
    "API request latency.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def _route(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", None) or "unmatched"


def install(app: FastAPI) -> None:
    @app.middleware("http")
    async def _measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = _route(request)
        REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        LATENCY.labels(request.method, route).observe(time.perf_counter() - start)
        return response


class JobStates:
    """`cmet_jobs{state}`: jobs in each state now, counted from the job records at scrape time (the
    records are the truth; a counter kept by processes would miss jobs no process touched)."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("cmet_jobs", "Edit jobs in each state, from the job records.", labels=["state"])
        with session_scope(self.db_url) as session:
            counts = dict(session.execute(select(JobRow.state, func.count()).group_by(JobRow.state)).all())
        for state in JobState:
            family.add_metric([state.value], float(counts.get(state, 0)))
        yield family


class QueueDepth:
    """`cmet_queue_waiting{queue}` and `cmet_queue_oldest_waiting_seconds{queue}`, read off the broker at scrape
    time: what a cluster without KEDA scales the GPU workers on (an HPA on external metrics, an alert on the
    age). A broker that cannot be read leaves both out of the page rather than failing the scrape."""

    def __init__(self, settings: JobsSettings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            queues = queue.waiting(self.settings)
        except Exception:  # the broker is away: the other metrics still matter, /readyz says what is wrong
            log.warning("queue depth not read", exc_info=True)
            return
        depth = GaugeMetricFamily("cmet_queue_waiting", "Jobs waiting in each worker queue.", labels=["queue"])
        age = GaugeMetricFamily(
            "cmet_queue_oldest_waiting_seconds",
            "Since the oldest job waiting in each worker queue was queued (0: none waits, or its age is unknown).",
            labels=["queue"],
        )
        for q in queues:
            depth.add_metric([q.queue], float(q.messages))
            age.add_metric([q.queue], q.oldest_age_s or 0.0)
        yield depth
        yield age


def page(settings: JobsSettings) -> Response:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Default())
    registry.register(JobStates(settings.db_url))
    registry.register(QueueDepth(settings))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class _Default:
    """This process's own metrics (single-process mode)."""

    def collect(self) -> Iterable[Any]:
        return REGISTRY.collect()
