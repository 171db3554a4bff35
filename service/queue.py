"""Submitting job ids to the workers' queue by task name, so the API never imports the worker (or torch)."""

from __future__ import annotations

from functools import lru_cache

from celery import Celery

from service.settings import ServiceSettings

RUN_EDIT = "cmet.run_edit"


@lru_cache(maxsize=4)
def _client(broker_url: str) -> Celery:
    return Celery("cmet-api", broker=broker_url, set_as_current=False)


def submit(settings: ServiceSettings, job_id: str) -> None:
    _client(settings.broker_url).send_task(RUN_EDIT, args=[job_id], queue=settings.queue)


def ping_broker(settings: ServiceSettings) -> None:
    with _client(settings.broker_url).connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
