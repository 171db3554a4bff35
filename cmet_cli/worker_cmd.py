"""`cmet worker`: one Celery worker per device (CUDA GPUs, else the CPU), or a webhook worker, supervised."""

from __future__ import annotations

import os

import typer

from cmet_cli.console import EXIT_BAD_INPUT, fail, say
from cmet_core.threads import thread_count
from cmet_jobs.settings import get_jobs_settings
from worker.devices import WEBHOOK_ENV, command, count_gpus, plan, webhook_command
from worker.supervisor import Child, supervise


def worker(
    devices: str = typer.Option("all", "--devices", help="all, cpu, or GPU indices such as 0,1."),
    concurrency: int = typer.Option(
        None,
        "--concurrency",
        min=1,
        help="Jobs at once per device (default 1); with --webhooks, deliveries at once (CMET_WEBHOOK_CONCURRENCY).",
    ),
    webhooks: bool = typer.Option(
        False, "--webhooks", help="Run a webhook delivery worker instead: the webhook queue only, no models, no device."
    ),
    sweeper_only: bool = typer.Option(
        False,
        "--sweeper",
        help="Run only the sweeper of the job records and assets (lost messages re-queued, half-created jobs and "
        "expired assets removed): no queue, no models; for clusters whose edit workers scale to zero.",
    ),
) -> None:
    """Start and supervise the workers; a crashed one is restarted, Ctrl-C stops them all."""

    settings = get_jobs_settings()
    broker = settings.broker_url.split("@")[-1]
    port = settings.worker_metrics_port
    if sweeper_only:
        from worker import sweeper  # deferred: the job domain (SQLAlchemy, Celery, boto3) only when it runs

        say(f"sweeper of the job records and assets; queues {settings.queue}, {settings.preview_queue}; {broker}")
        sweeper.run_alone()
        return
    if webhooks:
        say(f"webhook deliveries; queue {settings.webhook_queue}; broker {broker}")
        args = webhook_command(settings.webhook_queue, concurrency or settings.webhook_concurrency)
        env = {**os.environ, **WEBHOOK_ENV, "CMET_WORKER_METRICS_PORT": str(port)}
        supervise([Child("webhooks", args, env)], say)
        return
    try:
        slots = plan(devices, count_gpus())
    except ValueError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT) from None
    names = ", ".join(s.name for s in slots)
    say(f"devices: {names}; queues {settings.preview_queue} (first), {settings.queue}; broker {broker}")
    children = [
        Child(
            slot.name,
            command(slot, settings.queue, concurrency or 1, settings.preview_queue),
            {**os.environ, **slot.environment(port + i if port else 0, thread_count(settings, len(slots)))},
        )
        for i, slot in enumerate(slots)
    ]
    supervise(children, say)
