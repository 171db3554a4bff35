"""The limits a submission and an edit run under: time limits from the work, the deployment's
input limits in every edit's options, and the per-minute rate counted from submissions."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmet_core.errors import ErrorCode
from cmet_jobs import quota
from cmet_jobs.db.models import ApiKey, JobRow
from cmet_jobs.db.session import migrate, session_scope
from cmet_jobs.errors import RequestError
from cmet_jobs.queue import LOAD_S, MAX_TASK_S, time_limits
from cmet_jobs.settings import JobsSettings
from cmet_jobs.spec import EditSpec, InputRef, run_options
from cmet_jobs.states import JobState


def test_time_limits_grow_with_frames_and_pixels_not_seconds() -> None:
    assert time_limits(None, None) == (MAX_TASK_S - 30, MAX_TASK_S)  # not probed: the cap
    small = time_limits(5, 64 * 64)[1]
    assert LOAD_S <= small < LOAD_S + 10
    # the clip: 2 s of 64x64 with 100,000 frames is no short job (the old rule gave it 340 s)
    assert time_limits(100_000, 64 * 64)[1] == MAX_TASK_S
    assert time_limits(250, 1280 * 720)[1] > time_limits(250, 64 * 64)[1] > time_limits(25, 64 * 64)[1]
    soft, hard = time_limits(1000, 1920 * 1080)
    assert soft == hard - 30


def test_every_edit_runs_with_the_deployments_input_limits(tmp_path: Path) -> None:
    settings = JobsSettings(data_dir=tmp_path, max_video_duration_s=12, max_video_frames=300, max_pixels_per_second=1e6)
    spec = EditSpec(video=InputRef(url="https://example.com/a.mp4"), emotion="happy", face_index=1, source_frame=7)
    choices, limits = run_options(spec, settings)
    assert (limits.max_duration_s, limits.max_frames, limits.max_pixels_per_second) == (12, 300, 1e6)
    assert (choices.face_index, choices.face_box, choices.source_frame) == (1, None, 7)


def test_the_rate_counts_submissions_not_job_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    migrate(url)
    with session_scope(url) as session:
        key = ApiKey(name="t", prefix="p", key_hash="h" * 64, webhook_secret="whsec_x", max_submissions_per_minute=2)
        session.add(key)
    for _ in range(2):
        with session_scope(url) as session:
            key = session.get(ApiKey, key.id)
            quota.check(session, key)
            session.add(JobRow(key_id=key.id, state=JobState.SUCCEEDED, spec={}))
    with session_scope(url) as session:
        session.query(JobRow).delete()  # deleting the jobs frees nothing
    with session_scope(url) as session, pytest.raises(RequestError) as refused:
        quota.check(session, session.get(ApiKey, key.id))
    assert refused.value.code == ErrorCode.RATE_LIMIT and 1 <= int(refused.value.headers["Retry-After"]) <= 60
