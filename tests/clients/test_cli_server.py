"""`cmet edit --server` and `cmet preview --server` against a real `cmet serve`: submitted through the SDK,
progress bars from the event stream, the result downloaded to `-o`; and `GET /v1/previews/{id}/events`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.clients.conftest import Served
from tests.service.test_serve import CMET

pytest.importorskip("cmet_client", reason="the SDK is installed with `pip install -e clients/python`")


def _cmet(served: Served, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    run_env = served.env | {"CMET_API_KEY": served.key, "COLUMNS": "120"} | env
    return subprocess.run([CMET, *args], env=run_env, capture_output=True, text=True, timeout=180)


def test_cmet_edit_runs_on_the_server_with_progress(served: Served, tmp_path: Path) -> None:
    out = tmp_path / "happy.mp4"
    done = _cmet(
        served, "edit", str(served.clip), "-e", "happy", "--preview-s", "0.2", "-o", str(out), "--server", served.url
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert out.read_bytes()[4:8] == b"ftyp"
    shown = done.stdout + done.stderr
    assert "submitted edt_" in shown and f"wrote {out}" in shown
    assert "render" in shown and "100/100" in shown, shown

    refused = _cmet(served, "edit", str(served.clip), "-e", "no_such_feeling", "-o", str(out), CMET_SERVER=served.url)
    assert refused.returncode == 2 and "[unknown_emotion]" in refused.stderr, refused.stderr
    local_only = _cmet(served, "edit", str(served.clip), "--models", "x", "--server", served.url)
    assert local_only.returncode == 2 and "--models" in local_only.stderr


def test_cmet_preview_runs_on_the_server_and_its_events_stream(served: Served, tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.png"
    args = ["preview", str(served.clip), "--emotions", "happy,sad", "--intensities", "1", "-o", str(sheet)]
    done = _cmet(served, *args, "--server", served.url)
    assert done.returncode == 0, done.stderr + done.stdout
    assert sheet.read_bytes().startswith(b"\x89PNG")
    assert len(list((tmp_path / "sheet_cells").glob("*.png"))) == 2

    auth = {"Authorization": f"Bearer {served.key}"}
    (latest,) = httpx.get(f"{served.url}/v1/previews", headers=auth, params={"limit": 1}).json()["data"]
    with httpx.stream("GET", f"{served.url}/v1/previews/{latest['id']}/events", headers=auth) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = list(stream.iter_lines())
    assert "event: result" in lines and any('"object":"preview"' in line for line in lines)
    edit = httpx.get(f"{served.url}/v1/edits", headers=auth, params={"limit": 1}).json()["data"]
    if edit:
        wrong = httpx.get(f"{served.url}/v1/previews/{edit[0]['id']}/events", headers=auth)
        assert (wrong.status_code, wrong.json()["code"]) == (404, "preview_not_found")
