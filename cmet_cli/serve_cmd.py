"""`cmet serve`: the whole API and its workers on this machine, with no server to install.

SQLite, local storage and kombu's filesystem broker live under CMET_DATA_DIR (shared with
`cmet keys`). The edit worker and the webhook worker are child processes; jobs left unfinished
by an earlier run are queued again at start, so nothing a user sent is lost when the machine
stops. Docker compose is the scaled path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cmet_cli.console import run, say

if TYPE_CHECKING:
    from cmet_jobs.settings import JobsSettings
    from worker.supervisor import Supervisor


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
    """Start the REST API, an edit worker and a webhook worker (SQLite, local files, no broker server)."""
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
    workers = _workers(settings)
    say(
        f"models: {models_set}; data: {settings.data_dir}; API on http://{host}:{port} "
        "(create a key with `cmet keys create --name me`)"
    )
    try:
        uvicorn.run(app, host=host, port=port, log_level="info")
    finally:
        workers.stop(15.0)


def _workers(settings: JobsSettings) -> Supervisor:
    """The embedded edit worker (one job at a time, in its main process) and a webhook worker (no models),
    started again when one exits (a crash, or the watchdog of a stuck job)."""
    import threading

    from worker.devices import WEBHOOK_ENV, celery_worker, webhook_command
    from worker.supervisor import Child, Supervisor

    edits = celery_worker([settings.queue], 1, "solo", "cmet-edits", "warning")
    webhooks = webhook_command(settings.webhook_queue, settings.webhook_concurrency, "warning")
    supervisor = Supervisor(
        [
            Child("edits", edits, dict(os.environ)),
            # the edit worker serves the metrics port: one process can hold it
            Child("webhooks", webhooks, {**os.environ, **WEBHOOK_ENV, "CMET_WORKER_METRICS_PORT": "0"}),
        ],
        say,
    )
    supervisor.start()
    threading.Thread(target=supervisor.keep, name="keep-workers", daemon=True).start()
    return supervisor
