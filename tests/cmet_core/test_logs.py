"""Process logging: one handler however often `configure` runs, JSON lines on request, job ids on records."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cmet_core import logs
from cmet_core.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _own_handlers() -> Iterator[None]:
    """Each test starts and ends with the root logger as it found it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    get_settings.cache_clear()


def _ours() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, logs._StderrHandler)]


def test_configure_twice_keeps_one_handler() -> None:
    logs.configure("text", "INFO")
    logs.configure("json", "DEBUG")
    assert len(_ours()) == 1
    assert isinstance(_ours()[0].formatter, logs.JsonFormatter) and logging.getLogger().level == logging.DEBUG


def test_json_lines_carry_the_fields(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("json", "INFO")
    log = logging.getLogger("cmet.test")
    with logs.job_context("job_123"):
        log.info("stage %s took %.2f s", "faces", 0.5, extra={"stage": "faces", "seconds": 0.5})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    log.debug("hidden")
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first["message"] == "stage faces took 0.50 s" and first["level"] == "INFO" and first["logger"] == "cmet.test"
    assert first["job_id"] == "job_123" and first["stage"] == "faces" and first["seconds"] == 0.5
    assert first["ts"].endswith("+00:00") and "T" in first["ts"] and "exc" not in first
    assert "job_id" not in second and "ValueError: boom" in second["exc"] and second["level"] == "ERROR"


def test_job_context_ends_with_its_block(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("text", "INFO")
    log = logging.getLogger("cmet.test")
    with logs.job_context("job_abc"):
        log.info("inside")
        with logs.job_context("job_inner"):
            log.info("nested")
        log.info("back")
    log.info("outside")
    inside, nested, back, outside = capsys.readouterr().err.splitlines()
    assert inside.endswith("INFO cmet.test inside job=job_abc") and nested.endswith("nested job=job_inner")
    assert back.endswith("back job=job_abc") and outside.endswith("INFO cmet.test outside") and "job=" not in outside


def test_settings_choose_format_and_level(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CMET_LOG_FORMAT", "json")
    get_settings.cache_clear()
    logs.configure(default_level="WARNING")  # no CMET_LOG_LEVEL: the caller's default
    assert logging.getLogger().level == logging.WARNING
    monkeypatch.setenv("CMET_LOG_LEVEL", "debug")
    get_settings.cache_clear()
    logs.configure(default_level="WARNING")  # set by the operator: it wins
    logging.getLogger("cmet.test").debug("seen")
    assert json.loads(capsys.readouterr().err)["message"] == "seen"


def test_a_process_logs_json_lines_on_stderr() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMET_LOG")} | {"CMET_LOG_FORMAT": "json"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    code = (
        "import logging; from cmet_core.logs import configure, job_context; configure(); configure()\n"
        "with job_context('job_9'): logging.getLogger('cmet.x').info('hello', extra={'code': 'bad_input'})\n"
        "logging.getLogger('cmet.x').warning('bye')"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    hello, bye = (json.loads(line) for line in proc.stderr.splitlines())
    assert hello["message"] == "hello" and hello["job_id"] == "job_9" and hello["code"] == "bad_input"
    assert bye["level"] == "WARNING" and "job_id" not in bye and set(bye) == {"ts", "level", "logger", "message"}
