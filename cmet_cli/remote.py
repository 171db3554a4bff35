"""`cmet edit --server URL` and `cmet preview --server URL`: the same command, run by a cmet API
through the Python SDK (`cmet_client`), its progress read from the job's event stream and drawn as
the local run draws it, the result downloaded to `-o`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cmet_cli.console import EXIT_BAD_INPUT, EXIT_FAILED, fail, out, say
from cmet_core.errors import ErrorCode

if TYPE_CHECKING:
    from cmet_client import Client
    from cmet_client.models import Job, Preview

LOCAL_ONLY = ("--models", "--library", "--device", "--connector", "--registry", "--neutral-speech", "--plan-out")
"""Flags about this machine's models: a server runs its own."""


def refuse_local_flags(given: dict[str, object]) -> None:
    """Exit 2 when a flag that only means something here was given with --server."""
    named = [flag for flag, value in given.items() if value not in (None, (), [])]
    if named:
        raise fail(f"{', '.join(named)} choose this machine's models: not with --server", EXIT_BAD_INPUT)


@contextmanager
def connected(server: str) -> Iterator[Client]:
    """A client of `server` (key: CMET_API_KEY); the SDK's errors become one line and an exit code."""
    try:
        import httpx  # deferred: only a client needs it

        from cmet_client import ApiError, Client, CmetError, JobFailedError  # deferred: the SDK is optional
    except ImportError:
        raise fail("--server needs the Python client: pip install -e clients/python") from None
    try:
        with Client(server) as client:
            yield client
    except ApiError as exc:
        raise fail(f"[{exc.code}] {exc.detail}", EXIT_BAD_INPUT if exc.status < 500 else EXIT_FAILED) from None
    except JobFailedError as exc:
        raise fail(f"[{exc.code}] {exc.message}", EXIT_BAD_INPUT if _users_fault(exc.code) else EXIT_FAILED) from None
    except httpx.TransportError as exc:
        raise fail(f"cannot reach {server}: {exc}") from None
    except CmetError as exc:
        raise fail(str(exc)) from None


def _users_fault(code: str) -> bool:
    """Whether a job's error code is the user's input (exit 2, as a local edit's InputError) or ours."""
    try:
        return ErrorCode(code).status < 500
    except ValueError:  # a newer server's code
        return False


def _bars() -> Progress:
    return Progress(
        TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=False
    )


def follow_edit(client: Client, job: Job) -> Job:
    """Wait for the edit with one bar per stage, in percent of that stage, from the event stream: the
    job's progress is cut by the shares the worker gives each stage (a stage without one is in the next)."""
    from worker.guards import STAGE_SPAN  # deferred: sqlalchemy

    spans = {str(stage): (lo, hi) for stage, (lo, hi) in STAGE_SPAN.items() if hi > lo}
    with _bars() as bars:
        queued = bars.add_task("queued", total=1)
        tasks = {stage: bars.add_task(stage, total=100) for stage in spans}

        def show(now: Job) -> None:
            if now.state != "queued":
                bars.update(queued, completed=1)
            for stage, (lo, hi) in spans.items():
                share = 1.0 if now.state == "succeeded" else (now.progress - lo) / (hi - lo)
                bars.update(tasks[stage], completed=round(100 * min(max(share, 0.0), 1.0)))

        return client.edits.wait(job, progress=show)


def edit(client: Client, video: Path, output: Path, files: dict[str, Any], body: dict[str, Any]) -> None:
    """Submit one edit, follow it, download it, and say what was written."""
    job = client.edits.create(video=video, **files, **body)
    say(f"submitted {job.id} to {client.http.base_url}")
    done = follow_edit(client, job)
    client.edits.download(done, output)
    result = done.result
    if result is not None:
        table = Table()
        for column in ("frames", "fps", "seconds", "size", "connector"):
            table.add_column(column)
        size = f"{result.width}x{result.height}"
        table.add_row(str(result.frames), f"{result.fps:g}", f"{result.duration_s:.2f}", size, str(result.connector))
        out().print(table)
    out().print(f"wrote {output} ({done.id})", highlight=False, soft_wrap=True)


def timeline_body(path: Path) -> dict[str, Any]:
    """A `--timeline` file as the API's `timeline` field."""
    try:
        plan: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise fail(f"--timeline {path}: {exc}", EXIT_BAD_INPUT) from None
    return plan


def preview(client: Client, video: Path, output: Path, body: dict[str, Any]) -> None:
    """Submit a contact sheet, follow it, download the grid and each cell beside it."""
    sheet = client.previews.create(video=video, **body)
    say(f"submitted {sheet.id} to {client.http.base_url}")
    with _bars() as bars:
        task = bars.add_task("sheet", total=100)

        def show(now: Preview) -> None:
            bars.update(task, completed=100 if now.state == "succeeded" else round(100 * now.progress))

        done = client.previews.wait(sheet, progress=show)
    client.previews.download(done, output)
    folder = output.with_name(f"{output.stem}_cells")
    folder.mkdir(parents=True, exist_ok=True)
    for i, cell in enumerate(done.cells):
        client.download(cell.url, folder / f"{i:02d}_{cell.emotion.split('=')[0]}_{cell.intensity:g}.png")
    out().print(
        f"wrote {output}: {len(done.emotions)} x {len(done.intensities)} cells of frame {done.frame}; "
        f"single images in {folder}",
        highlight=False,
        soft_wrap=True,
    )
