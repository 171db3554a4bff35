"""`cmet worker`: one Celery worker per device (CUDA GPUs, else the CPU), supervised."""

from __future__ import annotations

import typer

from cmet_cli.console import EXIT_BAD_INPUT, fail, say


def worker(
    devices: str = typer.Option("all", "--devices", help="all, cpu, or GPU indices such as 0,1."),
    concurrency: int = typer.Option(1, "--concurrency", min=1, help="Jobs at once per device."),
) -> None:
    """Start and supervise the workers; a crashed one is restarted, Ctrl-C stops them all."""
    from cmet_jobs.settings import get_jobs_settings
    from worker.devices import count_gpus, plan
    from worker.supervisor import supervise

    settings = get_jobs_settings()
    try:
        slots = plan(devices, count_gpus())
    except ValueError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT) from None
    names = ", ".join(s.name for s in slots)
    say(f"devices: {names}; queue {settings.queue}; broker {settings.broker_url.split('@')[-1]}")
    supervise(slots, settings.queue, concurrency, settings.worker_metrics_port, say)
