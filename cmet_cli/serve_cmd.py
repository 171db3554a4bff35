"""`cmet serve`: the whole API and one worker on this machine, with no server to install.

SQLite, local storage and kombu's filesystem broker live under CMET_DATA_DIR (shared with
`cmet keys`). The worker is a child process; jobs left unfinished by an earlier run are queued
again at start, so nothing a user sent is lost when the machine stops. Docker compose is the
scaled path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

from cmet_cli.console import run, say


def serve(
    port: int = typer.Option(8000, "--port", help="Port of the API on 127.0.0.1 (or --host)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    models: Path = typer.Option(
        None, "--models", help="Model set the worker serves (default: the models dir's choice)."
    ),
    connector: str = typer.Option(
        None,
        "--connector",
        help="Serve a registry connector: 'latest' or a version (default: CMET_CONNECTOR_VERSION, else the set's own).",
    ),
) -> None:
    """Start the REST API and a worker (SQLite, local files, no broker server)."""
    import uvicorn

    from cmet_core.models.sets import select_set
    from cmet_jobs import queue
    from cmet_jobs.db.session import session_scope
    from cmet_jobs.jobs import unfinished_ids
    from cmet_jobs.settings import JobsSettings
    from service.app import create_app

    overrides = {
        "CMET_BROKER_URL": os.environ.get("CMET_BROKER_URL", "filesystem://"),
        "CMET_PUBLIC_URL": os.environ.get("CMET_PUBLIC_URL", f"http://{host}:{port}"),
    }
    models_set = run(select_set, models if models is not None else None)
    overrides["CMET_MODELS_SET"] = str(models_set)
    if connector is not None:
        from cmet_core.models.registry import choose

        run(choose, connector)  # an unknown version or an empty registry stops here, with the reason
        overrides["CMET_CONNECTOR_VERSION"] = connector
    os.environ.update(overrides)
    settings = JobsSettings()
    app = run(create_app, settings)
    with session_scope(settings.db_url) as session:
        leftover = unfinished_ids(session)
    for job_id in leftover:
        queue.submit(settings, job_id)
    if leftover:
        say(f"queued {len(leftover)} unfinished job(s) again")
    worker = _KeptWorker(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.celery_app",
            "worker",
            "-Q",
            settings.queue,
            "-c",
            "1",
            "--pool",
            "solo",
            "-l",
            "warning",
        ]
    )
    say(
        f"models: {models_set}; data: {settings.data_dir}; API on http://{host}:{port} "
        "(create a key with `cmet keys create --name me`)"
    )
    try:
        uvicorn.run(app, host=host, port=port, log_level="info")
    finally:
        worker.stop()


class _KeptWorker:
    """The embedded worker, started again when it exits (a crash, or the watchdog of a stuck job)."""

    def __init__(self, args: list[str]) -> None:
        import threading

        from worker.supervisor import die_with_parent

        self.args, self.preexec = args, die_with_parent
        self.stopping = threading.Event()
        self.proc = self._start()
        threading.Thread(target=self._keep, name="keep-worker", daemon=True).start()

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.args, env=dict(os.environ), preexec_fn=self.preexec)

    def _keep(self) -> None:
        import time

        delay = 1.0
        while not self.stopping.is_set():
            started = time.monotonic()
            code = self.proc.wait()
            # back off only while it keeps dying
            delay = 1.0 if time.monotonic() - started > 60 else min(30.0, delay * 2)
            if self.stopping.wait(delay):
                return
            say(f"worker exited with {code}; starting it again")
            self.proc = self._start()

    def stop(self) -> None:
        self.stopping.set()
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
