"""`cmet edit --server` and `cmet preview --server` against a real `cmet serve`: submitted through the SDK,
progress bars from the event stream, the result downloaded to `-o`; and `GET /v1/previews/{id}/events`.
The commands run in this process (typer's runner): the server is the real one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cmet_cli.main import app
from cmet_core.settings import get_settings
from tests.clients.conftest import Served

pytest.importorskip("cmet_client", reason="the SDK is installed with `pip install -e clients/python`")
runner = CliRunner()


@pytest.fixture
def keyed(served: Served, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.setenv("CMET_API_KEY", served.key)
    get_settings.cache_clear()
    yield served
    get_settings.cache_clear()


def test_cmet_edit_runs_on_the_server_with_progress(keyed: Served, tmp_path: Path) -> None:
    out = tmp_path / "happy.mp4"
    args = ["edit", str(keyed.clip), "-e", "happy", "--preview-s", "0.2", "-o", str(out), "--server", keyed.url]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    assert out.read_bytes()[4:8] == b"ftyp"
    assert "submitted edt_" in done.output and f"wrote {out}" in done.output
    assert "render" in done.output and "100/100" in done.output, done.output

    local_only = runner.invoke(app, ["edit", str(keyed.clip), "--models", "x", "--server", keyed.url])
    assert local_only.exit_code == 2 and "--models" in local_only.output


def test_cmet_server_comes_from_the_setting_and_refusals_keep_their_code(
    keyed: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CMET_SERVER", keyed.url)
    get_settings.cache_clear()
    refused = runner.invoke(app, ["edit", str(keyed.clip), "-e", "no_such_feeling", "-o", str(tmp_path / "x.mp4")])
    assert refused.exit_code == 2 and "[unknown_emotion]" in refused.output, refused.output


def test_cmet_preview_runs_on_the_server_and_its_events_stream(keyed: Served, tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.png"
    args = ["preview", str(keyed.clip), "--emotions", "happy,sad", "--intensities", "1", "-o", str(sheet)]
    done = runner.invoke(app, [*args, "--server", keyed.url])
    assert done.exit_code == 0, done.output
    assert sheet.read_bytes().startswith(b"\x89PNG")
    assert len(list((tmp_path / "sheet_cells").glob("*.png"))) == 2

    auth = {"Authorization": f"Bearer {keyed.key}"}
    (latest,) = httpx.get(f"{keyed.url}/v1/previews", headers=auth, params={"limit": 1}).json()["data"]
    with httpx.stream("GET", f"{keyed.url}/v1/previews/{latest['id']}/events", headers=auth) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = list(stream.iter_lines())
    assert "event: result" in lines and any('"object":"preview"' in line for line in lines)
    (edit,) = httpx.get(f"{keyed.url}/v1/edits", headers=auth, params={"limit": 1}).json()["data"] or [None]
    if edit is not None:
        wrong = httpx.get(f"{keyed.url}/v1/previews/{edit['id']}/events", headers=auth)
        assert (wrong.status_code, wrong.json()["code"]) == (404, "preview_not_found")
