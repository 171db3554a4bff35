"""`cmet serve`: the whole API and its workers on this machine, with no server to install.

SQLite, local storage and kombu's filesystem broker live under CMET_DATA_DIR (shared with
`cmet keys`). The edit worker and the webhook worker are child processes; jobs left unfinished
by an earlier run are queued again at start, so nothing a user sent is lost when the machine
stops. Docker compose is the scaled path.

SIGTERM (or Ctrl-C) stops everything within `STOP_WITHIN_S`, inside `docker stop`'s 10 s: the API
stops accepting and finishes its requests (`API_GRACE_S`), the workers take no new job, a running
edit gets `job_handback_s` to finish and is then handed back to the queue (run again at the next
start, its attempt not counted); a worker still running at the bound is killed, its job coming
back through its lapsed lease. The exit status is 0.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer

from cmet_cli.console import run, say
from cmet_core.modelsets.registry import choose
from cmet_core.modelsets.sets import select_set
from cmet_core.settings import get_settings
from cmet_jobs.settings import JobsSettings
from cmet_jobs.states import JobKind
from worker.devices import WEBHOOK_ENV, celery_worker, job_queues, webhook_command
from worker.supervisor import Child, Supervisor

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from cmet_jobs.settings import JobsSettings
    from worker.supervisor import Supervisor

API_GRACE_S = 3
STOP_WITHIN_S = 7.5


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
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Every log line: migrations, requests, the workers' banners and warnings."
    ),
) -> None:
    """Start the REST API, an edit worker and a webhook worker (SQLite, local files, no broker server).

    It prints a short summary (where to open the page, with which key); --verbose shows the rest."""
    # deferred: PIL, celery, fastapi, sqlalchemy, uvicorn
    import uvicorn

    from cmet_jobs import jobs, queue
    from cmet_jobs.db.session import session_scope
    from cmet_jobs.jobs import unfinished_ids
    from service.app import create_app

    overrides = {
        # the API (create_app), its migrations and the workers all log at this level; a user's setting wins
        "CMET_LOG_LEVEL": os.environ.get("CMET_LOG_LEVEL", "INFO" if verbose else "WARNING"),
        # a host named: kombu warns "No hostname was supplied" at every connection otherwise
        "CMET_BROKER_URL": os.environ.get("CMET_BROKER_URL", "filesystem://localhost/"),
        # CMET_PUBLIC_URL stays unset unless the user sets it: answers then name the origin a request came to
        "CMET_API_URL": f"http://{host}:{port}",
    }
    models_set = run(select_set, models if models is not None else None)
    overrides["CMET_MODELS_SET"] = str(models_set)
    if connector is not None:
        run(choose, connector)  # an unknown version or an empty registry stops here, with the reason
        overrides["CMET_CONNECTOR_VERSION"] = connector
    os.environ.update(overrides)
    get_settings.cache_clear()  # read again with the overrides: create_app configures logging from them
    settings = JobsSettings()
    app = run(create_app, settings)
    with session_scope(settings.db_url) as session:
        leftover = unfinished_ids(session)
        kinds = jobs.kinds(session, leftover)
        key = _key_line(session)
    for job_id in leftover:
        queue.submit(settings, job_id, kind=kinds.get(job_id, JobKind.EDIT))
    if leftover:
        say(f"queued {len(leftover)} unfinished job(s) again")
    workers = _workers(settings, verbose)
    stop = _Stop(workers)
    say(f"models: {models_set}; data: {settings.data_dir}; API on http://{host}:{port}")
    say(f"open http://{host}:{port}/ in a browser; {key}")
    say("Ctrl-C stops it" + ("" if verbose else "; --verbose shows every log line"))

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            stop.begin()  # the workers start stopping now, while the API finishes its requests
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app, host=host, port=port, log_level="info" if verbose else "warning", timeout_graceful_shutdown=API_GRACE_S
    )
    try:
        Server(config).run()
    finally:
        stop.begin()
        workers.finish_stop(stop.at + STOP_WITHIN_S)
        say(f"stopped in {time.monotonic() - stop.at:.1f} s")
    # Nothing is left to clean up (requests answered, workers reaped, every commit done); tearing down
    # the interpreter's modules would take another second of a busy machine, past the bound.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class _Stop:
    """The moment stopping began; the workers are told at once, in parallel with the API's shutdown."""

    def __init__(self, workers: Supervisor) -> None:
        self.workers, self.at = workers, 0.0
        # also our handlers outside uvicorn's (before it starts; and the signal uvicorn raises again
        # once it is done lands here instead of killing the process before the workers are stopped)
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)

    def begin(self) -> None:
        if not self.at:
            self.at = time.monotonic()
            self.workers.begin_stop()

    def on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self.begin()


def _key_line(session: Session) -> str:
    """Which key opens the page: a first run (no active key) makes one and shows it, once."""
    from cmet_jobs.keys import create_key, list_keys  # deferred: sqlalchemy

    active = sum(1 for k in list_keys(session) if k.revoked_at is None)
    if active:
        return f"key: one made with `cmet keys create` ({active} active; `cmet keys list`)"
    made = create_key(session, "cmet serve")
    return f"key: {made.secret} (made now for this first run and shown once; `cmet keys create --name NAME` makes more)"


QUIET_WORKER_ENV = {"PYTHONWARNINGS": "ignore:You're running the worker with superuser privileges"}
"""Without --verbose: no run-as-root warning from each worker (a laptop's root container; a deployment's
workers, started by `cmet worker`, still say it)."""


def _workers(settings: JobsSettings, verbose: bool) -> Supervisor:
    """The embedded edit worker (one job at a time, in its main process) and a webhook worker (no models),
    started again when one exits (a crash, or the watchdog of a stuck job)."""

    level, quiet = ("info", False) if verbose else ("warning", True)
    edits = celery_worker(job_queues(settings.queue, settings.preview_queue), 1, "solo", "cmet-edits", level, quiet)
    webhooks = webhook_command(settings.webhook_queue, settings.webhook_concurrency, level, quiet)
    env = dict(os.environ) | ({} if verbose else QUIET_WORKER_ENV)
    supervisor = Supervisor(
        [
            Child("edits", edits, env),
            # the edit worker serves the metrics port: one process can hold it
            Child("webhooks", webhooks, {**env, **WEBHOOK_ENV, "CMET_WORKER_METRICS_PORT": "0"}),
        ],
        say,
    )
    supervisor.start()
    threading.Thread(target=supervisor.keep, name="keep-workers", daemon=True).start()
    return supervisor
