"""Edits enforce their own soft time limit: Celery's thread and solo pools (the batching worker,
`cmet serve`) never do."""

from __future__ import annotations

import time

import pytest

from service.settings import ServiceSettings
from worker.tasks import JobTimedOut, _Progress


def test_progress_stops_an_edit_past_its_deadline(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = ServiceSettings(data_dir=tmp_path)
    progress = _Progress(settings, storage=None, job_id="edt_x", limit_s=0.05)  # type: ignore[arg-type]
    time.sleep(0.1)
    with pytest.raises(JobTimedOut, match="time limit of 0 s"):
        progress("render", 3, 10)
