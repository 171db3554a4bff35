"""`dry_run: true` on a submission: what the edit would be (frames, size) and how long it would take,
from the deployment's own measured throughput. Workers record each job's start, end and result (frames
and size) on its record; the mean pixel rate of the latest succeeded edits is the measure, so an
estimate follows the hardware and settings the deployment actually runs."""

from __future__ import annotations

import math

from sqlalchemy import select
from sqlalchemy.orm import Session

from cmet_core.media.video import VideoInfo
from cmet_jobs import jobs, schemas
from cmet_jobs.db.models import JobRow
from cmet_jobs.results import EditResult
from cmet_jobs.states import JobKind, JobState

MEASURED_JOBS = 50
"""How many of the latest succeeded edits and clip previews the pixel rate is measured over."""


def pixel_rate(session: Session) -> tuple[float | None, int]:
    """Output pixels per second of running time over the latest succeeded edits, and how many there were."""
    rows = session.scalars(
        select(JobRow)
        .where(
            JobRow.state == JobState.SUCCEEDED,
            JobRow.kind.in_((JobKind.EDIT, JobKind.CLIP)),
            JobRow.started_at.is_not(None),
            JobRow.finished_at.is_not(None),
        )
        .order_by(JobRow.finished_at.desc())
        .limit(MEASURED_JOBS)
    )
    pixels, seconds, count = 0, 0.0, 0
    for job in rows:
        result = jobs.result_of(job)
        if not isinstance(result, EditResult) or job.started_at is None or job.finished_at is None:
            continue
        pixels += result.frames * result.width * result.height
        seconds += max((job.finished_at - job.started_at).total_seconds(), 0.0)
        count += 1
    return (pixels / seconds if seconds > 0 else None), count


def estimate(session: Session, video: VideoInfo | None, preview_s: float | None) -> schemas.EditEstimate:
    """The estimate of an edit of `video` (None: a URL, an asset or a photo, whose frames are read by the
    worker): frames, size and seconds, each null where it cannot be known before the job runs."""
    rate, measured = pixel_rate(session)
    if video is None:
        return schemas.EditEstimate(measured_jobs=measured)
    frames = video.frame_count if preview_s is None else min(math.ceil(preview_s * video.frame_rate), video.frame_count)
    seconds = frames * video.width * video.height / rate if rate else None
    return schemas.EditEstimate(
        frames=frames,
        fps=video.frame_rate,
        duration_s=frames / video.frame_rate if video.frame_rate > 0 else None,
        width=video.width,
        height=video.height,
        estimated_seconds=round(seconds, 1) if seconds is not None else None,
        measured_jobs=measured,
    )
