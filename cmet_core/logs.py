"""Process-wide logging: one stderr handler on the root logger, text for people, JSON lines for collectors.

Every process (CLI, API, worker) calls `configure` once at start, so each library module only does
`logging.getLogger(__name__)`. `job_context` tags every record logged while a job runs with its id,
so one job's lines can be found among many workers' output.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal, TextIO

from cmet_core.settings import get_settings

_job_id: ContextVar[str | None] = ContextVar("cmet_job_id", default=None)

# What every LogRecord has; anything else on a record came from the caller's `extra={...}`.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName", "job_id"}


@contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Records logged inside the block (in this thread or task context) carry `job_id`."""
    token = _job_id.set(job_id)
    try:
        yield
    finally:
        _job_id.reset(token)


class JobFilter(logging.Filter):
    """Sets `record.job_id` from the current job context (None outside one); an explicit extra wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            record.job_id = _job_id.get()
        return True


class TextFormatter(logging.Formatter):
    """`time level logger message job=<id>`: one line a person reads, traceback below it."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        job_id = getattr(record, "job_id", None)
        return f"{line} job={job_id}" if job_id else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, job_id, exc, and the caller's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        job_id = getattr(record, "job_id", None)
        if job_id:
            entry["job_id"] = job_id
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        entry.update((k, v) for k, v in record.__dict__.items() if k not in _STANDARD and k not in entry)
        return json.dumps(entry, default=str, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever `sys.stderr` is at the time (pytest's capture, rich's live display), not the
    stream of when `configure` ran; the class marks the one handler `configure` owns."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure(
    fmt: Literal["text", "json"] | None = None, level: str | None = None, *, default_level: str | None = None
) -> None:
    """Install the root logger's one stderr handler; a second call updates that handler, never adds one.

    `fmt` and `level` override the settings (CMET_LOG_FORMAT, CMET_LOG_LEVEL); `default_level` is
    used instead of the settings' default when CMET_LOG_LEVEL is not set (a quiet CLI, Celery's `-l`).
    """
    settings = get_settings()
    if level is None:
        explicit = "log_level" in settings.model_fields_set
        level = settings.log_level if explicit or default_level is None else default_level
    chosen = fmt if fmt is not None else ("json" if settings.log_format == "json" else "text")
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        handler.addFilter(JobFilter())
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    root.setLevel(level.upper())
