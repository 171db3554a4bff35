"""`cmet-train`: prepare features, train and evaluate the connector, publish versions to the registry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import typer

from cmet_core.backbones.registry import DEFAULT_BACKBONE, backbone_names
from cmet_core.modelsets.registry import LATEST, open_registry, resolve
from cmet_core.networks.errors import ModelLoadError  # noqa: F401  (a ValueError; named for readers)
from training.config import ConfigError, load_config

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Train the C-MET connector and publish it.")
T = TypeVar("T")

_SET = typer.Option([], "--set", help="Override one config value: section.key=value (repeatable).")
_REGISTRY = typer.Option(None, "--registry", help="Registry directory or s3://bucket/prefix (default: CMET_REGISTRY).")


@app.callback()
def _main() -> None:
    """Connector training (the synthetic benchmark runs without MEAD videos or GPUs)."""


def _run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Known failures become one line and exit code 2, never a traceback."""
    from training.trainer import TrainError  # deferred: torch

    try:
        return fn(*args, **kwargs)
    except (ConfigError, TrainError, ModelLoadError, ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _threads(threads: int | None) -> None:
    import torch  # deferred: torch

    if threads:
        torch.set_num_threads(threads)


@app.command("train")
def train(
    run: Path = typer.Option(..., "--run", help="Run folder: checkpoints, metrics.csv, config.json."),
    config: str = typer.Option(
        "mead", "--config", help="A config file or the name of a shipped one (training/configs)."
    ),
    overrides: list[str] = _SET,
    resume: bool = typer.Option(True, "--resume/--restart", help="Continue from the run's newest checkpoint."),
    threads: int = typer.Option(0, "--threads", min=0, help="torch CPU threads (0: torch's default)."),
) -> None:
    """Train the connector (resumes an interrupted run exactly)."""
    # deferred: torch
    from training.export import start_from
    from training.sources import open_source
    from training.trainer import Trainer

    _threads(threads)
    cfg = _run(load_config, config, overrides)
    init_state, parent = _run(start_from, cfg.model.init, None, cfg.backbone)
    trainer = _run(Trainer, cfg, _run(open_source, cfg), run, progress=True, init_state=init_state, parent=parent)
    if not resume and trainer.checkpoints():
        typer.echo(f"error: {run} already holds checkpoints; pass --resume or use a new folder", err=True)
        raise typer.Exit(2)
    if resume and _run(trainer.resume):
        typer.echo(f"resumed at step {trainer.step}")
    result = _run(trainer.train)
    typer.echo(f"trained {result.step} steps into {run}")
    for name, value in sorted(result.metrics.items()):
        typer.echo(f"  {name:<40} {value:.4f}")


@app.command("evaluate")
def evaluate_cmd(run: Path = typer.Argument(..., help="A run folder.")) -> None:
    """Evaluate a run's newest checkpoint on its held-out pairs."""
    # deferred: torch
    from training.sources import open_source
    from training.trainer import Trainer, read_run

    cfg, _, parent = _run(read_run, run)
    trainer = _run(Trainer, cfg, _run(open_source, cfg), run, parent=parent)
    if not _run(trainer.resume):
        typer.echo(f"error: {run} has no checkpoint yet", err=True)
        raise typer.Exit(2)
    for name, value in sorted(_run(trainer.evaluate).items()):
        typer.echo(f"{name:<40} {value:.4f}")


@app.command("export")
def export(
    run: Path = typer.Argument(..., help="A run folder."),
    registry: str = _REGISTRY,
    version: str = typer.Option(None, "--version", help="Version to publish (default: the newest bumped)."),
    bump: str = typer.Option("minor", "--bump", help="major, minor or patch, when no --version is given."),
) -> None:
    """Publish a run's newest checkpoint as a registry version of the run's backbone (its own version line)."""
    # deferred: torch
    from training.export import export_run
    from training.trainer import read_run

    if bump not in ("major", "minor", "patch"):
        typer.echo("error: --bump takes major, minor or patch", err=True)
        raise typer.Exit(2)
    cfg, _, _ = _run(read_run, run)
    reg = _run(open_registry, registry, None, cfg.backbone)
    manifest = _run(export_run, run, reg, version, bump)
    typer.echo(
        f"published {manifest.name} {manifest.version} ({manifest.sha256[:12]}) for {reg.backbone} to {reg.where}"
    )


@app.command("import-official")
def import_official_cmd(
    pth: Path = typer.Argument(..., help="The published C-MET connector checkpoint (.pth)."),
    registry: str = _REGISTRY,
    version: str = typer.Option("1.0.0", "--version"),
) -> None:
    """Add the official C-MET connector to the registry as a version of its own."""
    from training.export import import_official  # deferred: torch

    reg = _run(open_registry, registry)
    manifest = _run(import_official, pth, reg, version)
    typer.echo(f"published {manifest.name} {manifest.version} ({manifest.sha256[:12]}) to {reg.where}")


@app.command("registry")
def registry_list(
    registry: str = _REGISTRY,
    backbone: str = typer.Option(DEFAULT_BACKBONE, "--backbone", help="Whose connectors: edtalk or pdfgc."),
) -> None:
    """List a backbone's connector versions in the registry (newest last) and what `latest` resolves to."""

    if backbone not in backbone_names():
        typer.echo(f"error: unknown backbone {backbone!r} (known: {', '.join(backbone_names())})", err=True)
        raise typer.Exit(2)
    reg = _run(open_registry, registry, None, backbone)
    versions = _run(reg.versions)
    if not versions:
        typer.echo(f"{reg.where}: no {backbone} connector versions yet")
        return
    for v in versions:
        m = _run(reg.manifest, v)
        detail = f"steps {m.training.steps}, parent {m.training.parent or '-'}" if m.training else m.source.summary()
        typer.echo(f"{v:<16} {m.name:<28} {m.sha256[:12]}  {detail}")
    typer.echo(f"latest -> {_run(resolve, reg, LATEST)}")


@app.command("synthetic")
def synthetic(
    config: str = typer.Option("synthetic", "--config"),
    overrides: list[str] = _SET,
    seeds: int = typer.Option(3, "--seeds", min=1),
    variants: str = typer.Option("recon,recon+cnt,recon+cnt+dir", "--variants", help="Comma-separated loss variants."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Runs in parallel (one CPU thread each)."),
    out: Path = typer.Option(None, "--out", help="Keep the runs here (default: a temporary folder)."),
) -> None:
    """Train on the 8 basic emotions, score the 6 unseen extended ones; the loss ablation over seeds.

    Exits 1 when the paper's loss (recon+cnt+dir, or the last variant run) misses the goal."""

    # deferred: torch
    from training.sources import open_source
    from training.synthetic import GOAL, VARIANTS, SyntheticPairs, linear_reference, run_benchmark, summarise

    names = [v.strip() for v in variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        typer.echo(f"error: unknown variants {', '.join(unknown) or '(none)'}; known: {', '.join(VARIANTS)}", err=True)
        raise typer.Exit(2)
    cfg = _run(load_config, config, overrides)
    rows = _run(run_benchmark, cfg, list(range(seeds)), names, out, jobs)
    for line in summarise(rows):
        typer.echo(line)
    # the benchmark's configs name the synthetic layout, whose pair source is SyntheticPairs
    linear = [
        linear_reference(cast(SyntheticPairs, open_source(cfg.model_copy(update={"seed": seed}))))
        for seed in range(seeds)
    ]
    typer.echo(
        f"reference: a linear ridge map on the same draws reaches {np.mean(linear):.3f} +- {np.std(linear):.3f} "
        f"({', '.join(f'{v:.3f}' for v in linear)})"
    )
    scored = "recon+cnt+dir" if "recon+cnt+dir" in names else names[-1]
    mean = sum(r.unseen_cos for r in rows if r.variant == scored) / seeds
    typer.echo(f"goal: {scored} unseen-emotion cosine {mean:.3f} {'>=' if mean >= GOAL else '<'} {GOAL}")
    if mean < GOAL:
        raise typer.Exit(1)


def _prep_command(kind: str, unit: str, batch_default: int, doc: str) -> None:
    """`prep-visual` and `prep-speech`: the same command over a different model and feature."""

    def command(
        root: Path = typer.Argument(..., help="Dataset root."),
        layout: str = typer.Option("mead", "--layout", help="mead or crema-d"),
        models: Path = typer.Option(
            None, "--models", help="Model set to encode with (default: the models dir's choice)."
        ),
        batch: int = typer.Option(batch_default, "--batch", min=1, help=f"{unit} per forward."),
        device: str = typer.Option(None, "--device", help="Default: CMET_DEVICE."),
    ) -> None:
        from training import prep  # deferred: torch

        report = _run(getattr(prep, f"prep_{kind}"), root, layout, models, batch, device)
        typer.echo(report.line(kind))

    command.__doc__ = doc
    app.command(f"prep-{kind}")(command)


_prep_command(
    "visual",
    "Frames",
    32,
    "The set's backbone's expression code of every clip's frames (EDTalk NNN_ED_exp.npy, PD-FGC NNN_PD_FGC_emo.npy); "
    "skips clips already done.",
)
_prep_command("speech", "Clips", 8, "emotion2vec+ utterance features of every clip's wav; skips clips already done.")

if __name__ == "__main__":
    app()
