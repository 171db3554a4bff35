"""`cmet-train`: connector training commands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Train the C-MET connector.")


@app.callback()
def _main() -> None:
    """Connector training (the synthetic benchmark runs without MEAD videos or GPUs)."""


@app.command("synthetic")
def synthetic(
    features: Path = typer.Option(None, "--features", help="emotion2vec+ feature folders (default: CMET_TEST_DATA/e2v)."),
    seeds: int = typer.Option(3, "--seeds", min=1),
    steps: int = typer.Option(400, "--steps", min=1),
    threads: int = typer.Option(1, "--threads", min=1),
) -> None:
    """Train on the 8 basic emotions, score the unseen extended ones; the loss ablation over seeds."""
    import torch

    from cmet_core.settings import get_settings
    from training.synthetic import SyntheticConfig, ablation

    torch.set_num_threads(threads)
    root = features or get_settings().test_data / "e2v"
    if not (root / "MEAD").is_dir():
        typer.echo(f"error: no MEAD features under {root}", err=True)
        raise typer.Exit(2)
    results = ablation(root, list(range(seeds)), SyntheticConfig(steps=steps))
    for variant, values in results.items():
        typer.echo(f"{variant:<15} unseen-emotion mean cosine {np.mean(values):.3f} +- {np.std(values):.3f} over {len(values)} seeds ({', '.join(f'{v:.3f}' for v in values)})")
